"""The flagship workflow in one call: fit -> sparsify -> prune -> refine -> symbolic -> refit -> snap.

``discover`` follows pykan's "hello KAN" recipe (Liu et al. 2024, section 2.5) over a few small
KAN shapes: a B-spline KAN trained with the l1_entropy sparsity regulariser, pruned to the edges
that matter, refined to a finer grid, every edge fitted to a symbolic function, the symbolic model
refitted, and its formula *snapped*: expanded, its constants rounded to simple numbers (1/3, pi/2,
...), and kept in that form only when it still fits the data to round-off. The shapes tried first
have a multiplication node (KAN 2.0's MultKAN), which makes products and quotients such as
``x1*x2`` or ``a*sin(theta)`` one node instead of a sum of squares; the last (*factored*) ones
fix the structure in advance: each input alone on a factor of one product node, the output edge
fixed (``n0*exp(-a)``, ``1/(1 + a*b)``), possibly fitted to a transform of the labels and then
composed with the inverse function (``asin(n*sin(theta))``, ``sqrt(c**2*(a**2 + b**2))``).
``kantk discover`` is its command line.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kantk._validation import check_distinct, check_int, check_number, check_optional_int
from kantk.model import KAN, record_column_names
from kantk.registry import Registry

logger = logging.getLogger(__name__)

DEFAULT_FORMULA = "exp(sin(pi*x1) + x2**2)"

#: Hidden layers tried in turn by default (``hidden=None``), stopping at the first exact formula:
#: one product node (``x1*x2``, ``a/b``, ``n*log(a)``, ``asin(n*sin(theta))``), a sum and a
#: product node (``1 + a + 2*sqrt(a)*cos(delta)``, ``a + alpha*b``), two sum nodes (pruned, e.g.
#: to [2, 1, 1] for ``exp(sin(pi*x1) + x2**2)``), and, with four or more inputs, two product
#: nodes (``x1*x2 + x3*x4``). An entry is a hidden layer as :class:`kantk.KAN` spells it.
STRUCTURES: tuple[Any, ...] = ([0, 1], [1, 1], 2)
#: Added after :data:`STRUCTURES` when the data has at least this many inputs.
TWO_PRODUCTS, TWO_PRODUCTS_MIN_INPUTS = [0, 2], 4
#: Tried first when the data has one input (``hidden=None``): no hidden layer, the one edge
#: ``[1, 1]``. With a hidden layer two edges are in series and the first is fixed on its own, so
#: a monotone function took a root's place: ``sqrt(x1)`` on [0.1, 4] came out as
#: ``2.04 - 0.93*exp(-1.12*tan(0.44*x1 + 8.89))`` (not exact), ``log(x1)`` as 8 constants.
NO_HIDDEN = 0
#: With at most this many inputs, ``hidden=None`` ends with the *factored* attempts (see
#: :func:`factored_shapes`): one product node over every input, each input on its own sub-node,
#: the output edges fixed in advance.
FACTORED_MAX_INPUTS = 3
#: After every shape failed on three or more inputs, ``discover`` looks for pairs of inputs that
#: the labels depend on only through their difference or sum (see :func:`_symmetric_pairs`): a
#: numeric KAN on this first grid, and a pair is taken below this score.
SYMMETRY_GRID, SYMMETRY_SCORE = 5, 0.2
#: A pinned attempt (see :func:`_pin_products`) weighs this many candidates per product edge and
#: takes those whose ``1 - r2`` is within this factor of the best's as equally good.
PIN_CANDIDATES, PIN_TIE = 4, 2.0
#: Hidden widths tried after the first attempt when ``hidden`` is an int (those below it), in order.
SEARCH_WIDTHS = (3, 2, 4)
#: A formula is exact when its test RMSE is at most this times the labels' std (or, for labels
#: given in lower precision, :data:`EXACT_ROUNDOFF` times their own round-off; see
#: :func:`exact_threshold`).
EXACT_RTOL = 1e-8
#: Labels stored in float32 carry round-off of about ``eps * |y|`` (6e-8 relative), above 1e-8
#: of their spread: the exact formula of float32 data was never "exact". Multiples of the
#: round-off (``eps`` of the labels' dtype times their root mean square) the RMSE may reach.
EXACT_ROUNDOFF = 10.0
#: Attempts within this factor of the best RMSE compete on simplicity (and within
#: :data:`VARIANCE_SLACK` of its explained variance).
SIMPLE_SLACK = 10.0
#: ... and within this share of the labels' variance of the best attempt's unexplained variance
#: (``(rmse**2 - best**2) / var(labels)``): on measured data, where no formula fits to round-off,
#: the factor alone let a linear formula at test RMSE 0.48 win over the right one at the noise
#: level, 0.0499 (labels' std 1.05), and a damped oscillation print as a straight line.
VARIANCE_SLACK = 0.01
#: An edge into a product node whose output's std is below this fraction of the largest edge's
#: std in its layer is switched off after the sparsity fit (:func:`kantk.prune` for models
#: without product nodes).
EDGE_THRESHOLD = 3e-2

#: auto_symbolic's weight of simplicity against fit quality: pykan's 0.8, then (when the first
#: formula is not exact and the ranking changes) a second opinion that favours fit quality, e.g.
#: ``arctanh`` or ``sqrt`` where ``x`` fits nearly as well.
WEIGHTS_SIMPLE = (0.8, 0.5)
#: Then the runners-up (by pykan's score) of every output edge, this many each, with the other
#: edges at pykan's choice (an output edge's function is the formula's outer shape: exp or 1/x,
#: asin or sqrt are hard to tell apart on a numeric fit), at most ``MAX_OUTPUT_TRIALS`` in all.
OUTPUT_RUNNERS_UP, MAX_OUTPUT_TRIALS = 2, 2

#: Labels whose spread (standard deviation) is outside this range are scaled by a power of ten
#: for the search: pruning's thresholds and the l1_entropy penalty are absolute, and labels of
#: order 1/100 were pruned to nothing ("formula: 0"). Every Feynman equation's labels are inside.
LABEL_SPREAD = (1e-2, 1e2)

#: The files :func:`discover` writes into its output folder (``graph.dot`` without Graphviz).
OUTPUT_NAMES = ("model.kantk", "graph.svg", "graph.dot", "activations.png")
#: What :func:`discover` wrote into its output folder: ``{name: sha-256 of the file}``. A later run
#: replaces a file of :data:`OUTPUT_NAMES` only when it is listed here unchanged (or is a diagram
#: of discover's kind): a user's own ``model.kantk`` in the folder is never overwritten.
MANIFEST_NAME = ".kantk-discover.json"
#: Largest manifest read (a few names and hashes).
MAX_MANIFEST_BYTES = 64 * 1024


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes:
        formulas: One sympy expression per output; empty when some edge stayed numeric (no
            candidate of the library fits it) or only a constant fitted; the model and files
            are still written.
        test_rmse: RMSE of the final symbolic model on the test split.
        widths: Node counts per layer after pruning (``model.widths``).
        model: The final (symbolic) model.
        stages: Seconds spent per stage, in order.
        files: Paths written (model, graph, plot), empty when no output folder was given.
        exact: Whether the formula is *snapped*: its constants rounded to simple numbers and its
            test RMSE still at most ``EXACT_RTOL`` times the labels' standard deviation (or a
            few times float32 labels' own round-off, :func:`exact_threshold`).
        structure: The kept attempt's widths as :class:`kantk.KAN` spells them, e.g.
            ``[2, [0, 1], 1]`` (one product node).
        formula_rmse: When the formula is not exact: the test RMSE of ``formulas`` as printed
            (constants rounded), which can be worse than the model's ``test_rmse`` (a formula of
            heavily cancelling terms rounded to 4 digits was 50 times worse); ``None`` otherwise.
    """

    formulas: list[Any]  # empty when some edge could not be made symbolic
    test_rmse: float
    widths: list[int]
    model: KAN
    stages: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    exact: bool = False
    structure: list[Any] = field(default_factory=list)
    formula_rmse: float | None = None


def discover(
    formula: str | None = DEFAULT_FORMULA,
    *,
    data: dict[str, torch.Tensor] | None = None,
    n_vars: int | None = None,
    hidden: Any = None,
    search: bool = True,
    grid_size: int = 3,
    refine_to: int = 10,
    steps: int = 30,
    l1_entropy: float = 1e-3,
    library: Any = "default",
    var_names: Sequence[str] | None = None,
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    threads: int | None = 1,
    registry: Registry | None = None,
    tolerance: float | None = None,
) -> Discovery:
    """Find a closed-form formula for data (or a formula's samples) with a KAN.

    Every attempt runs the recipe on one KAN shape ``[n, hidden, 1]``: fit with the l1_entropy
    regulariser, prune (:func:`kantk.prune`; in a model with product nodes, switch off the edges
    below :data:`EDGE_THRESHOLD` instead), refit, refine the grids to ``refine_to``, refit,
    :func:`kantk.auto_symbolic` on every live edge (the best candidate whatever its r^2), refit.
    Its formula is then expanded, its constants rounded to simple numbers (see
    :func:`snap_formula`), and the snapped formula is kept when its test RMSE is at most
    ``EXACT_RTOL`` times the labels' standard deviation (:func:`exact_threshold`: float32 labels
    allow a few times their round-off): the attempt is *exact*. When it is not,
    the symbolic step runs again from the numeric model with the later weights of
    :data:`WEIGHTS_SIMPLE` (fit quality over simplicity), where they choose other functions, and
    with the output edge's runners-up; then :func:`kantk.improve_symbolic` tries every symbolic
    edge's runners-up, each judged by a refit.

    Args:
        formula: A formula of x1..xn to sample (ignored when ``data`` is given).
        data: A dataset dict (``train_input``, ``train_label``, ``test_input``, ``test_label``),
            e.g. from :func:`kantk.load_csv`; one output column.
        n_vars: Number of variables of ``formula`` (default: the highest ``x<i>`` it names).
        hidden: The hidden layer of the first attempt. ``None`` (default): the shapes of
            :data:`STRUCTURES` in turn (and :data:`TWO_PRODUCTS` with four or more inputs; with
            one input, first no hidden layer at all, :data:`NO_HIDDEN`), then
            with two or three inputs the factored, outer and grouped shapes of
            :func:`factored_shapes` (the outer ones where they apply to the labels); when all fail
            on three or more inputs, the same search on the inputs with a pair replaced by its
            difference or sum where a numeric KAN's partial derivatives in the two cancel (score
            below :data:`SYMMETRY_SCORE`). An
            int: that many sum nodes, then (with ``search``) the widths of
            :data:`SEARCH_WIDTHS` below it. A list ``[n_sum, n_mult]``: that layer only.
        search: Try the further shapes when an attempt is not exact; stop at the first exact
            one, else keep the simplest formula (fewest sympy operations) among the attempts
            whose RMSE is near the best: within ``SIMPLE_SLACK`` times it and within
            ``VARIANCE_SLACK`` (1%) of the labels' variance of its unexplained variance (on noisy
            data the factor alone kept a linear formula at 0.48 over the right one at 0.0499).
            Deterministic.
        grid_size, refine_to: B-spline grid before and after refinement.
        steps: LBFGS steps of each of the four fits.
        l1_entropy: Weight of the sparsity regulariser in the first fit.
        library: Symbolic library (registry name, as for :func:`kantk.auto_symbolic`).
        registry: Where a library name is looked up (``None``: the default registry; a library of
            ``kantk.Registry.with_plugins`` needs that registry).
        var_names: Names of the inputs in the formula (default: the header names of a
            :func:`kantk.load_csv` dataset when each can stand in a formula, as the command line
            takes them; else ``x1 .. xn``).
        seed: Seeds data, initialisation and training.
        output_dir: When given, writes ``model.kantk``, ``graph.svg`` (needs Graphviz's ``dot``;
            ``graph.dot`` otherwise) and ``activations.png`` there (created if missing). Checked
            before any work (see :func:`check_output_dir`); the three files are prepared in a
            temporary folder inside it and then moved into place, so a failed run leaves earlier
            files as they were; the other graph file of an earlier run is removed (only when it
            holds a diagram of this kind; any other file of that name stays). Nothing is
            written when it is None.
        progress: Called with a short message at every stage (e.g. ``print``).
        threads: torch intra-op threads during the run (restored afterwards); ``None`` leaves
            the setting alone. One thread is fastest for these tiny models: a few thousand
            small ops per step gain nothing from threads and stall badly on a busy machine.
        tolerance: A test RMSE, in the labels' units, that is good enough: the search stops at
            the first attempt at or below it, as at an exact one (measured data: its noise level;
            nothing is exact there, so without it every shape is tried, for minutes). ``None``
            (default): only an exact attempt stops it. The formula is then chosen as when none
            is exact, among the attempts made.

    Labels whose spread is outside :data:`LABEL_SPREAD` are divided by a power of ten for the
    search (:func:`label_scale`), and the model and formulas scaled back. A search whose kept
    formula is a constant (and not exact) returns no formula (``formulas == []``).

    Returns:
        A :class:`Discovery`.

    Raises:
        ValueError: Bad arguments (formula, data without a test split of 2 rows or more, sizes,
            threads, library, ``var_names``), all checked
            before training.
        OSError: ``output_dir`` cannot be written (checked before training too).
    """
    for name, value in (("grid_size", grid_size), ("refine_to", refine_to), ("steps", steps)):
        check_int(name, value, 1)
    check_optional_int("threads", threads, 1)
    if tolerance is not None:
        check_number("tolerance", tolerance, 0, finite=True)
    if output_dir is not None:
        check_output_dir(output_dir)
    from kantk.symbolic.library import resolve_library

    # the library itself from here on: every step takes it (an unknown name fails now, before the fits)
    library = resolve_library(library, registry)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _discover(
            formula,
            data,
            n_vars,
            hidden,
            search,
            grid_size,
            refine_to,
            steps,
            l1_entropy,
            library,
            var_names,
            seed,
            output_dir,
            progress,
            tolerance,
        )
    finally:
        torch.set_num_threads(old_threads)


def hidden_layers(hidden: Any, n_in: int, search: bool = True) -> list[Any]:
    """The hidden layers :func:`discover` tries, in order (see its ``hidden`` and ``search``)."""
    if hidden is None:
        tried = list(STRUCTURES) + ([TWO_PRODUCTS] if n_in >= TWO_PRODUCTS_MIN_INPUTS else [])
        if n_in == 1:
            tried = [NO_HIDDEN, *tried]
    elif isinstance(hidden, int) and not isinstance(hidden, bool):
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        tried = [hidden] + [w for w in SEARCH_WIDTHS if w < hidden]
    elif (
        isinstance(hidden, (list, tuple))
        and len(hidden) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in hidden)
        and sum(hidden) > 0
    ):
        return [list(hidden)]
    else:
        raise ValueError(f"hidden must be None, an int >= 1 or [n_sum, n_mult], got {hidden!r}")
    return tried if search else tried[:1]


@dataclass(frozen=True)
class Shape:
    """One attempt's KAN: the hidden layer as :class:`kantk.KAN` spells it, the product nodes'
    arity, and for a *factored* attempt (see :func:`factored_shapes`) its output edges' function
    and the *outer* function (a key of :data:`OUTER_FUNCTIONS`) applied to the whole model, if any;
    ``grid_size`` replaces :func:`discover`'s first grid when set; ``groups[k]``, when set, are the
    inputs of sub-node ``k`` of the product node (default: input ``k`` alone); ``pinned``: before
    the symbolic step, the edges into the product node's sub-nodes are fixed to their best library
    functions with the additive constants held at 0 (see :func:`_pin_products`).
    """

    hidden: Any
    mult_arity: int = 2
    output: str | None = None
    outer: str | None = None
    grid_size: int | None = None
    groups: tuple[tuple[int, ...], ...] | None = None
    pinned: bool = False


@dataclass(frozen=True)
class Outer:
    """An outer function ``h`` of a formula ``h(f(a)*g(b))``: the attempt fits ``f(a)*g(b)`` to
    ``inverse(labels)`` and composes the result with ``h`` (a function of the symbolic library)."""

    inverse: Callable[[torch.Tensor], torch.Tensor]
    applies: Callable[[torch.Tensor], bool]
    text: str
    last: bool = False


#: Outer functions the factored attempts try, in order, when the labels are in the range where
#: the inverse is one-to-one: ``arcsin`` (``asin(n*sin(theta))``, ``asin(a/n)``) for labels in
#: [-pi/2, pi/2], fitted to ``sin(labels)``; ``sqrt`` (``c*sqrt(a**2 + b**2)``) for labels >= 0,
#: fitted to ``labels**2``; ``exp`` for labels > 0, fitted to ``log(labels)``, tried ``last``
#: (after the grouped attempts) and with its sum-and-product attempt ``pinned``
#: (``exp(-theta**2/(2*sigma**2))/sigma`` is ``-log(sigma) - theta**2/(2*sigma**2)`` under log).
OUTER_FUNCTIONS: dict[str, Outer] = {
    "arcsin": Outer(torch.sin, lambda y: bool(y.abs().max() <= math.pi / 2), "sin(labels)"),
    "sqrt": Outer(torch.square, lambda y: bool(y.min() >= 0), "labels**2"),
    "exp": Outer(torch.log, lambda y: bool(y.min() > 0), "log(labels)", last=True),
}


def factored_shapes(
    n_in: int, labels: torch.Tensor | None = None, library: Any = None, grid_size: int = 3
) -> list[Shape]:
    """The factored attempts for ``n_in`` inputs (none above :data:`FACTORED_MAX_INPUTS`).

    A factored attempt fixes in advance the structure the sparsity fit would otherwise have to
    find: one product node of ``n_in`` sub-nodes with input ``i`` alone on sub-node ``i``, its
    output edge symbolic from the start: ``f(a)*g(b)`` (output ``x``), ``1/(f(a)*g(b))`` (output
    ``1/x``), and next to a sum node over every input, ``s(a, b) + f(a)*g(b)`` (both output edges
    ``x``). ``x`` is fixed before training; other functions (a pole, a bounded domain) after the
    first fit, to the numeric output edge. Without the fixed output, a product node and a
    nonlinear output edge trade powers and scales freely (``h(f*g) = h2(f**2*g**2)``), and the
    l1_entropy penalty (an edge's spread) pushes the sub-nodes towards large constants and small
    variations, where the product acts as a sum; so the attempt fits with pykan's grid updates
    and no sparsity penalty. This is how ``n0*exp(-a)``, ``1/(1 + a*b)`` and
    ``beta*(1 + alpha*cos(theta))`` are found.

    These are followed by the two with output ``x`` (one product node; a sum and a product node)
    on a finer first grid, ``2 * grid_size + 1`` (``cos(a) + alpha*cos(a)**2`` on [0, 2 pi] needs
    it: ``cos(a)**2`` has two periods there), and, with ``labels``, by the same two on
    ``grid_size`` under each *outer* function ``h`` of :data:`OUTER_FUNCTIONS` that
    applies to the labels and is in ``library`` (default: ``"default"``): the model is fitted to
    ``h``'s inverse of the labels and then composed with ``h`` (one more layer, its edge ``h``
    fixed), so ``asin(n*sin(theta))`` is found as ``n*sin(theta)`` fitted to ``sin(labels)``.
    With three inputs, the last are the *grouped* attempts: a product node of two sub-nodes, one
    input alone on the first and the other two on the second (``f(c)*(g(a) + h(b))``), output
    ``x``, without and then under each outer function: ``c**2*(a**2 + b**2)`` fitted to
    ``labels**2`` gives ``sqrt(a**2*c**2 + b**2*c**2)``. Last come the two under the outer
    functions marked ``last`` (``exp``, for positive labels, fitted to their logarithm), the
    sum-and-product one ``pinned``: a logarithm turns ``g(b)*exp(f(a)*h(b))`` into
    ``log(g(b)) + f(a)*h(b)``, a sum node and a product node that share the input ``b``, and there
    the fit is free to shift ``f`` by a constant ``p`` and the sum node's ``b`` edge by
    ``-p*h(b)``, which no library function fits; pinning the product's constants removes that
    freedom (``exp(-theta**2/(2*sigma**2))/sqrt(2*pi*sigma**2)``).

    With one input, the one edge (:data:`NO_HIDDEN`) under each outer function that applies to
    the labels: Arrhenius' ``A*exp(-E/(R*T))`` is ``log(A) - (E/R)/T`` under ``exp``, one ``1/x``
    edge (the search printed a Gaussian lookalike).
    """
    if not 1 <= n_in <= FACTORED_MAX_INPUTS:
        return []
    from kantk.symbolic.library import DEFAULT_LIBRARY, resolve_library

    known = resolve_library(DEFAULT_LIBRARY if library is None else library)
    if n_in == 1:
        if labels is None:
            return []
        return [
            Shape(NO_HIDDEN, outer=name)
            for name, outer in OUTER_FUNCTIONS.items()
            if name in known and outer.applies(labels)
        ]
    shapes = [Shape([0, 1], n_in, "x"), Shape([0, 1], n_in, "1/x"), Shape([1, 1], n_in, "x")]
    shapes += [Shape(hidden, n_in, "x", grid_size=2 * grid_size + 1) for hidden in ([0, 1], [1, 1])]
    outers: list[str | None] = [None]
    if labels is not None:
        outers += [name for name, outer in OUTER_FUNCTIONS.items() if name in known and outer.applies(labels)]
    late = [name for name in outers[1:] if name is not None and OUTER_FUNCTIONS[name].last]
    outers = [name for name in outers if name not in late]
    for name in outers[1:]:
        shapes += [Shape([0, 1], n_in, "x", name), Shape([1, 1], n_in, "x", name)]
    if n_in == 3:
        for name in outers:
            for k in range(n_in):
                rest = tuple(i for i in range(n_in) if i != k)
                shapes.append(Shape([0, 1], 2, "x", name, groups=((k,), rest)))
    for name in late:
        shapes += [Shape([0, 1], n_in, "x", name), Shape([1, 1], n_in, "x", name, pinned=True)]
    # the output edges' function must be in the library (a library without 1/x failed mid-search)
    return [shape for shape in shapes if shape.output in known]


def _discover(
    formula,
    data,
    n_vars,
    hidden,
    search,
    grid_size,
    refine_to,
    steps,
    l1_entropy,
    library,
    var_names,
    seed,
    output_dir,
    progress,
    tolerance,
) -> Discovery:
    import kantk

    say = progress or (lambda message: logger.info(message))
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def done(stage: str, message: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = now - clock
        clock = now
        say(f"[{sum(stages.values()):5.1f} s] {message}")

    if data is None:
        if formula is None:
            raise ValueError("discover needs a formula or a data dict")
        if n_vars is None:  # the highest xk of the parsed formula (the parser's errors first)
            from kantk.formula_parser import parse_formula

            found = [int(str(v)[1:]) for v in parse_formula(formula).free_symbols]
            if not found:
                raise ValueError(
                    f"formula {formula!r} names no variable x1, x2, ...: a constant has nothing to "
                    "discover (in Python, n_vars gives it inputs)"
                )
            n_vars = max(found)
        data = kantk.create_dataset(
            formula, n_vars=n_vars, train_num=1000, test_num=1000, seed=seed, dtype=torch.float64
        )
    header = getattr(data, "input_names", None)  # a CSV file's (kantk.load_csv): kept on the model
    data = kantk.check_dataset(data)
    if "test_input" not in data or len(data["test_input"]) < 2:
        raise ValueError(
            "discover needs test_input and test_label with at least 2 rows: exactness is judged on "
            "them (kantk.split_dataset splits a dataset, as the command line does)"
        )
    exact = exact_threshold(data["test_label"])  # in the labels' own dtype: their round-off
    data = {k: v.to(torch.float64) for k, v in data.items()}
    n_in = data["train_input"].shape[1]
    if data["train_label"].dim() != 2 or data["train_label"].shape[1] != 1:
        raise ValueError("discover fits one output; give labels of shape (samples, 1)")
    if var_names is not None and len(var_names) != n_in:
        raise ValueError(f"var_names needs {n_in} names (one per input), got {len(var_names)}")
    from kantk._validation import formula_name_problem, formula_names

    if var_names is None and header is not None and len(header) == n_in and len(set(header)) == n_in:
        # the header's names, as the command line takes them and as the model then records them
        # (its diagram and plot said T, p while the formula said x1, x2)
        var_names = formula_names(header)
    if var_names is not None:  # before the fits: a bad name made every attempt "not symbolic"
        names = [str(v) for v in var_names]
        check_distinct(names)
        for name in names:
            if problem := formula_name_problem(name):
                raise ValueError(f"var_names: {problem}")
    given, scale = data, label_scale(data["train_label"])
    if scale != 1:
        say(
            f"labels scaled by {1 / scale:g} for the search (their spread, "
            f"{float(data['train_label'].std()):.1e}, is far from 1, and pruning's thresholds are "
            "absolute); the test RMSEs until the formula are of the scaled labels"
        )
        data = {**data, "train_label": data["train_label"] / scale, "test_label": data["test_label"] / scale}
    layers = hidden_layers(hidden, n_in, search)
    shapes = [Shape(layer) for layer in layers]
    if hidden is None and search:
        labels = torch.cat([data["train_label"], data["test_label"]])
        shapes += factored_shapes(n_in, labels, library, grid_size)
    exact_rmse = exact / scale
    attempts: list[Attempt] = []
    described: list[str] = []

    def good_enough(attempt: Attempt) -> bool:
        return attempt.exact or (tolerance is not None and attempt.rmse <= tolerance / scale)

    def run(shapes: list[Shape], on: dict[str, torch.Tensor], front: Any = None, text: str = "") -> None:
        """Try ``shapes`` on the data ``on`` (``data``, or its reduced inputs that ``front`` computes)."""
        from kantk.training import grid_warnings_off

        for shape in shapes:
            if attempts and good_enough(attempts[-1]):
                return
            if attempts:
                say(f"not exact (test RMSE {attempts[-1].rmse:.2e}); trying {_describe(shape)}{text}")
            # without kantk.fit's grid warnings: the recipe moves the grids itself, and they spoke
            # to no one (a hidden node beyond its grid is a step it takes before it refits)
            with grid_warnings_off():
                attempt = _attempt(
                    on,
                    on["train_input"].shape[1],
                    shape,
                    grid_size,
                    refine_to,
                    steps,
                    l1_entropy,
                    library,
                    var_names if front is None else None,
                    seed,
                    done,
                    len(attempts),
                    exact_rmse,
                )
            if front is not None:  # the same attempt as a model of the original inputs
                model = _prepend(front, attempt.model)
                if attempt.formulas:
                    attempt = _symbolic_attempt(model, data, var_names, exact_rmse)
                else:
                    attempt = Attempt([], _rmse(model, data), model)
            attempts.append(attempt)
            described.append(_describe(shape) + text)

    run(shapes, data)
    if tolerance is not None and good_enough(attempts[-1]) and not attempts[-1].exact:
        rmse = attempts[-1].rmse * scale
        say(f"test RMSE {rmse:.2e} is within the tolerance {tolerance:g}: the search stops")
    if hidden is None and search and not good_enough(attempts[-1]) and n_in >= 3:
        pairs, scores = _symmetric_pairs(data, steps, seed)
        names = list(var_names) if var_names is not None else [f"x{i + 1}" for i in range(n_in)]
        ways = [f"{names[i]} {'+' if sign > 0 else '-'} {names[j]}" for i, j, sign in pairs]
        done("symmetry", f"symmetry scores (|d/dx_i f -+ d/dx_j f| / (|d/dx_i f| + |d/dx_j f|)): {scores}")
        if pairs:
            on, front = _reduce(data, pairs)
            text = " with " + ", ".join(ways) + " as one input" + ("s" if len(ways) > 1 else "")
            say(f"the function depends on {', '.join(ways)} only (nearly); trying the shapes again{text}")
            m = on["train_input"].shape[1]
            reduced = [Shape(layer) for layer in hidden_layers(None, m, True)]
            reduced += factored_shapes(
                m, torch.cat([data["train_label"], data["test_label"]]), library, grid_size
            )
            run(reduced, on, front, text)
    if hidden is None and search and not any(good_enough(a) for a in attempts):
        polynomial = _polynomial_attempt(data, var_names, exact_rmse)
        say(
            f"not exact (test RMSE {attempts[-1].rmse:.2e}); trying a polynomial of degree <= "
            f"{POLYNOMIAL_DEGREE} (least squares): "
            + ("exact, " + str(polynomial.formulas[0]) if polynomial is not None else "none fits")
        )
        if polynomial is not None:
            attempts.append(polynomial)
            described.append("a polynomial (least squares, its KAN built by formula_to_kan)")
    kept = _simplest(attempts, float(data["test_label"].std()))
    best = attempts[kept]
    if len(attempts) > 1:
        done("search", f"kept the attempt with {described[kept]}: test RMSE {best.rmse:.2e}")
    formulas = best.formulas
    if scale != 1:  # back to the labels' own scale: the output edges times the scale
        import sympy

        _scale_outputs(best.model, scale)
        factor = sympy.Integer(10) ** round(math.log10(scale))
        formulas = [factor * f for f in formulas]
        best = dataclasses.replace(best, formulas=formulas, rmse=_rmse(best.model, given))
        data = given
    formula_rmse: float | None = None
    if formulas and not best.exact:  # the model's formula with constants rounded as far as it stays faithful
        try:
            # rounding is checked on the data: on the grid's range a formula may not even be real
            formulas = kantk.symbolic_formula(
                best.model, x=data["train_input"], var_names=var_names, numeric="raise"
            )
        except ValueError:
            pass  # keep the attempt's unrounded formula
        done("formula", "formula: " + "; ".join(str(f) for f in formulas))
        if all(not getattr(f, "free_symbols", None) for f in formulas):
            say("a constant is not a formula of the inputs: no closed form found")
            formulas = []
        formula_rmse = _formula_rmse(formulas, data, var_names)

    record_column_names(best.model, header)
    files: dict[str, str] = {}
    if output_dir is not None:
        files = _write_outputs(best.model, data["train_input"], os.fspath(output_dir), var_names)
        done("write", "wrote " + ", ".join(files.values()))
    return Discovery(
        formulas,
        best.rmse,
        list(best.model.widths),
        best.model,
        stages,
        files,
        best.exact,
        list(best.model.width_spec),
        formula_rmse if formulas else None,
    )


def _formula_rmse(formulas: Sequence[Any], data: dict[str, torch.Tensor], var_names: Any) -> float | None:
    """The test RMSE of the formula (discover fits one output) as printed, or None when it cannot
    be evaluated (a numeric edge left in, a function without a numpy form)."""
    if len(formulas) != 1:
        return None
    n_in = data["test_input"].shape[1]
    names = [str(v) for v in var_names] if var_names is not None else [f"x{i + 1}" for i in range(n_in)]
    x = data["test_input"].detach().to("cpu", torch.float64).numpy()
    return _test_rmse(
        formulas[0], names, x, data["test_label"].detach().to("cpu", torch.float64).numpy()[:, 0]
    )


def _test_rmse(formula: Any, names: Sequence[str], x: Any, y: Any) -> float | None:
    """RMSE of ``formula`` of the variables ``names`` on the rows ``x`` (numpy, (n, inputs))
    against ``y`` ((n,)), or None when it cannot be evaluated."""
    import numpy as np

    from kantk.symbolic.formula import formula_to_callable

    try:
        f = formula_to_callable(formula, var_names=list(names))
        with np.errstate(all="ignore"):
            value = np.asarray(f(x), dtype=float)
        value = np.broadcast_to(value.reshape(-1) if value.size == len(y) else value, y.shape)
        return float(np.sqrt(np.mean((value - y) ** 2)))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError, NameError):
        return None  # NameError: a numeric edge's f_l_i_j, which numpy cannot evaluate


#: Highest degree of the polynomial :func:`discover` tries when no KAN shape is exact.
POLYNOMIAL_DEGREE = 4


def _polynomial_attempt(data: dict[str, torch.Tensor], var_names: Any, exact_rmse: float) -> Attempt | None:
    """The exact polynomial through ``data`` (:func:`kantk.polynomial.exact_polynomial`) as an
    attempt, with its KAN (:func:`kantk.formula_to_kan`); None when there is none."""
    import kantk
    from kantk.polynomial import exact_polynomial

    formula = exact_polynomial(data, var_names, exact_rmse, POLYNOMIAL_DEGREE)
    if formula is None:
        return None
    n_in = data["train_input"].shape[1]
    names = list(var_names) if var_names is not None else [f"x{i + 1}" for i in range(n_in)]
    try:
        model = kantk.formula_to_kan(formula, variables=names, dtype=torch.float64)
    except ValueError:
        return None
    if list(model.widths)[0] != n_in:  # an input the polynomial does not use: the KAN lacks it
        return None
    rmse = _rmse(model, data)
    return Attempt([formula], rmse, model, exact=True) if rmse <= exact_rmse else None


def _describe(shape: Shape) -> str:
    text = (
        "no hidden layer (one edge per input)"
        if shape.hidden == NO_HIDDEN
        else f"the hidden layer {shape.hidden}"
    )
    if shape.mult_arity != 2:
        text += f" (mult_arity {shape.mult_arity})"
    if shape.output is not None:
        on = (
            "each input on its own sub-node"
            if shape.groups is None
            else f"sub-nodes over the inputs {shape.groups}"
        )
        text += f", factored ({on}, output edges {shape.output})"
    if shape.grid_size is not None:
        text += f", first grid {shape.grid_size}"
    if shape.outer is not None:
        text += f", fitted to {OUTER_FUNCTIONS[shape.outer].text} and composed with {shape.outer}"
    if shape.pinned:
        text += ", the product's edges pinned"
    return text


@dataclass
class Attempt:
    """One run of the recipe: its formulas (snapped when ``exact``), test RMSE and model."""

    formulas: list[Any]
    rmse: float
    model: KAN
    exact: bool = False


def _close(rmse: float, best: float, spread: float) -> bool:
    """Whether a test RMSE of ``rmse`` is near ``best`` (finite): within :data:`SIMPLE_SLACK` times
    it, and its unexplained variance within :data:`VARIANCE_SLACK` of the labels' (std ``spread``)
    of the best's. At round-off level the factor decides; on noisy data, the variance. A NaN
    ``rmse`` is not near."""
    if not rmse <= SIMPLE_SLACK * best:
        return False
    return spread <= 0 or (rmse**2 - best**2) <= VARIANCE_SLACK * spread**2


def _simplest(attempts: Sequence[Attempt], spread: float) -> int:
    """Index of the first exact attempt; else the one with the fewest formula operations among
    those with a formula whose RMSE is near the best (:func:`_close`, labels' std ``spread``);
    the lowest RMSE when none has a formula; first on ties."""
    import sympy

    for k, a in enumerate(attempts):
        if a.exact:
            return k
    with_formula = [k for k, a in enumerate(attempts) if a.formulas and math.isfinite(a.rmse)]
    if not with_formula:
        finite = [k for k, a in enumerate(attempts) if math.isfinite(a.rmse)] or [0]
        return min(finite, key=lambda k: attempts[k].rmse)
    best = min(attempts[k].rmse for k in with_formula)
    close = [k for k in with_formula if _close(attempts[k].rmse, best, spread)]
    return min(close, key=lambda k: sum(int(sympy.count_ops(f)) for f in attempts[k].formulas))


def _attempt(
    data, n_in, shape, grid_size, refine_to, steps, l1_entropy, library, var_names, seed, done, n, exact_rmse
) -> Attempt:
    """One run of the recipe; ``done(stage, message)`` reports (stages suffixed by the attempt)."""
    import kantk

    if shape.outer is not None:  # the recipe on the inverse of the labels, then composed
        inverse = OUTER_FUNCTIONS[shape.outer].inverse
        inner_data = {
            **data,
            "train_label": inverse(data["train_label"]),
            "test_label": inverse(data["test_label"]),
        }
        inner = _attempt(
            inner_data,
            n_in,
            dataclasses.replace(shape, outer=None),
            grid_size,
            refine_to,
            steps,
            l1_entropy,
            library,
            var_names,
            seed,
            done,
            n,
            EXACT_RTOL * float(inner_data["test_label"].std()),
        )
        model = kantk.surgery.expand_depth(inner.model)
        kantk.fix_symbolic(model, len(model.layers) - 1, 0, 0, shape.outer, fit_params=False, library=library)
        attempt = _symbolic_attempt(model, data, var_names, exact_rmse) if inner.formulas else None
        attempt = attempt or Attempt([], _rmse(model, data), model)
        done(
            f"outer#{n + 1}",
            f"composed with {shape.outer}: test RMSE {attempt.rmse:.2e}"
            + ("; exact formula: " + "; ".join(map(str, attempt.formulas)) if attempt.exact else ""),
        )
        return attempt

    tag = "" if n == 0 else f"#{n + 1}"

    def done_n(stage: str, message: str) -> None:
        done(stage + tag, message)

    with _float64():
        model = KAN(
            [n_in, 1] if shape.hidden == NO_HIDDEN else [n_in, shape.hidden, 1],
            basis_kwargs={"grid_size": shape.grid_size or grid_size, "order": 3},
            mult_arity=shape.mult_arity,
            seed=seed,
        )
    products = any(layer.nodes is not None for layer in model.layers)
    moved = _grids_on_the_data(model, data["train_input"])
    fit = {"progress": False, "seed": seed}
    done_n(
        "setup",
        f"data: {len(data['train_input'])} train / {len(data['test_input'])} test samples, "
        f"model {model.width_spec}" + (" (first layer's grids moved to the inputs' range)" if moved else ""),
    )

    if shape.output is not None:
        _factor(model, shape.groups)
        last = len(model.layers) - 1
        outputs = (model.layers[last].mask != 0).nonzero().tolist()
        if shape.output == "x":  # the identity from the start
            for q, p in outputs:
                kantk.fix_symbolic(model, last, p, q, "x", fit_params=False, library=library)
        kantk.fit(model, data, steps=steps, grid_update_every=max(1, steps // 6), **fit)
        if shape.output != "x":  # a pole or a bounded domain: fitted to the numeric output edge
            for q, p in outputs:
                kantk.fix_symbolic(model, last, p, q, shape.output, data["train_input"], library=library)
        done_n(
            "sparsify",
            f"fitted with grid updates ({steps} LBFGS steps), output edges {shape.output}: "
            f"test RMSE {_rmse(model, data):.2e}",
        )
    else:
        kantk.fit(model, data, steps=steps, regularisers={"l1_entropy": {"weight": l1_entropy}}, **fit)
        rmse = _rmse(model, data)
        done_n("sparsify", f"fitted with l1_entropy ({steps} LBFGS steps): test RMSE {rmse:.2e}")
    if products:
        off = _switch_off_small_edges(model, data["train_input"], EDGE_THRESHOLD)
        kantk.fit(model, data, steps=steps, **fit)
        done_n("prune", f"switched off {off} small edges and refitted: test RMSE {_rmse(model, data):.2e}")
    else:
        model = kantk.prune(model, data["train_input"])
        kantk.fit(model, data, steps=steps, **fit)
        done_n("prune", f"pruned to {model.widths} and refitted: test RMSE {_rmse(model, data):.2e}")
    refine_to = max(refine_to, shape.grid_size or grid_size)  # a fine first grid is never coarsened
    model = kantk.refine(model, grid_size=refine_to)
    kantk.fit(model, data, steps=steps, **fit)
    done_n("refine", f"refined to G={refine_to} and refitted: test RMSE {_rmse(model, data):.2e}")
    x = data["train_input"]
    if shape.pinned:
        pinned = _pin_products(model, x, library)
        kantk.fit(model, data, steps=steps, **fit)
        for handle in pinned:
            handle.remove()
        done_n(
            "pin",
            "the product node's edges symbolic, their additive constants held at 0, and refitted: "
            f"test RMSE {_rmse(model, data):.2e}",
        )
    numeric = copy.deepcopy(model)
    # opinions: (weight_simple, {output edge: function}); the first is pykan's choice
    opinions: list[tuple[float, dict[tuple[int, int], str]]] = [(w, {}) for w in WEIGHTS_SIMPLE]
    last = len(model.layers) - 1
    for q, p in (model.layers[last].mask != 0).nonzero().tolist() if shape.output is None else []:
        ranked = kantk.suggest_symbolic(numeric, last, p, q, x, library=library, topk=4 + OUTPUT_RUNNERS_UP)
        distinct = ranked[:1]
        for c in ranked[1:]:  # the same function twice in a library (sqrt, x^0.5) fits the same
            if len(distinct) <= OUTPUT_RUNNERS_UP and all(abs(c.r2 - d.r2) > 1e-12 for d in distinct):
                distinct.append(c)
        opinions += [(WEIGHTS_SIMPLE[0], {(p, q): c.name}) for c in distinct[1:]]
    first: Attempt | None = None
    seen: list[list[Any]] = []
    spread = float(data["test_label"].std())  # the attempts' RMSEs are on this test split
    for k, (weight, forced) in enumerate(opinions[: len(WEIGHTS_SIMPLE) + MAX_OUTPUT_TRIALS]):
        model = copy.deepcopy(numeric)
        chosen = kantk.auto_symbolic(model, x, library=library, r2_threshold=-math.inf, weight_simple=weight)
        for (p, q), name in forced.items():
            kantk.fix_symbolic(model, last, p, q, name, x, library=library)
        names = sorted(str((c.layer, c.i, c.j, c.name)) for c in chosen)
        names = sorted(set(names) | {str((last, p, q, name)) for (p, q), name in forced.items()})
        if names in seen:
            continue  # the same functions as an earlier opinion
        seen.append(names)
        kantk.fit(model, data, steps=steps, **fit)
        attempt = _symbolic_attempt(model, data, var_names, exact_rmse)
        why = ""
        if not math.isfinite(attempt.rmse):
            why = (
                " (the symbolic model is not finite on some test inputs: an edge's argument left its "
                "function's domain there, e.g. log or a root of a negative number)"
            )
        how = f"weight_simple {weight}" + "".join(
            f", output edge {p} -> {q} as {n}" for (p, q), n in forced.items()
        )
        done_n(
            f"symbolic{k or ''}",
            f"every edge symbolic ({how}), refitted: test RMSE {attempt.rmse:.2e}{why}; "
            + (
                "exact formula (constants rounded, fits to round-off): "
                + "; ".join(map(str, attempt.formulas))
                if attempt.exact
                else "no closed form (some edge stayed numeric)"
                if not attempt.formulas
                else "not exact (the formula with rounded constants does not fit the data to round-off)"
            ),
        )
        if attempt.exact:
            return attempt
        if first is None or (
            attempt.formulas and math.isfinite(attempt.rmse) and not _close(first.rmse, attempt.rmse, spread)
        ):
            first = attempt  # a later opinion replaces the first only when far better
    assert first is not None
    if first.formulas and math.isfinite(first.rmse):  # one edge's runners-up, judged by a refit
        model = copy.deepcopy(first.model)
        try:
            improved = kantk.improve_symbolic(
                model, x, data["train_label"], library=library, target_rmse=exact_rmse
            )
        except ValueError:  # no symbolic edge left (all constant), or not finite on the data
            return first
        attempt = _symbolic_attempt(model, data, var_names, exact_rmse)
        swaps = ", ".join(f"edge {(layer, i, j)} {old} -> {new}" for layer, i, j, old, new in improved.swaps)
        done_n(
            "improve",
            f"tried the runners-up of every symbolic edge ({swaps or 'no swap kept'}): test RMSE "
            f"{attempt.rmse:.2e}; "
            + ("exact formula: " + "; ".join(map(str, attempt.formulas)) if attempt.exact else "not exact"),
        )
        better = math.isfinite(attempt.rmse) and not _close(first.rmse, attempt.rmse, spread)
        if attempt.exact or (attempt.formulas and better):
            return attempt
    return first


def _pin_products(model: KAN, x: torch.Tensor, library: Any) -> list[Any]:
    """Fix the edges into the first layer's product sub-nodes to their best library functions,
    ``c*f(a*x + b) + d``, with ``d = 0`` held there by a gradient hook (returned, to be removed).

    A product node next to a sum node over the same input is free up to a constant: ``(f + p)*h``
    equals ``f*h`` plus ``p*h`` on the sum node's edge, so the fit may leave the sum edge a blend of
    two functions; with the product's constants at 0, the sum edges carry only their own function.
    Among the :data:`PIN_CANDIDATES` best candidates, those within :data:`PIN_TIE` of the best's
    ``1 - r2`` are tied (``x**2``, ``cos`` and ``gaussian`` all fit a parabola, the last two near
    their extremum), and the one whose values carry the least constant (mean over spread) wins:
    ``c*cos(a*x)`` with a small ``a`` hides the offset ``c`` that pinning ``d`` is meant to remove.
    An edge whose every candidate leaves the function's domain stays numeric.
    """
    import kantk
    from kantk.symbolic.library import DEFAULT_LIBRARY, resolve_library

    layer: Any = model.layers[0]
    nodes = layer.nodes
    if nodes is None:
        return []
    subs = {s for node, op in enumerate(nodes.ops) if op != "sum" for s in nodes.subnodes(node)}
    edges = [(q, p) for q, p in (layer.mask != 0).nonzero().tolist() if q in subs]
    fixed = []
    lib = resolve_library(DEFAULT_LIBRARY if library is None else library)
    tiny = torch.finfo(x.dtype).tiny

    def constant(c: Any, p: int) -> float:  # the mean of c*f(a*x_p + b) on the data over its spread
        a, b, scale, _ = c.params
        values = scale * lib[c.name].torch_fn(a * x[:, p] + b)
        return float(values.mean().abs() / values.std().clamp_min(tiny))

    for q, p in edges:
        try:
            ranked = kantk.suggest_symbolic(model, 0, p, q, x, library=library, topk=PIN_CANDIDATES)
            worst = PIN_TIE * max(1 - ranked[0].r2, tiny)
            scored = [(constant(c, p), k) for k, c in enumerate(ranked) if 1 - c.r2 <= worst]
            tied = [(value, k) for value, k in scored if math.isfinite(value)]  # rank breaks ties
            choice = ranked[min(tied)[1]] if tied else ranked[0]
            kantk.fix_symbolic(model, 0, p, q, choice.name, x, library=library)
        except (IndexError, ValueError):  # no candidate stays in its domain there
            continue
        fixed.append((q, p))
    if not fixed:
        return []
    keep = torch.ones_like(layer.symbolic_affine)
    with torch.no_grad():
        for q, p in fixed:
            layer.symbolic_affine[q, p, 3] = 0.0
            keep[q, p, 3] = 0.0
    return [layer.symbolic_affine.register_hook(lambda grad: grad * keep)]


def _symmetric_pairs(
    data: dict[str, torch.Tensor], steps: int, seed: int
) -> tuple[list[tuple[int, int, int]], str]:
    """Disjoint pairs ``(i, j, sign)`` of inputs the labels seem to depend on only through
    ``x_i + sign * x_j`` (AI Feynman's translational symmetry), best first, and every pair's score.

    A numeric KAN ``[n, 2n + 1, 1]`` (G = :data:`SYMMETRY_GRID`) is fitted to the data; a pair's
    score is the median over the test inputs of ``|df/dx_i - sign * df/dx_j| / (|df/dx_i| +
    |df/dx_j|)`` (0 for an exact symmetry, about 1 for none), and a pair is taken when its score is
    below :data:`SYMMETRY_SCORE`. A wrong pair costs time only: the attempts on the reduced inputs
    are judged on the original data like every other attempt.
    """
    import kantk

    n = data["train_input"].shape[1]
    with _float64():
        model = KAN([n, 2 * n + 1, 1], basis_kwargs={"grid_size": SYMMETRY_GRID, "order": 3}, seed=seed)
    _grids_on_the_data(model, data["train_input"])
    kantk.fit(model, data, steps=steps, grid_update_every=max(1, steps // 6), progress=False, seed=seed)
    x = data["test_input"].detach().clone().requires_grad_(True)
    grad = torch.autograd.grad(model(x).sum(), x)[0].detach()
    found: list[tuple[float, int, int, int]] = []
    for i in range(n):
        for j in range(i + 1, n):
            for sign in (-1, 1):
                size = grad[:, i].abs() + grad[:, j].abs()
                ratio = (grad[:, i] + sign * grad[:, j]).abs() / size.clamp_min(torch.finfo(size.dtype).tiny)
                found.append((float(ratio.median()), i, j, -sign))
    found.sort()
    pairs: list[tuple[int, int, int]] = []
    used: set[int] = set()
    for score, i, j, sign in found:
        if score < SYMMETRY_SCORE and not {i, j} & used:
            pairs.append((i, j, sign))
            used |= {i, j}
    text = ", ".join(f"x{i + 1}{'+' if sign > 0 else '-'}x{j + 1} {score:.2g}" for score, i, j, sign in found)
    return pairs, text


def _reduce(
    data: dict[str, torch.Tensor], pairs: Sequence[tuple[int, int, int]]
) -> tuple[dict[str, torch.Tensor], Any]:
    """The data with ``x_i + sign * x_j`` in place of ``x_i`` and without ``x_j`` for every pair,
    and the symbolic layer that computes those inputs from the original ones (edges ``x``)."""
    from kantk.layer import KANLayer
    from kantk.symbolic.library import get_library

    n = data["train_input"].shape[1]
    partner = {i: (j, sign) for i, j, sign in pairs}
    kept = [k for k in range(n) if k not in {j for _, j, _ in pairs}]
    reduced = dict(data)
    for split in ("train_input", "test_input"):
        x = data[split]
        columns = [x[:, k] + partner[k][1] * x[:, partner[k][0]] if k in partner else x[:, k] for k in kept]
        reduced[split] = torch.stack(columns, dim=1)
    identity = get_library("default")
    with torch.random.fork_rng(devices=[]), _float64():
        front = KANLayer(n, len(kept))
    with torch.no_grad():
        front.mask.zero_()
        for q, k in enumerate(kept):
            front.set_symbolic_edge(q, k, identity["x"], identity.source("x"), (1.0, 0.0, 1.0, 0.0))
            if k in partner:
                j, sign = partner[k]
                front.set_symbolic_edge(
                    q, j, identity["x"], identity.source("x"), (1.0, 0.0, float(sign), 0.0)
                )
    return reduced, front


def _prepend(front: Any, model: KAN) -> KAN:
    """A copy of ``model`` with the layer ``front`` before its first layer."""
    new = copy.deepcopy(model)
    new.layers.insert(0, copy.deepcopy(front))
    new.widths = [front.in_features, *model.widths]
    return new


def _factor(model: KAN, groups: Sequence[Sequence[int]] | None = None) -> None:
    """The inputs ``groups[k]`` alone on sub-node ``k`` of every product node of the first layer
    whose arity is ``len(groups)`` (the mask of the other edges into those sub-nodes set to 0);
    ``groups`` defaults to input ``i`` alone on sub-node ``i``."""
    layer: Any = model.layers[0]
    nodes = layer.nodes
    if nodes is None:
        return
    if groups is None:
        groups = [[i] for i in range(layer.in_features)]
    with torch.no_grad():
        for node, op in enumerate(nodes.ops):
            sub = list(nodes.subnodes(node))
            if op != "sum" and len(sub) == len(groups):
                for s, group in zip(sub, groups):
                    layer.mask[s] = 0
                    layer.mask[s, list(group)] = 1


def _symbolic_attempt(model: KAN, data, var_names, exact_rmse: float) -> Attempt:
    """The attempt a symbolic, refitted model makes: its snapped formula when exact."""
    import kantk

    rmse = _rmse(model, data)
    from kantk.symbolic.formula import numeric_edges

    if numeric_edges(model):  # some edge stayed numeric: keep the model
        return Attempt([], rmse, model)
    raw = kantk.symbolic_formula(model, var_names=var_names, simplify=False, digits=None, numeric="raise")
    snapped = [snap_formula(f, data, var_names, exact_rmse) for f in raw]
    if all(s is not None for s in snapped):
        return Attempt(snapped, rmse, model, exact=True)
    return Attempt(raw, rmse, model)


#: Tolerances (relative) of :func:`snap_formula`'s rounding, tried in turn until one fits: the
#: loosest gives the simplest numbers, the tighter ones keep a constant the loose one snaps to a
#: simpler, wrong neighbour (7*pi/4 = 5.4978 is within 1e-3 of 11/2).
SNAP_TOLERANCES = (1e-3, 1e-6, 1e-9)
#: Longest :func:`snap_formula` of one formula (a usual one takes well under a second): sympy's
#: expand, powsimp and cancel have no useful bound in a formula's size, and a CSV of 1,000 inputs
#: ran for minutes before a RecursionError. A formula whose expansion is past
#: :data:`kantk.symbolic.bounds.MAX_EXPANSION_TERMS` terms is not snapped at all.
SNAP_SECONDS = 30.0


def snap_formula(
    expr: Any, data: dict[str, torch.Tensor], var_names: Sequence[str] | None, tolerance: float
) -> Any | None:
    """``expr`` expanded, with simple constants, when that still fits the test data; else None.

    The formula is expanded (products, powers of sums, exponentials of sums) and logarithms of
    products split; the leading coefficient of a power's base or a logarithm's argument is taken
    out (``(2.4*a*b + 2.4)**-1`` -> ``0.417*(a*b + 1)**-1``); every float constant is rounded as
    :func:`kantk.feynman.round_constants` does (to ``p/q`` times 1, pi, sqrt(2), ... or 0 below
    1e-3), within each relative tolerance of :data:`SNAP_TOLERANCES` in turn (a tighter one only
    where it leaves no more constants unrounded than the loosest). The first result whose RMSE on
    ``data``'s test split is at most ``tolerance`` (and finite) is returned, else None; the floats
    it leaves are written with as few significant digits as still fit (``0.01``, not
    ``0.00999999999999999``), and whole numbers as integers. When nothing fits, the same is tried on
    the formula's fraction cancelled (``sympy.cancel``, up to :data:`CANCEL_MAX_OPS` operations),
    whose terms may cancel only together; a result is cancelled too when that makes it smaller
    (``x1/(2*(x2/2 + 1))`` -> ``x1/(x2 + 2)``). None too for a formula whose expansion passes
    :data:`~kantk.symbolic.bounds.MAX_EXPANSION_TERMS` terms, or whose snapping takes longer than
    :data:`SNAP_SECONDS` (on the main thread; see :func:`kantk.symbolic.formula._within`).
    """
    import sympy
    from sympy.polys.polyerrors import BasePolynomialError

    from kantk.symbolic.bounds import MAX_EXPANSION_TERMS, expansion_work
    from kantk.symbolic.formula import _within

    names = (
        list(var_names)
        if var_names is not None
        else [f"x{i + 1}" for i in range(data["test_input"].shape[1])]
    )
    x = data["test_input"].detach().cpu().numpy()
    y = data["test_label"].detach().cpu().numpy()[:, 0]

    def fits(candidate: Any) -> bool:
        rmse = _test_rmse(candidate, names, x, y)
        return rmse is not None and math.isfinite(rmse) and rmse <= tolerance

    def snap() -> Any:
        e = sympy.expand(sympy.expand_log(expr, force=True))
        e = sympy.expand(_take_out_coefficients(e))
        found = _snapped(e, fits)
        if found is None and sympy.count_ops(e) <= CANCEL_MAX_OPS:
            # sympy.expand leaves a fraction's common factors: x1/(x2 + 2) came as
            # -9.97*(0.38/(x2 + 2))*(-0.264*x1 - 0.0677*x2 - 0.135) - 0.257, whose x2 terms
            # cancel only together, and rounding each constant alone broke that
            cancelled = sympy.expand(_take_out_coefficients(sympy.cancel(e)))
            if cancelled != e:
                found = _snapped(cancelled, fits)
        if found is not None and sympy.count_ops(found) <= CANCEL_MAX_OPS:
            tidy = sympy.cancel(found)  # x1/(2*(x2/2 + 1)) is x1/(x2 + 2): fewer nodes, same operations
            if _tree_size(tidy) < _tree_size(found) and fits(tidy):
                found = tidy
        return found

    try:
        if expansion_work(sympy.sympify(expr)) > MAX_EXPANSION_TERMS:
            return None  # (a + b + ... )**5 of 16 inputs: 15,504 terms, 75 s
        done, found = _within(snap, SNAP_SECONDS)
        return found if done else None
    except (
        TypeError,
        ValueError,
        ZeroDivisionError,
        OverflowError,
        AttributeError,
        RecursionError,
        BasePolynomialError,
    ):
        return None


def _tree_size(expr: Any) -> int:
    """Nodes of a sympy expression tree, numbers included (``count_ops`` counts ``x1/(2*(x2/2 + 1))``
    and ``x1/(x2 + 2)`` alike)."""
    import sympy

    return sum(1 for _ in sympy.preorder_traversal(expr))


def _snapped(e: Any, fits: Callable[[Any], bool]) -> Any | None:
    """:func:`snap_formula`'s rounding of the expanded ``e``: the first rounding (by
    :data:`SNAP_TOLERANCES`) that ``fits``, its leftover floats as short as still fit; else None."""
    import sympy

    from kantk.feynman import round_constants

    tried: list[Any] = []
    for rel in SNAP_TOLERANCES:
        rounded = sympy.powsimp(round_constants(e, rel=rel))  # exp(a)*exp(b) -> exp(a + b)
        # a tighter tolerance must round as many constants as the loosest (1e-9 rounds almost
        # none, and the raw formula would pass for a snapped one)
        if rounded in tried or (tried and len(rounded.atoms(sympy.Float)) > len(tried[0].atoms(sympy.Float))):
            continue
        tried.append(rounded)
        if fits(rounded):
            # the constants left unrounded, in as few digits as still fit (0.00999999999999999
            # was printed for 0.01)
            for rel_digits in (*SNAP_TOLERANCES, SHORTEST_RTOL):
                shorter = _shortest_decimals(rounded, rel_digits)
                if shorter == rounded or fits(shorter):
                    return shorter
            return rounded
    return None


#: Largest formula (sympy operations) whose fraction :func:`snap_formula` also cancels
#: (``sympy.cancel``) when the expanded form does not snap: cancelling is polynomial algebra, slow
#: on big formulas.
CANCEL_MAX_OPS = 200
#: Relative change below which :func:`snap_formula` always tries a float constant's shortest
#: decimal: the last digits of a float64 written out, not a change of value.
SHORTEST_RTOL = 1e-13


def _shortest_decimals(expr: Any, rel: float) -> Any:
    """``expr`` with every float constant ``c`` replaced by the decimal of fewest significant digits
    within ``rel * |c|`` of it (``0.00999999999999999`` -> ``0.01``)."""
    import sympy

    subs = {}
    for f in expr.atoms(sympy.Float):
        c = float(f)
        if not math.isfinite(c) or c == 0:
            continue
        for digits in range(1, 18):
            short = float(f"{c:.{digits - 1}e}")
            if abs(short - c) <= rel * abs(c):
                if short == round(short) and abs(short) < 2**53:  # 1.0*sin(x1) is sin(x1)
                    subs[f] = sympy.Integer(int(short))
                elif short != c:
                    subs[f] = sympy.Float(short)
                break
    return expr.xreplace(subs) if subs else expr


def _take_out_coefficients(e: Any) -> Any:
    """``(k*u + ...)**p`` -> ``k**p * (u + .../k)**p`` and ``log(k*u + ...)`` -> ``log(k) + log(u + ...)``
    with ``k`` the largest coefficient of the sum (positive ``k`` only where the power is not an
    integer, and for logarithms)."""
    import sympy

    if e.is_Atom:
        return e
    e = e.func(*[_take_out_coefficients(a) for a in e.args])
    base = e.base if e.is_Pow else e.args[0] if isinstance(e, sympy.log) else None
    if base is None or not base.is_Add:
        return e
    k = max((t.as_coeff_Mul()[0] for t in base.args), key=lambda c: abs(float(c)))
    if k == 0 or k == 1:
        return e
    inner = sympy.expand(base / k)
    if e.is_Pow:
        if e.exp.is_integer or float(k) > 0:
            return sympy.Pow(k, e.exp) * sympy.Pow(inner, e.exp)
        return e
    return sympy.log(k) + sympy.log(inner) if float(k) > 0 else e


def _switch_off_small_edges(model: KAN, x: torch.Tensor, threshold: float) -> int:
    """Mask the live edges whose output's std on ``x`` is below ``threshold`` times the largest in
    their layer, but keep the largest edge into every sub-node; returns how many were masked."""
    off = 0
    with torch.no_grad():
        h = x.to(model.dtype)
        for layer in model.layers:
            sd = layer.activations(h).std(0)  # (out, in)
            live = layer.mask != 0
            small = live & (sd < threshold * sd.max())
            strongest = sd.argmax(dim=1)
            small[torch.arange(sd.shape[0]), strongest] = False
            layer.mask[small] = 0
            off += int(small.sum())
            h = layer(h)
    return off


def _grids_on_the_data(model: KAN, x: torch.Tensor) -> bool:
    """Move the first layer's grids to the inputs' range when some input leaves it; returns whether.

    Unscaled data (a CSV of ``n*T/V`` in [1, 2]) would otherwise sit in the B-splines' outer
    intervals of the default grid [-1, 1], with a few intervals for the whole data. The new grid is
    uniform over the inputs' range (``grid_eps=1``), so the fast evaluation path stays; data within
    the grid range (the formula mode's samples) leaves the model as it was.
    """
    first: Any = model.layers[0]
    lo, hi = first.basis.range_ends(x.dtype)
    if not bool(((x < lo) | (x > hi)).any()):
        return False
    first.update_grid(x, grid_eps=1.0)
    return True


def check_output_dir(folder: str | os.PathLike[str]) -> None:
    """Raise unless :func:`discover` can write its files into ``folder`` (checked before any work).

    ``folder`` must be an existing folder or not exist yet; none of :data:`OUTPUT_NAMES` in it may
    be a folder; a file discover is to write may already be there only as an earlier run wrote it
    (listed unchanged in :data:`MANIFEST_NAME`, or a diagram of discover's kind); and a file must
    be creatable in it (or, when it does not exist, in its nearest existing parent; tried with a
    temporary file that is removed at once).

    Raises:
        NotADirectoryError: ``folder`` (or a parent) is a file.
        IsADirectoryError: One of the output names is a folder.
        FileExistsError: A file to be written is there and is not an earlier run's.
        PermissionError: Nothing can be written there.
    """
    folder = os.fspath(folder)
    if not folder:
        raise NotADirectoryError("the output folder path is empty")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"the output folder {folder!r} exists and is a file, not a folder")
    for name in (*OUTPUT_NAMES, MANIFEST_NAME):
        if os.path.isdir(os.path.join(folder, name)):
            raise IsADirectoryError(
                f"{os.path.join(folder, name)!r} is a folder; discover writes a file there"
            )
    listed = os.path.join(folder, MANIFEST_NAME)
    if os.path.lexists(listed) and _read_manifest(listed) is None:
        raise FileExistsError(
            f"{listed!r} exists and is not a record kantk discover wrote; discover does not replace it: "
            "move it away or choose another -o folder"
        )
    for name in _written_names():
        path = os.path.join(folder, name)
        if os.path.lexists(path) and not _written_by_discover(folder, name):
            raise FileExistsError(
                f"{path!r} exists and is not listed unchanged in {MANIFEST_NAME}, the record of the files "
                "an earlier kantk discover run wrote there (your own file, one changed since, or one of a "
                "run before kantk kept that record); discover does not replace it: move it away or choose "
                "another -o folder"
            )
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"cannot create the output folder {folder!r}: {existing!r} is a file")
    if any(len(os.fsencode(part)) > 255 for part in os.path.abspath(folder).split(os.sep)):
        raise OSError(f"cannot create the output folder {folder[:60]!r}...: a name in it is too long")
    try:
        fd, probe = tempfile.mkstemp(prefix=".kantk-probe-", dir=existing)
    except OSError as exc:
        raise PermissionError(
            f"cannot write the output folder {folder!r}: {exc.strerror or exc} ({existing!r})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _write_outputs(
    model: KAN, x: torch.Tensor, folder: str, var_names: Sequence[str] | None
) -> dict[str, str]:
    import kantk
    from kantk.export import temporary_folder_beside, to_graphviz

    check_output_dir(folder)  # again: the folder may have changed during training
    os.makedirs(folder, exist_ok=True)
    model_name, graph, plot = _written_names()
    names = {"model": model_name, "graph": graph, "plot": plot}
    other = "graph.dot" if graph == "graph.svg" else "graph.svg"
    stale = os.path.join(folder, other)
    # an earlier run's other diagram goes, as its record lists it (before the record is replaced);
    # a diagram the user wrote there (kantk export writes the same kind) stays
    stale_is_ours = _written_by_discover(folder, other)
    with temporary_folder_beside(os.path.join(folder, names["model"])) as staging:
        staged = {key: os.path.join(staging, name) for key, name in names.items()}
        kantk.save(model, staged["model"])
        dot = to_graphviz(model, x, var_names=var_names)
        if graph == "graph.svg":
            staged["graph"] = dot.render(filename=os.path.join(staging, "graph"), format="svg", cleanup=True)
        else:
            dot.save(filename=staged["graph"])
            logger.warning(
                "Graphviz 'dot' not found: wrote the DOT source %s instead of an SVG",
                os.path.join(folder, graph),
            )
        kantk.plot_activations(model, x, in_vars=var_names).savefig(staged["plot"], format="png", dpi=150)
        files = {key: os.path.join(folder, name) for key, name in names.items()}
        manifest = {name: _sha256(staged[key]) for key, name in names.items()}
        staged_manifest = os.path.join(staging, MANIFEST_NAME)
        with open(staged_manifest, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1)
        for key in names:  # every file is complete before the first is moved into place
            os.replace(staged[key], files[key])
        os.replace(staged_manifest, os.path.join(folder, MANIFEST_NAME))
        if stale_is_ours and os.path.isfile(stale) and not os.path.islink(stale):
            os.remove(stale)
    return files


def _written_names() -> tuple[str, str, str]:
    """The model, diagram and plot names :func:`discover` writes (the diagram as DOT source when
    Graphviz's ``dot`` is missing)."""
    return "model.kantk", "graph.svg" if shutil.which("dot") else "graph.dot", "activations.png"


def _written_by_discover(folder: str, name: str) -> bool:
    """Whether ``folder/name`` is a regular file as an earlier :func:`discover` run left it: listed
    with its hash in the folder's :data:`MANIFEST_NAME` (a file, not a link, of at most
    :data:`MAX_MANIFEST_BYTES`). A diagram is not judged by its content: ``kantk export`` writes
    the same kind, and discover replaced (or, the other format, deleted) the user's export."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    manifest = _read_manifest(os.path.join(folder, MANIFEST_NAME))
    return manifest is not None and manifest.get(name) == _sha256(path)


def _read_manifest(path: str) -> dict[str, str] | None:
    """The ``{name: sha-256}`` record at ``path``, or ``None`` unless it is one (a regular file, not
    a link, of at most :data:`MAX_MANIFEST_BYTES`, naming only :data:`OUTPUT_NAMES`)."""
    if not os.path.isfile(path) or os.path.islink(path) or os.path.getsize(path) > MAX_MANIFEST_BYTES:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None
    hexdigits = set("0123456789abcdef")
    if not isinstance(manifest, dict) or not all(
        key in OUTPUT_NAMES and isinstance(value, str) and len(value) == 64 and set(value) <= hexdigits
        for key, value in manifest.items()
    ):
        return None
    return manifest


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exact_threshold(labels: torch.Tensor) -> float:
    """The test RMSE up to which a formula counts as exact for ``labels``: :data:`EXACT_RTOL`
    times their std, or for labels in a float type of less precision than float64,
    :data:`EXACT_ROUNDOFF` times their round-off (``eps * rms``) when that is larger."""
    values = labels.to(torch.float64)
    threshold = EXACT_RTOL * float(values.std())
    if labels.is_floating_point() and labels.dtype != torch.float64:
        roundoff = torch.finfo(labels.dtype).eps * float(values.square().mean().sqrt())
        threshold = max(threshold, EXACT_ROUNDOFF * roundoff)
    return threshold


def label_scale(labels: torch.Tensor) -> float:
    """The power of ten :func:`discover` divides ``labels`` by for its search: 1 when their spread
    is inside :data:`LABEL_SPREAD` (or not positive and finite), else ``10**round(log10(spread))``."""
    spread = float(labels.std()) if labels.numel() > 1 else math.nan
    low, high = LABEL_SPREAD
    if not math.isfinite(spread) or spread <= 0 or low <= spread <= high:
        return 1.0
    return 10.0 ** round(math.log10(spread))


def _scale_outputs(model: KAN, scale: float) -> None:
    """Multiply ``model``'s outputs by ``scale`` in place: every edge into an output (sum) node,
    numeric (``scale_base``, ``scale_sp``) and symbolic (``c`` and ``d``), times ``scale``."""
    layer = model.layers[-1]
    if layer.nodes is not None and any(g.op != "sum" for g in layer.nodes.groups):
        raise ValueError("_scale_outputs scales the edges into output sum nodes; this model has other ones")
    with torch.no_grad():
        layer.scale_base.mul_(scale)
        layer.scale_sp.mul_(scale)
        if layer.has_symbolic:
            layer.symbolic_affine[..., 2:].mul_(scale)


def _rmse(model: KAN, data: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)))


class _float64:
    def __enter__(self) -> None:
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc: object) -> None:
        torch.set_default_dtype(self.old)
