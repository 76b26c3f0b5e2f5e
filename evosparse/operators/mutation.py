"""NEAT-style structural and activation mutations (Stanley & Miikkulainen, 2002).

Each operator takes a genome, a numpy Generator and what it needs, and returns a
new genome, or the very same object when nothing could be changed (so callers
can tell). New structure gets its ids from the `InnovationRegistry`.
Constraints of the space are kept: at most `max_hidden` hidden nodes, at most
`max_levels` hidden levels (a DAG space) or the level grid (a layered space).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evosparse.expressions import mutate_expression, random_expression
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome, InnovationRegistry
from evosparse.graph import analyse
from evosparse.space import ActivationSpec, MutationSpec, NetworkSpec

ATTEMPTS = 32
"""How many random picks an operator tries before it gives up on one change."""


def _within_depth(genome: Genome, net: NetworkSpec) -> bool:
    return analyse(genome).hidden_levels <= net.max_levels


def _split_positions(pa: np.ndarray, pb: np.ndarray, net: NetworkSpec) -> np.ndarray:
    """Position of a node inserted between positions pa < pb, per pair; NaN if no room."""
    mid = (pa + pb) / 2.0
    if net.topology == "dag":
        return np.where((pa < mid) & (mid < pb), mid, np.nan)
    grid = np.arange(1, net.max_levels + 1) / (net.max_levels + 1)
    inside = (grid > pa[:, None]) & (grid < pb[:, None])
    nearest = np.argmin(np.where(inside, np.abs(grid - mid[:, None]), np.inf), axis=1)
    return np.where(inside.any(axis=1), grid[nearest], np.nan)


def _with_connections(g: Genome, reg: InnovationRegistry, pairs: list[tuple[int, int]]) -> Genome:
    """`g` with the given (src, dst) node ids connected: existing genes re-enabled, others new."""
    return g.with_added(pairs, reg.connections(pairs))


def _add_one_node(
    g: Genome,
    rng: np.random.Generator,
    reg: InnovationRegistry,
    net: NetworkSpec,
    acts: ActivationSpec,
    fan_in: int,
    fan_out: int,
) -> Genome:
    if g.n_hidden >= net.max_hidden:
        return g
    enabled = np.flatnonzero(g.conn_enabled)
    split = _split_positions(g.node_pos[g.index_of(g.conn_src[enabled])],
                             g.node_pos[g.index_of(g.conn_dst[enabled])], net)
    room = ~np.isnan(split)  # connections with room for a node between their ends
    candidates, split = enabled[room], split[room]
    taken = set(g.node_id.tolist())
    for _ in range(min(ATTEMPTS, candidates.size)):
        pick = int(rng.integers(candidates.size))
        c, pos = candidates[pick], float(split[pick])
        src, dst = g.conn_src[c], g.conn_dst[c]
        nid = reg.split_node(g.conn_innov[c], taken)
        en = g.conn_enabled.copy()
        en[c] = False
        new = Genome.build(
            g.genome_id,
            (np.append(g.node_id, nid), np.append(g.node_kind, HIDDEN),
             np.append(g.node_pos, pos), np.append(g.node_act, rng.choice(acts.hidden))),
            (np.append(g.conn_innov, [reg.connection(src, nid), reg.connection(nid, dst)]),
             np.append(g.conn_src, [src, nid]), np.append(g.conn_dst, [nid, dst]),
             np.append(en, [True, True])),
            g.parents,
            g.generation,
        )
        if net.topology == "layered" or _within_depth(new, net):
            row = int(np.flatnonzero(new.node_id == nid)[0])
            if fan_in:
                new = _grow_links(new, row, rng, reg, net, fan_in, inward=True)
            if fan_out:
                new = _grow_links(new, row, rng, reg, net, fan_out, inward=False)
            return new
    return g


def _grow_links(
    g: Genome, row: int, rng: np.random.Generator, reg: InnovationRegistry, net: NetworkSpec,
    count: int, inward: bool,
) -> Genome:
    """Up to `count` new links into (`inward`) or out of the node at `row`, to random nodes.

    In-links come from earlier non-output nodes, out-links go to later non-input
    nodes. Links that would exceed `max_levels` are skipped; returns `g` itself if
    none fit.
    """
    nid = g.node_id[row]
    if inward:
        linked = g.conn_src[(g.conn_dst == nid) & g.conn_enabled]
        free = (g.node_pos < g.node_pos[row]) & (g.node_kind != OUTPUT)
    else:
        linked = g.conn_dst[(g.conn_src == nid) & g.conn_enabled]
        free = (g.node_pos > g.node_pos[row]) & (g.node_kind != INPUT)
    free[g.index_of(linked)] = False
    candidates = np.flatnonzero(free)
    if candidates.size == 0:
        return g
    others = g.node_id[rng.choice(candidates, size=min(count, candidates.size), replace=False)]
    pairs = [(int(o), int(nid)) if inward else (int(nid), int(o)) for o in others]
    new = _with_connections(g, reg, pairs)
    if net.topology == "layered" or _within_depth(new, net):
        return new
    out = g
    for pair in pairs:  # some link is too deep: add them one by one, keeping the legal ones
        trial = _with_connections(out, reg, [pair])
        if _within_depth(trial, net):
            out = trial
    return out


def add_connections(
    g: Genome, rng: np.random.Generator, reg: InnovationRegistry, net: NetworkSpec, count: int
) -> Genome:
    """Grow up to `count` new in-links (new or re-enabled) into one random node.

    The destination is a random hidden or output node; sources are random nodes
    before it. Growing one node's fan-in at a time lets a new hidden node become
    useful in a few mutations rather than waiting for single random links to land
    on it.
    """
    targets = np.flatnonzero(g.node_kind != INPUT)
    for _ in range(ATTEMPTS):
        new = _grow_links(g, int(rng.choice(targets)), rng, reg, net, count, inward=True)
        if new is not g:
            return new
    return g


def add_nodes(
    g: Genome,
    rng: np.random.Generator,
    reg: InnovationRegistry,
    net: NetworkSpec,
    acts: ActivationSpec,
    count: int,
    fan_in: int = 0,
    fan_out: int = 0,
) -> Genome:
    """Split up to `count` random enabled connections a->b into a->new->b (NEAT add-node).

    Each new node may also grow `fan_in` extra in-links and `fan_out` extra
    out-links at once, so it starts as a feature detector shared by several
    outputs rather than a relay from one input to one output.
    """
    out = g
    for _ in range(count):
        out = _add_one_node(out, rng, reg, net, acts, fan_in, fan_out)
    return out


def remove_connections(g: Genome, rng: np.random.Generator, count: int) -> Genome:
    """Disable up to `count` random enabled connections (kept as genes for crossover)."""
    enabled = np.flatnonzero(g.conn_enabled)
    if enabled.size == 0:
        return g
    drop = rng.choice(enabled, size=min(count, enabled.size), replace=False)
    en = g.conn_enabled.copy()
    en[drop] = False
    return Genome.build(g.genome_id, g.nodes, (g.conn_innov, g.conn_src, g.conn_dst, en),
                        g.parents, g.generation)


def change_activation(g: Genome, rng: np.random.Generator, acts: ActivationSpec) -> Genome:
    """Give one random hidden node a different activation: from the space's set, or (with
    probability `acts.expressions`) its current one evolved as an expression."""
    hidden = np.flatnonzero(g.node_kind == HIDDEN)
    evolve = acts.expressions > 0
    if hidden.size == 0 or (len(acts.hidden) < 2 and not evolve):
        return g
    row = rng.choice(hidden)
    act = g.node_act.copy()
    if evolve and (len(acts.hidden) < 2 or rng.random() < acts.expressions):
        act[row] = (random_expression(rng, acts.primitives, acts.expression_depth)
                    if acts.expression_search == "random" else
                    mutate_expression(str(act[row]), rng, acts.primitives, acts.expression_depth))
    else:
        act[row] = rng.choice([a for a in acts.hidden if a != g.node_act[row]])
    return Genome.build(g.genome_id, (g.node_id, g.node_kind, g.node_pos, act), g.conns,
                        g.parents, g.generation)


def mutate(
    g: Genome,
    rng: np.random.Generator,
    reg: InnovationRegistry,
    net: NetworkSpec,
    acts: ActivationSpec,
    rates: MutationSpec,
) -> Genome:
    """Apply each mutation with its probability; if none changed anything, force one.

    Forcing one change (chosen in proportion to the rates) avoids spending an
    evaluation on an exact copy of a parent.
    """
    ops: list[tuple[float, Callable[[Genome], Genome]]] = [
        (rates.add_connection, lambda x: add_connections(
            x, rng, reg, net, int(rng.integers(1, rates.add_connection_max + 1)))),
        (rates.add_node, lambda x: add_nodes(
            x, rng, reg, net, acts, int(rng.integers(1, rates.add_node_max + 1)),
            rates.add_node_fan_in, rates.add_node_fan_out)),
        (rates.remove_connection, lambda x: remove_connections(
            x, rng, int(rng.integers(1, rates.remove_connection_max + 1)))),
        (rates.change_activation, lambda x: change_activation(x, rng, acts)),
    ]
    out = g
    for rate, op in ops:
        if rng.random() < rate:
            out = op(out)
    if out is g:
        live = np.array([i for i, (rate, _) in enumerate(ops) if rate > 0])
        if live.size:
            weights = np.array([ops[i][0] for i in live])
            for i in rng.choice(live, size=live.size, replace=False, p=weights / weights.sum()):
                out = ops[i][1](g)
                if out is not g:
                    break
    return out
