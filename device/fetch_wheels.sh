#!/usr/bin/env bash
# Download the wheels device/wheels.txt names, for the lent GPU machine's Python (3.12,
# x86-64 Linux), into a fresh .whl/ (ignored by git; carried to the machine with
# `carry: [".whl"]`). Needs only PyPI. Run from anywhere: ~53 MB, a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
# a fresh folder: two versions of one package would stop the whole install there
rm -rf .whl && mkdir .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
grep -v '^#' device/wheels.txt | grep -v '^$' | while read -r requirement; do
    if ! python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${platforms[@]}" -d .whl "$requirement" 2>/tmp/fetch_wheels.err; then
        # no wheel on the index (connection_pool has only an sdist): build one here, which
        # is fine only if it is pure Python
        python3 -m pip wheel -q --no-deps -w .whl "$requirement" \
            || { cat /tmp/fetch_wheels.err >&2; echo "no wheel for $requirement" >&2; exit 1; }
        built=$(ls -t .whl | head -n 1)
        case "$built" in
            *-py3-none-any.whl) ;;
            *) echo "$requirement: built $built, which is not pure Python: it would not install there" >&2; exit 1 ;;
        esac
    fi
done
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
