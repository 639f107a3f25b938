"""pykan's argument names, answered with kantk's spelling.

A notebook moved from pykan passes ``KAN(width=..., grid=5, k=3)``, ``fit(opt=..., lamb=...)``,
``auto_symbolic(lib=...)``: Python's answer was ``TypeError: KANLayer.__init__() got an unexpected
keyword argument 'grid'`` (a class the user never called). :func:`pykan_names` wraps a public
function so that such a name gets a one-line ``TypeError`` with the kantk spelling (the table of
docs/migrating-from-pykan.md in short).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_NOT_NEEDED = "nothing: kantk keeps no caches and writes no files unless asked (kantk.save)"

#: pykan's names of the model's construction arguments.
KAN_NAMES = {
    "width": "widths, the first argument: kantk.KAN([2, 5, 1]) (multiplication nodes as [2, [0, 1], 1])",
    "grid": 'basis_kwargs={"grid_size": G}',
    "k": 'basis_kwargs={"order": k}',
    "grid_range": 'basis_kwargs={"grid_range": [lo, hi]}',
    "grid_eps": "model.update_grid(x, grid_eps=...) or kantk.fit(..., grid_eps=...)",
    "base_fun": 'base_activation= ("silu", "identity", "zero")',
    "device": "model.to(device)",
    "symbolic_enabled": "nothing: symbolic edges are always available",
    "affine_trainable": "nothing: kantk has no node affine parameters",
    "sp_trainable": "layer.scale_sp.requires_grad_(False)",
    "sb_trainable": "layer.scale_base.requires_grad_(False)",
    "save_act": _NOT_NEEDED,
    "auto_save": _NOT_NEEDED,
    "ckpt_path": _NOT_NEEDED,
    "state_id": _NOT_NEEDED,
    "round": _NOT_NEEDED,
    "first_init": _NOT_NEEDED,
}

#: pykan's names of ``model.fit``'s arguments.
FIT_NAMES = {
    "opt": 'optimizer= ("lbfgs" or "adam")',
    "lamb": 'regularisers={"l1_entropy": {"weight": lamb}}',
    "lamb_l1": 'regularisers={"l1_entropy": {"weight": lamb, "l1": lamb_l1}}',
    "lamb_entropy": 'regularisers={"l1_entropy": {"weight": lamb, "entropy": lamb_entropy}}',
    "lamb_coef": 'regularisers={"coef_l1": {"weight": ...}}',
    "lamb_coefdiff": 'regularisers={"coef_smoothness": {"weight": ...}}',
    "update_grid": "grid_update_every=5, grid_update_until=50 (pykan's default schedule)",
    "grid_update_num": "grid_update_every=50 // grid_update_num",
    "start_grid_update_step": "grid_update_every= (updates start at step 0)",
    "stop_grid_update_step": "grid_update_until=",
    "loss_fn": "loss=lambda model, batch: loss_fn(model(batch[0]), batch[1])",
    "metrics": "the returned History (history.train_rmse, history.test_rmse)",
    "log": "eval_every=",
    "save_fig": "kantk.plot_activations(model, x, path=...) after fitting",
    "device": "model.to(device) and data on that device",
}

#: pykan's names of the symbolic functions' arguments.
AUTO_SYMBOLIC_NAMES = {"lib": "library=", "verbose": "the returned list of fits"}
SUGGEST_SYMBOLIC_NAMES = {"lib": "library=", "verbose": "the returned list of candidates"}
FIX_SYMBOLIC_NAMES = {
    "fit_params_bool": "fit_params=",
    "fun_name": 'name, the fifth argument: kantk.fix_symbolic(model, l, i, j, "sin", x)',
    "verbose": "the returned fit (its r2)",
    "log_history": _NOT_NEEDED,
}
EXPAND_WIDTH_NAMES = {
    "layer_id": "layer=",
    "n_added_nodes": "n_added=",
    "sum_bool": 'op="sum" (sum_bool=True) or op="mult" (False)',
    "mult_arity": "arity=",
}
PLOT_NAMES = {
    "folder": "path= (one image file of the whole network)",
    "beta": "min_alpha= (opacity follows the attribution score)",
    "sample": "x=, the inputs the edges are drawn over",
}
SYMBOLIC_FORMULA_NAMES = {"var": "var_names="}
CREATE_DATASET_NAMES = {"n_var": "n_vars="}
REFINE_NAMES = {"new_grid": "grid_size, the second argument: kantk.refine(model, 10)"}


def pykan_names(spellings: Mapping[str, str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a function so that a keyword of ``spellings`` it does not take (pykan's name) raises
    ``TypeError: <function>() takes no argument 'grid' (pykan's); kantk: <spelling>``."""

    def wrap(func: Callable[P, R]) -> Callable[P, R]:
        accepted = set(inspect.signature(func).parameters)
        name = func.__qualname__.removesuffix(".__init__")

        @functools.wraps(func)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            for key in kwargs:
                if key in spellings and key not in accepted:
                    raise TypeError(
                        f"{name}() takes no argument {key!r} (pykan's); kantk: {spellings[key]} "
                        "(docs/migrating-from-pykan.md)"
                    )
            return func(*args, **kwargs)

        return call

    return wrap
