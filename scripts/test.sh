#!/usr/bin/env bash
# Install the test extras and the [openai] extra (first run), start a Redis when none answers, lint, run pytest.
# The tests start their own private Redis and service processes on free ports as well,
# so they never touch data in a Redis you already run. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv "[test]"
ensure_openai_extra
ensure_diarize_extra

redis_url="${S2T_REDIS_URL:-redis://127.0.0.1:6379/0}"
redis_pid=""
if ! .venv/bin/python -c "import redis,sys; redis.Redis.from_url('$redis_url', socket_connect_timeout=1).ping()" 2>/dev/null; then
  echo "No Redis answers at $redis_url: starting one for this run"
  redis_pid="$(REDIS_URL="$redis_url" .venv/bin/python - <<'PY'
import os, subprocess, urllib.parse
from whisper_appliance.embedded_redis import redis_server_binary
port = str(urllib.parse.urlparse(os.environ["REDIS_URL"]).port or 6379)
proc = subprocess.Popen([redis_server_binary(), "--port", port, "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
print(proc.pid)
PY
)"
  trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the service boundaries: [tool.importlinter] in pyproject.toml

# The compose stack for real (Docker from Debian, images without a registry; 236-275 s on
# a cold 2-core machine, about 80 s warm). It installs Docker and starts dockerd as root,
# so only when asked: .ci/run asks (S2T_COMPOSE_SMOKE=1); a developer's ./scripts/test.sh
# does not. It runs beside pytest (its own containers, Redis and free ports; mostly image
# building and waiting), its output kept until pytest is done: one after the other, the
# two took 30 min on the slowest 2-core VM seen, CI's limit.
smoke_pid=""
smoke_log=""
if [ "${S2T_COMPOSE_SMOKE:-}" = 1 ]; then
  smoke_log="$(mktemp)"
  deploy/compose-smoke.sh >"$smoke_log" 2>&1 &
  smoke_pid=$!
fi
pytest_rc=0
.venv/bin/python -m pytest "$@" || pytest_rc=$?
smoke_rc=0
if [ -n "$smoke_pid" ]; then
  wait "$smoke_pid" || smoke_rc=$?
  cat "$smoke_log"
  rm -f "$smoke_log"
  [ "$smoke_rc" = 0 ] || echo "compose smoke test failed (exit $smoke_rc)" >&2
fi
[ "$pytest_rc" = 0 ] || exit "$pytest_rc"
exit "$smoke_rc"
