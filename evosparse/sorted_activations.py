"""A level's activations on node-major rows, run per function on gathered rows.

A level of a padded batch mixes activation functions across its nodes. Instead of one
masked pass per function (or autograd's zero-filled scatters), its rows are gathered by
function, each function runs in place on its slice (with its gradient from the output,
`library.in_place`, where it has one) and the rows are written back. `batched.py` calls
these inside its group program; `SortedActivation` wraps them as one autograd node
where a level runs under autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from evosparse.library import InPlace

Run = tuple[int, Callable[..., torch.Tensor], int, InPlace | None]
"""Rows of one activation function in a level's sorted rows: (count, function, arity, the
function in place with its gradient from the output (`library.in_place`; None: run the
function again under autograd in the backward))."""

Saved = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
"""What an activation's backward needs: its output rows, and its input rows (first and
second pre-activation) when a function must run again (in `order`'s row order)."""


def activation_forward(pre: torch.Tensor, pre2: torch.Tensor | None,
                        order: torch.Tensor | None, inverse: torch.Tensor | None,
                        runs: list[Run]) -> tuple[torch.Tensor, Saved]:
    """Each node's activation on node-major rows [genomes, nodes, samples], without
    autograd. The rows are gathered by function (`order`; None: `runs` is one function
    over all rows, and `pre` is overwritten), each function runs once on its contiguous
    rows (in place where `library.in_place` has it) and the rows are put back
    (`inverse`)."""
    rows = pre.reshape(-1, pre.shape[2])
    flat = rows if order is None else take_rows(rows, order)
    flat2 = None if pre2 is None else pre2.reshape(-1, pre.shape[2])
    if flat2 is not None and order is not None:
        flat2 = take_rows(flat2, order)
    widths = [n for n, *_ in runs]
    again = any(inplace is None for *_, inplace in runs)
    done = torch.empty_like(flat) if again else flat  # else: overwritten run by run
    seconds = flat.split(widths) if flat2 is None else flat2.split(widths)
    for (_, fn, ar, inplace), x, q, d in zip(runs, flat.split(widths), seconds,
                                             done.split(widths), strict=True):
        if again:
            d.copy_(fn(x) if ar == 1 else fn(x, q))
        else:
            inplace[0](d)  # type: ignore[index]
    out = done if inverse is None else take_rows(done, inverse)
    return out.view(pre.shape), (done, flat if again else None, flat2 if again else None)


def activation_backward(grad: torch.Tensor, saved: Saved, order: torch.Tensor | None,
                         inverse: torch.Tensor | None, runs: list[Run], two: bool,
                         owned: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gradients of the pre-activations (and of the second ones, for two-input units:
    zero for one-input rows) from the gradient of `activation_forward`'s output. `grad`
    is overwritten when `owned` (nobody else reads it)."""
    done, flat, flat2 = saved
    widths = [n for n, *_ in runs]
    rows = grad.reshape(-1, grad.shape[2])
    g = take_rows(rows, order) if order is not None else (
        rows if owned else torch.empty_like(rows))
    second = torch.zeros_like(g) if two else None
    ys = done.split(widths)
    xs = flat.split(widths) if flat is not None else ys
    xs2 = flat2.split(widths) if flat2 is not None else xs
    seconds = second.split(widths) if second is not None else xs
    sources = g.split(widths) if order is not None else rows.split(widths)
    for (_, fn, ar, inplace), src, gp, y, x, x2, s2 in zip(
            runs, sources, g.split(widths), ys, xs, xs2, seconds, strict=True):
        if inplace is not None:
            inplace[1](src, y, gp)
            continue
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_()] + ([x2.detach().requires_grad_()]
                                                      if ar == 2 else [])
            grads = torch.autograd.grad(fn(*inputs), inputs, src, allow_unused=True)
        if second is not None and len(grads) == 2 and grads[1] is not None:
            s2.copy_(grads[1])
        if grads[0] is None:
            gp.zero_()
        else:
            gp.copy_(grads[0])

    def back(r: torch.Tensor) -> torch.Tensor:
        return (r if inverse is None else take_rows(r, inverse)).view(grad.shape)

    return back(g), back(second) if second is not None else None


def take_rows(flat: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """flat[rows] (`index_select` on dim 0) for row-major float32 [rows, samples], moved
    as 16-byte elements where a row allows (as `put_rows`): one thread gathered 1,024
    rows of 1,280 in 0.94 ms as float32, 0.31 ms so. The bits are copied as they are."""
    if flat.dtype == torch.float32 and flat.shape[1] % 4 == 0 and flat.is_contiguous() \
            and flat.storage_offset() % 4 == 0:
        return flat.view(torch.complex128).index_select(0, rows).view(torch.float32)
    return flat.index_select(0, rows)


def put_rows(flat: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """flat[rows] = values for row-major float32 [rows, samples]; moved as 16-byte
    elements where a row allows (samples a multiple of 4): torch's CPU `index_copy_` moves
    one element at a time, and takes about half the time for complex128 elements as for
    float32 ones (30 -> 14 us for 2,511 rows of 64 at two threads on this project's test
    CPU). The bits are copied as they are."""
    if flat.shape[1] % 4 == 0:
        flat, values = flat.view(torch.complex128), values.view(torch.complex128)
    flat.index_copy_(0, rows, values)


def gathered_forward(pre: torch.Tensor, rows: torch.Tensor,
                      runs: list[tuple[int, InPlace]]) -> torch.Tensor:
    """Each function in place on its `rows` of pre [genomes, nodes, samples] (gathered,
    then written back); the rest of `pre` (identity) is left as it is. Returns the gathered
    outputs, which the backward needs."""
    flat = pre.view(-1, pre.shape[2])
    done = take_rows(flat, rows)
    for (_, inplace), part in zip(runs, done.split([n for n, _ in runs]), strict=True):
        inplace[0](part)
    put_rows(flat, rows, done)
    return done


def gathered_backward(grad: torch.Tensor, done: torch.Tensor, rows: torch.Tensor,
                       runs: list[tuple[int, InPlace]]) -> None:
    """`gathered_forward`'s backward, in place on `grad`: its `rows` become the gradients
    of the pre-activations (identity rows pass as they are)."""
    flat = grad.view(-1, grad.shape[2])
    g = take_rows(flat, rows)
    widths = [n for n, _ in runs]
    for (_, inplace), gp, y in zip(runs, g.split(widths), done.split(widths), strict=True):
        inplace[1](gp, y, gp)
    put_rows(flat, rows, g)


class SortedActivation(torch.autograd.Function):
    """A mixed level's activation (`activation_forward`) as one autograd node: two
    gathers each way instead of autograd's zero-filled scatters, functions in place on
    the gathered rows. Used where a level cannot run inside `_GroupProgram`."""

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, pre2: torch.Tensor | None, order: torch.Tensor,
                inverse: torch.Tensor, runs: list[Run]) -> torch.Tensor:
        out, saved = activation_forward(pre, pre2, order, inverse, runs)
        ctx.save_for_backward(*saved, order, inverse)
        ctx.runs, ctx.two = runs, pre2 is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        done, flat, flat2, order, inverse = ctx.saved_tensors
        g, g2 = activation_backward(grad, (done, flat, flat2), order, inverse, ctx.runs,
                                     ctx.two, owned=False)
        return g, g2, None, None, None
