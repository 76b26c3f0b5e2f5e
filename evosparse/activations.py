"""The activation-function library: names, FLOP costs and their torch forms.

Genomes store activation names (strings), so this table is the single source of
what a name means. Costs are FLOPs per element under one convention, used by the
FLOPs objective: an add, multiply, compare or select counts 1; a transcendental
(exp, log, tanh, erf, sin) counts 4.

The torch callables are looked up lazily by `torch_activation` so that the
genome, operator and selection modules, which import this table, import no torch.
A name that is not in the library is an evolved expression over the library
(`expressions.py`, e.g. `relu(x) * tanh(x)`): its cost and torch form come from
its tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evosparse import expressions

TRANSCENDENTAL = 4


@dataclass(frozen=True)
class Activation:
    """One library entry: its FLOP cost per element and a one-line description."""

    name: str
    cost: int
    formula: str


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", 0, "x"),
        Activation("relu", 1, "max(x, 0)"),
        Activation("leaky_relu", 2, "max(x, 0.01 x)"),
        Activation("abs", 1, "|x|"),
        Activation("square", 1, "x^2"),
        Activation("tanh", TRANSCENDENTAL, "tanh(x)"),
        Activation("sigmoid", TRANSCENDENTAL + 2, "1 / (1 + exp(-x))"),
        Activation("elu", TRANSCENDENTAL + 3, "x if x > 0 else exp(x) - 1"),
        Activation("softplus", 2 * TRANSCENDENTAL + 1, "log(1 + exp(x))"),
        Activation("gelu", TRANSCENDENTAL + 4, "x * Phi(x)"),
        Activation("silu", TRANSCENDENTAL + 3, "x * sigmoid(x)"),
        Activation("sin", TRANSCENDENTAL, "sin(x)"),
        Activation("gaussian", TRANSCENDENTAL + 2, "exp(-x^2)"),
    )
}

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
    import torch
    import torch.nn.functional as F

    table: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "identity": lambda x: x,
        "relu": torch.relu,
        "leaky_relu": F.leaky_relu,
        "abs": torch.abs,
        "square": torch.square,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "elu": F.elu,
        "softplus": F.softplus,
        "gelu": F.gelu,
        "silu": F.silu,
        "sin": torch.sin,
        "gaussian": lambda x: torch.exp(-torch.square(x)),
    }
    return table[name]
