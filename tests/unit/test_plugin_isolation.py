"""Issue 16, part 3: one broken third-party plugin never stops kantk.

Every failure of an entry-point plugin is logged on ``kantk.plugins``, recorded in
``registry.failed_plugins`` (which ``kantk plugins`` prints) and skipped; built-ins win name
clashes; ``KAN()``, ``load`` and the command line keep working.
"""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest
import torch

import kantk
from kantk import plugins
from kantk.bases import Basis
from kantk.plugins import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, FailedPlugin, create_plugin_manager


class _OneBasis(Basis):
    """One function, the constant 1."""

    @property
    def num_functions(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x).unsqueeze(-1)

    def config(self) -> dict:
        return {}


class _Healthy:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("healthy", _OneBasis)


class _RaisingBases:
    """Its pruner hook is fine, its basis hook raises: the whole plugin goes."""

    @staticmethod
    @kantk.hookimpl
    def kantk_pruners():
        yield kantk.PrunerSpec("raising_pruner", dict)

    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        raise ZeroDivisionError("boom in the hook")


class _ExitingHook:
    @staticmethod
    @kantk.hookimpl
    def kantk_regularisers():
        sys.exit(3)


class _NonRecord:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield {"name": "dict_basis", "factory": _OneBasis}


class _SingleRecord:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        return kantk.BasisSpec("single", _OneBasis)  # not an iterable of records


class _WrongRecordType:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.PrunerSpec("pruner_as_basis", dict)


class _UncallableFactory:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("uncallable", 42)


class _Endless:
    @staticmethod
    @kantk.hookimpl
    def kantk_pruners():
        i = 0
        while True:
            i += 1
            yield kantk.PrunerSpec(f"p{i}", dict)


class _WrongSignature:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases(model):
        yield kantk.BasisSpec("never", _OneBasis)


class _Wrapper:
    @staticmethod
    @kantk.hookimpl(wrapper=True)
    def kantk_bases():
        return (yield)


class _ShadowsBuiltins:
    """Clashes with the built-in bspline and threshold, and adds one new basis."""

    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("bspline", _OneBasis, "an impostor")
        yield kantk.BasisSpec("own_basis", _OneBasis)

    @staticmethod
    @kantk.hookimpl
    def kantk_pruners():
        yield kantk.PrunerSpec("threshold", dict)


class _SharedA:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("shared", _OneBasis, "from A")


class _SharedB:
    @staticmethod
    @kantk.hookimpl(tryfirst=True)  # hook ordering must not decide who wins
    def kantk_bases():
        yield kantk.BasisSpec("shared", _OneBasis, "from B")


class _FakeEntryPoint:
    def __init__(
        self, name: str, package: str | None, plugin: object = None, error: BaseException | None = None
    ):
        self.name = name
        self.dist = None if package is None else SimpleNamespace(name=package)
        self._plugin = plugin
        self._error = error

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._plugin


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    kantk.reset_default_registry()
    yield
    kantk.reset_default_registry()


def _install(monkeypatch: pytest.MonkeyPatch, *eps: _FakeEntryPoint) -> None:
    monkeypatch.setattr(
        plugins, "entry_points", lambda *, group: list(eps) if group == ENTRY_POINT_GROUP else []
    )


def _builtin_names() -> dict[str, list[str]]:
    reg = kantk.Registry.with_plugins()
    return {k: getattr(reg, k).names() for k in ("bases", "regularisers", "pruners", "symbolic_libraries")}


def _only_failure(registry: kantk.Registry, name: str, package: str) -> FailedPlugin:
    matching = [f for f in registry.failed_plugins if f.name == name]
    assert len(matching) == 1, registry.failed_plugins
    assert matching[0].package == package
    return matching[0]


@pytest.mark.parametrize(
    ("plugin", "fragment"),
    [
        (_RaisingBases, "kantk_bases() failed: ZeroDivisionError: boom in the hook"),
        (_ExitingHook, "kantk_regularisers() failed: SystemExit: 3"),
        (_NonRecord, "without a name"),
        (_SingleRecord, "TypeError"),
        (_WrongRecordType, "not a kantk.BasisSpec"),
        (_UncallableFactory, "factory that is not callable"),
        (_Endless, "more than 10000 records"),
        (_WrongSignature, "malformed hook"),
        (_Wrapper, "takes no wrapper"),
    ],
)
def test_a_broken_hook_skips_that_plugin_only(monkeypatch, caplog, plugin, fragment):
    _install(
        monkeypatch,
        _FakeEntryPoint("broken", "kantk-broken", plugin),
        _FakeEntryPoint("healthy", "kantk-healthy", _Healthy),
    )
    with caplog.at_level(logging.WARNING, logger="kantk.plugins"):
        registry = kantk.Registry()
    failure = _only_failure(registry, "broken", "kantk-broken")
    assert fragment in failure.error
    assert registry.plugin_manager.get_plugin("broken") is None  # nothing of it stays
    expected = _builtin_names()
    expected["bases"] = sorted(expected["bases"] + ["healthy"])
    assert {k: getattr(registry, k).names() for k in expected} == expected
    assert registry.bases.owner("healthy") == "healthy"
    warnings = [r.getMessage() for r in caplog.records if r.name == "kantk.plugins"]
    assert len(warnings) == 1 and "'broken'" in warnings[0] and "'kantk-broken'" in warnings[0]


class _LooksUpInAHook:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        if "polite" not in kantk.list_bases():  # a "polite" clash check, run while kantk loads plugins
            yield kantk.BasisSpec("polite", _OneBasis)


class _LooksUpOnImport:
    """Stands for a module that calls kantk.KAN(...) at import: its entry point's load() does."""


def _import_that_builds_a_model() -> object:
    kantk.KAN([2, 1])
    return _LooksUpOnImport


@pytest.mark.parametrize("where", ["hook", "import"])
def test_a_plugin_that_looks_names_up_while_loading_is_skipped_not_a_hang(monkeypatch, where):
    """kantk.list_bases() in a hook (or kantk.KAN at import) re-entered the default registry while
    it was being built, on a plain lock: every kantk process hung. Now that plugin fails, with the
    reason, and the others load."""
    looker = _FakeEntryPoint("looker", "kantk-looker", _LooksUpInAHook)
    if where == "import":
        looker.load = _import_that_builds_a_model  # type: ignore[method-assign]
    _install(monkeypatch, looker, _FakeEntryPoint("healthy", "kantk-healthy", _Healthy))
    names = kantk.list_bases()  # builds the default registry
    assert "healthy" in names and "polite" not in names
    failure = _only_failure(kantk.registry.default_registry(), "looker", "kantk-looker")
    assert "while kantk was loading the plugins" in failure.error


def test_system_exit_on_import_is_isolated(monkeypatch):
    _install(
        monkeypatch,
        _FakeEntryPoint("exits", "kantk-exits", error=SystemExit("bye")),
        _FakeEntryPoint("healthy", "kantk-healthy", _Healthy),
    )
    registry = kantk.Registry()
    assert _only_failure(registry, "exits", "kantk-exits").error == "SystemExit: bye"
    assert "healthy" in registry.bases


def test_keyboard_interrupt_on_import_propagates(monkeypatch):
    _install(monkeypatch, _FakeEntryPoint("interrupted", "kantk-int", error=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        create_plugin_manager()


def test_keyboard_interrupt_in_a_hook_propagates(monkeypatch):
    class Interrupted:
        @staticmethod
        @kantk.hookimpl
        def kantk_bases():
            raise KeyboardInterrupt

    _install(monkeypatch, _FakeEntryPoint("interrupted", "kantk-int", Interrupted))
    with pytest.raises(KeyboardInterrupt):
        kantk.Registry()


def test_an_unprintable_long_error_is_one_bounded_line(monkeypatch):
    _install(monkeypatch, _FakeEntryPoint("noisy", "kantk-noisy", error=RuntimeError("x\n" * 5000)))
    (failure,) = kantk.Registry().failed_plugins
    assert "\n" not in failure.error and len(failure.error) < 600


def test_builtins_win_name_clashes_and_the_rest_of_the_plugin_stays(monkeypatch, caplog):
    _install(monkeypatch, _FakeEntryPoint("shadow", "kantk-shadow", _ShadowsBuiltins))
    with caplog.at_level(logging.WARNING, logger="kantk.plugins"):
        registry = kantk.Registry()
    assert registry.bases.owner("bspline") == "kantk.bases.bspline"
    assert registry.bases.get("bspline").description != "an impostor"
    assert registry.pruners.owner("threshold") == "kantk.pruners.threshold"
    assert registry.bases.owner("own_basis") == "shadow"  # its other record is kept
    errors = sorted(f.error for f in registry.failed_plugins)
    assert [f.name for f in registry.failed_plugins] == ["shadow", "shadow"]
    assert "basis 'bspline' clashes with the built-in 'kantk.bases.bspline'" in errors[0]
    assert "pruner 'threshold' clashes with the built-in 'kantk.pruners.threshold'" in errors[1]
    assert len([r for r in caplog.records if r.name == "kantk.plugins"]) == 2


@pytest.mark.parametrize("listed", [("a", "b"), ("b", "a")])
def test_between_two_third_party_plugins_the_first_by_entry_point_name_wins(monkeypatch, listed):
    eps = {
        "a": _FakeEntryPoint("a-shared", "kantk-a", _SharedA),
        "b": _FakeEntryPoint("b-shared", "kantk-b", _SharedB),
    }
    _install(monkeypatch, *(eps[k] for k in listed))
    registry = kantk.Registry()
    assert registry.bases.owner("shared") == "a-shared"
    assert registry.bases.get("shared").description == "from A"
    (failure,) = registry.failed_plugins
    assert (failure.name, failure.package) == ("b-shared", "kantk-b")
    assert "clashes with the plugin 'a-shared'" in failure.error


def test_explicit_plugin_beats_a_third_party_one(monkeypatch):
    _install(monkeypatch, _FakeEntryPoint("b-shared", "kantk-b", _SharedB))
    pm, failed = create_plugin_manager(extra_plugins=[_SharedA])
    registry = kantk.Registry(pm, failed)
    assert registry.bases.get("shared").description == "from A"
    assert [f.name for f in registry.failed_plugins] == ["b-shared"]


def test_one_module_under_two_entry_point_names_is_registered_once(monkeypatch):
    _install(
        monkeypatch,
        _FakeEntryPoint("first", "kantk-x", _Healthy),
        _FakeEntryPoint("second", "kantk-y", _Healthy),
    )
    registry = kantk.Registry()
    assert registry.bases.owner("healthy") == "first"
    failure = _only_failure(registry, "second", "kantk-y")
    assert failure.error.startswith("cannot register")


def test_explicit_plugins_still_fail_loudly():
    with pytest.raises(kantk.PluginError, match=r"failed in kantk_bases\(\).*ZeroDivisionError"):
        kantk.Registry.with_plugins(_RaisingBases)
    with pytest.raises(kantk.PluginError, match="not a kantk.BasisSpec"):
        kantk.Registry.with_plugins(_WrongRecordType)


def test_model_load_and_cli_work_next_to_broken_plugins(monkeypatch, tmp_path, capsys):
    _install(
        monkeypatch,
        _FakeEntryPoint("crashes", "kantk-crashes", error=SystemExit(1)),
        _FakeEntryPoint("raises", "kantk-raises", _RaisingBases),
        _FakeEntryPoint("shadow", "kantk-shadow", _ShadowsBuiltins),
        _FakeEntryPoint("healthy", "kantk-healthy", _Healthy),
    )
    model = kantk.KAN([2, 3, 1], seed=0)  # default registry, built with the broken plugins
    assert type(model.layers[0].basis).__name__ == "BSplineBasis"  # not the impostor
    path = tmp_path / "m.kantk"
    kantk.save(model, path)
    loaded = kantk.load(path)
    assert loaded.config() == model.config()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert kantk.KAN([2, 1], basis="healthy").widths == [2, 1]

    from kantk.cli import main

    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "healthy (healthy)" in captured.out and "own_basis (shadow)" in captured.out
    assert "raising_pruner" not in captured.out
    for name, package in (("crashes", "kantk-crashes"), ("raises", "kantk-raises")):
        assert f"failed to load: {name} from {package}:" in captured.err
    # its other records are in use: only the clashing one was dropped (it said "failed to load")
    assert "loaded without a record: shadow from kantk-shadow: its basis 'bspline' clashes" in captured.err


def test_an_error_raised_by_a_plugins_regulariser_or_pruner_names_the_plugin():
    """A third-party regulariser or pruner that raised when called came out raw (RuntimeError:
    reg boom), and the command line called it an internal error of kantk's; built-ins' own errors
    stay as they are."""
    from kantk.plugins import PluginCallError, plugin_call

    class Boom:
        needs_data = False

        def __call__(self, *args, **kwargs):
            raise RuntimeError("boom")

    class BadFactory:
        def __init__(self):
            raise KeyError("factory")

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_regularisers():
            yield kantk.RegulariserSpec("boom_reg", Boom)
            yield kantk.RegulariserSpec("bad_factory_reg", BadFactory)

        @staticmethod
        @kantk.hookimpl
        def kantk_pruners():
            yield kantk.PrunerSpec("boom_pruner", Boom)

    registry = kantk.Registry.with_plugins(Plugin)
    owner = registry.regularisers.owner("boom_reg")
    model = kantk.KAN([2, 2, 1], seed=0, registry=registry)
    x = torch.rand(16, 2, generator=torch.Generator().manual_seed(0))
    data = {"train_input": x, "train_label": x.sum(1, keepdim=True)}
    with pytest.raises(
        PluginCallError, match=f"regulariser 'boom_reg' of plugin '{owner}' raised RuntimeError: boom"
    ):
        kantk.fit(model, data, steps=1, regularisers={"boom_reg": 1e-3}, registry=registry, progress=False)
    with pytest.raises(
        PluginCallError, match="regulariser 'bad_factory_reg' .* raised KeyError: 'factory'"
    ) as info:
        kantk.fit(
            model, data, steps=1, regularisers={"bad_factory_reg": 1e-3}, registry=registry, progress=False
        )
    assert isinstance(info.value.__cause__, KeyError) and isinstance(info.value, kantk.PluginError)
    with pytest.raises(PluginCallError, match="pruner 'boom_pruner' .* raised RuntimeError: boom"):
        kantk.prune(model, pruner="boom_pruner", registry=registry)
    with (
        pytest.raises(ValueError, match="boom"),
        plugin_call("pruner", "threshold", "kantk.pruners.threshold"),
    ):
        raise ValueError("boom")  # a built-in's error is its own
    # a plugin's ValueError is still a ValueError (the documented type), now naming the plugin
    with pytest.raises(ValueError, match="pruner 'mine' of plugin 'p' raised ValueError: bad k") as info:
        with plugin_call("pruner", "mine", "p"):
            raise ValueError("bad k")
    assert isinstance(info.value, PluginCallError)
    with pytest.raises(MemoryError), plugin_call("pruner", "mine", "p"):
        raise MemoryError  # the out-of-memory hint needs it as it is


@pytest.mark.parametrize("name", ["--help", "p=1", "odd\nline", "lib/slash", "a b", "x" * 65, "1st"])
def test_a_record_name_that_is_not_a_registry_name_is_refused(name):
    """ "--help" could not be typed on the command line, "p=1" read as an option, a line break split
    `kantk plugins`' listing: names were only "lowercase by convention"."""

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_pruners():
            yield kantk.PrunerSpec(name, lambda: None)

    with pytest.raises(kantk.PluginError, match="is not a registry name"):
        kantk.Registry.with_plugins(Plugin)


@pytest.mark.parametrize("name", ["my fn\n(evil)", "a b", "\x1b[31m", "y" * 65])
def test_a_symbolic_function_name_must_be_one_printable_word(name):
    from kantk.symbolic import SymbolicFunction

    with pytest.raises(ValueError, match="names are printable, without spaces"):
        SymbolicFunction(name, torch.sin, lambda z: z, 1)
    assert SymbolicFunction("1/sqrt(x)", torch.sin, lambda z: z, 1).name == "1/sqrt(x)"
