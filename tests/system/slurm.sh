#!/usr/bin/env bash
# The pipeline on a real SLURM: a one-node cluster from Debian's packages (munge, slurmctld,
# slurmd), started here as root with a configuration of its own (two partitions, cpu and gpu, and
# two GPUs of the gres plugin on character devices), and the pipeline run on it with the host's
# venv. Checks, each named when it fails:
#   - -profile test,slurm --use_gpu false: every task a COMPLETED SLURM job, none asks for a GPU;
#     -resume submits no job;
#   - a site config as docs/usage.md writes it (account, partitions, the GPU tasks' own
#     clusterOptions, resourceLimits the size of the node): its settings reach the jobs, the
#     embedding jobs included, and tasks that ask for more than the node are capped to it and run
#     (a stub run of one sample, with the base resources: 8 CPUs and 48 GB for an embedding task);
#   - the slurm profile's own GPU request: each embedding job gets one GPU, and exactly one
#     in its CUDA_VISIBLE_DEVICES (a stub run of one sample).
# Exit status 0 only when every check passed. The daemons stay up after the run (SLURM_CONF below).
source "$(dirname "$0")/lib.sh"

RUNS=$SCRATCH/slurm
CLUSTER=$SCRATCH/slurm-cluster
export SLURM_CONF=$CLUSTER/slurm.conf
NODE=$(hostname -s)
PARTITION_CPU=cpu
PARTITION_GPU=gpu
GPUS=2
SITE_ACCOUNT=virnucpro-ci
SITE_COMMENT=site-gpu-options

# stop_cluster: the daemons an earlier run of this script started, by the ids they wrote
stop_cluster() {
    local daemon pid
    for daemon in slurmd slurmctld; do
        pid=$(cat "$CLUSTER/$daemon.pid" 2> /dev/null) || continue
        if [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = "$daemon" ]; then
            kill "$pid"
            while kill -0 "$pid" 2> /dev/null; do sleep 0.2; done
        fi
    done
}

start_munge() {
    if munge -n < /dev/null 2> /dev/null | unmunge > /dev/null 2>&1; then return 0; fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge: /etc/munge/munge.key
    install -d -o munge -g munge /run/munge /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    munge -n < /dev/null | unmunge > /dev/null
}

# the one-node cluster: the node as slurmd sees it (CPUs, memory), GPUS gres devices
start_cluster() {
    local config cpus memory gpu
    config=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<< "$config")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<< "$config")
    mkdir -p "$CLUSTER"/{spool,state,log,dev}
    # a GPU of the gres plugin is a character device: these are /dev/null's
    for gpu in $(seq 0 $((GPUS - 1))); do mknod "$CLUSTER/dev/gpu$gpu" c 1 3; done
    cat > "$SLURM_CONF" << EOF
ClusterName=virnucpro-ci
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# finished jobs stay known to scontrol for the checks
MinJobAge=86400
SlurmctldPidFile=$CLUSTER/slurmctld.pid
SlurmdPidFile=$CLUSTER/slurmd.pid
SlurmdSpoolDir=$CLUSTER/spool
StateSaveLocation=$CLUSTER/state
SlurmctldLogFile=$CLUSTER/log/slurmctld.log
SlurmdLogFile=$CLUSTER/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$NODE CPUs=$cpus RealMemory=$memory Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION_CPU Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=$PARTITION_GPU Nodes=ALL MaxTime=INFINITE State=UP
EOF
    echo "Name=gpu File=$CLUSTER/dev/gpu[0-$((GPUS - 1))]" > "$CLUSTER/gres.conf"
    NODE_CPUS=$cpus
    NODE_MEMORY=$memory
    slurmctld
    slurmd
    local waited
    for waited in $(seq 60); do
        [ "$(sinfo -h -N -p "$PARTITION_CPU" -o %T 2> /dev/null)" = idle ] && return 0
        sleep 1
    done
    echo "the node is not idle after $waited s"
    sinfo -N
    tail -5 "$CLUSTER"/log/*.log
    return 1
}

# job_field JOB FIELD: one field of scontrol's record of a job
job_field() {
    scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

jobs_known() {
    squeue -h -t all -o %i | wc -l
}

# every task of RUN_DIR's trace was a SLURM job that COMPLETED, one job per task
tasks_are_completed_jobs() {
    local ids id state
    ids=$(trace_column "$1" native_id)
    [ -n "$ids" ] || { echo "no tasks"; return 1; }
    [ "$(echo "$ids" | sort -u | wc -l)" = "$(echo "$ids" | wc -l)" ] || { echo "tasks share a job"; return 1; }
    for id in $ids; do
        state=$(job_field "$id" JobState)
        [ "$state" = COMPLETED ] || { echo "job $id: ${state:-unknown to SLURM}"; return 1; }
    done
    echo "$(echo "$ids" | wc -l) jobs, each COMPLETED"
}

# expect_jobs RUN_DIR PROCESS_PATTERN FIELD VALUE: the jobs of the matching tasks (at least one)
# have FIELD=VALUE in scontrol's record ('' for a field they must not have)
expect_jobs() {
    local run=$1 pattern=$2 field=$3 value=$4 ids id actual
    ids=$(paste <(trace_column "$run" process) <(trace_column "$run" native_id) | awk -v p="$pattern" '$1 ~ p { print $2 }')
    [ -n "$ids" ] || { echo "no task matches $pattern"; return 1; }
    for id in $ids; do
        actual=$(job_field "$id" "$field")
        [ "$actual" = "$value" ] || { echo "job $id: $field=${actual:-(none)}, not ${value:-(none)}"; return 1; }
    done
}

# the embedding tasks of RUN_DIR each saw one GPU in CUDA_VISIBLE_DEVICES (the probe's file)
one_gpu_each() {
    local dirs dir seen count=0
    dirs=$(paste <(trace_column "$1" process) <(trace_column "$1" hash) | awk '$1 ~ /EMBED_/ { print $2 }') || return 1
    [ -n "$dirs" ] || { echo "no embedding task"; return 1; }
    for dir in $dirs; do
        dir=$(compgen -G "$1/work/$dir*") || return 1
        seen=$(cat "$dir/.gpu_probe" 2> /dev/null) || { echo "$dir: no .gpu_probe"; return 1; }
        [[ $seen =~ ^CUDA_VISIBLE_DEVICES=[0-9]+$ ]] || { echo "$dir: $seen"; return 1; }
        count=$((count + 1))
    done
    echo "$count embedding jobs, each with one GPU"
}

# the trace's requests of every task are within the node, and some were capped to it
requests_within_node() {
    local cpus
    cpus=$(trace_column "$1" cpus | sort -n | tail -1)
    [ "$cpus" -le "$NODE_CPUS" ] || { echo "a task asked for $cpus CPUs"; return 1; }
    expect_jobs "$1" EMBED_ NumCPUs "$NODE_CPUS" && expect_jobs "$1" EMBED_ MinMemoryNode "${NODE_MEMORY}M"
}

run_on_slurm() { # NAME ARG...: a run of the test entry on the cluster, from a copy of the project
    local name=$1
    shift
    mkdir -p "$RUNS/$name"
    [ -d "$RUNS/$name/project" ] || copy_project "$RUNS/$name/project"
    nextflow_run "$RUNS/$name/project" "$RUNS/$name" "$@" || { tail -30 "$RUNS/$name/nextflow.out"; return 1; }
}

# --- set up ---------------------------------------------------------------------------------
stop_cluster
rm -rf "$RUNS" "$CLUSTER"
mkdir -p "$RUNS"
ensure_test_env
apt_install munge slurmctld slurmd slurm-client
start_munge || die "munged runs"
start_cluster || die "the one-node SLURM cluster starts"
log "cluster up: $NODE, $NODE_CPUS CPUs, $NODE_MEMORY MB, $GPUS GPUs; SLURM_CONF=$SLURM_CONF"

# what the GPU tasks' jobs were given, written next to their outputs
cat > "$RUNS/gpu-probe.config" << 'EOF'
process {
    withLabel: 'process_gpu' {
        beforeScript = 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-}" > .gpu_probe'
    }
}
EOF
# a site's settings, written as docs/usage.md shows them, the node's size as the limits
cat > "$RUNS/site.config" << EOF
executor.account = '$SITE_ACCOUNT'
process {
    queue          = '$PARTITION_CPU'
    resourceLimits = [cpus: $NODE_CPUS, memory: $NODE_MEMORY.MB, time: 4.h]
    withLabel: 'process_gpu' {
        queue          = '$PARTITION_GPU'
        clusterOptions = '--gres=gpu:1 --comment=$SITE_COMMENT'
    }
}
EOF

# --- the runs -----------------------------------------------------------------------------
log "-profile test,slurm --use_gpu false: $RUNS/test"
started=$(date +%s)
if run_on_slurm test -profile test,slurm --use_gpu false; then
    TEST_SECONDS=$(seconds_since "$started")
    check "every task of -profile test,slurm completed" all_tasks_are "$RUNS/test" COMPLETED
    check "every task a COMPLETED SLURM job" tasks_are_completed_jobs "$RUNS/test"
    check "--use_gpu false: no job asks for a GPU" expect_jobs "$RUNS/test" . TresPerNode ''
    jobs_before=$(jobs_known)
    started=$(date +%s)
    if run_on_slurm test -profile test,slurm --use_gpu false -resume; then
        RESUME_SECONDS=$(seconds_since "$started")
        check "-resume ran no task again" all_tasks_are "$RUNS/test" CACHED
        check "-resume submitted no job" test "$(jobs_known)" = "$jobs_before"
    else
        fail "-profile test,slurm --use_gpu false -resume"
    fi
else
    fail "-profile test,slurm --use_gpu false"
fi

log "a site config (stub run, base resources): $RUNS/site"
if run_on_slurm site -stub -profile slurm --input assets/test.fa -c "$RUNS/site.config,$RUNS/gpu-probe.config"; then
    check "site config: every task a COMPLETED SLURM job" tasks_are_completed_jobs "$RUNS/site"
    check "site config: every job charged to its account" expect_jobs "$RUNS/site" . Account "$SITE_ACCOUNT"
    check "site config: the embedding jobs in its GPU partition" expect_jobs "$RUNS/site" EMBED_ Partition "$PARTITION_GPU"
    check "site config: the embedding jobs with its clusterOptions" expect_jobs "$RUNS/site" EMBED_ Comment "$SITE_COMMENT"
    check "site config: the embedding jobs with its GPU request" expect_jobs "$RUNS/site" EMBED_ TresPerNode gres:gpu:1
    check "site config: the other jobs in its CPU partition" expect_jobs "$RUNS/site" '(PREPARE|CLASSIFY|SUMMARIZE)' Partition "$PARTITION_CPU"
    check "site config: requests beyond the node capped to it" requests_within_node "$RUNS/site"
    check "site config: each embedding job sees one GPU" one_gpu_each "$RUNS/site"
else
    fail "a stub run with a site config"
fi

log "the slurm profile's GPU request (stub run): $RUNS/gpu"
if run_on_slurm gpu -stub -profile test,slurm --input assets/test.fa -c "$RUNS/gpu-probe.config"; then
    check "slurm profile: every task a COMPLETED SLURM job" tasks_are_completed_jobs "$RUNS/gpu"
    check "slurm profile: each embedding job asks for one GPU" expect_jobs "$RUNS/gpu" EMBED_ TresPerNode gres:gpu:1
    check "slurm profile: no other job asks for a GPU" expect_jobs "$RUNS/gpu" '(PREPARE|CLASSIFY|SUMMARIZE|STAGE|REPORT)' TresPerNode ''
    check "slurm profile: each embedding job sees one GPU" one_gpu_each "$RUNS/gpu"
else
    fail "a stub run with GPUs"
fi

log "-profile test,slurm: ${TEST_SECONDS:-?} s, -resume: ${RESUME_SECONDS:-?} s; jobs:"
squeue -t all --sort=i -o '%.6i %.9P %.40j %.10T %.4C %.8m %b' | sed 's/^/    /' | head -80
finish
