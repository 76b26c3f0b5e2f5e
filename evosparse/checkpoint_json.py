"""Canonical JSON of checkpoint bodies, re-encoding only what changed since the last one.

A checkpoint is written every generation and grows with the run (about 1.2 MB at
generation 100 of the digits space: the innovation registry's table and the
population with its Lamarckian weights); encoding it whole took about 20 ms at
generation 100, on the search's thread. Between two checkpoints most of it is unchanged:
a population member never changes (most survive a generation), the registry's
connection table only grows at its end. The bytes are
exactly `canonical(body)`: the big parts are encoded alone (as canonical JSON, so
their text is what encoding them inside the body gives) and put in place of
placeholders in the small rest.
"""

from __future__ import annotations

import json
from typing import Any

from evosparse.evolution import Member, SearchState
from evosparse.genome import InnovationRegistry

COLUMNS = ("dst", "innovation", "src")
"""The registry's connection columns, as `InnovationRegistry.to_dict` names them."""


def canonical(body: Any) -> bytes:
    """The one JSON text of `body` that is hashed and written: sorted keys, no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _slot(name: str) -> str:
    return f"\x00{name}\x00"  # a NUL-delimited string: no JSON a search writes holds one


class CheckpointEncoder:
    """Encodes the checkpoint bodies of one run in order, keeping the last one's parts."""

    def __init__(self) -> None:
        self._members: dict[int, tuple[Member, bytes]] = {}  # id -> (member kept alive, JSON)
        self._registry: InnovationRegistry | None = None
        self._columns: dict[str, tuple[int, bytes]] = {}  # name -> (entries, text without "]")

    def encode(self, head: dict[str, Any], space: dict[str, Any], state: SearchState) -> bytes:
        """`canonical` of `{**head, "space": space, "state": state.to_dict()}`."""
        state_dict = state.to_dict(members=False)
        registry = state_dict["registry"]
        columns = registry["connections"]
        state_dict["population"] = _slot("population")
        registry["connections"] = {c: _slot(c) for c in COLUMNS}
        text = canonical({**head, "space": space, "state": state_dict})
        parts = {"population": self._population(state.population),
                 **self._column_json(state.registry, columns)}
        for name, part in parts.items():
            before, after = text.split(canonical(_slot(name)))
            text = before + part + after
        return text

    def _population(self, population: list[Member]) -> bytes:
        kept = {}
        for m in population:
            known = self._members.get(id(m))
            kept[id(m)] = known if known and known[0] is m else (m, canonical(m.to_dict()))
        self._members = kept
        return b"[" + b",".join(kept[id(m)][1] for m in population) + b"]"

    def _column_json(self, registry: InnovationRegistry, columns: dict[str, list[int]]
                     ) -> dict[str, bytes]:
        """Each connection column's JSON: the text kept for the entries it had last time
        (a registry only appends), extended by its new entries."""
        if registry is not self._registry:
            self._registry, self._columns = registry, {}
        out = {}
        for name in COLUMNS:
            values = columns[name]
            done, text = self._columns.get(name, (0, b"["))
            if done > len(values):
                done, text = 0, b"["
            if len(values) > done:
                more = ",".join(str(int(v)) for v in values[done:]).encode()
                text = text + (b"," if done else b"") + more
            self._columns[name] = (len(values), text)
            out[name] = text + b"]"
        return out
