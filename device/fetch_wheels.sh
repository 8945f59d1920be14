#!/usr/bin/env bash
# Download the wheels device/wheels.txt names, for the lent GPU machine's Python (3.12,
# x86-64 Linux), into .whl/ (ignored by git; carried to the machine with `carry: [".whl"]`).
# Needs only PyPI. Run from anywhere: ~45 MB, a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
mkdir -p .whl
python3 -m pip --version >/dev/null
grep -v '^#' device/wheels.txt | grep -v '^$' | while read -r requirement; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$requirement" 2>/dev/null \
    || python3 -m pip wheel -q --no-deps -w .whl "$requirement"   # pure-Python sdist only (connection_pool)
done
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
