"""The import rules that keep the layers pointing one way (read from the source, not by importing):

* ``envs`` (games) imports nothing of the project but itself;
* ``selfplay.core`` (the shared base: sample types, config schema, metric names, precision,
  weight wire format) imports only ``envs`` and itself;
* ``actors`` (rollout side) and ``learners`` (learning side) import the base, ``envs`` and
  themselves, never each other and never the application;
* the application (the rest of ``selfplay``) and ``cluster`` may import everything.

Two ownership rules on top: the rollout side knows environments only by their contract
(``envs.base``: no concrete environment imported or tested with ``isinstance``), and metric names
are built only by ``selfplay.core.metric_names`` (no literal that starts like one elsewhere).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "actors", "learners", "selfplay", "cluster")


def _layer(module: str) -> str:
    if module.startswith("selfplay.core"):
        return "core"
    return module.split(".")[0]


ALLOWED = {
    "envs": {"envs"},
    "core": {"core", "envs"},
    "actors": {"actors", "core", "envs"},
    "learners": {"learners", "core", "envs"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out.append((module, path))
    return out


def project_imports(path: Path) -> set[str]:
    """Every project module a file imports, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES and m != "selfplay"}


@pytest.mark.parametrize("module, path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down_the_layers(module, path):
    allowed = ALLOWED.get(_layer(module))
    if allowed is None:  # the application and cluster scripts may import everything
        return
    wrong = sorted(m for m in project_imports(path) if _layer(m) not in allowed)
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong}; allowed layers: {sorted(allowed)}"


def test_the_rule_sees_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from selfplay.driver import train\n    import learners.learner\n")
    assert project_imports(probe) >= {"selfplay.driver", "learners.learner"}


#: What the rollout side may know of the environments: the package (ids), the contract and the
#: fixed opponents. A runner that imported a concrete environment would branch on it.
RUNNER_MAY_IMPORT = {"envs", "envs.base", "envs.opponents"}
CONTRACT_CLASSES = {"TextEpisodeEnv", "TurnBasedTextEnv"}


def concrete_env_uses(path: Path) -> list[str]:
    """Concrete environments a rollout-side file names: imports of env modules beyond the
    contract, and ``isinstance`` checks against an ``...Env`` class other than the contract's."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "envs":
            if node.module not in RUNNER_MAY_IMPORT:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "envs" and a.name not in RUNNER_MAY_IMPORT]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            for c in classes:
                name = c.id if isinstance(c, ast.Name) else c.attr if isinstance(c, ast.Attribute) else ""
                if name.endswith("Env") and name not in CONTRACT_CLASSES:
                    found.append(f"isinstance(..., {name})")
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "actors").glob("*.py")), ids=lambda p: p.name)
def test_the_rollout_side_knows_environments_only_by_their_contract(path):
    assert not concrete_env_uses(path), f"{path.name}: {concrete_env_uses(path)}"


def test_the_contract_rule_catches_a_runner_that_branches_on_a_concrete_env(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from envs.leap_env import LeaPEnv\nimport envs.sat_env\n"
                     "def run(env):\n    if isinstance(env, LeaPEnv):\n        pass\n"
                     "    return isinstance(env, (envs.sat_env.SatEnv, int))\n")
    assert concrete_env_uses(probe) == ["from envs.leap_env import ...", "import envs.sat_env",
                                        "isinstance(..., LeaPEnv)", "isinstance(..., SatEnv)"]


#: The first segments of metric names (``selfplay.core.metric_names``).
METRIC_PREFIXES = ("learner", "perf", "sync", "game", "eval", "kuhn", "leap", "pool", "curriculum",
                   "cluster", "bench", "progress", "episodes")
_METRIC_LITERAL = re.compile(rf"^({'|'.join(METRIC_PREFIXES)})/([a-z_]|$)")
NAMES_MODULE = ROOT / "selfplay" / "core" / "metric_names.py"


def metric_literals(path: Path) -> list[str]:
    """String literals (f-strings' literal parts included) that start like a metric name."""
    return [node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and _METRIC_LITERAL.match(node.value)]


@pytest.mark.parametrize("module, path", [(m, p) for m, p in _modules() if p != NAMES_MODULE],
                         ids=[m for m, p in _modules() if p != NAMES_MODULE])
def test_metric_names_are_built_only_by_the_names_module(module, path):
    assert not metric_literals(path), f"{module} spells metric names itself: {metric_literals(path)}"


def test_the_metric_rule_catches_literals_and_f_strings(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('a = {"sync/mb": 1}\nb = f"leap/{k}"\nc = "cluster/README.md"\nd = "game"\n')
    assert metric_literals(probe) == ["sync/mb", "leap/"]
