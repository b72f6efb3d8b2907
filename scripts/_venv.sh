# Shared by up.sh and test.sh: make .venv with Python 3.11 and install the project into it.
# Re-installs only when pyproject.toml changed since the last install. --no-compile: pip
# would byte-compile every file of every package (torch alone has thousands) on a cold
# install; Python compiles what is imported when it is imported.
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
    .venv/bin/python -m pip install --quiet --no-compile --progress-bar on -e ".${extras}"
    echo "$want" > "$stamp"
  fi
}

# The openai-whisper backend (extra "[openai]") and its tests need torch. Install
# torch on its own first (${S2T_TORCH:-torch==2.13.0}: on these machines the CPU build
# that lies on disk), so that resolving the extra finds torch satisfied and never pulls
# a CUDA build. A failure is not fatal: those tests then skip and say why.
ensure_openai_extra() {
  local stamp=".venv/.installed[openai]"
  local want
  want="$(cat pyproject.toml | sha1sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "Installing ${S2T_TORCH:-torch==2.13.0} and the [openai] extra into .venv…"
  if .venv/bin/python -m pip install --quiet --no-compile "${S2T_TORCH:-torch==2.13.0}" \
    && .venv/bin/python -m pip install --quiet --no-compile -e ".[test,openai]"; then
    echo "$want" > "$stamp"
  else
    echo "WARNING: the [openai] extra could not be installed; the openai-whisper tests will be skipped" >&2
  fi
}

# Speaker labels (extra "[diarize]") read only the voice-encoder weights inside the
# resemblyzer wheel; its own imports (webrtcvad, librosa) are never used, so it is
# installed without its dependencies (torch comes with ensure_openai_extra). A failure is
# not fatal: the speaker-model tests then skip and say why.
ensure_diarize_extra() {
  if .venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('resemblyzer') is None)" 2>/dev/null; then
    return 0
  fi
  echo "Installing resemblyzer (its bundled voice-encoder weights, --no-deps) into .venv…"
  .venv/bin/python -m pip install --quiet --no-compile --no-deps "resemblyzer>=0.1.4" \
    || echo "WARNING: resemblyzer could not be installed; the speaker-model tests will be skipped" >&2
}
