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
.venv/bin/python -m pytest "$@"

# The compose stack for real (Docker from Debian, images without a registry; 236 s on a
# cold 2-core machine). It installs Docker and starts dockerd as root, so only when asked:
# .ci/run asks (S2T_COMPOSE_SMOKE=1); a developer's ./scripts/test.sh does not.
if [ "${S2T_COMPOSE_SMOKE:-}" = 1 ]; then
  deploy/compose-smoke.sh
fi
