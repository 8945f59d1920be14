"""Per-rule conda environments, checked statically (conda channels cannot be reached from
the test machines): every rule that does work names a pinned environment in
``workflow/envs/``; each environment's versions are the ones ``requirements.txt`` pins; and
everything a rule's script imports, directly or through the ``morphtools`` code it calls,
is a package its environment lists.

Nothing here names a rule, a script or an environment: the checks cover whatever the
workflow holds when they run.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from workflow_rules import job_rules

ENVS = ROOT / "workflow" / "envs"
SRC = ROOT / "src"
PACKAGE = "morphtools"

# conda-forge name -> the PyPI names that stand for it in requirements.txt. conda-forge's
# `tensorflow` picks a CPU or CUDA build by itself; on PyPI the CPU-only wheel is
# `tensorflow-cpu`.
CONDA_TO_PYPI = {"tensorflow": ("tensorflow", "tensorflow-cpu")}

# Imported only when the user picks that Keras backend (KERAS_BACKEND=jax or torch, see
# morphtools.model): alternatives to TensorFlow, which is what the environments ship.
OPTIONAL_IMPORTS = {"jax": "alternative Keras backend", "torch": "alternative Keras backend"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- pins --------------------------------------------------------------------------------

def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[normalise(name)] = version.strip()
    return pins


def env_dependencies(path: Path) -> dict[str, str | None]:
    """conda package -> pinned version (None when unpinned) of one environment file."""
    spec = yaml.safe_load(path.read_text())
    deps = {}
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):  # a `pip:` section
            for item in dep.get("pip", []):
                name, _, version = item.partition("==")
                deps[normalise(name)] = version.strip() or None
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:==?\s*([^\s=]+))?\s*", dep)
        assert m, f"{path.name}: cannot read dependency {dep!r}"
        deps[normalise(m.group(1))] = m.group(2)
    return deps


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml")) + sorted(ENVS.glob("*.yml"))


def test_every_rule_with_work_names_a_pinned_env_in_workflow_envs():
    problems = []
    for rule in job_rules():
        if rule.kind == "run":
            continue  # run: blocks execute inside Snakemake's own process; conda: cannot apply
        if rule.conda_env is None:
            problems.append(f"{rule.name}: no conda: directive")
        elif not Path(rule.conda_env).is_file():
            problems.append(f"{rule.name}: conda: {rule.conda_env} is not an environment file")
        elif Path(rule.conda_env).parent != ENVS:
            problems.append(f"{rule.name}: conda: {rule.conda_env} is outside workflow/envs/")
    assert not problems, "\n".join(problems)


def test_env_versions_agree_with_requirements_txt():
    assert env_files(), "no environment files in workflow/envs/"
    pins = requirement_pins()
    python = re.search(r'requires-python\s*=\s*">=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text()).group(1)
    problems = []
    for path in env_files():
        spec = yaml.safe_load(path.read_text())
        if "conda-forge" not in spec.get("channels", []):
            problems.append(f"{path.name}: channels {spec.get('channels')} do not include conda-forge")
        for name, version in env_dependencies(path).items():
            if version is None:
                problems.append(f"{path.name}: {name} has no version pin")
            elif name == "pip":
                continue  # the installer of an env's pip: section, pinned but not a project dependency
            elif name == "python":
                if version != python:
                    problems.append(f"{path.name}: python={version}, but pyproject.toml requires {python}")
            else:
                candidates = [normalise(n) for n in CONDA_TO_PYPI.get(name, (name,))]
                pinned = {c: pins[c] for c in candidates if c in pins}
                if not pinned:
                    problems.append(f"{path.name}: {name} is not in requirements.txt")
                elif version not in pinned.values():
                    problems.append(f"{path.name}: {name}={version}, but requirements.txt pins {pinned}")
    assert not problems, "\n".join(problems)


# --- imports -------------------------------------------------------------------------------

def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _executed_at_import(body):
    """Statements that run when a module is imported: everything but function bodies
    (class bodies do run) and ``if TYPE_CHECKING:`` blocks."""
    for node in body:
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from node.decorator_list
            yield from node.args.defaults
            continue
        if isinstance(node, ast.ClassDef):
            yield from node.decorator_list
            yield from node.bases
            yield from _executed_at_import(node.body)
            continue
        yield node


class ImportTracer:
    """Which third-party modules running a script needs: what it imports, what the
    ``morphtools`` modules it loads import when loaded, and what the ``morphtools``
    functions and classes it uses import lazily inside them (followed by name, through
    calls to other ``morphtools`` functions and classes)."""

    def __init__(self):
        self.needed: dict[str, set[str]] = {}  # third-party top-level module -> where imported
        self._loaded: set[str] = set()
        self._visited: set[tuple[str, str]] = set()
        self._modules: dict[str, tuple[ast.Module, dict, dict]] = {}

    # module name -> (tree, top-level defs, top-level bindings from imports)
    def _parse(self, module: str, path: Path | None = None):
        if module not in self._modules:
            path = path or _module_file(module)
            tree = ast.parse(path.read_text(), str(path))
            defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            self._modules[module] = (tree, defs, self._bindings(tree.body, module, path))
        return self._modules[module]

    @staticmethod
    def _resolve(node: ast.ImportFrom, module: str, path: Path) -> str:
        if not node.level:
            return node.module
        package = module.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        return ".".join(package + ([node.module] if node.module else []))

    def _bindings(self, body, module, path) -> dict[str, tuple[str, str | None]]:
        """Names that top-level imports bind: name -> (module, attribute or None)."""
        out = {}
        for node in _executed_at_import(body):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    for a in sub.names:
                        out[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
                elif isinstance(sub, ast.ImportFrom):
                    target = self._resolve(sub, module, path)
                    for a in sub.names:
                        out[a.asname or a.name] = (target, a.name)
        return out

    def _import(self, node, module, path, where):
        targets = []
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        else:
            base = self._resolve(node, module, path)
            targets = [(base, a.name) for a in node.names]
        for target, attr in targets:
            top = target.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top != PACKAGE:
                self.needed.setdefault(top, set()).add(where)
                continue
            if attr and _module_file(f"{target}.{attr}"):  # from package import submodule
                self.load(f"{target}.{attr}")
            else:
                self.load(target)

    def load(self, module: str):
        """Importing a morphtools module: its parents, then its top-level code."""
        if module in self._loaded:
            return
        self._loaded.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):
            self.load(".".join(parts[:i]))
        path = _module_file(module)
        tree, _, _ = self._parse(module)
        self._walk(list(_executed_at_import(tree.body)), module, path, where=module)

    def _walk(self, nodes, module, path, where, local=None):
        _, defs, bindings = self._parse(module)
        local = dict(local or {})
        for node in nodes:
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    self._import(sub, module, path, where)
                    local.update(self._bindings([sub], module, path))
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name):
                    self._use(module, sub.id, None, defs, {**bindings, **local})
                elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                    self._use(module, sub.value.id, sub.attr, defs, {**bindings, **local})

    def _use(self, module, name, attr, defs, bindings):
        if name in defs:
            self.visit(module, name)
            return
        if name not in bindings:
            return
        target, imported = bindings[name]
        if target.split(".")[0] != PACKAGE:
            return
        if imported is None:  # `import morphtools.x as y`, then y.attr
            if attr:
                self._use_attr(target, attr)
        elif _module_file(f"{target}.{imported}"):  # a submodule, then .attr
            if attr:
                self._use_attr(f"{target}.{imported}", attr)
        else:
            self._use_attr(target, imported)

    def _use_attr(self, module, name):
        self.load(module)
        _, defs, bindings = self._parse(module)
        self._use(module, name, None, defs, bindings)

    def visit(self, module, name):
        """Using a morphtools function or class: the imports inside it, and what it uses."""
        if (module, name) in self._visited:
            return
        self._visited.add((module, name))
        self.load(module)
        _, defs, _ = self._parse(module)
        self._walk([defs[name]], module, _module_file(module), where=f"{module}.{name}")

    def script(self, path: Path):
        """A workflow script runs top to bottom: all of it counts."""
        module = f"__script__.{path.stem}"
        self._parse(module, path)
        self._loaded.add(module)
        self._walk(self._modules[module][0].body, module, path, where=path.name)


def third_party_needs(script: Path) -> dict[str, set[str]]:
    tracer = ImportTracer()
    tracer.script(script)
    return tracer.needed


def test_import_tracer_follows_lazy_imports_through_calls(tmp_path):
    """The tracer itself: the embedding script needs keras (imported inside
    morphtools.embedding.embed_shard), the merge script does not."""
    scripts = ROOT / "workflow" / "scripts"
    assert "keras" in third_party_needs(scripts / "embed_shard.py")
    merge = tmp_path / "merge_only.py"
    merge.write_text("from morphtools.embedding import merge_embeddings\nmerge_embeddings([], 'x')\n")
    needs = third_party_needs(merge)
    assert "keras" not in needs and "h5py" in needs  # h5py: morphtools.embedding's top level


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions_of(module: str) -> list[str]:
    return [normalise(d) for d in _module_distributions().get(module, [])]


def rule_scripts(rule) -> list[Path]:
    """The Python scripts a rule runs: its script:, or workflow scripts its shell: names."""
    if rule.kind == "script":
        return [rule.script] if rule.script.suffix == ".py" else []
    if rule.kind == "shell":
        found = re.findall(r"(?:\.\./)?scripts/([\w\-]+\.py)", rule.source)
        return [ROOT / "workflow" / "scripts" / name for name in found]
    return []


def test_each_rules_imports_are_satisfied_by_its_env():
    pypi_to_conda = {normalise(p): c for c, ps in CONDA_TO_PYPI.items() for p in ps}
    problems, checked = [], 0
    for rule in job_rules():
        if rule.conda_env is None or not Path(rule.conda_env).is_file():
            continue  # reported by the test above
        env = env_dependencies(Path(rule.conda_env))
        for script in rule_scripts(rule):
            checked += 1
            for module, where in sorted(third_party_needs(script).items()):
                if module in OPTIONAL_IMPORTS:
                    continue
                dists = _distributions_of(module)
                if not dists:
                    problems.append(f"{rule.name} ({script.name}): imports {module} (in {sorted(where)}), "
                                    f"which no installed requirement provides")
                    continue
                conda_names = {pypi_to_conda.get(d, d) for d in dists}
                if not conda_names & set(env):
                    problems.append(f"{rule.name} ({script.name}): imports {module} (in {sorted(where)}); "
                                    f"{Path(rule.conda_env).name} lacks {sorted(conda_names)}")
    assert checked, "no rule scripts found to check"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(OPTIONAL_IMPORTS))
def test_optional_imports_are_only_keras_backends(name):
    """The exemptions stay honest: jax and torch appear only in morphtools.model's
    backend-specific branches."""
    users = [p.relative_to(ROOT) for p in SRC.rglob("*.py")
             if re.search(rf"^\s*(import|from)\s+{name}\b", p.read_text(), re.M)]
    assert all(p.name == "model.py" for p in users), users


@pytest.mark.parametrize("script", sorted((ROOT / "workflow/scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_import_the_package_of_their_own_checkout(script):
    """Snakemake gives a script its directory as ``<workflow>/rules/../scripts``; the
    script must put ``<checkout>/src`` first on the path before importing morphtools, so
    that a second checkout (a test's copy, a user's fork) runs its own code, not that of
    the checkout the virtual environment was installed from."""
    from types import SimpleNamespace

    tree = ast.parse(script.read_text())
    inserts = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and ast.unparse(node.func) == "sys.path.insert"]
    assert len(inserts) == 1, f"{script.name}: expected one sys.path.insert"
    snakemake = SimpleNamespace(scriptdir=str(ROOT / "workflow" / "rules" / ".." / "scripts"))
    added = eval(compile(ast.Expression(inserts[0].args[1]), str(script), "eval"), {"Path": Path, "str": str,
                                                                                   "snakemake": snakemake})
    assert Path(added) == ROOT.resolve() / "src", f"{script.name} puts {added} on the path"
    first_import = min(node.lineno for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("morphtools"))
    assert inserts[0].lineno < first_import
