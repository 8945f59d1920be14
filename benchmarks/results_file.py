"""Where the model benchmarks (``bench_model``, ``bench_finetune``, ``bench_epochs``) write
their results: ``<out_dir>/<name>_<backend>_<device>.json``, so runs on other backends or
devices sit beside each other instead of overwriting."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def run_identity() -> dict:
    """The backend, device and machine a model benchmark runs on. Call before building a
    model: on a GPU it switches Keras to mixed precision, as the workflow's jobs do."""
    import keras

    from morphtools.model import use_mixed_precision_if_gpu

    device = use_mixed_precision_if_gpu()
    return {"backend": keras.config.backend(), "device": device,
            "machine": platform.processor() or platform.machine()}


def write_result(result: dict, out_dir, name: str, quiet_keys=()) -> Path:
    """Write ``result`` (which names its ``backend`` and ``device``) with the load average
    at the end of the run: other work on the machine shifts the absolute figures, while
    ratios measured within one run travel better. Prints it, less ``quiet_keys``."""
    result["load_average_1_5_15_min_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(out_dir) / f"{name}_{result['backend']}_{result['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in quiet_keys}, indent=1))
    return out
