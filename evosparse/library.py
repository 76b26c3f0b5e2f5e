"""The activation-function library: each entry's FLOP cost, formula, arity and torch form.

Genomes store activation names (strings); a library name means what this table says.
Costs are FLOPs per element under one convention, used by the FLOPs objective: an add,
multiply, compare or select counts 1; a transcendental (exp, log, tanh, erf, sin)
counts 4. The torch forms are built on first use, so the genome, operator and
selection modules, which import this table, import no torch. Names that are not in
the library (evolved expressions) are `activations.py`'s and `expressions.py`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TRANSCENDENTAL = 4


@dataclass(frozen=True)
class Activation:
    """One library entry: its FLOP cost per element, a one-line description, and how many
    pre-activations it consumes (2: a two-input unit, `network.py` gives it a second set
    of incoming weights, MaxOut-like)."""

    name: str
    cost: int
    formula: str
    arity: int = 1


AIL_COST = 6
"""AND/OR: two compares, an and, an add, a min or max, a select; XNOR: a multiply, a sign,
two abs, a min, a multiply. The normalised forms add a subtract and a multiply."""


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
        # Logit-space two-input units (Lowe et al., NeurIPS 2022, "Logical activation
        # functions"); the _norm forms are (f - mean) / std for independent N(0, 1) inputs
        Activation("and_ail", AIL_COST, "x + y if x < 0 and y < 0 else min(x, y)", 2),
        Activation("or_ail", AIL_COST, "x + y if x > 0 and y > 0 else max(x, y)", 2),
        Activation("xnor_ail", AIL_COST, "sgn(x y) min(|x|, |y|), sign without gradient", 2),
        Activation("and_ail_norm", AIL_COST + 2, "normalised and_ail", 2),
        Activation("or_ail_norm", AIL_COST + 2, "normalised or_ail", 2),
        Activation("xnor_ail_norm", AIL_COST + 2, "normalised xnor_ail", 2),
    )
}


def library_function(name: str) -> Callable[[Any], Any]:
    """The elementwise torch function of a library entry (imports torch on first use)."""
    if name.split("_norm")[0] in AIL_UNITS:  # their moments take a second to integrate:
        return _ail_functions()[name]  # only where a network uses one
    import torch
    import torch.nn.functional as F

    table: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "identity": lambda x: x,
        "relu": torch.relu,
        "leaky_relu": F.leaky_relu,
        "abs": torch.abs,
        "square": torch.square,
        "tanh": _tanh(),
        "sigmoid": torch.sigmoid,
        "elu": F.elu,
        "softplus": F.softplus,
        "gelu": F.gelu,
        "silu": F.silu,
        "sin": torch.sin,
        "gaussian": lambda x: torch.exp(-torch.square(x)),
    }
    return table[name]


FAST_TANH_FROM = 8192
"""Elements from which `_tanh` pays off; below, the extra autograd node costs more."""


def _by_sigmoid(x: Any) -> bool:
    """Whether tanh of `x` runs as 2 sigmoid(2x) - 1 (`_tanh`, `in_place`)."""
    return not x.is_cuda and x.numel() >= FAST_TANH_FROM


def _tanh_of_half_(t: Any) -> Any:
    """tanh(t / 2) = 2 sigmoid(t) - 1, written into `t` (which holds 2x for tanh(x))."""
    return t.sigmoid_().mul_(2.0).sub_(1.0)


@functools.cache
def _tanh() -> Callable[[Any], Any]:
    """tanh; on the CPU, for tensors of `FAST_TANH_FROM` elements or more, as
    2 sigmoid(2x) - 1, which agrees with `torch.tanh` to 2e-7 and runs about 3x faster
    (torch 2.13's CPU tanh kernel took 430 us on 204,800 floats, its sigmoid 44 us, on
    this project's AMD EPYC test machine; forward and backward: 491 vs 154 us)."""
    import torch

    class Tanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            y = _tanh_of_half_(x * 2.0)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (y,) = ctx.saved_tensors
            return torch.ops.aten.tanh_backward(grad, y)

    def tanh(x: torch.Tensor) -> torch.Tensor:
        return Tanh.apply(x) if _by_sigmoid(x) else torch.tanh(x)

    return tanh


InPlace = tuple[Callable[[Any], Any], Callable[[Any, Any, Any], Any]]
"""A function applied in place (x -> x, overwritten) and its input gradient from its
output, written into a given tensor ((grad, y, out) -> out; out may be grad itself)."""


@functools.cache
def in_place() -> dict[str, InPlace]:
    """The functions whose derivative is a function of their output, in place: a batched
    program keeps only their output and allocates nothing for them, forward or backward."""
    import torch

    aten = torch.ops.aten

    def tanh_(x: torch.Tensor) -> torch.Tensor:  # as `_tanh` computes it
        return _tanh_of_half_(x.mul_(2.0)) if _by_sigmoid(x) else x.tanh_()

    return {"identity": (lambda x: x, lambda g, y, out: out if out is g else out.copy_(g)),
            "relu": (torch.relu_, lambda g, y, out: aten.threshold_backward.grad_input(
                g, y, 0, grad_input=out)),
            "sigmoid": (torch.sigmoid_, lambda g, y, out: aten.sigmoid_backward.grad_input(
                g, y, grad_input=out)),
            "tanh": (tanh_, lambda g, y, out: aten.tanh_backward.grad_input(
                g, y, grad_input=out))}


AIL_UNITS = ("and_ail", "or_ail", "xnor_ail")


@functools.cache
def _ail_functions() -> dict[str, Callable[[Any, Any], Any]]:
    """The AIL units and their normalised forms, as two-argument torch functions."""
    out: dict[str, Callable[[Any, Any], Any]] = {}
    for name in AIL_UNITS:
        fn, (mean, std) = _ail_raw(name), ail_moments(name)
        out[name] = fn
        out[f"{name}_norm"] = (lambda f, m, s: lambda x, y: (f(x, y) - m) * (1.0 / s))(
            fn, mean, std)
    return out


@functools.cache
def ail_moments(name: str) -> tuple[float, float]:
    """Mean and standard deviation of an AIL unit for independent N(0, 1) inputs, by a
    midpoint rule on [-8, 8]^2 in float64 (deterministic; accurate to about 1e-6)."""
    import torch

    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    grid = (grid[1:] + grid[:-1]) / 2
    pdf = torch.exp(-grid**2 / 2)
    pdf = pdf / pdf.sum()
    x, y = grid[:, None], grid[None, :]
    weight = pdf[:, None] * pdf[None, :]
    f = _ail_raw(name)(x, y)
    mean = float((f * weight).sum())
    return mean, float(((f - mean) ** 2 * weight).sum().sqrt())


def _ail_raw(name: str) -> Callable[[Any, Any], Any]:
    """One AIL unit (of `AIL_UNITS`) as a torch function; XNOR's sign carries no gradient."""
    import torch

    return {"and_ail": lambda x, y: torch.where((x < 0) & (y < 0), x + y, torch.minimum(x, y)),
            "or_ail": lambda x, y: torch.where((x > 0) & (y > 0), x + y, torch.maximum(x, y)),
            "xnor_ail": lambda x, y: torch.sign(x * y).detach() * torch.minimum(x.abs(),
                                                                                y.abs()),
            }[name]
