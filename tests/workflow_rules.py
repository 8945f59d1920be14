"""The workflow's rules as Snakemake itself parses them, for static checks of every rule
(whichever rules exist when the tests run: nothing here names them).

The workflow is loaded in a subprocess through Snakemake's API, so the test process's
logging and working directory are left alone.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT

_DUMP = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

root, config, workdir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
def static(resource):
    # a resource's value, or None where it is a function of the job (e.g. threads by wildcard)
    try:
        return resource.value
    except (AttributeError, ValueError):
        return None


with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(configfiles=[config]),
                      snakefile=root / "workflow" / "Snakefile", workdir=workdir)._workflow
    out = []
    for r in wf.rules:
        base = Path(r.snakefile).parent
        env = r.conda_env
        out.append({
            "name": r.name,
            "snakefile": str(r.snakefile),
            "lineno": r.lineno,
            "checkpoint": r.is_checkpoint,
            "norun": r.norun,
            "local": r.name in wf._localrules,
            "conda_env": str((base / env).resolve()) if isinstance(env, str) else (None if env is None else repr(env)),
            "script": str((base / r.script).resolve()) if r.is_script else None,
            "kind": "script" if r.is_script else "shell" if r.is_shell else "run" if r.is_run else
                    "wrapper" if r.is_wrapper else "notebook" if r.is_notebook else "none",
            "resources": {k: static(v) for k, v in r.resources.items() if not k.startswith("_") and k != "tmpdir"},
            "threads": static(r.resources["_cores"]),
        })
print("RULES-JSON" + json.dumps(out))
"""


@dataclass(frozen=True)
class RuleInfo:
    name: str
    snakefile: Path
    lineno: int
    checkpoint: bool
    norun: bool
    local: bool
    conda_env: str | None
    script: Path | None
    kind: str
    resources: dict
    threads: int | None

    @property
    def source(self) -> str:
        """The rule's own lines in its .smk file: from its header to the next line indented no
        deeper than the header. A rule defined inside an ``if`` block is indented; one defined
        in each branch of an ``if``/``else`` is told apart by the script it runs."""
        lines = self.snakefile.read_text().splitlines()
        header = re.compile(rf"^(\s*)(rule|checkpoint)\s+{re.escape(self.name)}\s*:")
        blocks = []
        for i, line in enumerate(lines):
            m = header.match(line)
            if not m:
                continue
            indent = len(m.group(1))
            block = [line]
            for following in lines[i + 1:]:
                stripped = following.lstrip()
                if stripped and not stripped.startswith("#") and len(following) - len(stripped) <= indent:
                    break
                block.append(following)
            blocks.append("\n".join(block))
        if len(blocks) > 1 and self.script is not None:
            blocks = [b for b in blocks if self.script.name in b] or blocks
        if len(blocks) != 1:
            raise AssertionError(f"rule {self.name}: expected one definition in {self.snakefile}, found {len(blocks)}")
        return blocks[0]

    def declares(self, directive: str) -> bool:
        return any(line.strip().startswith(f"{directive}:") for line in self.source.splitlines()[1:])


@functools.lru_cache(maxsize=4)
def workflow_rules(config: str = "tiny.yaml") -> tuple[RuleInfo, ...]:
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.run([sys.executable, "-c", _DUMP, str(ROOT), str(ROOT / "config" / config), workdir],
                              capture_output=True, text=True, timeout=300)
    marker = [line for line in proc.stdout.splitlines() if line.startswith("RULES-JSON")]
    if proc.returncode != 0 or not marker:
        raise AssertionError(f"could not load the workflow's rules:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rules = []
    for r in json.loads(marker[-1][len("RULES-JSON"):]):
        r["snakefile"] = Path(r["snakefile"])
        r["script"] = Path(r["script"]) if r["script"] else None
        rules.append(RuleInfo(**r))
    return tuple(rules)


def job_rules(config: str = "tiny.yaml") -> list[RuleInfo]:
    """Rules that do work (a script, shell command, run block...), not pure targets like ``all``."""
    return [r for r in workflow_rules(config) if not r.norun]
