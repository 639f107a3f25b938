"""Refit the affine parameters of symbolic edges by Levenberg-Marquardt, inside the functions' domains.

After :func:`kantk.auto_symbolic`, the affine parameters ``(a, b, c, d)`` of every symbolic edge are
refitted to the data. :func:`kantk.fit` (LBFGS) does it too, but its line search tries points where
an edge's argument leaves its function's domain (``sqrt`` of a negative number, ``log`` of 0): the
loss turns NaN and the NaN guard stops the refit at its last finite parameters, often at its start.
That happens exactly when the best parameters sit on a domain boundary (``sqrt(x)`` on x in
(0, 1]), and it is how Feynman II.35.18's refit produced a power of ``18.69*n0 - 0.0083``, real for
the training ``n0`` and NaN below 4e-4.

:func:`refit_symbolic` solves the same least-squares problem (mean squared error of the model's
outputs) over the symbolic edges' parameters only, with Levenberg-Marquardt and exact Jacobians
(forward-mode autograd): a step is taken only when the model stays finite on the data, every
symbolic edge's argument stays in its function's domain on the edge's input range widened by
``domain_margin`` (the rule of :mod:`kantk.symbolic.fitting`), and the error goes down. So the
refit never produces NaN, never leaves a domain, and reaches the optimum to round-off on a few
dozen parameters in a few iterations. Numeric edges are left as they are.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch.func import functional_call, jacfwd

from kantk._validation import check_int
from kantk.attribution import check_samples
from kantk.model import KAN
from kantk.registry import Registry
from kantk.symbolic.fitting import DOMAIN_MARGIN, _admissible, _Span
from kantk.symbolic.library import LibraryArg


@dataclass(frozen=True)
class RefitResult:
    """What :func:`refit_symbolic` did.

    Attributes:
        rmse_before, rmse_after: Root mean squared error on the data before and after.
        iterations: Levenberg-Marquardt iterations run.
        rejected: Trial steps rejected (not finite, out of a domain, or no better).
        parameters: Number of parameters refitted (4 per symbolic edge).
    """

    rmse_before: float
    rmse_after: float
    iterations: int
    rejected: int
    parameters: int


@dataclass(frozen=True)
class _Block:
    """The symbolic edges of one layer: the parameter's name and their (q, p) indices."""

    layer: int
    name: str
    qs: torch.Tensor
    ps: torch.Tensor


def refit_symbolic(
    model: KAN,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 50,
    domain_margin: float = DOMAIN_MARGIN,
) -> RefitResult:
    """Refit every symbolic edge's ``(a, b, c, d)`` to ``y`` by Levenberg-Marquardt, in place.

    Args:
        model: A KAN with symbolic edges (numeric edges are kept fixed).
        x: (batch, widths[0]) inputs, in the model's dtype.
        y: (batch, widths[-1]) targets (or (batch,) for one output).
        steps: Most Levenberg-Marquardt iterations (each one Jacobian and one or more trials).
        domain_margin: Every symbolic edge's argument must stay in its function's domain on the
            edge's current input range widened by this fraction on each side (not across 0).

    Returns:
        A :class:`RefitResult`. The model holds the best parameters found (never worse than
        the starting ones).

    Raises:
        ValueError: No symbolic edge, bad shapes, or a model that is not finite on ``x`` at its
            starting parameters (fit them first: :func:`kantk.auto_symbolic` with ``x``).
    """
    if not isinstance(model, KAN):
        raise TypeError(f"refit_symbolic expects a kantk.KAN, got {type(model).__name__}")
    x = check_samples(model, x, "kantk.symbolic.refit_symbolic", min_samples=1)
    if not isinstance(y, torch.Tensor):
        raise TypeError("refit_symbolic expects a tensor y")
    if y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have one row per row of x ({x.shape[0]}), got shape {tuple(y.shape)}")
    y = y.detach().to(x.dtype).reshape(x.shape[0], -1)
    if y.shape[1] != model.widths[-1] or not bool(torch.isfinite(y).all()):
        raise ValueError(
            f"y must be finite, of shape ({x.shape[0]}, {model.widths[-1]}); got {tuple(y.shape)}"
        )
    check_int("steps", steps, 0)
    blocks = _blocks(model)
    if not blocks:
        raise ValueError("refit_symbolic: the model has no symbolic edge (kantk.auto_symbolic fixes them)")
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    theta = torch.cat([params[b.name][b.qs, b.ps].reshape(-1) for b in blocks]).to(torch.float64)
    n_out = y.numel()

    def residual(t: torch.Tensor) -> torch.Tensor:
        return (functional_call(model, (_with(params, blocks, t, x.dtype), buffers), (x,)) - y).reshape(-1)

    def sse_if_admissible(t: torch.Tensor) -> float:
        with torch.no_grad():
            _write(model, blocks, t)
            if not _in_domains(model, x, blocks, domain_margin):
                return math.inf
            r = model(x) - y
            value = float((r.to(torch.float64) ** 2).sum())
        return value if math.isfinite(value) else math.inf

    sse = sse_if_admissible(theta)
    if not math.isfinite(sse):
        raise ValueError(
            "refit_symbolic: the model is not finite on x at its starting parameters, or a symbolic "
            "edge's argument already leaves its domain on its input range (plus the margin); fit the "
            "edges to the data first (kantk.auto_symbolic or kantk.fix_symbolic with x)"
        )
    rmse_before = math.sqrt(sse / n_out)
    lam, rejected, iterations, gain = 1e-3, 0, 0, 0.0
    eye = torch.eye(theta.numel(), dtype=torch.float64, device=theta.device)
    for _ in range(steps):
        iterations += 1
        t_model = theta.detach()
        with torch.no_grad():
            r = residual(t_model).to(torch.float64)
        with warnings.catch_warnings():  # torch's forward-AD decompositions, loaded on first use
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning
            )
            jac = jacfwd(residual)(t_model).to(torch.float64)  # (n_out, P)
        jtj = jac.T @ jac
        g = jac.T @ r
        improved = False
        while lam < 1e16:
            damp = lam * torch.diag(jtj.diagonal().clamp_min(1e-300)) + 1e-300 * eye
            step, info = torch.linalg.solve_ex(jtj + damp, -g)
            if int(info) != 0 or not bool(torch.isfinite(step).all()):
                lam *= 10
                rejected += 1
                continue
            trial = theta + step
            trial_sse = sse_if_admissible(trial)
            if trial_sse < sse:
                gain = (sse - trial_sse) / max(sse, 1e-300)
                theta, sse, improved = trial, trial_sse, True
                lam = max(lam * 0.3, 1e-12)
                break
            lam *= 10
            rejected += 1
        if not improved or gain < 1e-14:
            break
    _write(model, blocks, theta)
    return RefitResult(rmse_before, math.sqrt(sse / n_out), iterations, rejected, theta.numel())


# --- internals ------------------------------------------------------------------------------------


def _blocks(model: KAN) -> list[_Block]:
    blocks = []
    for l, layer in enumerate(model.layers):
        if not layer.has_symbolic:
            continue
        edges = layer.symbolic_edges()
        if not edges:
            continue
        dev = layer.symbolic_affine.device
        qs = torch.tensor([e[0] for e in edges], dtype=torch.long, device=dev)
        ps = torch.tensor([e[1] for e in edges], dtype=torch.long, device=dev)
        blocks.append(_Block(l, f"layers.{l}.symbolic_affine", qs, ps))
    return blocks


def _split(blocks: list[_Block], theta: torch.Tensor) -> list[torch.Tensor]:
    sizes = [4 * len(b.qs) for b in blocks]
    return [part.reshape(-1, 4) for part in torch.split(theta, sizes)]


def _with(
    params: dict[str, torch.Tensor], blocks: list[_Block], theta: torch.Tensor, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """``params`` with the blocks' symbolic entries replaced by ``theta`` (differentiably)."""
    out = dict(params)
    for block, values in zip(blocks, _split(blocks, theta)):
        out[block.name] = torch.index_put(params[block.name], (block.qs, block.ps), values.to(dtype))
    return out


@torch.no_grad()
def _write(model: KAN, blocks: list[_Block], theta: torch.Tensor) -> None:
    for block, values in zip(blocks, _split(blocks, theta)):
        affine = model.layers[block.layer].symbolic_affine
        affine[block.qs, block.ps] = values.to(affine.dtype)


@torch.no_grad()
def _in_domains(model: KAN, x: torch.Tensor, blocks: list[_Block], margin: float) -> bool:
    """Whether every symbolic edge's argument stays in its domain on its widened input range."""
    by_layer = {b.layer: b for b in blocks}
    h = x
    for l, layer in enumerate(model.layers):
        block = by_layer.get(l)
        if block is not None:
            inputs = h[:, block.ps].to(torch.float64).T  # (k, batch)
            if not bool(torch.isfinite(inputs).all()):
                return False
            span = _Span.around(inputs.min(dim=1).values, inputs.max(dim=1).values, margin)
            affine = layer.symbolic_affine[block.qs, block.ps].to(torch.float64)  # (k, 4)
            for k, (q, p) in enumerate(zip(block.qs.tolist(), block.ps.tolist())):
                fn = layer.symbolic_function(q, p)
                assert fn is not None  # a symbolic edge has its function
                one = _Span(
                    span.lo[k : k + 1], span.hi[k : k + 1], span.lo_open[k : k + 1], span.hi_open[k : k + 1]
                )
                if not bool(
                    _admissible(fn, one, affine[k : k + 1, 0], affine[k : k + 1, 1], exact=True).all()
                ):
                    return False
        if l == max(by_layer):
            return True
        h = layer(h)
    return True


#: Samples and Levenberg-Marquardt iterations of a trial refit in :func:`improve_symbolic`.
TRIAL_SAMPLES = 256
TRIAL_STEPS = 20


@dataclass(frozen=True)
class ImproveResult:
    """What :func:`improve_symbolic` did.

    Attributes:
        rmse_before: RMSE after the first refit (of the functions as they were).
        rmse_after: RMSE at the end.
        swaps: ``(layer, i, j, old_name, new_name)`` of every kept swap, in order.
        refits: Refits run (one per tried alternative, plus the first).
    """

    rmse_before: float
    rmse_after: float
    swaps: list[tuple[int, int, int, str, str]]
    refits: int


def improve_symbolic(
    model: KAN,
    x: torch.Tensor,
    y: torch.Tensor,
    library: LibraryArg = "default",
    alternatives: int = 2,
    target_rmse: float = 0.0,
    gain: float = 0.5,
    steps: int = 50,
    domain_margin: float = DOMAIN_MARGIN,
    registry: Registry | None = None,
) -> ImproveResult:
    """Refit, then try each symbolic edge's runner-up functions, keeping a swap that refits better.

    The ranking of one edge cannot tell a nearly quadratic ``sin`` from the ``x^2`` a product of
    sums needs; the refit of the whole model can: after the swap it reaches round-off. Edges are
    tried in (layer, output, input) order; for each, the ``alternatives`` best other candidates
    of :func:`kantk.suggest_symbolic` (fitted to the edge's numeric function, which a symbolic
    edge keeps) are fixed in turn and the model refitted with :func:`refit_symbolic`; a swap is
    kept when its RMSE is below ``gain`` times the best so far. Stops as soon as the RMSE is at
    most ``target_rmse``. Edges fixed to the constant ``0`` are left alone. Deterministic.

    Args:
        model: A KAN with symbolic edges (changed in place).
        x, y: Data, as for :func:`refit_symbolic`.
        library: The library the alternatives come from.
        alternatives: Runner-ups tried per edge.
        target_rmse: Stop once the RMSE is at most this (e.g. ``1e-8 * y.std()``: exact).
        gain: A swap is kept when it brings the RMSE below ``gain`` times the best so far.
        steps: Levenberg-Marquardt iterations per refit.
        domain_margin: As for :func:`refit_symbolic` and the fits.
        registry: Where a library name is looked up (``None``: the default registry), as for
            :func:`kantk.fix_symbolic`.

    Returns:
        An :class:`ImproveResult`; the model holds the best functions and parameters found.
    """
    from kantk.symbolic.api import fix_symbolic, suggest_symbolic
    from kantk.symbolic.library import resolve_library

    check_int("alternatives", alternatives, 0)
    library = resolve_library(library, registry)  # once: a plugin's records are built per call
    if not 0 < gain <= 1:
        raise ValueError(f"gain must be in (0, 1], got {gain!r}")
    best = refit_symbolic(model, x, y, steps, domain_margin).rmse_after
    first, refits = best, 1
    swaps: list[tuple[int, int, int, str, str]] = []
    # a trial refits on at most TRIAL_SAMPLES samples (equally spaced rows), a promising one on all
    rows = torch.linspace(0, x.shape[0] - 1, min(x.shape[0], TRIAL_SAMPLES), device=x.device).round().long()
    xt, yt = x[rows], y.reshape(x.shape[0], -1)[rows]
    # the most ambiguous edges first: smallest score gap between the function and its runner-up
    queue = []
    for l, layer in enumerate(model.layers):
        if not layer.has_symbolic:
            continue
        for q, p in layer.symbolic_edges():
            current = layer.symbolic_function(q, p)
            if current is None or current.complexity == 0:
                continue
            ranked = suggest_symbolic(
                model, l, p, q, x, library=library, topk=alternatives + 1, domain_margin=domain_margin
            )
            others = [c for c in ranked if c.name != current.name][:alternatives]
            own = [c.score for c in ranked if c.name == current.name]
            if others:
                gap = others[0].score - (own[0] if own else others[0].score)
                queue.append((gap, l, q, p, current, others))
    queue.sort(key=lambda item: item[:4])
    for _gap, l, q, p, current, others in queue:
        if best <= target_rmse:
            break
        layer = model.layers[l]
        source = layer.symbolic_libraries[q][p]
        assert source is not None  # a symbolic edge records its library
        for candidate in others:
            saved = _snapshot(model)
            try:
                fix_symbolic(model, l, p, q, candidate.name, x, library=library, domain_margin=domain_margin)
                rmse = refit_symbolic(model, xt, yt, TRIAL_STEPS, domain_margin).rmse_after
                if rmse < gain * best:  # promising on the subsample: refit on all the data
                    rmse = refit_symbolic(model, x, y, steps, domain_margin).rmse_after
            except ValueError:
                rmse = math.inf
            refits += 1
            if rmse < gain * best:
                swaps.append((l, p, q, current.name, candidate.name))
                best = rmse
                break
            layer.set_symbolic_edge(q, p, current, source)
            _restore(model, saved)
    return ImproveResult(first, best, swaps, refits)


def _snapshot(model: KAN) -> dict[int, torch.Tensor]:
    return {
        l: layer.symbolic_affine.detach().clone()
        for l, layer in enumerate(model.layers)
        if layer.has_symbolic
    }


@torch.no_grad()
def _restore(model: KAN, saved: dict[int, torch.Tensor]) -> None:
    for l, values in saved.items():
        model.layers[l].symbolic_affine.copy_(values)
