"""`evosparse report`: PNG plots of a run and one HTML page that shows them with the front.

Everything is read from the run directory through `results.Run` (generations.jsonl,
history.jsonl and the newest checkpoint), so a report can be made while a search runs or long
after. Figures are drawn with matplotlib's object API (no pyplot, no display
backend). Files go to `RUN_DIR/report/`:
    fronts.png       every generation's Pareto front, coloured by generation,
                     over all evaluations in grey
    hypervolume.png  hypervolume after each generation
    topologies.png   the current front members drawn as graphs, by depth level
    activations.png  how often each activation function is used by the front
    report.html      the four plots and the front table
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from evosparse.errors import UserError
from evosparse.evolution import Member
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome
from evosparse.graph import analyse
from evosparse.results import Run
from evosparse.rundir import atomic_write, member_summary

MAX_DRAWN = 8
"""Front members drawn in topologies.png (spread evenly over the front's FLOPs range)."""


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_fronts(generations: list[dict[str, Any]], history: list[dict[str, Any]],
                path: Path) -> Path:
    """Each generation's front (validation accuracy against FLOPs), coloured by generation."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ok = [h for h in history if h["status"] == "ok"]
    ax.scatter([h["flops"] for h in ok], [h["val_accuracy"] for h in ok], s=6, c="0.8",
               label="all evaluations", zorder=1)
    cmap = colormaps["viridis"]
    last = max(len(generations) - 1, 1)
    for rec in generations:
        pts = sorted((m["flops"], m["val_accuracy"]) for m in rec["front"])
        if pts:
            flops, acc = zip(*pts, strict=True)
            ax.step(flops, acc, where="post", color=cmap(rec["generation"] / last), lw=1,
                    marker="o", ms=3, zorder=2)
    fig.colorbar(ScalarMappable(Normalize(0, last), cmap), ax=ax, label="generation")
    ax.set_xscale("log")
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("non-zero FLOPs per sample")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Pareto front of every generation")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_hypervolume(generations: list[dict[str, Any]], path: Path) -> Path:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot([r["generation"] for r in generations], [r["hypervolume"] for r in generations],
            marker="o", ms=3)
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume (normalised)")
    ax.set_title("Hypervolume of the population")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _layout(genome: Genome) -> tuple[dict[int, tuple[float, float]], list[tuple[int, int]]]:
    """Node positions (x: inputs 0, hidden nodes their depth level, outputs the last column;
    y spread within a column) and the live connections."""
    topo = analyse(genome)
    column = np.where(genome.node_kind == OUTPUT, topo.n_levels, topo.depth)
    pos: dict[int, tuple[float, float]] = {}
    for level in range(topo.n_levels + 1):
        rows = np.flatnonzero(column == level)
        for i, r in enumerate(rows):
            pos[int(genome.node_id[r])] = (float(level), (i + 0.5) / len(rows))
    live = np.flatnonzero(topo.conn_active)
    return pos, [(int(genome.conn_src[i]), int(genome.conn_dst[i])) for i in live]


def plot_topologies(front: list[Member], path: Path) -> Path:
    """Front members as graphs: inputs left, outputs right, hidden nodes by depth level."""
    chosen = [front[i] for i in
              sorted(set(np.linspace(0, len(front) - 1, min(len(front), MAX_DRAWN)).astype(int)))]
    cols = min(len(chosen), 4)
    rows = (len(chosen) + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, m in zip(axes.flat, chosen, strict=False):
        g = m.genome
        pos, edges = _layout(g)
        alpha = float(np.clip(150 / max(len(edges), 1), 0.05, 0.6))  # dense graphs stay legible
        for s, d in edges:
            ax.plot(*zip(pos[s], pos[d], strict=True), color="0.3", lw=0.4, alpha=alpha)
        for kind, colour, size in ((INPUT, "tab:blue", 4), (HIDDEN, "tab:orange", 18),
                                   (OUTPUT, "tab:green", 18)):
            ids = [int(i) for i in g.node_id[g.node_kind == kind] if int(i) in pos]
            ax.scatter([pos[i][0] for i in ids], [pos[i][1] for i in ids], s=size, c=colour,
                       zorder=3)
        r = m.result
        ax.set_title(f"genome {r.genome_id}\nval {r.val_accuracy:.3f}, {r.flops} FLOPs",
                     fontsize=9)
    return _save(fig, path)


def plot_activations(front: list[Member], path: Path) -> Path:
    """Activation functions of the front's computed hidden nodes, counted over all members."""
    counts: Counter[str] = Counter()
    for m in front:
        topo = analyse(m.genome)
        live = topo.node_active & (m.genome.node_kind == HIDDEN)
        counts.update(m.genome.node_act[live].tolist())
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    names = sorted(counts, key=lambda n: -counts[n])
    ax.bar(names, [counts[n] for n in names], color="tab:orange")
    ax.set_ylabel("hidden nodes on the front")
    ax.set_title("Activation-function usage" + ("" if names else " (no hidden nodes yet)"))
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def _html(run: Run, front: list[Member], images: list[Path]) -> str:
    keys = ["genome_id", "generation", "val_accuracy", "test_accuracy", "flops", "params",
            "hidden_nodes"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                         for v in (member_summary(m)[k] for k in keys)) + "</tr>\n"
        for m in front)
    figures = "".join(f'<figure><img src="{p.name}" alt="{p.stem}"></figure>\n' for p in images)
    head = "".join(f"<th>{k}</th>" for k in keys)
    name = html.escape(str(run.path))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>evosparse report: {name}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>evosparse run {name}</h1>
<p>generation {run.generation}, {run.evaluations} evaluations, hypervolume {run.hypervolume:.4f};
classes (logit order): {html.escape(", ".join(map(str, run.classes)))}</p>
<h2>Pareto front</h2>
<table><tr>{head}</tr>
{rows}</table>
{figures}</body></html>
"""


def write_report(run: Run) -> Path:
    """Write the plots and report.html into RUN_DIR/report/; returns the page's path."""
    generations = run.generations()
    if not generations:
        raise UserError(f"{run.path} has no finished generation yet: nothing to report")
    front = [c.member for c in sorted(run.front, key=lambda c: c.flops)]
    out = run.path / "report"
    out.mkdir(exist_ok=True)
    images = [
        plot_fronts(generations, run.history(), out / "fronts.png"),
        plot_hypervolume(generations, out / "hypervolume.png"),
        plot_topologies(front, out / "topologies.png"),
        plot_activations(front, out / "activations.png"),
    ]
    page = out / "report.html"
    atomic_write(page, _html(run, front, images).encode())
    return page
