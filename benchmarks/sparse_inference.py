"""Sparse (torch CSR) versus dense matrix products for inference, on this machine.

    python benchmarks/sparse_inference.py            # widths 256-4096
    python benchmarks/sparse_inference.py --quick    # widths 256-1024
    python benchmarks/sparse_inference.py --conv     # conv layers as the conv families run them

For a square layer of each width at 80, 90, 95 and 99% sparsity, times
`dense_weight @ h` against `torch.sparse.mm(csr_weight, h)` with h of batch 1
and 256 (the kernels `SparseInference` chooses between; best of 3 rounds, torch's
default thread count) and prints the speed-up of sparse over dense. Then the
break-even density (the highest density at which CSR still wins, from
`sparse_inference.break_even_density`) per width and batch. The last line is
`break_even_density=<median over widths and batches>`.

With `--conv`, the question for the conv families (`conv1d`, `conv2d`): whether a sparse
kernel would pay for layers of the sizes their searches keep (8-64 channels in and out,
a 40-sample signal with 5 taps, an 8 x 8 image with 3 x 3 taps). Per size and tap
sparsity it times torch's dense convolution with the switched-off taps as zeros (what
conv networks and their ONNX files run) against the same layer as im2col and a CSR
product (`unfold`, then `torch.sparse.mm`; the unfolding counted), batch 1 and 256. The
last line is `conv_csr_best=<the largest speed-up of CSR over dense found>`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from evosparse.sparse_inference import break_even_density, kernel_times, time_call, to_csr

SPARSITIES = (0.80, 0.90, 0.95, 0.99)
BATCHES = (1, 256)


CONV_SHAPES = {"conv1d": ((40,), 5), "conv2d": ((8, 8), 3)}
"""Each conv family's layer: a map's shape ("same" padding, stride 1) and taps a side."""


def conv_times(channels: int, family: str, sparsity: float, batch: int,
               gen: torch.Generator) -> tuple[float, float]:
    """Seconds of a `channels` -> `channels` conv layer at `sparsity` of its taps off:
    dense convolution, and im2col followed by a CSR product."""
    shape, k = CONV_SHAPES[family]
    taps = (k,) * len(shape)
    w = torch.randn(channels, channels, *taps, generator=gen)
    w *= torch.rand(w.shape, generator=gen) >= sparsity
    x = torch.randn(batch, channels, *shape, generator=gen)
    csr = to_csr(w.flatten(1))
    if family == "conv1d":
        def dense() -> torch.Tensor:
            return F.conv1d(x, w, padding=k // 2)

        def cols() -> torch.Tensor:
            padded = F.pad(x, (k // 2, k // 2))
            return padded.unfold(2, k, 1).permute(1, 3, 0, 2).reshape(channels * k, -1)
    else:
        def dense() -> torch.Tensor:
            return F.conv2d(x, w, padding=k // 2)

        def cols() -> torch.Tensor:
            return F.unfold(x, k, padding=k // 2).transpose(0, 1).reshape(channels * k * k, -1)

    def sparse() -> torch.Tensor:
        return torch.sparse.mm(csr, cols())

    ref = dense().transpose(0, 1).reshape(channels, -1)
    assert torch.allclose(sparse(), ref, atol=1e-4), "im2col + CSR differs from conv"
    return time_call(dense), time_call(sparse)


def conv_main() -> None:
    """Dense convolution against im2col + CSR for the conv families' layer sizes."""
    gen = torch.Generator().manual_seed(0)
    sparsities = (0.5, 0.8, 0.9, 0.95)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; speed-up = dense "
          "conv time / (im2col + CSR) time")
    print("family  channels  batch  dense ms " + " ".join(f"{f'{s:.0%} off':>9}"
                                                         for s in sparsities))
    best = 0.0
    for family in CONV_SHAPES:
        for channels in (8, 16, 32, 64):
            for batch in BATCHES:
                cells, dense_ms = [], []
                for s in sparsities:
                    dense, sparse = conv_times(channels, family, s, batch, gen)
                    dense_ms.append(dense * 1e3)
                    best = max(best, dense / sparse)
                    cells.append(f"{dense / sparse:>8.2f}x")
                print(f"{family:<7} {channels:>8}  {batch:>5}  {np.median(dense_ms):>8.3f} "
                      + " ".join(cells))
    print(f"conv_csr_best={best:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="widths 256 to 1024 only")
    parser.add_argument("--conv", action="store_true",
                        help="conv layers: dense convolution against im2col + CSR")
    args = parser.parse_args()
    if args.conv:
        conv_main()
        return
    widths = (256, 512, 1024) if args.quick else (256, 512, 1024, 2048, 4096)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; speed-up = dense time / CSR time")
    gen = torch.Generator().manual_seed(0)
    header = "width  batch  dense ms " + " ".join(f"{f'{s:.0%} sparse':>11}" for s in SPARSITIES)
    print(header)
    for width in widths:
        for batch in BATCHES:
            cells, dense_ms = [], []
            for s in SPARSITIES:
                mask = torch.rand(width, width, generator=gen) >= s
                w = torch.randn(width, width, generator=gen) * mask
                dense, sparse = kernel_times(w, batch)
                dense_ms.append(dense * 1e3)
                cells.append(f"{dense / sparse:>10.2f}x")
            print(f"{width:>5}  {batch:>5}  {np.median(dense_ms):>8.3f} " + " ".join(cells))
    print("\nbreak-even density (CSR wins at or below it; 0 = never):")
    found = []
    for width in widths:
        row = []
        for batch in BATCHES:
            d = break_even_density(width, width, batch, threads)
            found.append(d)
            row.append(f"batch {batch}: {d:.3f}")
        print(f"  width {width:>4}: " + ", ".join(row))
    print(f"break_even_density={np.median(found):.3f}")


if __name__ == "__main__":
    main()
