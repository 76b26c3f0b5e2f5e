"""Activation functions by name: a library entry (`library.py`) or an evolved expression.

Genomes store activation names (strings). A name that is not in the library is an
evolved expression over it (`expressions.py`, e.g. `relu(x) * tanh(x)`): its cost and
torch form come from its tree. This module answers for any name; `library.py` holds
the table and `expressions.py` the trees, and neither imports this one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evosparse import expressions
from evosparse.library import ACTIVATIONS, library_function


def arity(name: str) -> int:
    """Pre-activations the named activation consumes (an expression: 1)."""
    return ACTIVATIONS[name].arity if name in ACTIVATIONS else 1

OUTPUT_ACTIVATION = "identity"
"""Output nodes emit logits; softmax lives in the loss and costs nothing at inference."""


def activation_cost(name: str) -> int:
    """FLOPs per element of the named activation (a library name or an expression)."""
    if name in ACTIVATIONS:
        return ACTIVATIONS[name].cost
    return expressions.cost(expressions.parse(name))


def checked_activation(name: str) -> str:
    """A library name as it is, or an expression's canonical text; `ValueError` says why
    `name` is neither."""
    text = expressions.canonical(name)
    if text in ACTIVATIONS:
        return text
    if not expressions.uses_x(expressions.parse(text)):
        raise ValueError(f"expression {name!r} does not use x")
    if len(text) > expressions.MAX_LENGTH:
        raise ValueError(f"expression {name!r} is longer than {expressions.MAX_LENGTH} "
                         "characters")
    return text


def torch_activation(name: str) -> Callable[[Any], Any]:
    """The elementwise torch function for `name` (imports torch on first use)."""
    if name not in ACTIVATIONS:
        return expressions.torch_function(name)
    return library_function(name)
