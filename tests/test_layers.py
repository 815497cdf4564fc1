"""The import rules that keep the layers pointing one way (read from the source, not by importing):

* ``envs`` (games) imports nothing of the project but itself;
* ``selfplay.core`` (the shared base: sample types, config schema, metric names, precision,
  weight wire format) imports only ``envs`` and itself;
* ``actors`` (rollout side) and ``learners`` (learning side) import the base, ``envs`` and
  themselves, never each other and never the application;
* inside the application (the rest of ``selfplay``): ``league`` (pool, curriculum) imports only the
  base; ``stats`` the base and ``placement`` (the run directory's layout); ``placement`` the
  config loader, the model cache and the layers below; ``loop`` everything but ``commands``;
  ``commands`` and ``cluster`` everything.

Every import counts: lazy ones inside functions, relative ones, and modules named in strings
(entry points such as ``"envs.tictactoe:PerfectTicTacToeOpponent"``, vLLM's worker extension
``"actors.weight_receiver.WeightSyncExtension"``, ``importlib.import_module(...)``,
``resources.files(...)``). Each must also name a module that exists.

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
APP_GROUPS = ("loop", "placement", "stats", "commands", "league")


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "selfplay":
        return parts[0]
    if len(parts) > 1 and (parts[1] == "core" or parts[1] in APP_GROUPS):
        return parts[1]
    return "app"  # the application's top: the package, the config loader, the model cache


BELOW_APP = {"core", "envs", "actors", "learners"}
ALLOWED = {
    "envs": {"envs"},
    "core": {"core", "envs"},
    "actors": {"actors", "core", "envs"},
    "learners": {"learners", "core", "envs"},
    "league": {"league", "core", "envs"},
    "stats": {"stats", "placement", "core", "envs"},
    "placement": {"placement", "app"} | BELOW_APP,
    "app": {"app", "placement", "commands"} | BELOW_APP,  # __main__ runs the CLI
    "loop": {"loop", "placement", "stats", "league", "app"} | BELOW_APP,
    "commands": set(APP_GROUPS) | {"app"} | BELOW_APP,
    "cluster": set(APP_GROUPS) | {"app", "cluster"} | BELOW_APP,
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out.append((module, path))
    return out


#: A module named in a string: ``pkg.module:Class`` or ``pkg.module.Class``.
_NAMED_IN_STRING = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.[a-z_][a-z0-9_]*)+)(?::|\.)[A-Z]\w*$")
_LOADERS = {"import_module", "files"}  # importlib.import_module(name), importlib.resources.files(name)


def _package_of(module: str, path: Path) -> list[str]:
    parts = module.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


def project_imports(path: Path, module: str = "") -> set[str]:
    """Every project module a file imports, at any depth (lazy imports inside functions too),
    relative imports resolved against ``module``, and modules named in strings."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, path)
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            found.add(base)  # and each name that is a module itself (``from selfplay import cli``)
            found.update(f"{base}.{a.name}" for a in node.names if _exists(f"{base}.{a.name}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _NAMED_IN_STRING.match(node.value)
            if m:
                found.add(m.group(1))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in _LOADERS
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return {m for m in found if m.split(".")[0] in PACKAGES and m != "selfplay"}


def _exists(module: str) -> bool:
    """Whether ``module`` is a module or package of the project."""
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@pytest.mark.parametrize("module, path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_down_the_layers_and_name_real_modules(module, path):
    imports = project_imports(path, module)
    allowed = ALLOWED[_layer(module)]
    wrong = sorted(m for m in imports if _layer(m) not in allowed)
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong}; allowed layers: {sorted(allowed)}"
    missing = sorted(m for m in imports if not _exists(m))
    assert not missing, f"{module} imports modules that do not exist: {missing}"


def test_the_rule_sees_lazy_relative_and_string_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\nfrom importlib import resources\n"
                     "def f():\n    from selfplay.loop.driver import train\n    import learners.learner\n"
                     "    from . import episodes\n    from ..learners import loss\n"
                     "    return ('actors.weight_receiver.WeightSyncExtension', 'envs.tictactoe:Perfect',\n"
                     "            importlib.import_module('envs.sat'), resources.files('learners'),\n"
                     "            'selfplay.train')\n")
    found = project_imports(probe, "actors.probe")
    assert found >= {"selfplay.loop.driver", "learners.learner", "actors.episodes", "learners.loss",
                     "actors.weight_receiver", "envs.tictactoe", "envs.sat", "learners"}
    assert "selfplay.train" not in found  # a logger's name, not a module


def test_an_import_up_the_layers_or_of_a_missing_module_fails(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from selfplay.loop.driver import train\nimport envs.no_such_module\n")
    imports = project_imports(probe, "actors.probe")
    assert sorted(m for m in imports if _layer(m) not in ALLOWED["actors"]) == ["selfplay.loop.driver"]
    assert [m for m in imports if not _exists(m)] == ["envs.no_such_module"]
    assert _layer("selfplay.commands.cli") not in ALLOWED["loop"]  # the loop never calls a command


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
