"""A real one-node SLURM cluster on the test machine, for testing the cluster profile.

Follows ``shared/notes/slurm-single-node.md``: Debian's slurm and munge packages (installed
with apt-get when missing and we are root), every daemon started by hand and stopped by
the PID it wrote. No accounting database: job status comes from ``squeue`` (the plugin's
``sacct`` default would hang without accounting), and ``MinJobAge`` keeps finished jobs
visible to it.

``/etc/slurm/slurm.conf`` is machine-wide (the jobs' own ``srun`` reads it, whatever
``SLURM_CONF`` says), so one such cluster runs per machine: a lock file serialises test
runs, the ports are picked free, and the file is restored on stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "munged", "munge", "unmunge"]
SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK_FILE = Path("/run/lock/morphtools-slurm-cluster.lock")
HOSTS = Path("/etc/hosts")
HOSTS_MARK = "# added by morphtools tests/slurm_cluster.py"
PARTITION = "debug"


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be had on this machine (not root, or no apt-get): a reason to skip."""


def _run(cmd, timeout=60, check=True, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kwargs)


def ensure_installed(timeout=900):
    """Install Debian's slurm and munge when a command is missing. Raises
    ClusterUnavailable when that cannot be done here."""
    missing = [c for c in COMMANDS if shutil.which(c) is None and not Path(f"/usr/sbin/{c}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"SLURM commands {missing} missing and not root, so cannot apt-get install them")
    if shutil.which("apt-get") is None:
        raise ClusterUnavailable(f"SLURM commands {missing} missing and no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + timeout
    _run(["apt-get", "update", "-qq"], timeout=timeout, env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
         timeout=max(60, deadline - time.monotonic()), env=env)


def _free_port():
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); it has ended all the same
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def _stop_pid(pid, timeout=20):
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _wait_for_pidfile(path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(path.read_text().split()[0])
            if _alive(pid):
                return pid
        time.sleep(0.2)
    raise RuntimeError(f"no live daemon wrote {path} within {timeout} s")


def _munge_works():
    try:
        encoded = _run(["munge", "-n"], timeout=10, check=False)
        if encoded.returncode != 0:
            return False
        return _run(["unmunge"], input=encoded.stdout, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def node_memory_mb():
    """What slurmd sees, less 15% (more than the node has would drain it)."""
    out = _run(["slurmd", "-C"], timeout=30).stdout
    real = int(next(f.split("=")[1] for f in out.split() if f.startswith("RealMemory=")))
    return int(real * 0.85)


class SlurmCluster:
    """One node (this machine) in one partition, ``debug``. ``start()`` then ``stop()``;
    state, spool, logs and pid files live under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.memory_mb = None
        self.started = {}  # daemon name -> PID, only the ones this object started
        self._lock = None
        self._conf_backup = None
        self._wrote_conf = False
        self._hosts_line = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout=120, lock_timeout=1800):
        ensure_installed()
        self.root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock(lock_timeout)
        try:
            self._check_hostname()
            self._start_munge()
            self._write_conf()
            for daemon in ("slurmctld", "slurmd"):
                # both daemonise and write their pid file
                _run([f"/usr/sbin/{daemon}"], timeout=30)
                self.started[daemon] = _wait_for_pidfile(self.root / f"{daemon}.pid")
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Cancel this cluster's jobs, then stop each daemon this object started, by PID."""
        if "slurmctld" in self.started and _alive(self.started["slurmctld"]):
            with contextlib.suppress(Exception):
                jobs = _run(["squeue", "-h", "-o", "%i"], timeout=15, check=False).stdout.split()
                if jobs:
                    _run(["scancel", *jobs], timeout=15, check=False)
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and _run(["squeue", "-h", "-t", "R,CG", "-o", "%i"], timeout=15,
                                                               check=False).stdout.strip():
                        time.sleep(0.5)
        for daemon in ("slurmd", "slurmctld", "munged"):
            pid = self.started.pop(daemon, None)
            if pid is not None:
                _stop_pid(pid)
        if self._wrote_conf:
            if self._conf_backup is not None:
                SLURM_CONF.write_text(self._conf_backup)
            else:
                SLURM_CONF.unlink(missing_ok=True)
            self._wrote_conf = False
        if self._hosts_line is not None:
            lines = HOSTS.read_text().splitlines(keepends=True)
            HOSTS.write_text("".join(line for line in lines if line != self._hosts_line))
            self._hosts_line = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- pieces -------------------------------------------------------------------------

    def _acquire_lock(self, timeout):
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK_FILE, "w")  # noqa: SIM115 - held until stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.close()
                    self._lock = None
                    raise RuntimeError(f"another test cluster held {LOCK_FILE} for {timeout} s") from None
                time.sleep(2)

    def _check_hostname(self):
        """SlurmctldHost and NodeName are this host's short name, which must resolve: if it
        does not, an /etc/hosts line is added (and removed again on stop)."""
        try:
            socket.gethostbyname(self.host)
            return
        except OSError:
            pass
        line = f"127.0.0.1 {self.host}  {HOSTS_MARK}\n"
        with open(HOSTS, "a") as f:
            f.write(line)
        self._hosts_line = line
        socket.gethostbyname(self.host)

    def _start_munge(self):
        if _munge_works():
            return  # someone's munged already answers: use it, and leave it running
        if not Path("/etc/munge/munge.key").exists():
            _run(["runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create"], timeout=30)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        pidfile = Path("/run/munge/munged.pid")
        pidfile.unlink(missing_ok=True)
        _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], timeout=30)
        self.started["munged"] = _wait_for_pidfile(pidfile)
        deadline = time.monotonic() + 15
        while not _munge_works():
            if time.monotonic() > deadline:
                raise RuntimeError("munged started but munge -n | unmunge fails")
            time.sleep(0.2)

    def _write_conf(self):
        self.memory_mb = node_memory_mb()
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(exist_ok=True)
        r = self.root
        conf = f"""# Written by the morphtools test suite (tests/slurm_cluster.py); restored when it stops.
ClusterName={self.host}
SlurmctldHost={self.host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MailProg=/bin/true
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
ReturnToService=2
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.exists():
            self._conf_backup = SLURM_CONF.read_text()
        SLURM_CONF.write_text(conf)
        self._wrote_conf = True

    def _wait_idle(self, timeout):
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = _run(["sinfo", "-h", "-o", "%T"], timeout=15, check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        log = (self.root / "slurmctld.log").read_text(errors="replace")[-2000:] if (self.root / "slurmctld.log").exists() else ""
        raise RuntimeError(f"node not idle after {timeout} s (sinfo says {state!r}); slurmctld.log ends:\n{log}")

    def logs(self, chars=3000):
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

