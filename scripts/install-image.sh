#!/bin/sh
# Install the platform into a new virtualenv at PREFIX: build this checkout's wheel, then
# install it with the dependencies pinned in pyproject.toml. The Dockerfile RUNs this very
# script (so does tests/deploy/test_dockerfile.py), so what the image contains is what a
# test has installed and run.
#
#   scripts/install-image.sh PREFIX [EXTRAS]      e.g. scripts/install-image.sh /opt/shuangjian
#
# EXTRAS names optional dependency groups of pyproject.toml ("dev" for the test image).
# PYTHON picks the interpreter (default: python3 on PATH). pip reads the rest of its
# configuration from PIP_* variables as usual, e.g. PIP_INDEX_URL for a mirror.
set -eu

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ -z "$1" ]; then
    echo "usage: $0 PREFIX [EXTRAS]" >&2
    exit 2
fi
prefix=$1
extras=${2:-}
python=${PYTHON:-python3}
src=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)

dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT INT TERM

# The wheel alone (--no-deps): its metadata carries the pinned dependencies to the install.
"$python" -m pip wheel --no-cache-dir --no-deps --wheel-dir "$dist" "$src"
set -- "$dist"/shuangjian-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "$0: expected one shuangjian wheel in $dist" >&2
    exit 1
fi
wheel=$1

"$python" -m venv "$prefix"
"$prefix/bin/python" -m pip install --no-cache-dir "$wheel${extras:+[$extras]}"
