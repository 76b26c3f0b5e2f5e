"""Inference with real sparse kernels: CSR blocks where they pay on this machine, dense elsewhere.

Training keeps each level as a masked dense block (`network.py`): at search
sizes that is what the hardware runs fastest. At inference a sparse matrix
product skips the zeros, but it pays only below some density that depends on
the machine, the matrix shape and the batch size. `break_even_density` measures
that density here, by timing both kernels on random matrices of the level's
shape; `SparseInference` stores each level as CSR when its density is below it,
dense otherwise. Activations run node-major ([nodes, batch]) so that a level is
one `W @ h` whichever kernel it uses.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from evosparse.activations import arity, torch_activation
from evosparse.network import SparseNetwork

DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7)
"""Densities at which the two kernels are compared."""


def time_call(fn: Callable[[], object], min_seconds: float = 0.02) -> float:
    """Seconds per call of `fn`: the best of 3 rounds of enough calls to fill `min_seconds`."""
    with torch.inference_mode():
        fn()
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds / 4 or calls < 2:
            fn()
            calls += 1
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - start) / calls)
    return best


def to_csr(w: torch.Tensor) -> torch.Tensor:
    """`w` in CSR layout, without torch's "CSR support is in beta" warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return w.to_sparse_csr()


def kernel_times(w: torch.Tensor, batch: int, seed: int = 0) -> tuple[float, float]:
    """Seconds of one dense and one CSR product of `w` [rows, cols] with [cols, batch]."""
    h = torch.randn(w.shape[1], batch, generator=torch.Generator().manual_seed(seed))
    csr = to_csr(w)
    return time_call(lambda: w @ h), time_call(lambda: torch.sparse.mm(csr, h))


@functools.lru_cache(maxsize=256)
def break_even_density(rows: int, cols: int, batch: int, threads: int) -> float:
    """The highest density (of `DENSITIES`) at which CSR beats dense for this shape, here;
    0.0 when it never does. `threads` is part of the cache key: the answer depends on it."""
    gen = torch.Generator().manual_seed(rows * 7919 + cols)
    best = 0.0
    for d in DENSITIES:
        w = torch.randn(rows, cols, generator=gen) * (torch.rand(rows, cols, generator=gen) < d)
        dense, sparse = kernel_times(w, batch)
        if sparse >= dense:
            break
        best = d
    return best


class SparseInference(nn.Module):
    """An inference-only copy of a trained `SparseNetwork` with a kernel chosen per level.

    `threshold` fixes the density below which a level goes CSR; by default each
    level's threshold is `break_even_density` measured for its shape at `batch`.
    """

    def __init__(self, net: SparseNetwork, batch: int = 256, threshold: float | None = None):
        super().__init__()
        self.kernels: list[str] = []
        self._weights: list[torch.Tensor] = []
        self._biases: list[torch.Tensor | None] = []
        self._acts: list[list[tuple[Callable[..., torch.Tensor], int, torch.Tensor]]] = []
        self._seconds: list[tuple[torch.Tensor, torch.Tensor | None] | None] = []
        for lv in net.levels:
            w = (lv.weight * lv.mask).detach().cpu().contiguous()
            density = float(lv.mask.mean())
            limit = threshold if threshold is not None else break_even_density(
                *w.shape, batch, torch.get_num_threads())
            sparse = density <= limit
            self.kernels.append("csr" if sparse else "dense")
            self._weights.append(to_csr(w) if sparse else w)
            self._biases.append(None if lv.bias is None else lv.bias.detach().cpu()[:, None])
            second = None  # two-input units: the second pre-activation, same kernel
            if lv.weight2 is not None:
                w2 = lv.second_weight().detach().cpu().contiguous()
                second = (to_csr(w2) if sparse else w2,
                          None if lv.bias2 is None else lv.bias2.detach().cpu()[:, None])
            self._seconds.append(second)
            acts = np.asarray(lv.act_names)
            self._acts.append([(torch_activation(a), arity(a),
                                torch.from_numpy(np.flatnonzero(acts == a)))
                               for a in sorted(set(lv.act_names))])
        self._outputs = net._outputs.cpu()

    @staticmethod
    def _product(w: torch.Tensor, b: torch.Tensor | None, h: torch.Tensor) -> torch.Tensor:
        pre = torch.sparse.mm(w, h) if w.layout == torch.sparse_csr else w @ h
        return pre if b is None else pre + b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.T.contiguous()  # node-major: [nodes, batch]
        for w, b, acts, second in zip(self._weights, self._biases, self._acts, self._seconds,
                                      strict=True):
            pre = self._product(w, b, h)
            pre2 = None if second is None else self._product(*second, h)
            if len(acts) == 1 and pre2 is None:
                out = acts[0][0](pre)
            else:
                out = torch.empty_like(pre)
                for fn, n, rows in acts:
                    out[rows] = fn(pre[rows]) if n == 1 else fn(pre[rows], pre2[rows])
            h = torch.cat([h, out])
        return h[self._outputs].T
