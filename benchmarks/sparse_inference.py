"""Sparse (torch CSR) versus dense matrix products for inference, on this machine.

    python benchmarks/sparse_inference.py            # widths 256-4096
    python benchmarks/sparse_inference.py --quick    # widths 256-1024

For a square layer of each width at 80, 90, 95 and 99% sparsity, times
`dense_weight @ h` against `torch.sparse.mm(csr_weight, h)` with h of batch 1
and 256 (the kernels `SparseInference` chooses between; best of 3 rounds, torch's
default thread count) and prints the speed-up of sparse over dense. Then the
break-even density (the highest density at which CSR still wins, from
`sparse_inference.break_even_density`) per width and batch. The last line is
`break_even_density=<median over widths and batches>`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from evosparse.sparse_inference import break_even_density, kernel_times

SPARSITIES = (0.80, 0.90, 0.95, 0.99)
BATCHES = (1, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="widths 256 to 1024 only")
    args = parser.parse_args()
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
