"""kantk-fourier: a Fourier basis plugin for kantk.

Installing the package is all it takes: kantk loads :mod:`kantk_fourier.plugin` through the
``kantk`` entry-point group, and ``KAN([2, 5, 1], basis="fourier")`` works.
"""

from __future__ import annotations

from kantk_fourier.plugin import FourierBasis

__version__ = "0.1.0"

__all__ = ["FourierBasis"]
