#!/usr/bin/env bash
# Runs the test suite, installing what it needs first (tools/setup.sh --dev:
# tools/apt-packages.txt with its "dev" packages, which the GUI dialog test needs:
# grass-gui, xvfb, x11-utils, imagemagick; and requirements-dev.txt).
#
#   bash tools/test.sh [pytest arguments]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MASKRCNN_VENV:-$HOME/.local/share/i.ann.maskrcnn/venv}
bash "$ROOT/tools/setup.sh" --dev
export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
cd "$ROOT"
exec python -m pytest "$@"
