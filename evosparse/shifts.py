"""Translation augmentation (`training.shift`): training samples moved along their positions.

A family gives the gather indices that move a flat sample by each offset
(`Family.shift_maps`); training draws one offset per sample and epoch from the genome's
own generator, right after the epoch's permutation, so a genome trains on the same moved
samples alone or in a batched program, and a run repeats from its seed.
"""

from __future__ import annotations

import torch

from evosparse.families import Family


def shift_maps(shift: int, family: Family, device: torch.device) -> torch.Tensor | None:
    """The family's translations of a flat sample [offsets, features] on `device` when
    `shift` is on, else None."""
    if not shift:
        return None
    return torch.from_numpy(family.shift_maps(shift)).to(device)


def draw_moves(gen: torch.Generator, samples: int, maps: torch.Tensor) -> torch.Tensor:
    """An epoch's translation (a row of `maps`) for each position of its permutation."""
    return torch.randint(len(maps), (samples,), generator=gen).to(maps.device)


def moved(x: torch.Tensor, rows: torch.Tensor, moves: torch.Tensor, maps: torch.Tensor
          ) -> torch.Tensor:
    """The samples x[rows] [len(rows), features], sample j translated by maps[moves[j]]."""
    return x.index_select(0, rows).gather(1, maps.index_select(0, moves))


def moved_table(x: torch.Tensor, y: torch.Tensor, rows: list[torch.Tensor],
                moves: list[torch.Tensor], maps: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """A batched step's samples, translated, as a table of their own: (x, y, and each
    group's rows into that table, shaped as `rows`)."""
    flat = torch.cat([r.flatten() for r in rows])
    table = torch.arange(len(flat), device=flat.device).split([r.numel() for r in rows])
    return (moved(x, flat, torch.cat([m.flatten() for m in moves]), maps),
            y.index_select(0, flat), [t.view(r.shape) for t, r in zip(table, rows, strict=True)])
