"""How fast padded batching of small CNNs can be on this machine, stripped to its bones.

    python benchmarks/conv_bound.py             # 16 CNNs, 50 steps, threads 1 and 2
    python benchmarks/conv_bound.py --genomes 24 --repeats 5

The issue's target for `conv_batched.py` is 5x one by one. This script bounds what any
padded program can reach before evosparse's own costs (masks, activation functions per
channel, pruning, scoring) are added: the benchmark's CNN shape (`batched_eval.py
--space search_spaces/mnist1d_conv.yaml`: three layers at stride 2 on a 40-long signal,
kernel 5, 4-16 channels a layer, drawn with the same generator), dense, ReLU only,
a flattened head, Adam, minibatches of 64, timed three ways:

- one by one: each CNN as `nn.Conv1d` layers of its own widths, trained alone;
- padded, bmm: every layer as one batched matrix product of unfolded patches, all
  CNNs padded to 16 channels a layer;
- padded, grouped: the first layer so, the others as one grouped convolution on
  channels-last maps (what `conv_batched.py` does).

Each cell is the fastest of `--repeats`; the last line is `bound=<fastest one by one /
fastest padded>`, each at its best thread count.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LENGTH, KERNEL, CLASSES, SAMPLES, BATCH, PAD = 40, 5, 10, 3200, 64, 16


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(SAMPLES, LENGTH, generator=gen),
            torch.randint(0, CLASSES, (SAMPLES,), generator=gen))


def one_by_one(widths: list[list[int]], steps: int) -> Callable[[], None]:
    """Each CNN trained alone for `steps` minibatches."""
    x, y = _data()

    def run() -> None:
        torch.manual_seed(0)
        for w in widths:
            convs = nn.ModuleList(nn.Conv1d(a, b, KERNEL, 2, KERNEL // 2)
                                  for a, b in zip([1, *w[:-1]], w, strict=True))
            head = nn.Linear(w[-1] * LENGTH // 8, CLASSES)
            opt = torch.optim.Adam([*convs.parameters(), *head.parameters()], lr=1e-3)
            for _ in range(steps):
                idx = torch.randint(0, SAMPLES, (BATCH,))
                m = x[idx][:, None]
                for c in convs:
                    m = torch.relu(c(m))
                loss = F.cross_entropy(head(m.flatten(1)), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return run


def _patches(m: torch.Tensor) -> tuple[torch.Tensor, int]:
    """[genomes, samples, channels, length] -> ([genomes, samples x out, channels x
    KERNEL], out): "same" padding, stride 2."""
    g, s, c, _ = m.shape
    u = F.pad(m, (KERNEL // 2, KERNEL // 2)).unfold(3, KERNEL, 2)
    return u.permute(0, 1, 3, 2, 4).reshape(g, -1, c * KERNEL), u.shape[3]


def padded(n: int, steps: int, grouped: bool) -> Callable[[], None]:
    """`n` CNNs padded to PAD channels a layer, trained together for `steps` minibatches."""
    x, y = _data()

    def run() -> None:
        torch.manual_seed(0)
        first = torch.randn(n, KERNEL, PAD, requires_grad=True)
        bias = torch.zeros(n, 1, PAD, requires_grad=True)
        if grouped:
            rest = [torch.randn(n * PAD, PAD, 1, KERNEL, requires_grad=True) for _ in range(2)]
            biases = [torch.zeros(n * PAD, requires_grad=True) for _ in range(2)]
        else:
            rest = [torch.randn(n, PAD * KERNEL, PAD, requires_grad=True) for _ in range(2)]
            biases = [torch.zeros(n, 1, PAD, requires_grad=True) for _ in range(2)]
        head = torch.randn(n, PAD * LENGTH // 8, CLASSES, requires_grad=True)
        opt = torch.optim.Adam([first, bias, *rest, *biases, head], lr=1e-3)
        for _ in range(steps):
            idx = torch.randint(0, SAMPLES, (n, BATCH))
            u, out = _patches(x[idx][:, :, None])
            h = torch.relu(torch.baddbmm(bias, u, first))  # [n, samples x out, PAD]
            if grouped:
                m = h.view(n, BATCH, out, PAD).permute(1, 0, 3, 2).reshape(BATCH, n * PAD, 1, out)
                m = m.contiguous(memory_format=torch.channels_last)
                for w, b in zip(rest, biases, strict=True):
                    m = torch.relu(F.conv2d(m, w, b, stride=(1, 2), padding=(0, KERNEL // 2),
                                            groups=n))
                features = m.reshape(BATCH, n, -1).transpose(0, 1)
            else:
                m = h.view(n, BATCH, out, PAD).transpose(2, 3)
                for w, b in zip(rest, biases, strict=True):
                    u, out = _patches(m)
                    m = torch.relu(torch.baddbmm(b, u, w)).view(n, BATCH, out, PAD).transpose(2, 3)
                features = m.reshape(n, BATCH, -1)
            logits = torch.bmm(features, head)
            loss = F.cross_entropy(logits.flatten(0, 1), y[idx].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run


def fastest(run: Callable[[], None], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--genomes", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    widths = [[int(w) for w in rng.integers(4, PAD + 1, size=3)] for _ in range(args.genomes)]
    ways = {"one by one": one_by_one(widths, args.steps),
            "padded, bmm": padded(args.genomes, args.steps, grouped=False),
            "padded, grouped": padded(args.genomes, args.steps, grouped=True)}
    print(f"{args.genomes} CNNs, {args.steps} steps of {BATCH}; fastest of {args.repeats}")
    best = dict.fromkeys(ways, math.inf)
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        cells = {name: fastest(run, args.repeats) for name, run in ways.items()}
        print(f"threads {threads}: " + ", ".join(f"{k} {v:.2f}s" for k, v in cells.items()))
        best = {k: min(best[k], v) for k, v in cells.items()}
    alone = best.pop("one by one")
    print(f"bound={alone / min(best.values()):.1f}")


if __name__ == "__main__":
    main()
