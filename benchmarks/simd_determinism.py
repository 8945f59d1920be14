"""Diagnostic: are the simulated survey's images the same bytes on every x86 CPU type?

numpy picks its float kernels (exp, log, power, arctan2, ...) at run time for the CPU's
instruction set, and its AVX-512 (X86_V4) kernels round some results differently in
the last bit from its AVX2 (X86_V3) ones. This renders the same galaxies in two
subprocesses, one with numpy's CPU features as found and one with those above a
baseline switched off (``NPY_DISABLE_CPU_FEATURES``), and counts the GZ2-like JPEGs and
DECaLS-like grz cubes whose bytes differ, and the numpy functions whose results differ
on a million random numbers. On a CPU without the switched-off features both
subprocesses run the same kernels and nothing can differ (``features_switched_off`` says
which were there to switch off).

    .venv/bin/python benchmarks/simd_determinism.py --resources resources/anomaly_scale \\
        [--galaxies 200] [--disable "X86_V4 AVX512_ICL AVX512_SPR"] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FUNCTIONS = ("exp", "log", "power", "arctan2", "expm1", "log1p", "sin", "cos", "tanh", "sqrt")


def numpy_function_digests() -> dict:
    """md5 of each of ``FUNCTIONS`` on a million seeded normal numbers, float64 and float32."""
    import numpy as np

    x = np.random.default_rng(0).normal(0, 3, 1_000_000)
    calls = {"exp": np.exp, "log": lambda a: np.log(np.abs(a) + 1e-3), "power": lambda a: np.power(np.abs(a), 0.7),
             "arctan2": lambda a: np.arctan2(a, 1.3), "expm1": np.expm1, "log1p": lambda a: np.log1p(np.abs(a)),
             "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "sqrt": lambda a: np.sqrt(np.abs(a))}
    return {f"{name} {dtype}": hashlib.md5(calls[name](x.astype(dtype)).tobytes()).hexdigest()
            for name in FUNCTIONS for dtype in ("float64", "float32")}


def render_digests(resources: Path, galaxies: int) -> dict:
    """md5 of the first ``galaxies`` GZ2-like JPEGs and DECaLS-like 256 px grz cubes of
    the simulated truth under ``resources``."""
    import pandas as pd

    from morphtools.simulation.render import DECALS, render
    from morphtools.simulation.survey import render_gz2_jpeg

    gz2 = pd.read_csv(resources / "simulated" / "gz2" / "hidden" / "truth.csv").head(galaxies)
    decals = pd.read_csv(resources / "simulated" / "decals" / "hidden" / "truth.csv").head(galaxies)
    with tempfile.TemporaryDirectory() as folder:
        jpegs = []
        for k, (_, row) in enumerate(gz2.iterrows()):
            path = Path(folder) / f"{k}.jpg"
            render_gz2_jpeg(row, path)
            jpegs.append(hashlib.md5(path.read_bytes()).hexdigest())
    cubes = [hashlib.md5(render(row, DECALS, 256, 0.262).tobytes()).hexdigest() for _, row in decals.iterrows()]
    return {"gz2_jpeg": jpegs, "decals_cube": cubes}


def child(resources: Path, galaxies: int) -> None:
    from numpy._core._multiarray_umath import __cpu_features__

    print(json.dumps({"features": sorted(k for k, on in __cpu_features__.items() if on),
                      "functions": numpy_function_digests(), "renders": render_digests(resources, galaxies)}))


def run_child(resources: Path, galaxies: int, disable: str | None) -> dict:
    env = dict(os.environ)
    env.pop("NPY_DISABLE_CPU_FEATURES", None)
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = disable
    done = subprocess.run([sys.executable, __file__, "--child", "--resources", str(resources), "--galaxies", str(galaxies)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resources", default="resources")
    parser.add_argument("--galaxies", type=int, default=200)
    parser.add_argument("--disable", default="X86_V4 AVX512_ICL AVX512_SPR")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "simd_determinism.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    resources = Path(args.resources)
    if args.child:
        child(resources, args.galaxies)
        return
    native = run_child(resources, args.galaxies, None)
    reduced = run_child(resources, args.galaxies, args.disable)
    from morphtools.model import machine_description

    out = {"machine": machine_description(), "disable": args.disable,
           "features_switched_off": sorted(set(native["features"]) - set(reduced["features"])),
           "numpy_functions_that_differ": sorted(k for k, v in native["functions"].items() if reduced["functions"][k] != v),
           "renders": {kind: {"rendered": len(digests),
                              "differ": sum(a != b for a, b in zip(digests, reduced["renders"][kind], strict=True))}
                       for kind, digests in native["renders"].items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
