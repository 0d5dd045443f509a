#!/usr/bin/env bash
# Installs what i.ann.maskrcnn needs on Debian 12, skipping what is already there:
# GRASS GIS 8.2 (grass-core, grass-dev), gdal-bin (gdalinfo, for detection in
# image files), make, and a Python virtual environment
# with requirements.txt (plus requirements-dev.txt with --dev).
#
#   bash tools/setup.sh [--dev]
#
# The environment lives outside the source tree (g.extension copies the whole
# tree when it installs from a directory): $MASKRCNN_VENV, by default
# ~/.local/share/i.ann.maskrcnn/venv. Put its bin directory first on PATH before
# starting GRASS: addon scripts run with the first python3 on PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MASKRCNN_VENV:-$HOME/.local/share/i.ann.maskrcnn/venv}
REQUIREMENTS=$ROOT/requirements.txt
[ "${1:-}" = "--dev" ] && REQUIREMENTS=$ROOT/requirements-dev.txt

# System packages: EXTRA_APT_PACKAGES adds more (the GUI tests need xvfb...).
packages="grass-core grass-dev gdal-bin python3-venv make ${EXTRA_APT_PACKAGES:-}"
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $package"
done
if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The virtual environment uses Debian's Python, the one GRASS is built for.
# The stamp records the requirements' hash and whether the dev set is in.
stamp="$VENV/.requirements.sha256"
wanted=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
mode=runtime
[ "$REQUIREMENTS" = "$ROOT/requirements-dev.txt" ] && mode=dev
if [ ! -x "$VENV/bin/python" ] || { [ "$have" != "$wanted dev" ] && [ "$have" != "$wanted $mode" ]; }; then
    echo "setup: installing Python packages into $VENV"
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$wanted $mode" > "$stamp"
fi
echo "setup: ready; use it with: export PATH=$VENV/bin:\$PATH"
