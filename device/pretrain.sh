#!/usr/bin/env bash
# Pretrain the representation model on a lent GPU machine, inside a time limit, and leave
# its weights under $OUT (what comes back). Usage, from the repository root there:
#
#   bash device/pretrain.sh SECONDS CONFIG.yaml [CONFIG.yaml ...]
#
# e.g. bash device/pretrain.sh 560 config/config.yaml config/anomaly_scale_224.yaml
#
# The machine has JAX and PyTorch but no TensorFlow, and reaches no package index: the
# packages it lacks travel as wheels in .whl/ (device/fetch_wheels.sh; carry ".whl").
# Snakemake renders the simulated survey and makes the crops on the machine's CPUs (the
# same files as here: everything is seeded), then trains with Keras on the JAX backend
# (torch if JAX sees no GPU but torch does; it stops at once if neither does).
#
# SECONDS bounds the whole script: Snakemake gets what is left of it less RESERVE_S (90 s:
# its grace before a kill, the weights' conversion and packing). Pretraining stops at early
# stopping, at its epoch ceiling or when Snakemake is stopped (the checkpoint keeps the best
# epoch). Then the best weights so far are written as a Keras .weights.h5, split in parts
# under 16 MiB (what one returned file may hold), with its sha256 and logs.tar.gz (the
# machine, Snakemake's log, every job's log, the per-epoch history).
# device/receive_weights.sh joins them here. Should the conversion fail, the checkpoint's
# raw best.weights.npz comes back instead, in parts with its own sha256.
set -uo pipefail
script_start=$(date +%s)
limit=${1:?time limit in seconds}
shift
[ $# -gt 0 ] || { echo "name the config files" >&2; exit 2; }
out=${OUT:?OUT must name the folder whose files come back}
out=$(realpath "$out")
configs=()
for f in "$@"; do configs+=("$(realpath "$f")"); done
root=$(cd "$(dirname "$0")/.." && pwd -P)
# Snakemake's working directory: the checkout, unless DEVICE_WORKDIR names another
# (tests/test_device.py runs the script on the tiny config in a temporary folder)
mkdir -p "${DEVICE_WORKDIR:-$root}" && cd "${DEVICE_WORKDIR:-$root}" || exit 1
workdir=$(pwd -P)
reserve=${RESERVE_S:-90}

wheels=${DEVICE_WHEELS:-$root/.whl}   # the carried packages (device/fetch_wheels.sh)
if [ -d "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$wheels"/*.whl || { echo "installing the carried wheels failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site:$root/src
else
    echo "no carried wheels in $wheels: using the installed packages"
    export PYTHONPATH=$root/src
fi
export PYTHONUNBUFFERED=1
# JAX takes 75% of the GPU's memory at start by default; the job needs a few GiB
export XLA_PYTHON_CLIENT_PREALLOCATE=false

sees() {  # the device Keras sees on backend $1: gpu or cpu (morphtools.model.accelerator)
    KERAS_BACKEND=$1 python3 -c 'from morphtools.model import accelerator; print(accelerator())' 2>/dev/null | tail -n 1
}
if [ -n "${KERAS_BACKEND:-}" ]; then
    device=$(sees "$KERAS_BACKEND")
else
    KERAS_BACKEND=jax device=$(sees jax)
    if [ "$device" != gpu ] && [ "$(sees torch)" = gpu ]; then KERAS_BACKEND=torch device=gpu; fi
fi
export KERAS_BACKEND
{ nvidia-smi -L 2>/dev/null; python3 -c 'import keras; print("keras", keras.__version__, "backend", keras.config.backend())'
  echo "device: ${device:-none}"; } | tee "$out/machine.txt"
if [ "$device" != gpu ] && [ -z "${DEVICE_ALLOW_CPU:-}" ]; then
    # 224 px on CPUs would not finish one epoch in the time: say so now, not at the limit
    echo "Keras ($KERAS_BACKEND) sees no GPU; stopping (DEVICE_ALLOW_CPU=1 trains on the CPU)" >&2
    exit 3
fi

results=$(python3 -c 'import sys, yaml
r = "results"
for f in sys.argv[1:]:
    r = (yaml.safe_load(open(f)) or {}).get("results", r)
print(r)' "${configs[@]}") || exit 1
model_dir=$results/models/multi
cores=$(nproc)

start=$(date +%s)
snakemake_limit=$(( limit - (start - script_start) - reserve ))
[ "$snakemake_limit" -gt 0 ] || { echo "no time left for Snakemake within $limit s" >&2; exit 1; }
# SIGINT lets Snakemake stop; the pretraining job may run until the SIGKILL 30 s later.
# The checkpoint's best weights survive either way (written atomically every epoch).
timeout -s INT -k 30 "$snakemake_limit" python3 -m snakemake -s "$root/workflow/Snakefile" \
    "$model_dir/model.weights.h5" --cores "$cores" --set-threads pretrain="$cores" \
    --configfile "${configs[@]}" --scheduler greedy --keep-incomplete > "$out/snakemake.log" 2>&1
status=$?
# this run's pretraining job, if it outlived Snakemake (Snakemake runs a rule's script as
# .snakemake/scripts/tmp*.pretrain.py under its working directory); no other process
pkill -TERM -f "^[^ ]*python[^ ]* $workdir/[.]snakemake/scripts/tmp[^ /]*[.]pretrain[.]py" && sleep 5
echo "snakemake exited $status after $(( $(date +%s) - start )) s (limit $snakemake_limit s)" | tee -a "$out/machine.txt"
tail -n 5 "$out/snakemake.log"

mkdir -p "$out/logs" && mv "$out/machine.txt" "$out/snakemake.log" "$out/logs/"
[ -d "$results/logs" ] && cp -r "$results/logs" "$out/logs/jobs"
checkpoint=$model_dir/checkpoint
cp "$checkpoint/state.json" "$out/logs/" 2>/dev/null
pack() {  # $out/logs into logs.tar.gz; FILE, if named, into parts under 16 MiB with its sha256
    (cd "$out" && tar czf logs.tar.gz logs && rm -r logs) || return 1
    [ $# -eq 0 ] || (cd "$out" && sha256sum "$1" > "$1.sha256" && split -b 15M -d "$1" "$1.part-" && rm "$1")
}
if [ ! -f "$checkpoint/best.weights.npz" ]; then
    echo "no weights: $checkpoint/best.weights.npz was never written (see logs.tar.gz)" >&2
    pack
    exit 1
fi
cp "$checkpoint/best.weights.npz" "$out/best.weights.npz"

# The best weights as a Keras weights file, without the optimiser's state (which would
# triple it), in the architecture the checkpoint itself saved; and the per-epoch history
python3 - "$checkpoint" "$out" <<'EOF'
import csv, json, sys
from pathlib import Path

import keras

from morphtools.model import keras_classes
from morphtools.pretraining import Checkpoint

checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2])
state_file = checkpoint / "state.json"
state = json.loads(state_file.read_text()) if state_file.exists() else None  # not yet after epoch 1's weights
if state and state["history"]:
    with open(out / "logs" / "history.csv", "w", newline="") as f:
        # rows of a run resumed across code versions may differ in their keys (e.g. "machine")
        fields = list(dict.fromkeys(key for row in state["history"] for key in row))
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(state["history"])
keras_classes()  # registers the custom layer and loss the checkpoint names
model = keras.saving.load_model(checkpoint / "last.keras", compile=False)
Checkpoint.load_weights(model, out / "best.weights.npz")
model.save_weights(out / "model.weights.h5")
finished = (checkpoint.parent / "model.weights.h5").exists()
if state:
    print(f"{'finished' if finished else 'stopped'} after epoch {state['epochs_done']}"
          f"{' (early stopping)' if state['stopped_early'] else ''}: best validation loss "
          f"{state['best_val_loss']:.4f} at epoch {state['best_epoch']}")
else:
    print("stopped during epoch 1's checkpoint: the weights are epoch 1's")
EOF
converted=$?
if [ "$converted" -eq 0 ] && [ -f "$out/model.weights.h5" ]; then
    rm "$out/best.weights.npz" && pack model.weights.h5 || exit 1
else
    echo "the conversion failed: returning the checkpoint's best.weights.npz" >&2
    rm -f "$out/model.weights.h5"
    pack best.weights.npz
    exit 1
fi
ls -l "$out"
echo "done in $(( $(date +%s) - script_start )) s of $limit"
