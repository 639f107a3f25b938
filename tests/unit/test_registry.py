"""kantk.registry: look-ups by name, duplicates, unknown names and the list_* functions."""

from __future__ import annotations

import pytest
import torch

import kantk
from kantk.bases import Basis
from kantk.plugins import BUILTIN_PLUGINS
from kantk.registry import ComponentTable

KINDS = ("bases", "regularisers", "pruners", "symbolic_libraries")


class _IdentityBasis(Basis):
    """One function, x itself."""

    @property
    def num_functions(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1)  # (batch, in, 1)

    def config(self) -> dict:
        return {}


class _EverythingPlugin:
    """One plugin providing a component of every kind, names deliberately out of order."""

    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("zeta", _IdentityBasis, "last by name")
        yield kantk.BasisSpec("identity", _IdentityBasis, "x itself")

    @staticmethod
    @kantk.hookimpl
    def kantk_regularisers():
        yield kantk.RegulariserSpec("zz_reg", dict)
        yield kantk.RegulariserSpec("aa_reg", dict)

    @staticmethod
    @kantk.hookimpl
    def kantk_pruners():
        return [kantk.PrunerSpec("top_k", dict), kantk.PrunerSpec("keep_all", dict)]  # a list works too

    @staticmethod
    @kantk.hookimpl
    def kantk_symbolic_libraries():
        yield kantk.SymbolicLibrarySpec("trig", list)
        yield kantk.SymbolicLibrarySpec("poly", list)


class _ShadowsBSpline:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("bspline", _IdentityBasis)


class _PluginA:
    @staticmethod
    @kantk.hookimpl
    def kantk_pruners():
        yield kantk.PrunerSpec("shared", dict)


class _PluginB:
    @staticmethod
    @kantk.hookimpl
    def kantk_pruners():
        yield kantk.PrunerSpec("shared", dict)


class _NamelessRecord:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        yield kantk.BasisSpec("", _IdentityBasis)


class _ReturnsNothing:
    @staticmethod
    @kantk.hookimpl
    def kantk_bases():
        return None


@pytest.fixture
def builtins_only() -> kantk.Registry:
    return kantk.Registry.with_plugins()


@pytest.fixture
def everything() -> kantk.Registry:
    return kantk.Registry.with_plugins(_EverythingPlugin)


def test_builtins_come_through_the_plugin_path(builtins_only):
    assert {"bspline", "chebyshev", "rbf"} <= set(builtins_only.bases.names())
    for name in ("bspline", "chebyshev", "rbf"):
        assert builtins_only.bases.owner(name) == f"kantk.bases.{name}"
    for kind in KINDS:
        table = getattr(builtins_only, kind)
        for name in table:
            assert table.owner(name) in BUILTIN_PLUGINS, (kind, name)
    assert builtins_only.failed_plugins == []


def test_with_plugins_does_not_load_entry_points(builtins_only):
    assert "fourier" not in builtins_only.bases


def test_lookup_returns_the_record(everything, builtins_only):
    spec = everything.bases.get("identity")
    assert isinstance(spec, kantk.BasisSpec)
    assert spec.factory is _IdentityBasis and spec.description == "x itself"
    assert everything.bases.owner("identity") == everything.plugin_manager.get_name(_EverythingPlugin)
    assert "identity" in everything.bases and "nope" not in everything.bases
    assert len(everything.bases) == len(builtins_only.bases) + 2
    assert list(everything.bases) == everything.bases.names()


@pytest.mark.parametrize(
    ("list_fn", "kind", "added"),
    [
        (kantk.list_bases, "bases", ["zeta", "identity"]),
        (kantk.list_regularisers, "regularisers", ["zz_reg", "aa_reg"]),
        (kantk.list_pruners, "pruners", ["top_k", "keep_all"]),
        (kantk.list_symbolic_libraries, "symbolic_libraries", ["trig", "poly"]),
    ],
)
def test_list_functions_return_sorted_names(everything, builtins_only, list_fn, kind, added):
    # The plugin yields its names out of order; the lists come back sorted, built-ins included.
    names = list_fn(everything)
    assert names == sorted(getattr(builtins_only, kind).names() + added)
    assert names == getattr(everything, kind).names()


@pytest.mark.parametrize(
    "list_fn",
    [kantk.list_bases, kantk.list_regularisers, kantk.list_pruners, kantk.list_symbolic_libraries],
)
def test_default_registry_lists_are_sorted_lists_of_str(list_fn):
    names = list_fn()
    assert isinstance(names, list)
    assert all(isinstance(n, str) and n for n in names)
    assert names == sorted(names)
    assert len(set(names)) == len(names)


def test_default_registry_has_the_builtin_bases():
    assert {"bspline", "chebyshev", "rbf"} <= set(kantk.list_bases())


def test_duplicate_across_plugins_names_both_plugins():
    with pytest.raises(kantk.PluginError) as info:
        kantk.Registry.with_plugins(_ShadowsBSpline)
    message = str(info.value)
    assert "'bspline'" in message
    assert "'kantk.bases.bspline'" in message
    assert "_ShadowsBSpline" in message


def test_duplicate_between_two_third_party_plugins():
    with pytest.raises(kantk.PluginError, match=r"duplicate pruner name 'shared'.*_PluginA.*_PluginB"):
        kantk.Registry.with_plugins(_PluginA, _PluginB)


def test_duplicate_within_one_plugin_is_reported():
    with pytest.raises(kantk.PluginError, match=r"'p'.*plugin 'one'.*plugin 'one'"):
        ComponentTable("pruner", [("one", kantk.PrunerSpec("p", dict)), ("one", kantk.PrunerSpec("p", dict))])


def test_record_without_a_name_is_rejected():
    with pytest.raises(kantk.PluginError, match="without a name"):
        kantk.Registry.with_plugins(_NamelessRecord)


def test_hook_returning_none_provides_nothing(builtins_only):
    registry = kantk.Registry.with_plugins(_ReturnsNothing)
    assert registry.bases.names() == builtins_only.bases.names()


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_name_lists_the_known_names(everything, kind):
    table = getattr(everything, kind)
    with pytest.raises(kantk.UnknownComponentError) as info:
        table.get("no_such_thing")
    message = str(info.value)
    assert "'no_such_thing'" in message
    assert ", ".join(table.names()) in message  # every known name, sorted
    assert not message.startswith('"')  # not quoted the way KeyError quotes


def test_unknown_name_error_is_both_key_and_value_error(builtins_only):
    with pytest.raises(KeyError):
        builtins_only.bases.get("nope")
    with pytest.raises(ValueError):
        builtins_only.bases.get("nope")


def test_unknown_name_in_an_empty_table():
    with pytest.raises(kantk.UnknownComponentError, match=r"known pruner names: \(none\)"):
        ComponentTable("pruner", []).get("threshold")


def test_non_string_name_is_unknown(builtins_only):
    with pytest.raises(kantk.UnknownComponentError, match="known basis names: bspline, chebyshev"):
        builtins_only.bases.get(None)


def test_owner_of_unknown_name_raises(builtins_only):
    with pytest.raises(kantk.UnknownComponentError):
        builtins_only.bases.owner("nope")


def test_model_with_unknown_basis_names_it_and_the_known_ones(builtins_only):
    match = r"'wavelet'.*known basis names: bspline, chebyshev"
    with pytest.raises(kantk.UnknownComponentError, match=match):
        kantk.KAN([2, 1], basis="wavelet", registry=builtins_only)


def test_layer_uses_the_given_registry(everything, builtins_only):
    layer = kantk.KANLayer(2, 3, basis="identity", registry=everything)
    assert isinstance(layer.basis, _IdentityBasis)
    with pytest.raises(kantk.UnknownComponentError):
        kantk.KANLayer(2, 3, basis="identity", registry=builtins_only)


def test_default_registry_is_cached_and_can_be_reset():
    first = kantk.default_registry()
    assert kantk.default_registry() is first
    kantk.reset_default_registry()
    second = kantk.default_registry()
    assert second is not first
    assert second.bases.names() == first.bases.names()


class _PositionalOnlyBasis(Basis):
    def __init__(self, in_features: int, /, degree: int = 4):
        super().__init__(in_features)
        self.degree = degree

    @property
    def num_functions(self) -> int:
        return self.degree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x).unsqueeze(-1) ** torch.arange(1, self.degree + 1, dtype=x.dtype)

    def config(self) -> dict:
        return {"degree": self.degree}


class _StarArgsBasis(_PositionalOnlyBasis):
    def __init__(self, *args: int, degree: int = 4):
        super().__init__(*args, degree=degree)


@pytest.mark.parametrize("factory", [_PositionalOnlyBasis, _StarArgsBasis], ids=["slash", "star_args"])
def test_a_basis_taking_in_features_positional_only_keeps_its_options(factory, tmp_path):
    """in_features as a positional-only parameter or through *args: its keyword options are
    accepted (the first option was taken for in_features and refused: such a model saved but did
    not load)."""

    class Plugin:
        @staticmethod
        @kantk.hookimpl
        def kantk_bases():
            yield kantk.BasisSpec("tp", factory)

    registry = kantk.Registry.with_plugins(Plugin)
    model = kantk.KAN([2, 3, 1], basis="tp", basis_kwargs={"degree": 3}, registry=registry, seed=0)
    kantk.save(model, tmp_path / "m.kantk")
    again = kantk.load(tmp_path / "m.kantk", registry=registry)
    x = torch.rand(5, 2)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"does not accept 'dgree'; accepted basis_kwargs: degree"):
        kantk.KAN([2, 1], basis="tp", basis_kwargs={"dgree": 3}, registry=registry)
