"""The SLURM cluster profile (profiles/slurm), checked statically and then for real.

The real part starts a one-node SLURM cluster on the test machine (tests/slurm_cluster.py:
Debian's packages, installed when missing; daemons started here and stopped by PID), edits
the project's profile the way a site admin would (the lines it marks EDIT), and runs the
tiny config through ``--executor slurm`` with it: every job goes through sbatch, the
outputs equal a local run's, a catalogue change reruns only the affected shards, and a
failing job fails the workflow instead of hanging it. Every Snakemake call is bounded by a
timeout, so a hang fails the test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.table import Table

from conftest import ROOT, SNAKEMAKE
from morphtools.sharding import shard_of
from slurm_cluster import PARTITION, ClusterUnavailable, SlurmCluster
from workflow_rules import job_rules

PROFILE_DIR = ROOT / "profiles" / "slurm"
PROFILE = PROFILE_DIR / "config.v8+.yaml"
TINY = ROOT / "config" / "tiny.yaml"
RUN_TIMEOUT = 1800  # s: the whole tiny DAG through sbatch on a loaded 2-core machine
SHORT_TIMEOUT = 600  # s: a few jobs

pytestmark = pytest.mark.e2e


def load_profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def gpu_rules() -> set[str]:
    """Rules that declare a ``gpu`` resource (config["gpus"]): the ones that can use one."""
    return {r.name for r in job_rules() if "gpu" in r.resources}


# --- static: the profile and the rules' declarations -------------------------------------

def test_every_rule_declares_threads_and_resources():
    problems = []
    for rule in job_rules():
        if rule.local:
            continue
        for directive in ("threads", "resources"):
            if not rule.declares(directive):
                problems.append(f"{rule.name}: no {directive}: directive")
        missing = {"mem_mb", "runtime"} - set(rule.resources)
        if missing:
            problems.append(f"{rule.name}: resources lack {sorted(missing)}")
    assert not problems, "\n".join(problems)


def test_profile_sets_the_cluster_essentials_and_gpu_rules():
    profile = load_profile()
    assert profile["executor"] == "slurm"
    for key in ("jobs", "retries", "latency-wait", "rerun-incomplete", "default-resources", "set-resources"):
        assert key in profile, key
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(profile["default-resources"])
    names = {r.name for r in job_rules()}
    assert set(profile["set-resources"]) <= names, "set-resources names a rule the workflow does not have"
    assert set(profile.get("set-threads", {})) <= names
    assert gpu_rules(), "no rule declares a gpu resource"
    for rule in gpu_rules():
        res = profile["set-resources"].get(rule, {})
        assert res.get("gpu", 0) >= 1 and {"slurm_partition", "mem_mb", "runtime"} <= set(res), (rule, res)
    # what a site edits is marked as such
    text = PROFILE.read_text()
    for line in text.splitlines():
        if re.match(r"\s*#?\s*slurm_(partition|account):", line):
            assert "EDIT" in line, line


def dry_run_jobs(stdout: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a Snakemake log or dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", stdout):
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if m:
            w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            wildcards = dict(kv.split("=", 1) for kv in w.group(1).split(", ")) if w else {}
            jobs.append((m.group(1), wildcards))
    return jobs


def test_profile_dry_run_gives_gpu_rules_their_gpu_and_partition(tmp_path):
    proc = run_profile(tmp_path, PROFILE_DIR, "-n", timeout=SHORT_TIMEOUT)
    blocks = re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", proc.stdout)
    profile = load_profile()
    seen = set()
    for block in blocks:
        m = re.match(r"(?:rule|checkpoint) (\w+):", block)
        if not m:
            continue
        resources = re.search(r"^\s+resources: (.*)$", block, re.M).group(1)
        partition = profile["set-resources"].get(m.group(1), {}).get(
            "slurm_partition", profile["default-resources"]["slurm_partition"])
        assert f"slurm_partition={partition}" in resources, (m.group(1), resources)
        if m.group(1) in gpu_rules():
            assert "gpu=1" in resources, resources
            seen.add(m.group(1))
    assert seen == gpu_rules()


# --- the real cluster ----------------------------------------------------------------------

def run_profile(workdir, profile_dir, *args, timeout, check=True):
    """Snakemake with a profile on the tiny config; a run past ``timeout`` fails the test
    (and is killed) rather than hanging it."""
    cmd = SNAKEMAKE + ["-d", str(workdir), "--configfile", str(TINY), "--profile", str(profile_dir), *args]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        errs = (err.stderr or b"").decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
        raise AssertionError(f"snakemake {' '.join(args)} still running after {timeout} s (a hang?):\n"
                             f"{out[-3000:]}\n{errs[-5000:]}") from None
    proc.seconds = time.monotonic() - t0
    proc.log = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.log[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        slurm = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    except ClusterUnavailable as reason:
        pytest.skip(f"no SLURM cluster can be started here: {reason}")
    yield slurm
    slurm.stop()


def site_profile(dest: Path, cluster: SlurmCluster) -> Path:
    """profiles/slurm as this site's admin edits it (what the profile marks EDIT): one
    partition, no GPUs, no job accounting, jobs that fit the node. Plus quicker first
    status checks (40 s by default), which only makes the test faster."""
    profile = load_profile()
    node_mem = cluster.memory_mb // 2  # two jobs side by side on the node
    profile["default-resources"]["slurm_partition"] = PARTITION
    profile["default-resources"]["mem_mb"] = min(profile["default-resources"]["mem_mb"], node_mem)
    for rule in job_rules():
        if rule.resources.get("mem_mb", 0) > node_mem:
            profile["set-resources"].setdefault(rule.name, {})["mem_mb"] = node_mem
    for res in profile["set-resources"].values():
        res.pop("slurm_partition", None)  # the default partition: the only one
        res["gpu"] = 0  # no GPUs here: the GPU rules run on CPUs
        res["mem_mb"] = min(res.get("mem_mb", node_mem), node_mem)
    profile["set-threads"] = {rule: min(n, cluster.cpus) for rule, n in profile.get("set-threads", {}).items()}
    profile["max-threads"] = cluster.cpus
    # ... and jobs the threads the local run gives them, so the outputs compare byte for byte:
    # on some CPUs TensorFlow's sums depend on its thread count (measured on an AMD EPYC
    # family 25: 92% of one model's embedding values of the same crops moved, by up to 1e-4
    # relative, between 1 and 2 threads). embed takes the config's embedding.threads;
    # finetune_run keeps its own per-depth threads (1 for a frozen base), which set-threads
    # cannot express.
    tiny = yaml.safe_load(TINY.read_text())
    profile["set-threads"]["embed"] = tiny["embedding"]["threads"]
    profile["set-threads"].pop("finetune_run", None)
    profile["slurm-status-command"] = "squeue"  # no accounting: sacct would never report a job done
    profile["slurm-no-account"] = True
    profile["slurm-init-seconds-before-status-checks"] = 2
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PROFILE.name).write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The whole tiny DAG through sbatch, once per module."""
    workdir = tmp_path_factory.mktemp("slurm_run")
    profile = site_profile(tmp_path_factory.mktemp("site_profile"), cluster)
    try:
        proc = run_profile(workdir, profile, timeout=RUN_TIMEOUT)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{cluster.logs()}") from None
    print(f"tiny DAG through SLURM: {proc.seconds:.0f} s")
    return SimpleNamespace(workdir=workdir, profile=profile, log=proc.log, seconds=proc.seconds)


def slurm_jobs():
    """(job id, comment, state) of every job the cluster has seen (MinJobAge keeps them)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%k|%T"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return [tuple(line.split("|")) for line in out.split()]


def test_every_job_went_through_sbatch(slurm_run):
    log = slurm_run.log
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    ran = dry_run_jobs(log)
    local = [line for line in log.splitlines() if line.startswith("localrule ")]
    assert local == ["localrule all:"], local  # nothing but the target ran outside SLURM
    assert len(submitted) == len(ran) - 1 >= 30, (len(submitted), len(ran))
    # SLURM's own account: every one of those jobs completed, and every rule was among them
    states = {jobid: (comment, state) for jobid, comment, state in slurm_jobs()}
    for _, slurm_id in submitted:
        assert states[slurm_id][1] == "COMPLETED", (slurm_id, states[slurm_id])
    rules_submitted = {re.match(r"rule_(\w+?)(?:_wildcards_|$)", states[s][0]).group(1) for _, s in submitted}
    assert rules_submitted == {rule for rule, _ in ran} - {"all"}
    assert {"pretrain", "embed", "preprocess"} <= rules_submitted


# Not outputs of the science: per-job logs and timings, and the pretraining checkpoint
# (resume state, with wall-clock times and a zip archive's timestamps).
VOLATILE = re.compile(r"^results/(logs|benchmarks)/|/checkpoint/")
TIMING_COLUMNS = ["seconds", "images_per_second", "batchnorm_seconds", "epoch_seconds"]  # of a training history
RUN_TIMING_KEYS = ["seconds", "step_seconds"]  # of an anomaly run's or a fine-tuned model's info file
RUN_INFO = re.compile(r"^results/(anomaly/[^/]+/runs/[^/]+|finetune/runs/[^/]+/[^/]+/n\d+)/repeat_\d+\.json$")
RESULT_TABLES = {"results/finetune/results.csv": ["seconds"]}  # every fine-tuned model's info, one row each


def output_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for d in ("results", "resources") for p in (root / d).rglob("*")
                  if p.is_file() and not VOLATILE.search(str(p.relative_to(root))))


def test_outputs_equal_a_local_run(slurm_run, tiny_run):
    """Byte for byte: the simulated survey, cutout cache, catalogues, manifests, crops, QA
    tables, the pretrained weights, embeddings, PCA, checks, summaries and figures. All are
    deterministic: seeded simulation and training, hashed shards, HDF5 written without
    timestamps. Training and embedding are bit-reproducible across processes because both
    runs use the same machine and give each job the same threads (``site_profile``), so
    the multithreaded kernels sum in the same order. Only a training history's timing
    columns, an anomaly run's and a fine-tuned model's timings differ."""
    s, t = slurm_run.workdir, tiny_run
    names = output_files(t)
    assert len(names) > 100 and names == output_files(s)
    differ = [n for n in names if (s / n).read_bytes() != (t / n).read_bytes()]
    histories = [n for n in differ if n.endswith("history.csv")]
    for name in histories:
        # a fine-tuning history has no BatchNorm pass column
        a, b = (pd.read_csv(d / name).drop(columns=TIMING_COLUMNS, errors="ignore") for d in (s, t))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    tables = [n for n in differ if n in RESULT_TABLES]
    for name in tables:
        a, b = (pd.read_csv(d / name).drop(columns=RESULT_TABLES[name]) for d in (s, t))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    run_infos = [n for n in differ if RUN_INFO.match(n)]
    for name in run_infos:
        a, b = ({k: v for k, v in json.loads((d / name).read_text()).items() if k not in RUN_TIMING_KEYS}
                for d in (s, t))
        assert a == b, f"{name} differs from the local run beyond its timings"
    timed = set(histories) | set(tables) | set(run_infos)
    assert set(differ) == timed, f"differ from the local run: {sorted(set(differ) - timed)}"


def shard_jobs(log: str, rule: str) -> list[int]:
    return sorted(int(w["shard"]) for r, w in dry_run_jobs(log) if r == rule)


def test_catalogue_change_reruns_only_the_affected_shards_on_the_cluster(slurm_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(slurm_run.workdir, workdir, symlinks=True)
    assert "Nothing to be done" in run_profile(workdir, slurm_run.profile, "-n", timeout=SHORT_TIMEOUT).log
    # remove one galaxy from the NSA table, then rebuild the catalogue on the cluster
    nsa_path = workdir / "resources/simulated/decals/nsa_v1_0_1.fits"
    victim = pd.read_csv(workdir / "results/decals/catalogue.csv", dtype={"galaxy_id": str})["galaxy_id"].iloc[0]
    full = Table.read(nsa_path)
    full[np.array([name.strip() != victim for name in full["IAUNAME"]])].write(nsa_path, overwrite=True)
    rebuilt = run_profile(workdir, slurm_run.profile, "--allowed-rules", "decals_catalogue", "--",
                          "results/decals/catalogue.csv", timeout=SHORT_TIMEOUT)
    assert len(re.findall(r"has been submitted with SLURM jobid", rebuilt.log)) == 1
    shard = shard_of(victim, 3)

    plan = run_profile(workdir, slurm_run.profile, "-n", timeout=SHORT_TIMEOUT).log
    assert shard_jobs(plan, "decals_cutouts") == [shard]
    assert shard_jobs(plan, "preprocess") == [shard]
    assert shard_jobs(plan, "gz2_images") == []
    # the shard's own jobs, for real on the cluster: only they are submitted
    rerun = run_profile(workdir, slurm_run.profile, "--until", "preprocess", timeout=SHORT_TIMEOUT).log
    assert sorted((r, int(w["shard"])) for r, w in dry_run_jobs(rerun)) == [("decals_cutouts", shard),
                                                                           ("preprocess", shard)]
    assert len(re.findall(r"has been submitted with SLURM jobid", rerun)) == 2
    manifest = pd.read_csv(workdir / f"results/decals/images/shard_{shard}.csv", dtype=str)
    assert victim not in set(manifest["galaxy_id"])
    assert set(manifest["status"]) <= {"cached", "rejected"}  # the others' cutouts were not fetched again


def test_failing_job_fails_the_workflow_instead_of_hanging(slurm_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(slurm_run.workdir, workdir, symlinks=True)
    (workdir / "resources/simulated/gz2/training_solutions_rev1.csv").write_text("not,a\nvote,table\n")
    proc = run_profile(workdir, slurm_run.profile, "--", "results/gz2/catalogue.csv", timeout=SHORT_TIMEOUT,
                       check=False)
    assert proc.returncode != 0, proc.log[-3000:]
    assert "Error in rule gz2_catalogue" in proc.log
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", proc.log), proc.log[-3000:]
    retries = load_profile()["retries"]
    assert len(re.findall(r"has been submitted with SLURM jobid", proc.log)) == 1 + retries
