#!/usr/bin/env bash
# The main job, end to end on a fresh machine: installs what is missing
# (tools/setup.sh), installs the addon with g.extension into a temporary GRASS
# project and addon directory, writes a synthetic scene there, trains a small
# model on half of it, detects in the other half and prints what was found
# (tools/demo_job.py) with its accuracy, and draws the detections over the image
# into a PNG. About 1.5 minutes on a 2-core CPU, installation excluded (README).
#
#   bash tools/demo.sh [PNG]      # PNG: default ./i.ann.maskrcnn-demo.png
#
# Everything else it creates lives in a temporary directory removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PNG=$(realpath -m "${1:-i.ann.maskrcnn-demo.png}")
VENV=${MASKRCNN_VENV:-$HOME/.local/share/i.ann.maskrcnn/venv}
bash "$ROOT/tools/setup.sh"

WORK=$(mktemp -d -t i.ann.maskrcnn-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PATH="$VENV/bin:$WORK/addons/scripts:$PATH" GRASS_ADDON_BASE="$WORK/addons"
mkdir -p "$GRASS_ADDON_BASE"
echo '{"tree": []}' > "$GRASS_ADDON_BASE/addons_paths.json"   # offline g.extension
# g.extension copies the whole source directory: give it the sources only.
mkdir "$WORK/src"
tar -C "$ROOT" --exclude=.git --exclude=.venv --exclude=__pycache__ -cf - . | tar -C "$WORK/src" -xf -

grass -e -c XY "$WORK/grassdata/demo"
cat > "$WORK/job.sh" <<JOB
set -e
g.extension extension=i.ann.maskrcnn url="$WORK/src"
python3 "$ROOT/tools/demo_job.py" "$WORK" "$PNG"
JOB
grass "$WORK/grassdata/demo/PERMANENT" --exec bash "$WORK/job.sh"
