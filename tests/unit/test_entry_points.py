"""The real third-party plugin ``plugins/kantk-fourier``, found through its entry point.

CI installs the plugin, so a missing plugin is a failure here, not a skip.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import torch

import kantk
from kantk.plugins import BUILTIN_PLUGINS, DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP

INSTALL_HINT = "the kantk-fourier plugin is not installed; run `pip install -e plugins/kantk-fourier`"


@pytest.fixture(autouse=True)
def _fresh_default_registry(monkeypatch: pytest.MonkeyPatch):
    # Entry points are loaded unless the switch is on, and the default registry is cached: start
    # (and leave) every test with autoload on and no stale cache.
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    kantk.reset_default_registry()
    yield
    kantk.reset_default_registry()


@pytest.fixture(scope="module")
def fourier_entry_point() -> importlib.metadata.EntryPoint:
    if importlib.util.find_spec("kantk_fourier") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    matches = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "fourier"]
    if not matches:
        pytest.fail(f"kantk_fourier declares no `kantk` entry point; {INSTALL_HINT}", pytrace=False)
    return matches[0]


def test_entry_point_is_declared_by_the_kantk_fourier_distribution(fourier_entry_point):
    assert fourier_entry_point.value == "kantk_fourier.plugin"
    assert fourier_entry_point.dist is not None
    assert fourier_entry_point.dist.name == "kantk-fourier"


def test_fourier_is_listed_by_the_default_registry(fourier_entry_point):
    assert "fourier" in kantk.list_bases()
    assert kantk.default_registry().failed_plugins == []


def test_fourier_is_owned_by_its_entry_point(fourier_entry_point):
    registry = kantk.Registry()
    assert registry.bases.owner("fourier") == "fourier"
    import kantk_fourier.plugin

    assert registry.plugin_manager.get_plugin("fourier") is kantk_fourier.plugin
    assert registry.bases.get("fourier").factory is kantk_fourier.plugin.FourierBasis


def test_fourier_is_not_a_builtin(fourier_entry_point):
    builtins_only = kantk.Registry.with_plugins(load_entry_points=False)
    assert "fourier" not in builtins_only.bases
    assert not any("fourier" in module for module in BUILTIN_PLUGINS)
    owners = {builtins_only.bases.owner(name) for name in builtins_only.bases}
    assert owners <= set(BUILTIN_PLUGINS)


def test_fourier_model_round_trips_through_save_and_load(fourier_entry_point, tmp_path):
    model = kantk.KAN([2, 3, 1], basis="fourier", basis_kwargs={"num_frequencies": 3}, seed=0)
    x = torch.rand(8, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = tmp_path / "fourier.kantk"
    kantk.save(model, path)
    loaded = kantk.load(path)
    assert loaded.config() == model.config()
    assert loaded.layers[0].basis.config() == {"num_frequencies": 3}
    torch.testing.assert_close(loaded(x), model(x))


def test_a_fourier_model_needs_the_plugin_to_load(fourier_entry_point, tmp_path):
    path = tmp_path / "fourier.kantk"
    kantk.save(kantk.KAN([2, 1], basis="fourier", seed=0), path)
    with pytest.raises(kantk.UnknownComponentError, match="'fourier'"):
        kantk.load(path, registry=kantk.Registry.with_plugins())


def test_fourier_basis_values_dtypes_and_finiteness(fourier_entry_point):
    from kantk_fourier import FourierBasis

    basis = FourierBasis(2, num_frequencies=3)
    assert basis.num_functions == 6
    assert basis.config() == {"num_frequencies": 3}
    assert FourierBasis(2, **basis.config()).num_functions == 6
    with pytest.raises(ValueError, match="num_frequencies"):
        FourierBasis(2, num_frequencies=0)

    basis64 = basis.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in basis64.buffers())
    x = torch.linspace(-3, 3, 14, dtype=torch.float64).reshape(7, 2)
    k = torch.arange(1, 4, dtype=torch.float64) * torch.pi
    expected = torch.cat([torch.sin(x.unsqueeze(-1) * k), torch.cos(x.unsqueeze(-1) * k)], dim=-1)
    torch.testing.assert_close(basis64(x), expected)  # (7, 2, 6), float64 precision

    basis32 = FourierBasis(2, num_frequencies=3).to(torch.float32)
    huge = torch.tensor([[3.0e38, -3.0e38], [1.0e30, 0.5]], requires_grad=True)
    out = basis32(huge)
    assert out.dtype == torch.float32 and out.shape == (2, 2, 6)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(huge.grad).all()
