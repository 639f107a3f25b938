"""The import rules of docs/architecture.md, read from the source (no import runs).

Importing the modules cannot check them: Lightning itself loads sympy and matplotlib, so a process
that has imported ``kantk.lightning`` has both whatever kantk's own modules do.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import kantk

ROOT = Path(kantk.__file__).parent
#: Layers 6 (training) and 7 (the faces) of docs/architecture.md: the others import no Lightning.
TRAINING_AND_FACES = {"lightning", "training.py", "pipeline.py", "polynomial.py"}
FACES = {"__init__.py", "__main__.py", "cli.py", "cli_models.py"}
#: Loaded on first use, below layer 7 (docs/architecture.md, "Rules that keep the house in order").
HEAVY = ("sympy", "networkx", "graphviz", "matplotlib")
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def _imported(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def _module_level(body: list[ast.stmt]) -> Iterator[tuple[str, int]]:
    """Imports run when the module is imported (inside ``if``/``try`` too; not ``TYPE_CHECKING``)."""
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield from ((name, node.lineno) for name in _imported(node))
        if isinstance(node, (ast.If, ast.Try)):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    yield from _module_level(handler.body)
                yield from _module_level(node.finalbody)


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_rules_see_every_module():
    names = {str(path.relative_to(ROOT)) for path in _modules()}
    assert {"plotting.py", "export.py", "symbolic/formula.py", "lightning/module.py", "cli.py"} <= names


def test_no_module_below_the_faces_imports_a_heavy_package_at_module_level():
    """plotting.py imported matplotlib at module level, against the rule the page states."""
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _modules()
        if path.relative_to(ROOT).parts[0] not in FACES
        for name, line in _module_level(ast.parse(path.read_text()).body)
        if _top(name) in HEAVY
    ]
    assert not found, found


def test_nothing_below_the_training_layer_imports_lightning():
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
        for path in _modules()
        if path.relative_to(ROOT).parts[0] not in TRAINING_AND_FACES | FACES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.stmt)
        for name in _imported(node)
        if _top(name) in LIGHTNING
    ]
    assert not found, found


def test_every_module_is_an_attribute_of_the_package_after_import_kantk():
    """docs/export.md's ``kantk.export.export_graph(...)`` after a plain ``import kantk`` raised
    AttributeError, unless something had imported kantk.export first."""
    import subprocess
    import sys

    code = (
        "import kantk\n"
        "assert callable(kantk.export.export_graph) and callable(kantk.plotting.default_figsize)\n"
        "assert kantk.io.MAX_NODES > 0 and callable(kantk.attribution)  # a public name stays the name\n"
        "assert not hasattr(kantk, 'no_such_module') and not hasattr(kantk, '_private')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
