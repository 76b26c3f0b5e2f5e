"""Search-space files: the shipped ones load; bad ones fail with one message naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from evosparse.errors import UserError
from evosparse.space import load_space

SPACES = sorted((Path(__file__).parent.parent / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_load(path: Path) -> None:
    space = load_space(path)
    assert space.population >= 2
    assert load_space(path).fingerprint() == space.fingerprint()


def test_shipped_spaces_include_the_documented_ones() -> None:
    assert {"digits.yaml", "mnist1d.yaml", "xor.yaml"} <= {p.name for p in SPACES}


LR = {"params": {"training.lr": {"type": "float", "low": 0.001, "high": 0.1}}}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"training": {"lrr": 0.1}}, "training.lrr: unknown key"),
        ({"training": {"lr": "fast"}}, "training.lr"),
        ({"population": 1}, "population"),
        ({"network": {"initial_density": 0.0}}, "network.initial_density"),
        ({"network": {"initial_density": 1.5}}, "network.initial_density"),
        ({"activations": {"hidden": ["relu", "swishy"]}}, "unknown activation 'swishy'"),
        ({"dataset": {"name": "file"}}, "needs a 'path'"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name"),
        ({"objectives": {"reference_flops": -5}}, "objectives.reference_flops"),
        ({"tune": {**LR, "median_stopping": {"grace_period": 0}}},
         "tune.median_stopping.grace_period: Input should be greater than or equal to 1"),
        ({"tune": {**LR, "median_stopping": {"min_samples_required": 0}}},
         "tune.median_stopping.min_samples_required"),
        ({"tune": {**LR, "median_stopping": {"grace": 1}}},
         "tune.median_stopping.grace: unknown key"),
    ],
)
def test_bad_values_name_the_key(write_space, extra, needle) -> None:
    path = write_space(extra)
    with pytest.raises(UserError) as exc:
        load_space(path)
    assert str(path) in str(exc.value)
    assert needle in str(exc.value)


def test_missing_required_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("population: 4\n")
    with pytest.raises(UserError, match=r"objectives: required key is missing"):
        load_space(path)


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("population: [4\n")
    with pytest.raises(UserError, match="invalid YAML"):
        load_space(bad)


def test_relative_dataset_path_is_resolved_against_the_space_file(write_space, tmp_path) -> None:
    path = write_space({"dataset": {"name": "file", "path": "data/x.npz"}})
    assert load_space(path).dataset.path == (tmp_path / "data" / "x.npz").resolve()


def test_overrides_are_validated(write_space) -> None:
    space = load_space(write_space())
    assert space.with_overrides(seed=9, population=None).seed == 9
    with pytest.raises(UserError, match="population"):
        space.with_overrides(population=1)


def test_fingerprint_ignores_generations_only(write_space) -> None:
    space = load_space(write_space())
    assert space.with_overrides(generations=99).fingerprint() == space.fingerprint()
    assert space.with_overrides(seed=99).fingerprint() != space.fingerprint()


def test_the_ray_median_stopping_rule_has_documented_defaults(write_space) -> None:
    """README: `tune.median_stopping` defaults to grace_period 2, min_samples_required 3."""
    tune = load_space(write_space({"tune": LR})).tune
    assert tune is not None
    assert (tune.median_stopping.grace_period, tune.median_stopping.min_samples_required) == (2, 3)
    set_ = load_space(write_space({"tune": {**LR, "median_stopping": {"grace_period": 1}}})).tune
    assert set_ is not None
    assert (set_.median_stopping.grace_period, set_.median_stopping.min_samples_required) == (1, 3)
