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


def _link_candidates(pos: np.ndarray, kind: np.ndarray, row: int, linked: np.ndarray,
                     inward: bool) -> np.ndarray:
    """Rows a new link into (`inward`) or out of the node at `row` may come from or go to:
    earlier non-output nodes, or later non-input nodes, not among the `linked` rows."""
    free = (pos < pos[row]) & (kind != OUTPUT) if inward else (pos > pos[row]) & (kind != INPUT)
    free[linked] = False
    return np.flatnonzero(free)


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
        nodes = (np.append(g.node_id, nid), np.append(g.node_kind, HIDDEN),
                 np.append(g.node_pos, pos), np.append(g.node_act, rng.choice(acts.hidden)))
        en = g.conn_enabled.copy()
        en[c] = False
        conns = (np.append(g.conn_innov, [reg.connection(src, nid), reg.connection(nid, dst)]),
                 np.append(g.conn_src, [src, nid]), np.append(g.conn_dst, [nid, dst]),
                 np.append(en, [True, True]))
        if net.topology == "layered":  # no depth to check: the links join in one build
            return _with_node_links(g, nodes, conns, (src, dst), rng, reg, fan_in, fan_out)
        new = Genome.build(g.genome_id, nodes, conns, g.parents, g.generation)
        if _within_depth(new, net):
            row = int(np.flatnonzero(new.node_id == nid)[0])
            if fan_in:
                new = _grow_links(new, row, rng, reg, net, fan_in, inward=True)
            if fan_out:
                new = _grow_links(new, row, rng, reg, net, fan_out, inward=False)
            return new
    return g


def _with_node_links(
    g: Genome,
    nodes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    conns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ends: tuple[int, int],
    rng: np.random.Generator,
    reg: InnovationRegistry,
    fan_in: int,
    fan_out: int,
) -> Genome:
    """The genome of `nodes` and `conns` (`g` with a new node, its last row, between `ends`)
    with up to `fan_in` in-links and `fan_out` out-links grown at the new node, built once.

    Draws and registry ids are those of building the node and growing each side with
    `_grow_links` (the same candidate rows, in the same canonical order): the new node
    has no links but the two of its split, so every grown link is a new gene.
    """
    node_id, kind, pos = nodes[0], nodes[1], nodes[2]
    order = Genome.node_order(node_id, kind)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)  # canonical row of each row of `nodes`
    row, nid = int(rank[-1]), int(node_id[-1])
    ids, pos, kind = node_id[order], pos[order], kind[order]
    pairs: list[tuple[int, int]] = []
    innovations: list[int] = []
    for count, end, inward in ((fan_in, ends[0], True), (fan_out, ends[1], False)):
        linked = rank[g.index_of(np.array([end]))]
        free = _link_candidates(pos, kind, row, linked, inward) if count else linked[:0]
        if free.size:
            others = ids[rng.choice(free, size=min(count, free.size), replace=False)]
            side = [(int(o), nid) if inward else (nid, int(o)) for o in others]
            innovations += reg.connections(side)
            pairs += side
    if pairs:
        src, dst = np.array(pairs, dtype=np.int64).T
        conns = (np.append(conns[0], innovations), np.append(conns[1], src),
                 np.append(conns[2], dst), np.append(conns[3], np.ones(len(pairs), bool)))
    return Genome.build(g.genome_id, nodes, conns, g.parents, g.generation)


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
    ends = g.conn_src if inward else g.conn_dst
    starts = g.conn_dst if inward else g.conn_src
    linked = g.index_of(ends[(starts == nid) & g.conn_enabled])
    candidates = _link_candidates(g.node_pos, g.node_kind, row, linked, inward)
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
