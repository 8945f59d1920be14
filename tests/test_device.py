"""The scripts that pretrain on a lent GPU machine (device/): what they carry there and how
the weights come back."""

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

DEVICE = ROOT / "device"


def pins(path):
    """{normalised name: version} of a file's ``name==version`` lines."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return found


def test_carried_wheels_are_the_versions_pinned_here():
    carried, pinned = pins(DEVICE / "wheels.txt"), pins(ROOT / "requirements.txt")
    assert "snakemake" in carried and "keras" in carried and "astropy" in carried
    unpinned = sorted(set(carried) - set(pinned))
    assert not unpinned, f"device/wheels.txt carries packages requirements.txt does not pin: {unpinned}"
    differ = {name: (version, pinned[name]) for name, version in carried.items() if pinned[name] != version}
    assert not differ, f"device/wheels.txt and requirements.txt disagree (carried, pinned): {differ}"
    # TensorFlow cannot travel (its wheel is over the carry limit): the machine uses JAX
    assert not any(name.startswith("tensorflow") for name in carried)


def test_pretrain_script_refuses_without_configs_or_out(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(["bash", str(DEVICE / "pretrain.sh"), "60"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "name the config files" in proc.stderr
    proc = subprocess.run(["bash", str(DEVICE / "pretrain.sh"), "60", "config/config.yaml"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode != 0 and "OUT must name the folder" in proc.stderr


def returned_files(folder, payload: bytes, part_size: int, name: str = "model.weights.h5"):
    """What device/pretrain.sh leaves under $OUT, for a weights file holding ``payload``."""
    folder.mkdir()
    for i in range(0, len(payload), part_size):
        (folder / f"{name}.part-{i // part_size:02d}").write_bytes(payload[i:i + part_size])
    (folder / f"{name}.sha256").write_text(f"{hashlib.sha256(payload).hexdigest()}  {name}\n")
    (folder / "logs").mkdir()
    (folder / "logs/history.csv").write_text("epoch,val_loss\n1,40.0\n")
    with tarfile.open(folder / "logs.tar.gz", "w:gz") as tar:
        tar.add(folder / "logs", arcname="logs")


def run_pretrain_script(tmp_path, seconds: int, overlay: dict, out: Path, **env_overrides):
    """device/pretrain.sh as the GPU machine runs it, here: the tiny config (plus
    ``overlay``) in a working directory under tmp_path, with this environment's Python and
    TensorFlow instead of the carried wheels (Python 3.12's, which may be here) and JAX."""
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "DEVICE_WORKDIR": str(tmp_path / "work"), "KERAS_BACKEND": "tensorflow",
           "DEVICE_WHEELS": str(tmp_path / "no-wheels"), "DEVICE_ALLOW_CPU": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RESERVE_S": "20", **env_overrides}
    return subprocess.run(["bash", str(DEVICE / "pretrain.sh"), str(seconds), str(ROOT / "config/tiny.yaml"),
                           str(tmp_path / "overlay.yaml")], capture_output=True, text=True, env=env, timeout=900)


def receive(out: Path, target: Path, check: bool = True):
    """device/receive_weights.sh OUT TARGET, as run here after a device run."""
    return subprocess.run(["bash", str(DEVICE / "receive_weights.sh"), str(out), str(target)], capture_output=True,
                          text=True, check=check)


def received_weights(tmp_path, out: Path):
    """The weights file joined from a run's returned parts, after checking that what came
    back fits what the device tool returns (at most 8 files, each under 16 MiB)."""
    returned = sorted(p.name for p in out.iterdir())
    assert len(returned) <= 8 and all((out / name).stat().st_size < 16 * 2**20 for name in returned), returned
    target = tmp_path / f"received_{out.name}/model.weights.h5"
    receive(out, target)
    return target


def weights_equal_checkpoint(weights: Path, checkpoint: Path, spec) -> bool:
    """Whether a .weights.h5 loads into ``spec``'s model with exactly the checkpoint's best weights."""
    from morphtools.model import load_trained

    with np.load(checkpoint) as best:
        return all(np.array_equal(a, best[f"arr_{i}"]) for i, a in enumerate(load_trained(weights, spec).get_weights()))


def test_receive_joins_the_parts_in_order_and_unpacks_the_logs(tmp_path):
    payload = os.urandom(25_000)
    returned_files(tmp_path / "out", payload, part_size=10_000)  # three parts, the last short
    target = tmp_path / "resources/device/run/model.weights.h5"
    receive(tmp_path / "out", target)
    assert target.read_bytes() == payload
    assert (target.parent / "logs/history.csv").read_text().startswith("epoch,val_loss")


def test_receive_takes_the_raw_checkpoint_when_the_conversion_failed_there(tmp_path):
    payload = os.urandom(12_000)
    returned_files(tmp_path / "out", payload, part_size=10_000, name="best.weights.npz")
    target = tmp_path / "w/model.weights.h5"
    proc = receive(tmp_path / "out", target)
    assert (tmp_path / "w/model.npz").read_bytes() == payload and not target.exists()
    assert "load_weights" in proc.stderr
    proc = receive(tmp_path / "nothing", target, check=False)
    assert proc.returncode != 0 and "no weights parts" in proc.stderr


@pytest.mark.parametrize("damage", ["missing part", "truncated part"])
def test_receive_refuses_damaged_parts_and_writes_nothing(tmp_path, damage):
    payload = os.urandom(25_000)
    returned_files(tmp_path / "out", payload, part_size=10_000)
    part = tmp_path / "out/model.weights.h5.part-01"
    if damage == "missing part":
        part.unlink()
    else:
        part.write_bytes(part.read_bytes()[:-1])
    target = tmp_path / "w/model.weights.h5"
    proc = receive(tmp_path / "out", target, check=False)
    assert proc.returncode != 0 and "does not match" in proc.stderr
    assert not target.exists() and not (tmp_path / "w/model.weights.h5.part").exists()


def test_pretrain_script_stops_before_any_work_without_a_gpu(tmp_path):
    # "before any work" is checked by what exists afterwards, not by a wall-clock bound:
    # no rendered survey, no crops, no weights (timings on a loaded machine prove nothing)
    out = tmp_path / "out"
    proc = run_pretrain_script(tmp_path, 600, {"results": str(tmp_path / "work/results"),
                                               "resources": str(tmp_path / "work/resources")},
                               out, DEVICE_ALLOW_CPU="")
    assert proc.returncode == 3 and "sees no GPU" in proc.stderr
    assert not (tmp_path / "work/results").exists() and not (tmp_path / "work/resources").exists()
    assert sorted(p.name for p in out.iterdir()) == ["machine.txt"]
    assert "device: cpu" in (out / "machine.txt").read_text()


def test_pretrain_script_returns_the_best_weights_finished_or_stopped(tmp_path):
    from morphtools.model import ModelSpec

    overlay = {"results": str(tmp_path / "work/results"), "resources": str(tmp_path / "work/resources")}
    proc = run_pretrain_script(tmp_path, 600, overlay, tmp_path / "out1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no carried wheels" in proc.stdout and "finished after epoch 2" in proc.stdout
    weights = received_weights(tmp_path, tmp_path / "out1")
    checkpoint = tmp_path / "work/results/models/multi/checkpoint/best.weights.npz"
    spec = ModelSpec(32)  # the tiny config's crops
    assert weights_equal_checkpoint(weights, checkpoint, spec)
    first_history = (weights.parent / "logs/history.csv").read_text().splitlines()
    assert first_history[0].startswith("epoch,loss,val_loss") and len(first_history) == 3

    # More epochs than the time allows: stopped by the limit, the run resumes from its
    # checkpoint and returns the best epoch so far, and no process of another run is touched
    bystander_dir = tmp_path / "other/.snakemake/scripts"
    bystander_dir.mkdir(parents=True)
    (bystander_dir / "tmpxyz.pretrain.py").write_text("import time\ntime.sleep(600)\n")
    bystander = subprocess.Popen([sys.executable, str(bystander_dir / "tmpxyz.pretrain.py")])
    try:
        overlay["pretraining"] = {"epochs": 500, "patience": 500}
        started = time.monotonic()
        proc = run_pretrain_script(tmp_path, 90, overlay, tmp_path / "out2")
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        stopped = re.search(r"stopped after epoch (\d+): best validation loss ([\d.]+) at epoch (\d+)", proc.stdout)
        # 2 is allowed: on a loaded machine start-up can use the whole limit, and the
        # properties checked below (stopped, resumed, best weights returned) still hold
        assert stopped and 2 <= int(stopped.group(1)) < 500, proc.stdout[-2000:]
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
    # the limit bounds the whole script, but for the job's 30 s before SIGKILL and the conversion
    assert elapsed < 90 + 60
    mine = subprocess.run(["pgrep", "-f", str(tmp_path / "work/.snakemake/scripts")], capture_output=True)
    assert mine.returncode == 1  # nothing of the stopped run is left running
    weights = received_weights(tmp_path, tmp_path / "out2")
    history = (weights.parent / "logs/history.csv").read_text().splitlines()[1:]
    val_losses = [float(row.split(",")[2]) for row in history]
    assert len(history) == int(stopped.group(1))
    assert history[:2] == first_history[1:]  # epochs 1-2 resumed from the checkpoint, not trained again
    best_epoch = int(stopped.group(3))
    assert val_losses[best_epoch - 1] == min(val_losses) == pytest.approx(float(stopped.group(2)), abs=1e-4)
    assert weights_equal_checkpoint(weights, checkpoint, spec)

    # A checkpoint the conversion cannot read (here: a damaged last.keras): the raw best
    # weights come back instead, with their sha256, and the script says it failed
    (tmp_path / "work/results/models/multi/checkpoint/last.keras").write_bytes(b"damaged")
    overlay.pop("pretraining")
    proc = run_pretrain_script(tmp_path, 600, overlay, tmp_path / "out3")
    assert proc.returncode == 1 and "returning the checkpoint's best.weights.npz" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out3").iterdir()) == [
        "best.weights.npz.part-00", "best.weights.npz.part-01", "best.weights.npz.sha256", "logs.tar.gz"]
    target = tmp_path / "received_out3/model.weights.h5"
    receive(tmp_path / "out3", target)
    assert (tmp_path / "received_out3/model.npz").read_bytes() == checkpoint.read_bytes()
