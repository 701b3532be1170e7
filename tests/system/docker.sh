#!/usr/bin/env bash
# The product as users run it with Docker: the image built from containers/Dockerfile (the
# README's `docker build`), checked for torch.compile, and `-profile test,docker` run in it by an
# unprivileged user. On a Debian machine, as root, from nothing: installs and starts Docker
# (Debian's docker.io) when no engine runs, and makes the base image locally (debootstrap from the
# host's own apt mirror) when no registry serves it. Checks, each named when it fails:
#   - torch.compile works in the image as any user (Inductor's C++ kernels, Triton's launcher
#     build), and embed_esm.py --compile on gives the embeddings of the uncompiled run;
#   - every task ran in the image (its .command.run), and all completed;
#   - the results are byte for byte those of the same run on the host's venv (run alongside);
#   - -resume runs nothing again;
#   - nothing in the run's folders belongs to another user than the one who ran it.
# Exit status 0 only when every check passed.
#
# The image is rebuilt only when its inputs change (Dockerfile, requirements.txt, .dockerignore,
# the base image): their digest is a label of the image. The base image's tarball is kept in
# VIRNUCPRO_CI_CACHE; the image and the builder's pip downloads in Docker's own storage.
source "$(dirname "$0")/lib.sh"

RUNS=$SCRATCH/docker
# the CA certificates the host trusts (a proxy that re-signs TLS is among them), handed to the
# build as a secret: the recipe does not hold it and builds without it
CA_BUNDLE=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
IMAGE_INPUTS_LABEL=virnucpro.ci.inputs
export DOCKER_BUILDKIT=1

# DOCKER: a client that builds with BuildKit, --secret included: one with buildx, or one of
# Docker 20.10-22 (BuildKit built in); Debian's is /usr/bin/docker, another may come first
pick_docker_client() {
    local candidate major
    for candidate in $(type -ap docker); do
        if "$candidate" buildx version > /dev/null 2>&1; then DOCKER=$candidate; return 0; fi
        major=$("$candidate" version --format '{{.Client.Version}}' 2> /dev/null | cut -d. -f1) || true
        if [[ $major =~ ^[0-9]+$ ]] && ((major < 23)); then DOCKER=$candidate; return 0; fi
    done
    echo "no docker client that can build with BuildKit among: $(type -ap docker | tr '\n' ' ')"
    return 1
}

start_engine() {
    if docker info > /dev/null 2>&1; then return 0; fi
    command -v dockerd > /dev/null || apt_install docker.io
    log "starting dockerd (log: $CACHE/dockerd.log)"
    setsid nohup dockerd > "$CACHE/dockerd.log" 2>&1 < /dev/null &
    local waited
    for waited in $(seq 60); do
        if docker info > /dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "dockerd not up after $waited s"
    tail -20 "$CACHE/dockerd.log"
    return 1
}

# host_mirror SUITE: the URI of the host's Debian archive for SUITE, from its apt sources (deb822
# .sources files, then one-line lists)
host_mirror() {
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk -v suite="$1" 'BEGIN { RS = ""; FS = "\n" }
            { uri = ""; found = 0; deb = 0
              for (i = 1; i <= NF; i++) {
                  if ($i ~ /^#/) continue
                  if ($i ~ /^Types:/ && $i ~ /[ \t]deb([ \t]|$)/) deb = 1
                  if ($i ~ /^URIs:/) { split($i, uris, /[ \t]+/); uri = uris[2] }
                  if ($i ~ /^Suites:/) { n = split($i, suites, /[ \t]+/); for (j = 2; j <= n; j++) if (suites[j] == suite) found = 1 }
              }
              if (deb && found && uri != "") print uri }' "$file"
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        awk -v suite="$1" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) print $i }' "$file"
    done
}

# BASE: the recipe's default base image when it is here or a registry serves it; else the same
# Debian release made here with debootstrap from the host's mirror, its tarball cached
choose_base_image() {
    local default suite tarball mirror rootfs
    default=$(sed -n 's/^ARG BASE_IMAGE=//p' "$REPO/containers/Dockerfile")
    if "$DOCKER" image inspect "$default" > /dev/null 2>&1 || timeout 300 "$DOCKER" pull -q "$default" > /dev/null 2>&1; then
        BASE=$default
        return 0
    fi
    suite=${default#*:}
    suite=${suite%%-*}
    BASE=virnucpro-ci/debian:$suite
    if "$DOCKER" image inspect "$BASE" > /dev/null 2>&1; then return 0; fi
    tarball=$CACHE/debian-$suite-minbase.tar
    if [ ! -s "$tarball" ]; then
        mirror=$(host_mirror "$suite" | head -1)
        [ -n "$mirror" ] || { echo "no apt source for Debian $suite on this host"; return 1; }
        apt_install debootstrap
        log "no registry serves $default: making $BASE with debootstrap from $mirror"
        rootfs=$SCRATCH/rootfs-$suite
        rm -rf "$rootfs"
        debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" > "$SCRATCH/debootstrap.log" 2>&1 \
            || { tail -20 "$SCRATCH/debootstrap.log"; return 1; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    "$DOCKER" import "$tarball" "$BASE" > /dev/null
}

# the README's build, with the base image and the host's CA certificates; skipped when the image
# was built from the same inputs
build_image() {
    local inputs current started
    inputs=$({ cat "$REPO/containers/Dockerfile" "$REPO/requirements.txt" "$REPO/.dockerignore"
        "$DOCKER" image inspect --format '{{.Id}}' "$BASE"; } | sha256sum | cut -d' ' -f1)
    current=$("$DOCKER" image inspect --format "{{index .Config.Labels \"$IMAGE_INPUTS_LABEL\"}}" "$IMAGE" 2> /dev/null) || true
    if [ "$current" = "$inputs" ]; then
        BUILD_SECONDS="reused (inputs unchanged)"
        return 0
    fi
    local secret=()
    [ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
    log "building $IMAGE on $BASE (log: $RUNS/build.log)"
    started=$(date +%s)
    (cd "$REPO" && "$DOCKER" build --progress=plain "${secret[@]}" --build-arg "BASE_IMAGE=$BASE" \
        --label "$IMAGE_INPUTS_LABEL=$inputs" -t "$IMAGE" -f containers/Dockerfile .) > "$RUNS/build.log" 2>&1 \
        || { tail -30 "$RUNS/build.log"; return 1; }
    BUILD_SECONDS="$(seconds_since "$started") s"
}

# torch.compile in the image, as the unprivileged user: a compiled function (Inductor's C++
# kernels), the C extension Triton builds for its GPU launchers (compiler and Python headers),
# and embed_esm.py --compile on over a shard of the test run, against that task's embeddings
compile_works() {
    local task out
    task=$(dirname "$(grep -l 'embed_esm.py' "$RUNS"/docker/work/*/*/.command.sh | head -1)")
    out=$RUNS/docker/compile
    as_user "$CI_USER" mkdir -p "$out"
    as_user "$CI_USER" docker run --rm -u "$(id -u "$CI_USER"):$(id -g "$CI_USER")" -v "$RUNS/docker:$RUNS/docker" \
        -w "$task" "$IMAGE" bash -ec '
        python - <<"PYTHON"
import os, tempfile, torch
import triton.runtime.build
compiled = torch.compile(lambda x: torch.sin(x) * 2 + 1)
assert torch.allclose(compiled(torch.ones(8)), torch.sin(torch.ones(8)) * 2 + 1)
folder = tempfile.mkdtemp()
source = os.path.join(folder, "probe.c")
with open(source, "w") as handle:
    handle.write("#include <Python.h>\nstatic struct PyModuleDef probe = {PyModuleDef_HEAD_INIT, \"probe\"};\n"
                 "PyMODINIT_FUNC PyInit_probe(void) { return PyModule_Create(&probe); }\n")
triton.runtime.build._build("probe", source, folder, [], [], [], [])
print("torch.compile and Triton builds: ok, HOME", os.environ["HOME"])
PYTHON
        "$1"/embed_esm.py --fasta *.faa --model *.pt --out "$2/compiled.h5" --metrics "$2/compiled.json" \
            --device cpu --precision fp32 --batch-tokens 4096 --no-progress --compile on
        shard=$(basename *.faa .faa)
        python - "$shard.h5" "$2/compiled.h5" "$2/compiled.json" <<"PYTHON"
import json, sys
import h5py, numpy
plain, compiled = (h5py.File(path, "r") for path in sys.argv[1:3])
assert json.load(open(sys.argv[3]))["compile_seconds"] is not None, "not compiled"
assert list(plain["ids"]) == list(compiled["ids"]), "other frames"
difference = numpy.abs(plain["embeddings"][:].astype("f8") - compiled["embeddings"][:].astype("f8")).max()
assert difference < 1e-4, f"compiled embeddings differ by {difference}"
print(f"embed_esm.py --compile on: ok, largest difference {difference:.1e}")
PYTHON
        ' _ "$RUNS/docker/project/bin" "$out" > "$RUNS/compile.log" 2>&1 || { tail -30 "$RUNS/compile.log"; return 1; }
    grep ': ok' "$RUNS/compile.log"
}

# every task of the run ran in the image: its .command.run launches it there
tasks_ran_in_image() {
    local dirs dir
    dirs=$(task_dirs "$1") || return 1
    for dir in $dirs; do
        grep -q "docker run .* $IMAGE " "$dir/.command.run" || { echo "$dir/.command.run does not run the task in $IMAGE"; return 1; }
    done
    echo "$(echo "$dirs" | wc -l) tasks, each in $IMAGE"
}

same_tasks() {
    [ "$(trace_column "$1" process | sort)" = "$(trace_column "$2" process | sort)" ] || { echo "the runs have other tasks"; return 1; }
}

owned_by_ci_user() {
    local others
    others=$(find "$RUNS/docker" ! -user "$CI_USER" | head -5)
    [ -z "$others" ] || { echo "not the user's:"; echo "$others"; return 1; }
}

# --- set up ---------------------------------------------------------------------------------
rm -rf "$RUNS"
mkdir -p "$RUNS/host"
ensure_test_env
log "the host's run (venv, local executor), alongside the image's build: $RUNS/host"
copy_project "$RUNS/host/project"
host_started=$(date +%s)
(nextflow_run "$RUNS/host/project" "$RUNS/host" -profile test && seconds_since "$host_started" > "$RUNS/host/seconds") &
host_run=$!

start_engine || die "a running Docker engine"
pick_docker_client || die "a Docker client that builds with BuildKit"
log "engine: Docker $(docker version --format '{{.Server.Version}}'), client for the build: $DOCKER"
IMAGE=$(NXF_HOME=$RUNS/nxf-config NXF_OFFLINE=true "$REPO/tests/nextflow/nextflow" -log "$RUNS/config.log" \
    config "$REPO/tests/pipeline" -flat -profile docker | sed -n "s/^process.container = '\(.*\)'$/\1/p")
[ -n "$IMAGE" ] || die "the docker profile's image (nextflow config -profile docker)"
choose_base_image || die "a base image"
log "base image: $BASE"
build_image || die "the image builds from containers/Dockerfile"
IMAGE_SIZE=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.2f GB", $1 / 1e9 }')
log "image $IMAGE: $IMAGE_SIZE, build: $BUILD_SECONDS"

ensure_ci_user docker
mkdir -p "$RUNS/docker"
chown "$CI_USER:" "$RUNS/docker"
copy_project "$RUNS/docker/project" "$CI_USER"

# --- the runs -----------------------------------------------------------------------------
log "-profile test,docker as $CI_USER: $RUNS/docker"
started=$(date +%s)
if nextflow_run "$RUNS/docker/project" "$RUNS/docker" -profile test,docker; then
    DOCKER_SECONDS=$(seconds_since "$started")
    check "every task of -profile test,docker completed" all_tasks_are "$RUNS/docker" COMPLETED
    check "every task ran in the image" tasks_ran_in_image "$RUNS/docker"
    check "torch.compile works in the image" compile_works
    started=$(date +%s)
    if nextflow_run "$RUNS/docker/project" "$RUNS/docker" -profile test,docker -resume; then
        RESUME_SECONDS=$(seconds_since "$started")
        check "-resume ran no task again" all_tasks_are "$RUNS/docker" CACHED
    else
        tail -30 "$RUNS/docker/nextflow.out"
        fail "-profile test,docker -resume"
    fi
else
    tail -30 "$RUNS/docker/nextflow.out"
    fail "-profile test,docker"
fi

if wait "$host_run"; then
    check "the same tasks as the host's run" same_tasks "$RUNS/host" "$RUNS/docker"
    check "results byte for byte those of the host's run" same_results "$RUNS/host" "$RUNS/docker"
else
    tail -30 "$RUNS/host/nextflow.out"
    fail "-profile test on the host's venv"
fi
check "nothing in the run's folders belongs to another user" owned_by_ci_user
check "the user removes the work folder" as_user "$CI_USER" rm -rf "$RUNS/docker/work"

log "build: $BUILD_SECONDS; image: $IMAGE_SIZE; -profile test on the host: $(cat "$RUNS/host/seconds" 2> /dev/null || echo '?') s" \
    "(alongside the build); -profile test,docker: ${DOCKER_SECONDS:-?} s; -resume: ${RESUME_SECONDS:-?} s"
finish
