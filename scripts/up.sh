#!/usr/bin/env bash
# Install (first run) and start the whole service: Redis (embedded when none answers at
# S2T_REDIS_URL), the audio service, Whisper workers and the gateway on port 8000.
# Extra arguments go to `whisper-appliance up` (e.g. --workers 2 --model base --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ""
exec .venv/bin/whisper-appliance up "$@"
