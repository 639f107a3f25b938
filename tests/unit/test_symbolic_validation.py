"""The symbolic API's argument checks go through kantk._validation: bools are not ints or numbers."""

from __future__ import annotations

import pytest
import torch

import kantk
from kantk.symbolic.fitting import fit_affine
from kantk.symbolic.records import SymbolicFunction


def test_bools_are_refused_as_indices_margins_and_digits():
    model = kantk.KAN([2, 3, 1], seed=0)
    with pytest.raises(IndexError, match=r"layer must be an int in \[0, 1\] for KAN\[2, 3, 1\], got True"):
        kantk.fix_symbolic(model, True, 0, 0, "sin")
    with pytest.raises(IndexError, match=r"i \(input node\) must be in \[0, 1\], got True"):
        kantk.fix_symbolic(model, 0, True, 0, "sin")
    x = torch.linspace(-1, 1, 50).reshape(-1, 1).expand(-1, 3)
    with pytest.raises(ValueError, match="domain_margin must be a finite number >= 0, got True"):
        fit_affine(x, torch.sin(x), ["sin"], domain_margin=True)
    with pytest.raises(ValueError, match="digits must be 'auto', an int >= 0 or None, got True"):
        kantk.symbolic_formula(model, digits=True)


def test_a_function_record_needs_a_number_complexity():
    with pytest.raises(ValueError, match="complexity must be a number >= 0, got True"):
        SymbolicFunction("s", torch.sin, lambda v: v, complexity=True)
