#!/usr/bin/env bash
# Installs what i.ann.maskrcnn needs on Debian 12, skipping what is already there:
# the Debian packages of tools/apt-packages.txt (GRASS GIS 8.2, what g.extension
# checks for: make, gcc, subversion; gdal-bin, python3-venv...; with --dev also
# those of the tests), then a Python virtual environment with requirements.txt
# (requirements-dev.txt with --dev).
#
#   bash tools/setup.sh [--dev] [--apt-only]
#
# --apt-only stops after the Debian packages. apt-get runs as root, or through
# sudo when there is one; EXTRA_APT_PACKAGES adds more packages.
#
# The environment lives outside the source tree (g.extension copies the whole
# tree when it installs from a directory): $MASKRCNN_VENV, by default
# ~/.local/share/i.ann.maskrcnn/venv. Put its bin directory first on PATH before
# starting GRASS: addon scripts run with the first python3 on PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MASKRCNN_VENV:-$HOME/.local/share/i.ann.maskrcnn/venv}
REQUIREMENTS=$ROOT/requirements.txt
dev=0
apt_only=0
for argument in "$@"; do
    case $argument in
        --dev) dev=1; REQUIREMENTS=$ROOT/requirements-dev.txt ;;
        --apt-only) apt_only=1 ;;
        *) echo "usage: bash tools/setup.sh [--dev] [--apt-only]" >&2; exit 2 ;;
    esac
done

# Column 2 of the list says who needs a package: "all", or "dev" (--dev only).
packages=$(awk -v dev="$dev" '!/^[[:space:]]*(#|$)/ && ($2 == "all" || (dev && $2 == "dev")) { print $1 }' \
    "$ROOT/tools/apt-packages.txt")
missing=""
for package in $packages ${EXTRA_APT_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $package"
done
if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "setup: these Debian packages are missing:$missing" >&2
            echo "setup: there is no sudo: install them as root (apt-get install$missing)," \
                 "or run this script as root, then run it again" >&2
            exit 1
        fi
        SUDO=sudo
    fi
    echo "setup: installing system packages:$missing"
    $SUDO apt-get update -qq
    # env: sudo drops DEBIAN_FRONTEND from the environment it passes on
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ "$apt_only" = 1 ]; then
    echo "setup: system packages ready"
    exit 0
fi

# The virtual environment uses Debian's Python, the one GRASS is built for.
# The stamp records the requirements' hash and whether the dev set is in.
stamp="$VENV/.requirements.sha256"
wanted=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
mode=runtime
[ "$dev" = 1 ] && mode=dev
if [ ! -x "$VENV/bin/python" ] || { [ "$have" != "$wanted dev" ] && [ "$have" != "$wanted $mode" ]; }; then
    echo "setup: installing Python packages into $VENV"
    [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$wanted $mode" > "$stamp"
fi
echo "setup: ready; use it with: export PATH=$VENV/bin:\$PATH"
