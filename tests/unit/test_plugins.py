"""kantk.plugins: the plugin manager, built-ins, entry points and the autoload switch."""

from __future__ import annotations

import importlib
import logging
from types import SimpleNamespace

import pytest
import torch

import kantk
from kantk import plugins
from kantk.bases import Basis
from kantk.plugins import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, FailedPlugin, create_plugin_manager


class _ConstantBasis(Basis):
    """One function, the constant 1 (enough to build a layer)."""

    @property
    def num_functions(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x).unsqueeze(-1)  # (batch, in, 1)

    def config(self) -> dict:
        return {}


class _ConstantPlugin:
    """A plugin written as a class: pluggy calls its hooks as plain functions."""

    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("constant", _ConstantBasis, "the constant 1")


class _MisspeltHookPlugin:
    @staticmethod
    @kantk.hookimpl
    def kantk_base():  # should be kantk_bases
        yield kantk.BasisSpec("typo", _ConstantBasis)


class _WrongArgumentsPlugin:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases(model):  # the spec takes no arguments
        yield kantk.BasisSpec("never", _ConstantBasis)


class _FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint: a name, a distribution and load()."""

    def __init__(self, name: str, package: str | None, plugin: object = None, error: Exception | None = None):
        self.name = name
        self.dist = None if package is None else SimpleNamespace(name=package)
        self._plugin = plugin
        self._error = error

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._plugin


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: _FakeEntryPoint) -> list[str]:
    """Make kantk.plugins see exactly ``eps`` in its group; returns the groups it asked for."""
    asked: list[str] = []

    def entry_points(*, group: str):
        asked.append(group)
        return list(eps) if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    return asked


@pytest.fixture(autouse=True)
def _autoload_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Start every test from the documented default, whatever the calling shell exported.
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)


def _builtins_implementing(hook: str) -> list[str]:
    return [m for m in plugins.BUILTIN_PLUGINS if hasattr(importlib.import_module(m), hook)]


def test_builtins_are_registered_by_module_name_like_any_plugin():
    pm, failed = create_plugin_manager(load_entry_points=False)
    assert failed == []
    assert {"kantk.bases.bspline", "kantk.bases.chebyshev", "kantk.bases.rbf"} <= set(plugins.BUILTIN_PLUGINS)
    for module_name in plugins.BUILTIN_PLUGINS:
        plugin = pm.get_plugin(module_name)
        assert plugin is not None, module_name
        assert plugin is importlib.import_module(module_name)  # the module itself, not a wrapper
    impl_owners = [impl.plugin_name for impl in pm.hook.kantk_bases.get_hookimpls()]
    assert impl_owners == _builtins_implementing("kantk_bases")  # in the order they are listed


def test_builtins_follow_the_builtins_argument():
    pm, _ = create_plugin_manager(builtins=("kantk.bases.rbf",), load_entry_points=False)
    registry = kantk.Registry(pm)
    assert registry.bases.names() == ["rbf"]
    assert registry.bases.owner("rbf") == "kantk.bases.rbf"


def test_extra_plugin_is_registered_after_the_builtins():
    pm, _ = create_plugin_manager(load_entry_points=False, extra_plugins=[_ConstantPlugin])
    assert pm.is_registered(_ConstantPlugin)
    owners = [impl.plugin_name for impl in pm.hook.kantk_bases.get_hookimpls()]
    assert owners[:-1] == _builtins_implementing("kantk_bases")
    assert owners[-1] == pm.get_name(_ConstantPlugin)


def test_misspelt_hook_name_is_caught_by_check_pending():
    with pytest.raises(kantk.PluginError, match="kantk_base"):
        create_plugin_manager(load_entry_points=False, extra_plugins=[_MisspeltHookPlugin])


def test_hook_with_arguments_the_spec_lacks_is_malformed():
    with pytest.raises(kantk.PluginError, match="malformed"):
        create_plugin_manager(load_entry_points=False, extra_plugins=[_WrongArgumentsPlugin])


def test_same_plugin_twice_is_an_error():
    with pytest.raises(kantk.PluginError, match="cannot register") as info:
        create_plugin_manager(load_entry_points=False, extra_plugins=[_ConstantPlugin, _ConstantPlugin])
    assert "\n" not in str(info.value)  # pluggy's message went on to list every plugin


def test_plugin_instances_are_named_by_their_class():
    """pluggy named an instance by id(): "registered by plugin '139754575448272' and again by
    plugin '139754575448144'"."""

    class Instance:
        @kantk.hookimpl
        def kantk_regularisers(self):
            yield kantk.RegulariserSpec("instance_test", lambda: lambda model, x: torch.zeros(()))

    where = f"{__name__}.test_plugin_instances_are_named_by_their_class.<locals>.Instance instance"
    registry = kantk.Registry.with_plugins(Instance())
    names = [impl.plugin_name for impl in registry.plugin_manager.hook.kantk_regularisers.get_hookimpls()]
    assert names[-1] == where
    with pytest.raises(kantk.PluginError, match=rf"by plugin '{where}' and again by plugin '{where} 2'"):
        kantk.Registry.with_plugins(Instance(), Instance())


def test_an_installed_plugin_passed_explicitly_too_is_the_explicit_one(monkeypatch):
    """An author's pip install -e'd plugin, passed to with_plugins with entry points loaded:
    pluggy refused the second registration of the module."""
    _fake_entry_points(monkeypatch, _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin))
    pm, failed = create_plugin_manager(extra_plugins=[_ConstantPlugin])
    assert failed == [] and pm.is_registered(_ConstantPlugin)
    assert pm.get_plugin("constant-ep") is None and "constant-ep" not in pm.isolated_plugins


def test_plugin_error_is_a_runtime_error():
    assert issubclass(kantk.PluginError, RuntimeError)


def test_entry_point_plugin_is_loaded_under_its_entry_point_name(monkeypatch):
    asked = _fake_entry_points(monkeypatch, _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin))
    pm, failed = create_plugin_manager()
    assert asked == [ENTRY_POINT_GROUP]
    assert failed == []
    assert pm.get_plugin("constant-ep") is _ConstantPlugin
    assert kantk.Registry(pm).bases.owner("constant") == "constant-ep"


def test_entry_point_that_fails_to_import_is_reported_and_skipped(monkeypatch, caplog):
    _fake_entry_points(
        monkeypatch,
        _FakeEntryPoint("broken", "kantk-broken", error=ImportError("No module named 'kantk_broken'")),
        _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin),
    )
    with caplog.at_level(logging.WARNING, logger="kantk.plugins"):
        registry = kantk.Registry()

    assert registry.failed_plugins == [
        FailedPlugin("broken", "kantk-broken", "ImportError: No module named 'kantk_broken'")
    ]
    # Skipped, not fatal: the built-ins and the healthy plugin are still there.
    assert registry.bases.names() == sorted(kantk.Registry.with_plugins().bases.names() + ["constant"])
    assert registry.plugin_manager.get_plugin("broken") is None
    messages = [r.getMessage() for r in caplog.records if r.name == "kantk.plugins"]
    assert len(messages) == 1
    assert "'broken'" in messages[0] and "'kantk-broken'" in messages[0] and "kantk_broken" in messages[0]


def test_any_exception_on_import_is_reported(monkeypatch):
    crashing = _FakeEntryPoint("crashes", "kantk-crashes", error=ZeroDivisionError("boom"))
    _fake_entry_points(monkeypatch, crashing)
    _, failed = create_plugin_manager()
    assert failed == [FailedPlugin("crashes", "kantk-crashes", "ZeroDivisionError: boom")]


def test_failed_entry_point_without_a_distribution_has_no_package(monkeypatch):
    _fake_entry_points(monkeypatch, _FakeEntryPoint("orphan", None, error=ImportError("gone")))
    _, failed = create_plugin_manager()
    assert failed == [FailedPlugin("orphan", None, "ImportError: gone")]


def test_entry_point_plugin_with_a_misspelt_hook_is_reported_and_skipped(monkeypatch):
    # Issue 16: a broken third-party plugin is skipped, not fatal (an explicit one still raises).
    _fake_entry_points(monkeypatch, _FakeEntryPoint("typo", "kantk-typo", _MisspeltHookPlugin))
    pm, failed = create_plugin_manager()
    assert pm.get_plugin("typo") is None
    assert [(f.name, f.package) for f in failed] == [("typo", "kantk-typo")]
    assert "kantk_base" in failed[0].error and "kantk_bases" in failed[0].error


def test_entry_point_seen_twice_is_loaded_once(monkeypatch):
    # The same distribution can be found twice on sys.path; the second sighting is not loaded.
    first = _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin)
    again = _FakeEntryPoint("constant-ep", "kantk-constant", error=AssertionError("loaded twice"))
    _fake_entry_points(monkeypatch, first, again)
    pm, failed = create_plugin_manager()
    assert failed == []
    assert pm.get_plugin("constant-ep") is _ConstantPlugin


def test_disable_autoload_env_switches_entry_points_off(monkeypatch):
    asked = _fake_entry_points(monkeypatch, _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    registry = kantk.Registry()
    assert asked == []
    assert "constant" not in registry.bases
    assert registry.bases.names() == kantk.Registry.with_plugins().bases.names()


def test_disable_autoload_env_hides_the_installed_fourier_plugin(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    registry = kantk.Registry()
    assert "fourier" not in registry.bases
    assert registry.plugin_manager.get_plugin("fourier") is None


def test_explicit_load_entry_points_overrides_the_env(monkeypatch):
    _fake_entry_points(monkeypatch, _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm, _ = create_plugin_manager(load_entry_points=True)
    assert pm.get_plugin("constant-ep") is _ConstantPlugin


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("No", False),
        (" 0 ", False),
        ("1", True),
        ("true", True),
        ("yes", True),
    ],
)
def test_autoload_disabled_reads_the_env(monkeypatch, value, disabled):
    if value is not None:
        monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)
    assert plugins.autoload_disabled() is disabled


def test_plugin_basis_builds_a_model_through_a_registry():
    registry = kantk.Registry.with_plugins(_ConstantPlugin)
    model = kantk.KAN([3, 2], basis="constant", base_activation="zero", seed=0, registry=registry)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    # With the constant basis every edge is the constant w_s * c, so the output ignores x.
    y = model(x)
    assert y.shape == (5, 2)
    torch.testing.assert_close(y, y[:1].expand(5, 2))


def test_entry_point_name_taken_by_another_package_is_reported(monkeypatch):
    first = _FakeEntryPoint("constant-ep", "kantk-constant", _ConstantPlugin)
    other = _FakeEntryPoint("constant-ep", "kantk-impostor", error=AssertionError("must not load"))
    _fake_entry_points(monkeypatch, first, other)
    pm, failed = create_plugin_manager()
    assert pm.get_plugin("constant-ep") is _ConstantPlugin
    assert [(f.name, f.package) for f in failed] == [("constant-ep", "kantk-impostor")]


def test_hook_that_returns_a_single_record_is_blamed_on_its_plugin():
    class Broken:
        @kantk.hookimpl
        def kantk_bases(self):
            return kantk.BasisSpec("lonely", object)

    with pytest.raises(kantk.PluginError, match="failed in kantk_bases"):
        kantk.Registry.with_plugins(Broken())


class _MethodCountBasis(_ConstantBasis):
    def num_functions(self) -> int:  # type: ignore[override]  # the slip: no @property
        return 1


class _Float64Basis(_ConstantBasis):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], self.in_features, 1, dtype=torch.float64)  # the slip: fixed dtype


class _WrongShapeBasis(_ConstantBasis):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)  # the slip: (batch, in), no function axis


def _registry_of(cls: type) -> kantk.Registry:
    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_bases():
            yield kantk.BasisSpec("slip", cls)

    return kantk.Registry.with_plugins(Plugin)


def test_a_plugin_basis_slip_is_a_one_line_error_naming_it():
    """num_functions without @property, a forward that ignores the input's dtype or returns the wrong
    shape: each failed deep in torch (a bound method in torch.rand's size, a matmul of mixed dtypes)."""
    with pytest.raises(TypeError, match=r"'slip': num_functions must be an int >= 1.*@property"):
        kantk.KANLayer(2, 3, "slip", registry=_registry_of(_MethodCountBasis))
    x = torch.rand(5, 2)
    for cls, error, match in (
        (
            _Float64Basis,
            TypeError,
            r"_Float64Basis.forward returned torch.float64 .* for a torch.float32 input",
        ),
        (_WrongShapeBasis, ValueError, r"_WrongShapeBasis.forward returned shape \(5, 2\) .* \(5, 2, 1\)"),
    ):
        layer = kantk.KANLayer(2, 3, "slip", registry=_registry_of(cls))
        for call in (layer, layer.activations):
            with pytest.raises(error, match=match):
                call(x)


class _NumpyCountBasis(_ConstantBasis):
    @property
    def num_functions(self) -> int:
        import numpy as np

        return np.int64(1)  # type: ignore[return-value]  # a numpy int, as some plugins compute it


def test_a_numpy_int_num_functions_is_accepted():
    layer = kantk.KANLayer(2, 3, "slip", registry=_registry_of(_NumpyCountBasis))
    assert layer(torch.rand(4, 2)).shape == (4, 3)


def _plugin_registry(hook: str, *records: object) -> kantk.Registry:
    """A registry with one plugin whose collection hook ``hook`` yields ``records``."""

    def collect():
        yield from records

    plugin = type("Plugin", (), {hook: staticmethod(kantk.hookimpl(collect, specname=hook))})
    return kantk.Registry.with_plugins(plugin)


def test_plugin_component_slips_are_named():
    """Each gave an error from kantk's internals ('NoneType' object is not callable, a bare
    ModuleNotFoundError, 'fit_affine needs at least one candidate function', a reshape error)
    or a silent wrong result (NaN or score masks kept every edge)."""
    from kantk.plugins import PluginError

    model = kantk.KAN([2, 3, 1], seed=0)
    x = torch.rand(32, 2)
    none = _plugin_registry("kantk_pruners", kantk.PrunerSpec("none", lambda: None))
    with pytest.raises(TypeError, match="pruner plugin 'none' built a NoneType, not a callable pruner"):
        kantk.prune(model, x, pruner="none", registry=none)
    scores = _plugin_registry(
        "kantk_pruners", kantk.PrunerSpec("scores", lambda: lambda m, x, s: [l.mask * 0.5 for l in m.layers])
    )
    with pytest.raises(
        ValueError, match="pruner 'scores': edge mask 0 has values other than True/False or 1/0"
    ):
        kantk.prune(model, x, pruner="scores", registry=scores)
    reg = _plugin_registry("kantk_regularisers", kantk.RegulariserSpec("none", lambda: None))
    from kantk.regularisers import build_regularisers

    with pytest.raises(TypeError, match="regulariser plugin 'none' built a NoneType"):
        build_regularisers({"none": 1.0}, registry=reg)

    def missing():
        import kantk_optional_dependency_not_installed  # noqa: F401

    lazy = _plugin_registry("kantk_symbolic_libraries", kantk.SymbolicLibrarySpec("lazy", missing))
    with pytest.raises(
        PluginError, match="library 'lazy' failed to build its functions: ModuleNotFoundError"
    ):
        kantk.auto_symbolic(model, x, library="lazy", registry=lazy)
    empty = _plugin_registry("kantk_symbolic_libraries", kantk.SymbolicLibrarySpec("empty", lambda: []))
    with pytest.raises(PluginError, match="library 'empty' has no functions"):
        kantk.auto_symbolic(model, x, library="empty", registry=empty)


class _KeepDims(kantk.NodeOperation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the slip: (batch, nodes, arity), not reduced


class _Float64Max(kantk.NodeOperation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().amax(dim=-1)  # computed in float64


def test_node_operation_output_is_checked_and_kept_in_the_models_dtype():
    x = torch.rand(16, 2)
    keep = _plugin_registry("kantk_node_operations", kantk.NodeOperationSpec("keep", _KeepDims))
    model = kantk.KAN([2, {"sum": 1, "keep": 1}, 1], seed=0, registry=keep)
    with pytest.raises(
        ValueError, match=r"node operation _KeepDims returned \(16, 1, 2\) .* = \(16, 1\) floats"
    ):
        model(x)
    wide = _plugin_registry("kantk_node_operations", kantk.NodeOperationSpec("wide", _Float64Max))
    model = kantk.KAN([2, {"sum": 1, "wide": 1}, 1], seed=0, registry=wide)
    assert model(x).dtype == torch.float32  # float64 leaked into a float32 model's output


def test_a_symbolic_function_in_float64_keeps_a_float32_model_float32():
    fn = kantk.SymbolicFunction("sin64", lambda z: torch.sin(z.double()), lambda s: s, complexity=2)
    layer = kantk.KANLayer(2, 3)
    layer.set_symbolic_edge(0, 1, fn, "mine", (1.0, 0.0, 1.0, 0.0))
    assert layer(torch.rand(4, 2)).dtype == torch.float32
    numpy_fn = kantk.SymbolicFunction("np", lambda z: z.numpy(), lambda s: s, complexity=1)
    with pytest.raises(TypeError, match="symbolic function 'np' returned ndarray") as raised:
        numpy_fn.safe(torch.rand(5))
    from kantk.cli import describe_error

    assert describe_error(raised.value).startswith("kantk: symbolic function 'np'")  # not "internal error"
