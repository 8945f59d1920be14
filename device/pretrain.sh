#!/usr/bin/env bash
# Pretrain the representation model on a lent GPU machine, inside a time limit, and leave
# its weights under $OUT (what comes back). Usage, from the repository root there:
#
#   bash device/pretrain.sh SECONDS CONFIG.yaml [CONFIG.yaml ...]
#
# e.g. bash device/pretrain.sh 480 config/config.yaml config/anomaly_scale_224.yaml
#
# The machine has JAX and PyTorch but no TensorFlow, and reaches no package index: the
# packages it lacks travel as wheels in .whl/ (device/fetch_wheels.sh; carry ".whl").
# Snakemake renders the simulated survey and makes the crops on the machine's CPUs (the
# same files as here: everything is seeded), then trains with Keras on the JAX backend.
# Pretraining stops at its epoch ceiling, at early stopping, or at SECONDS; then the best
# weights so far are written as a Keras .weights.h5, split in parts under 16 MiB (what one
# returned file may hold), with weights.sha256 and logs.tar.gz (the machine, Snakemake's and
# the job's logs, the per-epoch history). device/receive_weights.sh joins them here.
set -uo pipefail
limit=${1:?time limit in seconds}
shift
[ $# -gt 0 ] || { echo "name the config files" >&2; exit 2; }
out=${OUT:?OUT must name the folder whose files come back}
cd "$(dirname "$0")/.."

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
# JAX takes 75% of the GPU's memory at start by default; the job needs a few GiB
export XLA_PYTHON_CLIENT_PREALLOCATE=false

results=$(python3 -c 'import sys, yaml
r = "results"
for f in sys.argv[1:]:
    r = (yaml.safe_load(open(f)) or {}).get("results", r)
print(r)' "$@") || exit 1
model_dir=$results/models/multi
cores=$(nproc)
{ nvidia-smi -L 2>/dev/null; python3 -c 'import jax, keras; print("jax", jax.__version__, jax.devices(), "keras", keras.__version__, keras.config.backend())'; } \
    | tee "$out/machine.txt"

start=$(date +%s)
# SIGINT lets Snakemake stop the job and keep the pretraining checkpoint (best weights so far)
timeout -s INT -k 30 "$limit" python3 -m snakemake "$model_dir/model.weights.h5" --cores "$cores" \
    --set-threads pretrain="$cores" --configfile "$@" --scheduler greedy --keep-incomplete \
    > "$out/snakemake.log" 2>&1
status=$?
# a job still running after Snakemake was stopped (its script under .snakemake/scripts)
pkill -TERM -f '[.]snakemake/scripts/' && sleep 5
echo "snakemake exited $status after $(( $(date +%s) - start )) s" | tee -a "$out/machine.txt"
tail -n 5 "$out/snakemake.log"

mkdir -p "$out/logs" && mv "$out/machine.txt" "$out/snakemake.log" "$out/logs/"
cp "$results/logs/pretrain/multi.log" "$out/logs/pretrain.log" 2>/dev/null
# The checkpoint's best weights (the rule's output when it finished; the best so far when
# stopped), saved without the optimiser's state, which would triple the file
python3 - "$model_dir" "$out" "$@" <<'EOF' || exit 1
import csv, json, sys
from pathlib import Path

import yaml

model_dir, out, configs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
checkpoint = model_dir / "checkpoint"
best = checkpoint / "best.weights.npz"
if not best.exists():
    sys.exit(f"no weights: {best} was never written (see logs/snakemake.log, logs/pretrain.log)")
state = json.loads((checkpoint / "state.json").read_text())
with open(out / "logs" / "history.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(state["history"][0]))
    writer.writeheader()
    writer.writerows(state["history"])
config = {}
for f in configs:  # the workflow's configs merge key by key; two levels are enough here
    for key, value in (yaml.safe_load(open(f)) or {}).items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
from morphtools.model import ModelSpec, build_model
from morphtools.pretraining import Checkpoint

questions = config["pretraining"].get("variants", {}).get("multi", "all")
spec = ModelSpec(config["preprocessing"]["crop_to"], dropout=config["pretraining"]["dropout"],
                 **({} if questions == "all" else {"questions": tuple(questions)}))
model = build_model(spec)
Checkpoint.load_weights(model, best)
model.save_weights(out / "model.weights.h5")
finished = (model_dir / "model.weights.h5").exists()
print(f"{'finished' if finished else 'stopped'} after epoch {state['epochs_done']}"
      f"{' (early stopping)' if state['stopped_early'] else ''}: best validation loss "
      f"{state['best_val_loss']:.4f} at epoch {state['best_epoch']}")
EOF
cd "$out" && tar czf logs.tar.gz logs && rm -r logs && sha256sum model.weights.h5 > weights.sha256 \
    && split -b 15M -d model.weights.h5 model.weights.h5.part- && rm model.weights.h5 && ls -l
