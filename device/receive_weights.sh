#!/usr/bin/env bash
# Join what device/pretrain.sh left under $OUT (fetched here into FOLDER) into one weights
# file, check its sha256, and unpack the logs beside it. Usage:
#
#   device/receive_weights.sh FOLDER resources/device/anomaly_scale_224/model.weights.h5
set -euo pipefail
from=${1:?the folder holding the fetched files of the device run}
to=${2:?the weights file to write}
mkdir -p "$(dirname "$to")"
[ -f "$from/logs.tar.gz" ] && tar xzf "$from/logs.tar.gz" -C "$(dirname "$to")"
name=model.weights.h5
if ! compgen -G "$from/$name.part-*" > /dev/null; then
    name=best.weights.npz   # the conversion failed there: the checkpoint's raw weights came back
    compgen -G "$from/$name.part-*" > /dev/null || { echo "no weights parts in $from" >&2; exit 1; }
    to="${to%.weights.h5}.npz"
fi
tmp="$to.part"
trap 'rm -f "$tmp"' EXIT
cat "$from/$name".part-* > "$tmp"
want=$(cut -d' ' -f1 "$from/$name.sha256")
got=$(sha256sum "$tmp" | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "sha256 $got does not match $want: parts missing or damaged" >&2; exit 1; }
mv "$tmp" "$to"
echo "wrote $to; logs in $(dirname "$to")/logs"
if [ "$name" = best.weights.npz ]; then
    echo "it holds the model's variables in order (morphtools.pretraining.Checkpoint.load_weights): load them into" \
         "build_model(ModelSpec(crop)) and save_weights() to make the .weights.h5 the config names" >&2
fi
