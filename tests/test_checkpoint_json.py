"""Checkpoint encoding: reusing the last checkpoint's parts gives the bytes of a whole encoding."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evosparse.checkpoint_json import CheckpointEncoder, canonical
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import Member, SearchState
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import load_space


def whole(head: dict, space: dict, state: SearchState) -> bytes:
    return canonical({**head, "space": space, "state": state.to_dict()})


def test_reused_parts_encode_exactly_what_a_whole_encoding_gives(write_space, tmp_path: Path
                                                                    ) -> None:
    space = load_space(write_space({"generations": 1}))
    state = start_run(RunDir(tmp_path / "run"), space, LocalEvaluator(), []).run()
    head, dumped = {"format": 1, "fingerprint": space.fingerprint()}, space.model_dump(mode="json")
    encoder = CheckpointEncoder()
    assert encoder.encode(head, dumped, state) == whole(head, dumped, state)
    # a generation later: a member replaced, the registry grown, the same member objects kept
    state.population[0] = Member(state.population[1].genome, state.population[1].result)
    state.registry.connections([(0, 10_000), (1, 10_000)])
    state.generation += 1
    assert encoder.encode(head, dumped, state) == whole(head, dumped, state)
    # a resumed search: a new registry object (its table read back), another space
    resumed = SearchState.from_dict(state.to_dict())
    changed = {**dumped, "seed": dumped["seed"] + 1}
    assert encoder.encode(head, changed, resumed) == whole(head, changed, resumed)
    assert encoder.encode(head, changed, resumed) == whole(head, changed, resumed)


def test_a_checkpoint_never_holds_nan_or_infinity() -> None:
    """Checkpoints are strict JSON (any reader parses them): a non-finite float is an error,
    never written as NaN or Infinity."""
    assert canonical({"b": [1.5, None], "a": "x"}) == b'{"a":"x","b":[1.5,null]}'
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not JSON compliant"):
            canonical({"hypervolume": bad})
