"""What a practitioner trains instead of a conv search: the MNIST-1D paper's CNN shape.

    python benchmarks/tiny_cnn.py                                # 6, 8, 12 channels, shift 3
    python benchmarks/tiny_cnn.py --channels 12 --shift 0 3 --seeds 3

Three Conv1d layers of `--channels` channels (kernels 5-3-3, stride 2, padding 1, ReLU) and
a linear head on the flattened maps (Greydanus 2020), trained `--epochs` epochs of
one-cycle AdamW (weight decay 0.01, batch 64) on a space's training split, each training
signal moved by up to `--shift` samples a step (edges repeat: `training.shift`'s own maps). One
line per network: test accuracy, non-zero FLOPs counted as evosparse counts a conv network
(2 per tap per output position, a bias and a ReLU per output position, 2 per head weight
and a bias per output) and CPU seconds. `benchmarks/baselines.py` trains it (`--methods cnn`)
and prunes it by magnitude (`--methods cnn-prune`: `magnitude_masks`, `fit`, `sparse_flops`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evosparse.activations import activation_cost
from evosparse.conv_geometry import ConvGeometry
from evosparse.data import load_task
from evosparse.shifts import draw_moves, moved
from evosparse.space import load_space

LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))
"""(kernel, stride, padding) of the three convolutions."""


def lengths(length: int) -> list[int]:
    """The map length after each convolution."""
    out = []
    for k, s, p in LAYERS:
        length = (length + 2 * p - k) // s + 1
        out.append(length)
    return out


def flops(channels: int, length: int, classes: int) -> int:
    """Non-zero FLOPs of one sample's forward pass, as `conv_geometry.conv_cost` counts."""
    total, c_in = 0, 1
    sizes = lengths(length)
    for (k, _, _), n in zip(LAYERS, sizes, strict=True):
        total += (2 * k * c_in + 1 + activation_cost("relu")) * channels * n
        c_in = channels
    return total + 2 * channels * sizes[-1] * classes + classes


def network(channels: int, length: int, classes: int) -> nn.Module:
    convs: list[nn.Module] = []
    c_in = 1
    for k, s, p in LAYERS:
        convs += [nn.Conv1d(c_in, channels, k, s, p), nn.ReLU()]
        c_in = channels
    return nn.Sequential(*convs, nn.Flatten(), nn.Linear(channels * lengths(length)[-1], classes))


def train(channels: int, shift: int, epochs: int, seed: int, x: torch.Tensor, y: torch.Tensor,
          classes: int, before_epoch: Callable[[], None] = lambda: None) -> nn.Module:
    """The network of `channels` channels trained on (x, y); `before_epoch` runs before
    each epoch (`benchmarks/baselines.py` stops a network there when its time is up)."""
    torch.manual_seed(seed)
    net = network(channels, x.shape[-1], classes)
    fit(net, None, shift, epochs, torch.Generator().manual_seed(seed), x, y, before_epoch)
    return net


def fit(net: nn.Module, masks: list[torch.Tensor] | None, shift: int, epochs: int,
        gen: torch.Generator, x: torch.Tensor, y: torch.Tensor,
        before_epoch: Callable[[], None] = lambda: None) -> None:
    """`epochs` of one-cycle AdamW (lr 0.01, weight decay 0.01, batch 64) on (x, y), each
    signal moved by up to `shift` samples a step; `masks` (one per `weights(net)`) zero
    the pruned weights first and keep them at zero."""
    apply = (lambda: None) if masks is None else (lambda: _masked(net, masks))
    apply()
    steps = epochs * -(-len(x) // 64)
    opt = torch.optim.AdamW(net.parameters(), 0.01, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 0.01, total_steps=steps)
    maps = torch.from_numpy(ConvGeometry((1, x.shape[-1]), 1, 0).shift_maps(shift))
    flat = x.flatten(1)
    for _ in range(epochs):
        before_epoch()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            rows = perm[i : i + 64]
            batch = x[rows]
            if shift:
                batch = moved(flat, rows, draw_moves(gen, len(rows), maps), maps).view(batch.shape)
            loss = F.cross_entropy(net(batch), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            apply()


def _masked(net: nn.Module, masks: list[torch.Tensor]) -> None:
    """Zero `net`'s pruned weights (0 in `masks`) in place."""
    with torch.no_grad():
        for w, m in zip(weights(net), masks, strict=True):
            w.mul_(m)


def weights(net: nn.Module) -> list[torch.Tensor]:
    """The three kernels' and the head's weights (what pruning removes; biases stay)."""
    return [m.weight for m in net if isinstance(m, nn.Conv1d | nn.Linear)]


def magnitude_masks(net: nn.Module, density: float) -> list[torch.Tensor]:
    """Global magnitude pruning (Han et al. 2015): 1 for the `density` share of all weights
    (kernel taps and head weights together) with the largest |w|, 0 for the rest."""
    mags = torch.cat([w.detach().abs().flatten() for w in weights(net)])
    keep = max(1, int(round(density * mags.numel())))
    threshold = torch.sort(mags).values[mags.numel() - keep]
    return [(w.detach().abs() >= threshold).float() for w in weights(net)]


def sparse_flops(net: nn.Module, length: int, classes: int) -> int:
    """Non-zero FLOPs of one sample's forward pass, as `conv_geometry.conv_cost` counts
    a sparse conv network: only channels with a non-zero path to an output count (with
    their bias and ReLU per position), 2 per non-zero tap per output position into them,
    2 per non-zero head weight and a bias per output."""
    *kernels, head = [w.detach() != 0 for w in weights(net)]
    sizes = lengths(length)
    counted = head.view(classes, kernels[-1].shape[0], sizes[-1]).any(dim=2).any(dim=0)
    total = 2 * int(head.view(classes, -1, sizes[-1])[:, counted].sum()) + classes
    for k in range(len(kernels) - 1, -1, -1):
        taps = kernels[k][counted]
        per_position = 2 * int(taps.sum()) + (1 + activation_cost("relu")) * int(counted.sum())
        total += per_position * sizes[k]
        counted = taps.any(dim=2).any(dim=0)
    return total


def check_sparse_flops() -> None:
    """`sparse_flops` against a hand count: 2 channels on a 40-sample signal (maps of 19,
    10 and 5), the head left with one weight (class 0, channel 0), then also without the
    third layer's kernel from channel 1 into channel 0."""
    net = network(2, 40, 10)
    with torch.no_grad():
        head = net[-1].weight
        head.zero_()
        head[0, 0] = 1.0
        # layer 3: 6 taps into channel 0 (x 5 positions), its bias and ReLU: 2*6*5 + 2*5;
        # layer 2: 12 taps into both (x 10): 2*12*10 + 2*2*10; layer 1: 10 taps (x 19):
        # 2*10*19 + 2*2*19; head: 2*1 + 10 biases
        assert sparse_flops(net, 40, 10) == 70 + 280 + 456 + 12, sparse_flops(net, 40, 10)
        net[4].weight[0, 1] = 0.0  # channel 1 of layer 2 now feeds nothing that counts
        assert sparse_flops(net, 40, 10) == 40 + 140 + 456 + 12, sparse_flops(net, 40, 10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/mnist1d_conv.yaml"),
                   help="the space whose dataset and split are used (a 1-channel signal)")
    p.add_argument("--channels", type=int, nargs="+", default=[6, 8, 12])
    p.add_argument("--shift", type=int, nargs="+", default=[3])
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    args = p.parse_args()
    torch.set_num_threads(1)
    task = load_task(load_space(args.space).dataset)
    x = torch.from_numpy(task.x_train).view(len(task.x_train), 1, -1)
    y = torch.from_numpy(task.y_train).long()
    x_test = torch.from_numpy(task.x_test).view(len(task.x_test), 1, -1)
    for channels in args.channels:
        cost = flops(channels, x.shape[-1], task.n_classes)
        for shift in args.shift:
            for seed in range(args.seeds):
                start = time.process_time()
                net = train(channels, shift, args.epochs, seed, x, y, task.n_classes)
                with torch.no_grad():
                    acc = (net(x_test).argmax(1).numpy() == task.y_test).mean()
                print(f"channels={channels} shift={shift} seed={seed} test={acc:.3f} "
                      f"flops={cost} cpu_s={time.process_time() - start:.1f}", flush=True)


if __name__ == "__main__":
    main()
