# Shared by up.sh and test.sh: make .venv with Python 3.11 and install the project into it.
# Re-installs only when pyproject.toml changed since the last install.
ensure_venv() {
  local extras="$1"
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    py="$(command -v python3.11 || command -v python3 || true)"
  fi
  if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "whisper-appliance needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
  fi
  local stamp=".venv/.installed${extras}"
  local want
  want="$(cat pyproject.toml | sha1sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing whisper-appliance${extras} into .venv (first run takes a few minutes)…"
    .venv/bin/python -m pip install --quiet --progress-bar on -e ".${extras}"
    echo "$want" > "$stamp"
  fi
}
