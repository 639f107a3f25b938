"""The B-spline basis (pykan's) and its evaluation engine.

Map of the package:

* :mod:`.basis`: :class:`BSplineBasis` (grid state, grid update, refinement) and the reference
  evaluations :func:`uniform_knots`, :func:`cox_de_boor`;
* :mod:`.dispatch`: the one place that chooses how a layer's edges are computed (``Path``) and runs it;
* kernels per backend: :mod:`.local` (the closed local form on uniform grids), :mod:`.torch_dense`,
  :mod:`.torch_sparse`, :mod:`.native` with :mod:`.native_build` (C++ CPU kernels compiled on
  first use), the Triton kernels in :mod:`kantk.bases.gpu.sparse` (CUDA), and :mod:`.knots`
  (de Boor on any knots, knot insertion, knots from data);
* :mod:`.workspace`: the reusable CPU buffers each basis owns.
"""

from kantk.bases.bspline.basis import EXTRAPOLATIONS, MAX_ORDER, BSplineBasis, cox_de_boor, uniform_knots
from kantk.bases.bspline.dispatch import Case, Path, choose, choose_path
from kantk.bases.bspline.knots import data_knots, insert_knots, local_bspline_features
from kantk.bases.bspline.workspace import clear_all as clear_scratch
from kantk.plugins import hookimpl
from kantk.types import BasisSpec

__all__ = [
    "EXTRAPOLATIONS",
    "MAX_ORDER",
    "BSplineBasis",
    "Case",
    "Path",
    "choose",
    "choose_path",
    "clear_scratch",
    "cox_de_boor",
    "data_knots",
    "insert_knots",
    "local_bspline_features",
    "uniform_knots",
]


@hookimpl
def kantk_bases():
    yield BasisSpec("bspline", BSplineBasis, "B-splines of order k on G intervals (pykan's basis)")
