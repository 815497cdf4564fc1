"""The import rules that keep the layers pointing one way (read from the source, not by importing):

* ``envs`` (games) imports nothing of the project but itself;
* ``selfplay.core`` (the shared base: sample types, config schema, metric names, precision,
  weight publishing, model cache) imports only ``envs`` and itself;
* ``actors`` (rollout side) and ``learners`` (learning side) import the base, ``envs`` and
  themselves, never each other and never the application;
* the application (the rest of ``selfplay``) and ``cluster`` may import everything.
"""

from __future__ import annotations

import ast
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
