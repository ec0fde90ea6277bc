#!/usr/bin/env bash
# Install neurofm into ./.venv (created if missing). `--test` also installs the test tools and
# Debian's chromium + chromedriver (browser tests) and bubblewrap (package sandbox) (needs root or sudo; skipped with a
# warning where neither is available, and the browser tests then fail loudly, not skip silently).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet() { { grep -v "is ignored: it is neither" || true; }; }  # local pip index noise
.venv/bin/python -m pip install -q -c constraints.txt "torch==2.13.0" 2>&1 | quiet
extras=""
if [[ "${1:-}" == "--test" ]]; then extras="[dev]"; fi
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras}" 2>&1 | quiet
.venv/bin/python -c "import neurofm, torch; print(f'neurofm {neurofm.__version__} with torch {torch.__version__} installed in .venv')"
if [[ "${1:-}" == "--test" ]] && ! { command -v chromedriver && command -v bwrap; } >/dev/null 2>&1; then
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1 && { [[ -z $SUDO ]] || command -v sudo >/dev/null 2>&1; }; then
    ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver bubblewrap >/dev/null) \
      || echo "warning: could not install chromium/chromedriver/bubblewrap; browser and sandbox tests will fail" >&2
  else
    echo "warning: no apt-get/sudo; install chromium + chromedriver yourself for the browser tests" >&2
  fi
fi
