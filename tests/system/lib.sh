# shellcheck shell=bash
# Shared by the system tests (tests/system/docker.sh, slurm.sh), which source it: checks that
# are counted and named, Debian packages, the unprivileged user, copies of the project to run,
# Nextflow runs of the test entry and what their outputs and traces must show.
#
# Environment: VIRNUCPRO_CI_CACHE (default /var/cache/virnucpro-ci) holds what later runs on the
# same machine reuse; VIRNUCPRO_CI_SCRATCH (default /var/tmp/virnucpro-ci) the runs of this one,
# replaced by the next.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${VIRNUCPRO_CI_CACHE:-/var/cache/virnucpro-ci}
SCRATCH=${VIRNUCPRO_CI_SCRATCH:-/var/tmp/virnucpro-ci}
CI_USER=virnucpro-ci
NAME=$(basename "$0" .sh)
FAILED=()
# the result files that must be equal byte for byte between two runs of the test profile
# (per sample, then per run); summary.json is compared without its timings, report.html and the
# rest of pipeline_info/ hold timings and host details and are not compared
SAMPLE_FILES=(sequence_calls.tsv prediction_results.txt prediction_results_highestscore.csv viral_sequences.fasta)
RUN_FILES=(virnucpro_mqc.tsv pipeline_info/models.json)

log() { printf '[%s %s] %s\n' "$(date +%T)" "$NAME" "$*"; }
fail() { log "FAILED: $*"; FAILED+=("$*"); }
# check DESCRIPTION COMMAND...: runs the command, counts a failure under DESCRIPTION
check() {
    local what=$1
    shift
    if "$@"; then log "ok: $what"; else fail "$what"; fi
}
# the end of a script: every failed check named, exit status 1 if there was one
finish() {
    if ((${#FAILED[@]})); then
        log "${#FAILED[@]} check(s) failed:"
        printf '  - %s\n' "${FAILED[@]}"
        exit 1
    fi
    log "all checks passed"
    exit 0
}
# a step the rest cannot go without: stop here, naming it
die() {
    fail "$*"
    finish
}
trap 'log "FAILED: line $LINENO: $BASH_COMMAND (exit $?)"' ERR
seconds_since() { echo $(($(date +%s) - $1)); }

[ "$(id -u)" = 0 ] || { echo "$0: run as root (it installs packages and starts daemons)" >&2; exit 2; }
mkdir -p "$CACHE" "$SCRATCH"

# apt_install PACKAGE...: the Debian packages not installed yet
apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$SCRATCH/apt-$NAME.log" 2>&1 \
        || { tail -20 "$SCRATCH/apt-$NAME.log"; return 1; }
}

# the unprivileged user the pipeline is run as, in the GROUPs given
ensure_ci_user() {
    id "$CI_USER" > /dev/null 2>&1 || useradd --create-home --shell /bin/bash "$CI_USER"
    local group
    for group in "$@"; do usermod -a -G "$group" "$CI_USER"; done
}

# the project's venv and Nextflow (tests/setup.sh), for the runs on the host
ensure_test_env() {
    log "virtual environment and Nextflow (tests/setup.sh)"
    "$REPO/tests/setup.sh"
}

# copy_project DEST [OWNER]: the project as a run sees it, without the venv and the outputs of
# earlier runs, Nextflow's runtime included; owned by OWNER (Nextflow writes .nextflow/ there)
copy_project() {
    local dest=$1 owner=${2:-root}
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -C "$REPO" -c --exclude=./.git --exclude=./.venv --exclude=./work --exclude=./results \
        --exclude='./.nextflow*' --exclude=./tests/nextflow/lib . | tar -C "$dest" -x
    cp -rL "$REPO/tests/nextflow/lib" "$dest/tests/nextflow/lib"
    chown -R "$owner:" "$dest"
}

# as_user USER COMMAND...: the command as USER, in a login environment of theirs (not root's)
as_user() {
    local user=$1 home
    shift
    home=$(getent passwd "$user" | cut -d: -f6)
    runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin "$@"
}

# nextflow_run PROJECT RUN_DIR [ARG...]: the test entry (tests/pipeline/main.nf: the pipeline
# without the nf-schema plugin, which cannot be had offline) launched from PROJECT by its owner,
# offline, work and results under RUN_DIR, the project's venv on the PATH for tasks run on the
# host; the output goes to RUN_DIR/nextflow.out
nextflow_run() {
    local project=$1 run=$2
    shift 2
    as_user "$(stat -c %U "$project")" PATH="$REPO/.venv/bin:/usr/local/bin:/usr/bin:/bin" \
        ${SLURM_CONF:+SLURM_CONF="$SLURM_CONF"} NXF_HOME="$run/nxf-home" NXF_OFFLINE=true NXF_ANSI_LOG=false \
        bash -c 'cd "$1" && shift && exec tests/nextflow/nextflow -log "$0/nextflow.log" run tests/pipeline/main.nf \
            -w "$0/work" --outdir "$0/results" "$@" > "$0/nextflow.out" 2>&1' "$run" "$project" "$@"
}

# trace_column RUN_DIR NAME: one column of the execution trace of the run's latest launch (each
# launch writes its own, execution_trace_<launch time>.txt), by its header
trace_column() {
    local traces=("$1"/results/pipeline_info/execution_trace_*.txt)
    awk -F'\t' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) column = i; next } { print $column }' \
        "${traces[-1]}"
}

# all_tasks_are RUN_DIR STATUS: the run has tasks and every one has this status in the trace
all_tasks_are() {
    local statuses
    statuses=$(trace_column "$1" status | sort | uniq -c)
    if [ -z "$statuses" ] || [ "$(trace_column "$1" status | sort -u)" != "$2" ]; then
        echo "task statuses: ${statuses:-none}"
        return 1
    fi
}

# task_dirs RUN_DIR: the work folder of every task in the trace
task_dirs() {
    local hash
    for hash in $(trace_column "$1" hash); do
        compgen -G "$1/work/$hash*" || { echo "no work folder for task $hash" >&2; return 1; }
    done
}

# same_results RUN_A RUN_B: the result files of two runs of the test profile are equal
same_results() {
    local a=$1/results b=$2/results sample file differ=0
    local samples
    samples=$(cd "$a" && find . -mindepth 2 -maxdepth 2 -name sequence_calls.tsv -printf '%h\n' | sort)
    [ -n "$samples" ] || { echo "no sample results in $a"; return 1; }
    [ "$samples" = "$(cd "$b" && find . -mindepth 2 -maxdepth 2 -name sequence_calls.tsv -printf '%h\n' | sort)" ] \
        || { echo "the samples differ: $a, $b"; return 1; }
    for sample in $samples; do
        for file in "${SAMPLE_FILES[@]}"; do
            cmp "$a/$sample/$file" "$b/$sample/$file" || differ=1
        done
        python3 - "$a/$sample/summary.json" "$b/$sample/summary.json" <<'PYTHON' || differ=1
import json, re, sys
def untimed(value):
    if isinstance(value, dict):
        return {key: untimed(item) for key, item in value.items() if not re.search(r"seconds$|per_second$", key)}
    return [untimed(item) for item in value] if isinstance(value, list) else value
first, second = (untimed(json.load(open(path))) for path in sys.argv[1:])
if first != second:
    sys.exit(f"{sys.argv[1]} and {sys.argv[2]} differ beyond their timings")
PYTHON
    done
    for file in "${RUN_FILES[@]}"; do
        cmp "$a/$file" "$b/$file" || differ=1
    done
    return $differ
}
