"""Genomes as arrays, and the registry that hands out innovation ids.

A genome is a NEAT-style graph stored as numpy arrays (one row per node, one row
per connection), so that mutation, crossover and serialisation are vector
operations. Every node has a position in [0, 1] (inputs 0, outputs 1); a
connection may only go from a lower to a higher position, so every genome is a
DAG by construction and no cycle check is ever needed. Positions are fixed by
the registry when a node is created, so they agree across the population.

This module imports no torch: genomes are cheap to make, copy and ship.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

INPUT, HIDDEN, OUTPUT = 0, 1, 2
KIND_NAMES = ("input", "hidden", "output")
ACT_DTYPE = np.dtype("<U64")
"""Activation names are fixed-width strings, so assigning a longer name never truncates."""


def untrained(weights: np.ndarray) -> np.ndarray:
    """Per row of Lamarckian `weights` (a value, or a conv kernel's taps): whether it
    holds no number (NaN: no trained value)."""
    nan = np.isnan(weights)
    return nan.all(axis=tuple(range(1, weights.ndim))) if weights.ndim > 1 else nan


def locate(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `wanted` sits in `keys` (unsorted, distinct), by binary search:
    (rows into `keys`, meaningful where found; found)."""
    if not len(keys):
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    order = np.argsort(keys)
    at = order[np.searchsorted(keys, wanted, sorter=order).clip(max=len(keys) - 1)]
    return at, keys[at] == wanted


def pair_keys(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """One int64 key per connection (source id, destination id)."""
    return np.asarray(dst, dtype=np.int64) * (1 << 31) + np.asarray(src, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Genome:
    """One network's topology; arrays are sorted (nodes by kind then id, connections by id)."""

    genome_id: int
    node_id: np.ndarray  # int64 (N,)
    node_kind: np.ndarray  # int8 (N,): INPUT / HIDDEN / OUTPUT
    node_pos: np.ndarray  # float64 (N,): topological position in [0, 1]
    node_act: np.ndarray  # str (N,): activation name (inputs: "identity")
    conn_innov: np.ndarray  # int64 (C,)
    conn_src: np.ndarray  # int64 (C,) node ids
    conn_dst: np.ndarray  # int64 (C,) node ids
    conn_enabled: np.ndarray  # bool (C,)
    parents: tuple[int, ...] = field(default=())
    generation: int = 0
    conn_weight: np.ndarray | None = None
    """float32 (C,): Lamarckian starting weight of each connection, NaN where none; a conv
    family's (C, taps): each kernel's taps (a connection into an output: its first)."""
    node_bias: np.ndarray | None = None
    """float32 (N,): Lamarckian starting bias of each node, NaN where none."""
    conn_taps: np.ndarray | None = None
    """int64 (C,): which taps of a conv family's kernel each connection keeps, one bit per
    tap (-1: all); None: every kernel whole (and always for MLPs). Operators that rebuild
    a genome drop it; the family's `vary` gives a child its parents' taps back."""
    conn_dilation: np.ndarray | None = None
    """int64 (C,): the dilation of a conv family's kernel (the gap between its taps) per
    connection; None: every kernel 1 (and always for MLPs). Kept and dropped as `conn_taps`."""

    @staticmethod
    def build(
        genome_id: int,
        nodes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        conns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        parents: tuple[int, ...] = (),
        generation: int = 0,
        weights: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Genome:
        """Make a genome from unsorted node and connection columns, in canonical order.

        `weights` (connection weights, node biases; NaN where none) are the inherited
        starting values of Lamarckian evolution, aligned with `conns` and `nodes`.
        """
        nid, kind, pos, act = (np.asarray(a) for a in nodes)
        innov, src, dst, en = (np.asarray(a) for a in conns)
        n_order = Genome.node_order(nid, kind)
        c_order = np.argsort(innov, kind="stable")
        conn_weight = node_bias = None
        if weights is not None:
            conn_weight = np.asarray(weights[0], dtype=np.float32)[c_order]
            node_bias = np.asarray(weights[1], dtype=np.float32)[n_order]
        return Genome(
            genome_id=int(genome_id),
            node_id=nid[n_order].astype(np.int64, copy=False),
            node_kind=kind[n_order].astype(np.int8, copy=False),
            node_pos=pos[n_order].astype(np.float64, copy=False),
            node_act=act[n_order].astype(ACT_DTYPE, copy=False),
            conn_innov=innov[c_order].astype(np.int64, copy=False),
            conn_src=src[c_order].astype(np.int64, copy=False),
            conn_dst=dst[c_order].astype(np.int64, copy=False),
            conn_enabled=en[c_order].astype(bool, copy=False),
            parents=tuple(int(p) for p in parents),
            generation=int(generation),
            conn_weight=conn_weight,
            node_bias=node_bias,
        )

    @staticmethod
    def node_order(node_id: np.ndarray, node_kind: np.ndarray) -> np.ndarray:
        """The canonical order of node rows: inputs, hidden nodes, outputs, each by id."""
        return np.lexsort((node_id, node_kind == OUTPUT, node_kind != INPUT))

    @property
    def nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.node_id, self.node_kind, self.node_pos, self.node_act

    @property
    def conns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.conn_innov, self.conn_src, self.conn_dst, self.conn_enabled

    @property
    def n_hidden(self) -> int:
        return int(np.count_nonzero(self.node_kind == HIDDEN))

    @property
    def n_enabled(self) -> int:
        return int(np.count_nonzero(self.conn_enabled))

    def derive(self, genome_id: int, parents: tuple[int, ...], generation: int) -> Genome:
        """The same topology under a new identity (the start of every child), without
        inherited weights (`inheritance.inherit` gives a child its parents' weights)."""
        return replace(self, genome_id=genome_id, parents=parents, generation=generation,
                       conn_weight=None, node_bias=None)

    def with_disabled(self, innovations: tuple[int, ...]) -> Genome:
        """This genome with the genes of `innovations` disabled (pruned during training)."""
        if not innovations:
            return self
        return replace(self, conn_enabled=self.conn_enabled & ~np.isin(self.conn_innov,
                                                                         innovations))

    def with_kept_taps(self, taps: tuple[tuple[int, int], ...]) -> Genome:
        """This genome with each (innovation, tap bits) kernel keeping only those taps (the
        rest pruned during training); other connections unchanged."""
        if not taps:
            return self
        bits = (np.full(len(self.conn_innov), -1, dtype=np.int64) if self.conn_taps is None
                else self.conn_taps.copy())
        at, found = locate(self.conn_innov, np.array([i for i, _ in taps], dtype=np.int64))
        bits[at[found]] = np.array([b for _, b in taps], dtype=np.int64)[found]
        return self.with_taps(bits)

    def with_added(self, pairs: list[tuple[int, int]], innovations: list[int]) -> Genome:
        """This genome with connections (source id, destination id) enabled: a gene it has
        for a pair is re-enabled, the others are new genes with the given `innovations`
        (inherited weights, if any, are NaN for them)."""
        if not pairs:
            return self
        src, dst = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
        have, wanted = pair_keys(self.conn_src, self.conn_dst), pair_keys(src, dst)
        at, found = locate(have, wanted)  # a pair has at most one gene
        en = self.conn_enabled.copy()
        en[at[found]] = True
        new = ~found
        weights = None
        if self.conn_weight is not None and self.node_bias is not None:
            w = self.conn_weight
            weights = (np.concatenate([w, np.full((int(new.sum()), *w.shape[1:]), np.nan)]),
                       self.node_bias)
        return Genome.build(
            self.genome_id, self.nodes,
            (np.append(self.conn_innov, np.asarray(innovations, dtype=np.int64)[new]),
             np.append(self.conn_src, src[new]), np.append(self.conn_dst, dst[new]),
             np.append(en, np.ones(int(new.sum()), dtype=bool))),
            self.parents, self.generation, weights)

    def with_taps(self, taps: np.ndarray | None) -> Genome:
        """This genome with the tap masks `taps` (aligned with its connections; None: all)."""
        return replace(self, conn_taps=None if taps is None else np.asarray(taps, np.int64))

    def with_dilation(self, dilation: np.ndarray | None) -> Genome:
        """This genome with kernel dilations `dilation` (aligned with its connections; None:
        all 1)."""
        return replace(self, conn_dilation=None if dilation is None
                       else np.asarray(dilation, np.int64))

    def with_weights(self, conn_weight: np.ndarray, node_bias: np.ndarray) -> Genome:
        """This genome carrying Lamarckian weights (aligned with its arrays; NaN: none)."""
        return replace(self, conn_weight=np.asarray(conn_weight, dtype=np.float32),
                       node_bias=np.asarray(node_bias, dtype=np.float32))

    @functools.cached_property
    def _rows_by_id(self) -> np.ndarray | None:
        """The row of each node id, as a table over the ids 0..max (node ids are handed out
        from 0 up, so it is small), kept: operators look nodes up by id many times. None
        where the ids are too sparse for a table (then `index_of` searches)."""
        top = int(self.node_id.max()) + 1 if self.node_id.size else 0
        if top > 16 * self.node_id.size + 4096:
            return None
        table = np.full(top, -1, dtype=np.int64)
        table[self.node_id] = np.arange(self.node_id.size)
        return table

    def index_of(self, node_ids: np.ndarray) -> np.ndarray:
        """Row indices of the given node ids (all must exist)."""
        table = self._rows_by_id
        if table is not None:
            return table[node_ids]
        order = self._id_order
        return order[np.searchsorted(self.node_id, node_ids, sorter=order)]

    @functools.cached_property
    def _id_order(self) -> np.ndarray:
        """argsort of `node_id`, kept for `index_of` where ids are too sparse for a table."""
        return np.argsort(self.node_id)

    def same_as(self, other: Genome) -> bool:
        """True when both genomes have the same identity and identical arrays."""
        return self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_dict` inverts it exactly."""
        return {
            "genome_id": self.genome_id,
            "generation": self.generation,
            "parents": list(self.parents),
            "nodes": {
                "id": self.node_id.tolist(),
                "kind": [KIND_NAMES[k] for k in self.node_kind],
                "pos": self.node_pos.tolist(),
                "activation": self.node_act.tolist(),
            },
            "connections": {
                "innovation": self.conn_innov.tolist(),
                "src": self.conn_src.tolist(),
                "dst": self.conn_dst.tolist(),
                "enabled": self.conn_enabled.tolist(),
                **({} if self.conn_taps is None else {"taps": self.conn_taps.tolist()}),
                **({} if self.conn_dilation is None
                   else {"dilation": self.conn_dilation.tolist()}),
            },
            **({} if self.conn_weight is None or self.node_bias is None else {"weights": {
                "connection": _json_floats(self.conn_weight),
                "bias": _json_floats(self.node_bias),
            }}),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Genome:
        n, c = d["nodes"], d["connections"]
        kind = np.array([KIND_NAMES.index(k) for k in n["kind"]], dtype=np.int8)
        genome = Genome.build(
            d["genome_id"],
            (np.array(n["id"], dtype=np.int64), kind, np.array(n["pos"], dtype=np.float64),
             np.array(n["activation"], dtype=ACT_DTYPE)),
            (np.array(c["innovation"], dtype=np.int64), np.array(c["src"], dtype=np.int64),
             np.array(c["dst"], dtype=np.int64), np.array(c["enabled"], dtype=bool)),
            parents=tuple(d["parents"]),
            generation=d["generation"],
            weights=None if "weights" not in d else (
                _floats_from_json(d["weights"]["connection"]),
                _floats_from_json(d["weights"]["bias"])),
        )
        order = np.argsort(np.array(c["innovation"], dtype=np.int64), kind="stable")
        if "taps" in c:
            genome = genome.with_taps(np.array(c["taps"], dtype=np.int64)[order])
        if "dilation" in c:
            genome = genome.with_dilation(np.array(c["dilation"], dtype=np.int64)[order])
        return genome


def _json_floats(a: np.ndarray) -> list[Any]:
    """float32 values as JSON numbers (exact: a float32 is a float64 that prints round-trip),
    NaN as null; a 2-D array (conv kernels) as a list of rows."""
    if a.ndim > 1:
        return [_json_floats(row) for row in a]
    out: list[float | None] = a.astype(np.float64).tolist()
    for i in np.flatnonzero(np.isnan(a)).tolist():
        out[i] = None
    return out


def _floats_from_json(values: list[Any]) -> np.ndarray:
    if values and isinstance(values[0], list):
        return np.array([_floats_from_json(row) for row in values], dtype=np.float32)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


class InnovationRegistry:
    """Hands out innovation ids so the same structural change gets the same id run-wide.

    - a connection src->dst always gets the same innovation id;
    - the k-th split of connection c (in one genome) always creates the same node id.
    It is part of the checkpoint: restoring it restores every counter.
    """

    def __init__(self, n_inputs: int, n_outputs: int) -> None:
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.next_node = n_inputs + n_outputs
        self.next_innovation = 0
        self._conn: dict[tuple[int, int], int] = {}
        # the same table as columns (src, dst, innovation), appended to as it grows, so a
        # checkpoint copies three lists instead of walking the dict
        self._columns: tuple[list[int], list[int], list[int]] = ([], [], [])
        self._split: dict[int, list[int]] = {}

    @property
    def input_ids(self) -> np.ndarray:
        return np.arange(self.n_inputs, dtype=np.int64)

    @property
    def output_ids(self) -> np.ndarray:
        return np.arange(self.n_inputs, self.n_inputs + self.n_outputs, dtype=np.int64)

    def connection(self, src: int, dst: int) -> int:
        """The innovation id of src->dst, created on first request."""
        return self.connections([(src, dst)])[0]

    def connections(self, pairs: list[tuple[int, int]]) -> list[int]:
        """`connection(src, dst)` of each pair, in order (ids created in that order)."""
        known, out = self._conn, []
        srcs, dsts, innovations = self._columns
        for src, dst in pairs:
            key = (int(src), int(dst))
            innov = known.get(key)
            if innov is None:
                innov = known[key] = self.next_innovation
                self.next_innovation += 1
                srcs.append(key[0])
                dsts.append(key[1])
                innovations.append(innov)
            out.append(innov)
        return out

    def new_node(self) -> int:
        """A node id never handed out before."""
        self.next_node += 1
        return self.next_node - 1

    def split_node(self, innovation: int, taken: set[int]) -> int:
        """The node id for splitting connection `innovation` in a genome holding `taken` ids."""
        nodes = self._split.setdefault(int(innovation), [])
        for nid in nodes:
            if nid not in taken:
                return nid
        nodes.append(self.new_node())
        return nodes[-1]

    def to_dict(self) -> dict[str, Any]:
        src, dst, innovation = self._columns
        return {
            "n_inputs": self.n_inputs,
            "n_outputs": self.n_outputs,
            "next_node": self.next_node,
            "next_innovation": self.next_innovation,
            # columns, not one [src, dst, id] triple per connection: the table grows with
            # every link ever tried and is written with every checkpoint
            "connections": {"src": list(src), "dst": list(dst), "innovation": list(innovation)},
            "splits": [[i, nodes] for i, nodes in self._split.items()],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> InnovationRegistry:
        reg = InnovationRegistry(d["n_inputs"], d["n_outputs"])
        reg.next_node = d["next_node"]
        reg.next_innovation = d["next_innovation"]
        c = d["connections"]
        reg._conn = dict(zip(zip(c["src"], c["dst"], strict=True), c["innovation"], strict=True))
        reg._columns = (list(c["src"]), list(c["dst"]), list(c["innovation"]))
        reg._split = {i: list(nodes) for i, nodes in d["splits"]}
        return reg
