"""The docs stay true: every hook is documented, and the code on the pages runs."""

from __future__ import annotations

import contextlib
import inspect
import io
import pickle
import re
import sys
import types
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import kantk
from kantk import hookspecs
from kantk import types as kantk_types

DOCS = Path(__file__).resolve().parent.parent / "docs"


class CodeBlock(NamedTuple):
    lang: str
    code: str
    line: int  # line of the opening fence, for error messages

    @property
    def path(self) -> str | None:
        """The file a block stands for, when its first line is a ``# some/path.py`` comment."""
        match = re.fullmatch(r"#\s*(\S+\.py)\s*", self.code.splitlines()[0]) if self.code else None
        return match.group(1) if match else None


def code_blocks(page: str, lang: str) -> list[CodeBlock]:
    """The fenced ```lang blocks of ``docs/<page>``, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.MULTILINE | re.DOTALL):
        if match.group(1) == lang:
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(CodeBlock(lang, match.group(2), line))
    return blocks


def run_block(block: CodeBlock, namespace: dict[str, Any], page: str) -> None:
    code = compile(block.code, f"docs/{page}, block at line {block.line}", "exec")
    with contextlib.redirect_stdout(io.StringIO()):  # documentation may print; tests do not
        exec(code, namespace)  # noqa: S102 - running the docs is the point


def module_from_block(name: str, block: CodeBlock, page: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = f"docs/{page}:{block.line}"
    run_block(block, module.__dict__, page)
    return module


def declared_hooks() -> dict[str, Any]:
    """Every function of kantk.hookspecs carrying pluggy's hookspec marker (``kantk_spec``)."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: obj for name, obj in vars(hookspecs).items() if inspect.isfunction(obj) and hasattr(obj, marker)
    }


def hooks_md_section(hook: str) -> str:
    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    heading = rf"^## `{re.escape(hook)}`[ \t]*$"
    match = re.search(heading + r"(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"docs/hooks.md has no '## `{hook}`' section for the hook declared in kantk/hookspecs.py"
    return match.group(1)


# --- hooks reference ---------------------------------------------------------------------------


def test_hookspec_introspection_finds_the_known_hooks():
    # Guards the test below against passing vacuously if the marker attribute ever changes.
    assert {"kantk_bases", "kantk_regularisers", "kantk_pruners", "kantk_symbolic_libraries"} <= set(
        declared_hooks()
    )


@pytest.mark.parametrize("hook", sorted(declared_hooks()))
def test_every_hook_is_documented_in_hooks_md(hook):
    section = hooks_md_section(hook)
    fn = declared_hooks()[hook]
    params = ", ".join(inspect.signature(fn).parameters)
    returns = fn.__annotations__.get("return", "None")
    signature = f"def {hook}({params}) -> {returns}"
    assert signature in section, f"docs/hooks.md: the {hook} section should show `{signature}`"

    record_type = re.search(r"\[(\w+)\]", str(returns))
    if record_type:  # a collection hook: its record's fields must be documented
        record = getattr(kantk_types, record_type.group(1))
        for field in fields(record):
            missing = f"docs/hooks.md: {hook} does not document {record.__name__}.{field.name}"
            assert f"`{field.name}`" in section, missing
    assert "```python" in section, f"docs/hooks.md: the {hook} section has no example"


def test_every_hooks_md_example_is_a_working_plugin(monkeypatch):
    blocks = code_blocks("hooks.md", "python")
    assert len(blocks) >= len(declared_hooks())
    builtins_only = kantk.Registry.with_plugins()
    x = torch.rand(16, 2) * 2 - 1
    for i, block in enumerate(blocks):
        plugin = module_from_block(f"kantk_hooks_example_{i}", block, "hooks.md")
        registry = kantk.Registry.with_plugins(plugin)
        added = {
            kind: sorted(set(getattr(registry, kind).names()) - set(getattr(builtins_only, kind).names()))
            for kind in ("bases", "regularisers", "pruners", "symbolic_libraries", "node_operations")
        }
        assert any(added.values()), f"docs/hooks.md block at line {block.line} registers nothing"
        model = kantk.KAN([2, 3, 1], seed=0, registry=registry)
        for name in added["bases"]:
            model = kantk.KAN([2, 3, 1], basis=name, seed=0, registry=registry)
            y = model(torch.tensor([[0.5, -1e30], [3.0, 1e4]]))
            assert y.shape == (2, 1) and torch.isfinite(y).all()
        for name in added["regularisers"]:
            penalty = registry.regularisers.get(name).factory()(model, x)
            assert penalty.dim() == 0
            penalty.backward()
        for name in added["pruners"]:
            masks = registry.pruners.get(name).factory()(model, x)
            assert [tuple(m.shape) for m in masks] == [tuple(layer.mask.shape) for layer in model.layers]
        for name in added["symbolic_libraries"]:
            records = list(registry.symbolic_libraries.get(name).functions())
            assert records
            # as the contract test asks (tests/contract/test_symbolic_libraries_contract.py): records
            # pickle, so torch.save(model) works; the example's closures did not
            with monkeypatch.context() as patch:
                patch.setitem(sys.modules, plugin.__name__, plugin)
                for record in records:
                    assert pickle.loads(pickle.dumps(record)).name == record.name
        for name in added["node_operations"]:
            model = kantk.KAN([2, {"sum": 1, name: 1}, 1], seed=0, registry=registry)
            y = model(x)
            assert y.shape == (16, 1) and torch.isfinite(y).all()


# --- quickstart --------------------------------------------------------------------------------


def test_quickstart_code_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page saves files under relative names
    blocks = code_blocks("quickstart.md", "python")
    assert len(blocks) >= 5
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    for block in blocks:  # one session, top to bottom, as a reader would run them
        run_block(block, namespace, "quickstart.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed.kantk", "model.kantk"]


def test_export_page_code_runs_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "export"}
    for block in code_blocks("export.md", "python"):
        run_block(block, namespace, "export.md")
    assert namespace["graph"].nodes[(0, 1)]["label"] == "b"
    assert namespace["source"].startswith("digraph")
    assert list(tmp_path.iterdir()) == []


# --- writing a basis plugin --------------------------------------------------------------------


class _FakeEntryPoint:
    def __init__(self, name: str, package: str, plugin: object):
        self.name, self.dist, self._plugin = name, types.SimpleNamespace(name=package), plugin

    def load(self) -> object:
        return self._plugin


def test_plugin_guide_example_package_works(tmp_path, monkeypatch):
    import tomllib

    page = "writing-a-basis-plugin.md"
    files = {b.path: b for b in code_blocks(page, "python") if b.path}
    assert {"kantk_hat/plugin.py", "kantk_hat/__init__.py", "tests/test_hat.py"} <= set(files)

    (pyproject_block,) = code_blocks(page, "toml")
    pyproject = tomllib.loads(pyproject_block.code)
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert "kantk" in pyproject["project"]["dependencies"]
    entry_points = pyproject["project"]["entry-points"]["kantk"]
    assert entry_points == {"hat": "kantk_hat.plugin"}

    # "Install" the package from the page: its modules, importable under their real names.
    package = types.ModuleType("kantk_hat")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, "kantk_hat", package)
    plugin = module_from_block("kantk_hat.plugin", files["kantk_hat/plugin.py"], page)
    package.plugin = plugin
    monkeypatch.setitem(sys.modules, "kantk_hat.plugin", plugin)
    run_block(files["kantk_hat/__init__.py"], package.__dict__, page)

    # The page's own test file, run the way pytest would run it.
    tests = module_from_block("test_hat", files["tests/test_hat.py"], page)
    test_functions = [fn for name, fn in vars(tests).items() if name.startswith("test_") and callable(fn)]
    assert len(test_functions) >= 4
    for fn in test_functions:
        params = list(inspect.signature(fn).parameters)
        assert set(params) <= {"tmp_path"}, f"{fn.__name__} uses fixtures this test does not provide"
        fn(*[tmp_path for _ in params])

    # The remaining snippets use the plugin as installed: found through its entry point.
    monkeypatch.delenv(kantk.plugins.DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.setattr(
        kantk.plugins, "entry_points", lambda group: [_FakeEntryPoint("hat", "kantk-hat", plugin)]
    )
    kantk.reset_default_registry()
    try:
        assert kantk.default_registry().bases.owner("hat") == "hat"
        namespace: dict[str, Any] = {"__name__": "guide"}
        for block in code_blocks(page, "python"):
            if not block.path:
                run_block(block, namespace, page)
    finally:
        kantk.reset_default_registry()


def test_every_command_has_a_docs_page():
    """docs/commands/<name>.md for every ``kantk`` subcommand (validate/test live on fit's page)."""
    from kantk.cli import COMMANDS, LIGHTNING_COMMANDS

    docs = Path(__file__).resolve().parents[1] / "docs"
    for name in [*COMMANDS, "fit"]:
        page = docs / "commands" / f"{name}.md"
        assert page.exists(), f"no docs page for 'kantk {name}': {page}"
        assert f"kantk {name}" in page.read_text()
        assert f"commands/{name}.md" in (docs / "cli.md").read_text()
    assert set(LIGHTNING_COMMANDS) == {"fit", "validate", "test"}
