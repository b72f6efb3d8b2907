#!/usr/bin/env bash
# Verify docker-compose.yml for real, without any image registry:
#   1. Docker from Debian (docker.io, docker-compose), dockerd started here if none runs
#      (overlay2 first, then --storage-driver=vfs --iptables=false);
#   2. base image: a Debian bookworm rootfs from debootstrap (python3, ffmpeg, redis,
#      prometheus inside), imported with `docker import` as s2t-debian:bookworm;
#   3. Python deps: a local wheelhouse (`pip wheel`) the Dockerfile installs with --no-index;
#   4. `compose up --scale whisper=2` with deploy/compose.smoke.yml (Grafana left out: no
#      image for it can be built locally), the jfk fixture transcribed through the published
#      /ws port, Prometheus' API asked for both worker replicas' series; then tear down.
#
# Run as root from anywhere: `sudo deploy/compose-smoke.sh`. 236 s on a cold 2-core
# machine (Docker not installed, no base image: apt, debootstrap, wheels, image build),
# under 2 minutes once the base image and layers are cached. It installs Docker and starts
# dockerd on the host, so scripts/test.sh runs it only when S2T_COMPOSE_SMOKE=1, which
# .ci/run sets (see README, "Deploy").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3.11
FIXTURE="${S2T_FIXTURES:-$REPO/../shared/fixtures/speech}/jfk.flac"
BASE_IMAGE=s2t-debian:bookworm
ROOTFS="${S2T_ROOTFS:-/var/tmp/s2t-rootfs}"
PROJECT=s2t-smoke
COMPOSE_FILES=(-f docker-compose.yml -f deploy/compose.smoke.yml)
STARTED_DOCKERD=""
T0=$(date +%s)

say() { echo "compose-smoke [$(($(date +%s) - T0))s]: $*" >&2; }
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[ "$(id -u)" = 0 ] || { echo "compose-smoke: run as root (installs Docker, starts dockerd)" >&2; exit 2; }
[ -f "$FIXTURE" ] || { echo "compose-smoke: fixture $FIXTURE not found (set S2T_FIXTURES)" >&2; exit 2; }

# --- 1. Docker from Debian -----------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -q >/dev/null  # a fresh machine has no package lists yet
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi

start_dockerd() {
    # Own session: a Ctrl-C or timeout aimed at this script must not kill dockerd before
    # the teardown below has removed the containers.
    setsid dockerd "$@" >/var/log/s2t-dockerd.log 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
        sleep 1
    done
    kill "$STARTED_DOCKERD" 2>/dev/null || true
    wait "$STARTED_DOCKERD" 2>/dev/null || true
    STARTED_DOCKERD=""
    return 1
}

cleanup() {
    local code=$?
    if docker info >/dev/null 2>&1; then
        say "tearing down"
        "${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "/dev/shm/$PROJECT-redis"
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        wait "$STARTED_DOCKERD" 2>/dev/null || true
    fi
    say "done (exit $code) after $(($(date +%s) - T0)) s"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd"
    start_dockerd || { say "default dockerd failed; retrying with vfs, no iptables"; \
        start_dockerd --storage-driver=vfs --iptables=false; } || {
        tail -20 /var/log/s2t-dockerd.log >&2; echo "compose-smoke: dockerd does not start here" >&2; exit 1; }
fi
say "docker $(docker version --format '{{.Server.Version}}'), storage $(docker info --format '{{.Driver}}')"

# --- 2. base image from debootstrap ---------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
        say "debootstrap bookworm into $ROOTFS"
        rm -rf "$ROOTFS"
        debootstrap --variant=minbase \
            --include=python3,python3-venv,ffmpeg,redis-server,redis-tools,prometheus,ca-certificates \
            bookworm "$ROOTFS" "${S2T_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    fi
    say "docker import $BASE_IMAGE"
    tar -C "$ROOTFS" -c . | docker import - "$BASE_IMAGE" >/dev/null
fi

# --- 3. wheelhouse ---------------------------------------------------------------------------
say "pip wheel into deploy/wheelhouse"
# setuptools/wheel: to build the project inside the image; async-timeout: redis needs it on
# Debian's Python 3.11.2 (< 3.11.3), which the host's newer Python does not pull in.
"$PYTHON" -m pip wheel -q --wheel-dir deploy/wheelhouse . setuptools wheel "async-timeout>=4.0.3"
rm -f deploy/wheelhouse/whisper_appliance-*.whl  # the image builds /src; a fresh wheel would void the layer cache

# --- 4. build, up, transcribe, scrape --------------------------------------------------------
export S2T_BASE_IMAGE="$BASE_IMAGE" S2T_PIP_OPTIONS="--no-index --find-links /wheelhouse"
export S2T_IMAGE=whisper-appliance:smoke S2T_CPU_THREADS=1
export S2T_REDIS_DATA="/dev/shm/$PROJECT-redis"  # its own, emptied by the teardown
S2T_PUBLISH_PORT=$(free_port); S2T_PROMETHEUS_PORT=$(free_port)
export S2T_PUBLISH_PORT S2T_PROMETHEUS_PORT
SERVICES=(redis audio whisper gateway prometheus)
say "building the image"
"${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" build gateway
say "up --scale whisper=2 (${SERVICES[*]}); gateway on :$S2T_PUBLISH_PORT, prometheus on :$S2T_PROMETHEUS_PORT"
"${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
"${COMPOSE[@]}" -p "$PROJECT" "${COMPOSE_FILES[@]}" up -d --no-build --scale whisper=2 "${SERVICES[@]}"

GATEWAY="http://127.0.0.1:$S2T_PUBLISH_PORT"
PROMETHEUS="http://127.0.0.1:$S2T_PROMETHEUS_PORT"
"$PYTHON" - "$GATEWAY" "$PROMETHEUS" "$FIXTURE" <<'PY'
"""Wait for two live workers, transcribe jfk over /ws, find both replicas in Prometheus."""
import json
import sys
import time

import httpx
from websockets.sync.client import connect

gateway, prometheus, fixture = sys.argv[1:]


def until(what, check, timeout=300.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # not up yet
            result = exc
        if time.monotonic() > deadline:
            sys.exit(f"compose-smoke: timed out waiting for {what} (last: {result!r})")
        time.sleep(2)


health = until("2 live workers", lambda: (h := httpx.get(f"{gateway}/health", timeout=5)).status_code == 200
               and h.json()["workers"] >= 2 and h.json())
print("health:", json.dumps({k: health[k] for k in ("status", "redis", "workers", "live_workers")}))

with connect(gateway.replace("http", "ws", 1) + "/ws", max_size=None) as ws:
    ws.send(open(fixture, "rb").read())
    finals = []
    while True:
        message = json.loads(ws.recv(timeout=120))
        if message.get("type") == "transcript" and message.get("final"):
            finals.append(message)
        if message.get("type") == "error" or message.get("message") == "Processing complete":
            break
text = " ".join(m["transcript"] for m in finals)
print("transcript:", text)
assert "ask not what your country can do for you" in text.lower(), text


def query(expr):
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    return r["data"]["result"]


up = until("both worker replicas scraped",
           lambda: len(r := query('up{job="whisper"} == 1')) >= 2 and r)
print("prometheus up{job=whisper}:", sorted(s["metric"]["instance"] for s in up))
jobs = until("the job counter in Prometheus",
             lambda: (r := query("sum(s2t_worker_jobs_total)")) and float(r[0]["value"][1]) >= 1 and r)
loaded = {s["metric"]["instance"] for s in query("s2t_worker_models_loaded")}
print("s2t_worker_models_loaded instances:", sorted(loaded), "jobs:", jobs[0]["value"][1])
assert {s["metric"]["instance"] for s in up} <= loaded, loaded
for job in ("gateway", "audio"):
    targets = until(f"Prometheus to scrape {job}", lambda j=job: query(f'up{{job="{j}"}} == 1'), timeout=90)
    print(f"prometheus up{{job={job}}}:", [t["metric"]["instance"] for t in targets])
# Every Grafana panel's query must be valid PromQL over these metrics.
dashboard = json.load(open("deploy/grafana/dashboards/whisper-appliance.json"))
exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
for expr in exprs:
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert r["status"] == "success", (expr, r)
print(f"grafana dashboard: {len(exprs)} queries valid")
print("compose-smoke: OK")
PY
say "passed"

# The soak with faults against this stack (bench/soak.py --target compose), when asked:
# S2T_COMPOSE_SOAK_MINUTES=20 deploy/compose-smoke.sh (CI does not ask).
if [ -n "${S2T_COMPOSE_SOAK_MINUTES:-}" ]; then
    say "soak for ${S2T_COMPOSE_SOAK_MINUTES} min with faults"
    "$PYTHON" -m bench.soak --target compose --server "$GATEWAY" --project "$PROJECT" \
        --minutes "$S2T_COMPOSE_SOAK_MINUTES" --report "${S2T_COMPOSE_SOAK_REPORT:-/tmp/s2t-compose-soak.json}"
fi
