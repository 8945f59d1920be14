"""The scripts that pretrain on a lent GPU machine (device/): what they carry there and how
the weights come back."""

import hashlib
import os
import re
import subprocess
import tarfile

import pytest

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


def returned_files(folder, payload: bytes, part_size: int):
    """What device/pretrain.sh leaves under $OUT, for a weights file holding ``payload``."""
    folder.mkdir()
    for i in range(0, len(payload), part_size):
        (folder / f"model.weights.h5.part-{i // part_size:02d}").write_bytes(payload[i:i + part_size])
    (folder / "weights.sha256").write_text(f"{hashlib.sha256(payload).hexdigest()}  model.weights.h5\n")
    (folder / "logs").mkdir()
    (folder / "logs/history.csv").write_text("epoch,val_loss\n1,40.0\n")
    with tarfile.open(folder / "logs.tar.gz", "w:gz") as tar:
        tar.add(folder / "logs", arcname="logs")


def test_receive_joins_the_parts_in_order_and_unpacks_the_logs(tmp_path):
    payload = os.urandom(25_000)
    returned_files(tmp_path / "out", payload, part_size=10_000)  # three parts, the last short
    target = tmp_path / "resources/device/run/model.weights.h5"
    subprocess.run(["bash", str(DEVICE / "receive_weights.sh"), str(tmp_path / "out"), str(target)], check=True,
                   capture_output=True)
    assert target.read_bytes() == payload
    assert (target.parent / "logs/history.csv").read_text().startswith("epoch,val_loss")


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
    proc = subprocess.run(["bash", str(DEVICE / "receive_weights.sh"), str(tmp_path / "out"), str(target)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "does not match" in proc.stderr
    assert not target.exists() and not (tmp_path / "w/model.weights.h5.part").exists()
