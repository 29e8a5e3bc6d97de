#!/usr/bin/env bash
# One-stop set-up for slt on a fresh machine, then run the given command in that environment.
#
#   ./setup.sh                      set up only (venv with torch, release build)
#   ./setup.sh <command …>          set up, then run <command …> with the environment exported
#
# Environment:
#   SLT_VENV      Python venv holding torch (libtorch for tch); default ~/.cache/slt/venv.
#                 Created when missing, reused across runs and clones.
#   SLT_PYTHON    interpreter used to create the venv (default: python3).
#   SLT_SKIP_BUILD=1   do not run `cargo build --release` before the command.
set -euo pipefail

TORCH_VERSION="2.13.0"
# torchvision and Pillow serve the Python baselines in benches/ (0.28.0 is the release built for
# torch 2.13.0); transformers and safetensors are test oracles (tiny random mBART models).
PY_PACKAGES=("torch==$TORCH_VERSION" "torchvision==0.28.0" "transformers==5.24.0" safetensors numpy pillow)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${SLT_VENV:-$HOME/.cache/slt/venv}"
python="${SLT_PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

venv_ok() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, torch, torchvision, transformers, safetensors, numpy, PIL
sys.exit(0 if torch.__version__.split('+')[0] == sys.argv[1] else 1)
PY
}

if ! venv_ok; then
  log "preparing venv with ${PY_PACKAGES[*]} at $venv (one-time, ~5 GB)"
  mkdir -p "$(dirname "$venv")"
  lock="$venv.lock"
  exec 9>"$lock"
  flock 9
  if ! venv_ok; then
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "${PY_PACKAGES[@]}"
  fi
  flock -u 9
fi

# tch's build script finds libtorch through this interpreter (torch from PyPI).
export PATH="$venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export SLT_VENV="$venv"
# The Python test oracles and benchmark baselines run in the same venv.
export SLT_PYTHON_ORACLE="$venv/bin/python"

cd "$here"
if [ "${SLT_SKIP_BUILD:-0}" != "1" ]; then
  log "cargo build --release"
  cargo build --release --workspace --quiet
fi

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
