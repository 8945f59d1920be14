#!/usr/bin/env bash
# Join what device/pretrain.sh left under $OUT (fetched here into FOLDER) into one weights
# file, check its sha256, and unpack the logs beside it. Usage:
#
#   device/receive_weights.sh FOLDER resources/device/anomaly_scale_224/model.weights.h5
set -euo pipefail
from=${1:?the folder holding the fetched files of the device run}
to=${2:?the weights file to write}
mkdir -p "$(dirname "$to")"
tmp="$to.part"
cat "$from"/model.weights.h5.part-* > "$tmp"
want=$(cut -d' ' -f1 "$from/weights.sha256")
got=$(sha256sum "$tmp" | cut -d' ' -f1)
[ "$want" = "$got" ] || { rm -f "$tmp"; echo "sha256 $got does not match $want: parts missing or damaged" >&2; exit 1; }
mv "$tmp" "$to"
tar xzf "$from/logs.tar.gz" -C "$(dirname "$to")"
echo "wrote $to; logs in $(dirname "$to")/logs"
