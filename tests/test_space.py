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
        ({"dataset": {"path": "x.npz"}}, "'path' is only used with name: file (name is 'digits')"),
        ({"dataset": {"split": "standard"}},
         "dataset: split: standard is MNIST-1D's own split; dataset 'digits' has none"),
        ({"dataset": {"val_fraction": 0.45, "test_fraction": 0.45}},
         "val_fraction + test_fraction must leave at least 10% to train"),
        ({"activations": {"hidden": []}}, "activations: hidden: list at least one activation"),
        ({"activations": {"hidden": ["relu"], "initial": "tanh"}},
         "initial activation 'tanh' is not in hidden"),
        ({"activations": {"primitives": ["relu", "cosh", "and_ail"]}},
         "activations: primitives: unknown ['and_ail', 'cosh']; known: abs, elu, gaussian,"),
        ({"activations": {"hidden": ["relu", "swishy"]}},
         "activations.hidden: unknown activation 'swishy'; known: abs, and_ail, and_ail_norm,"),
        ({"activations": {"initial": "swishy"}},
         "activations.initial: unknown activation 'swishy'"),
        ({"sparse_training": {"method": "magnitude", "start_epoch": 0.5, "end_epoch": 0.5}},
         "sparse_training: end_epoch (0.5) must be after start_epoch (0.5)"),
        ({"evaluation": {"device": "cpu", "gpus_per_batch": 1}},
         "evaluation: gpus_per_batch is 1.0 but device is cpu"),
        ({"evaluation": {"gpus_per_batch": 1.5}},
         "gpus_per_batch above 1 must be a whole number, got 1.5"),
        ({"kstarts": {"hidden": [2, 0]}}, "kstarts: hidden layer widths must be >= 1, got [2, 0]"),
        ({"kstarts": {"hidden": [2, 2, 2]}},
         "kstarts.hidden [2, 2, 2] does not fit network.max_levels 2 / network.max_hidden 8"),
        ({"kstarts": {"hidden": [5, 4]}}, "kstarts.hidden [5, 4] does not fit"),
        ({"sparse_training": {"method": "magnitude", "end_epoch": 1.5}},
         "sparse_training: the magnitude schedule ends at epoch 1.5, after training.epochs (1)"),
        ({"sparse_training": {"method": "dissipating", "watch_epochs": 2}},
         "the dissipating schedule ends at epoch 2.0"),
        ({"sparse_training": {"method": "set", "end_epoch": 2}}, "the set schedule ends"),
        ({"sparse_training": {"method": "rigl", "end_epoch": 2}}, "the rigl schedule ends"),
        ({"sparse_training": {"method": "ctre", "end_epoch": 2}}, "the ctre schedule ends"),
        ({"tune": {"params": {"training.lr": {"type": "categorical", "choices": []}}}},
         "tune.params.training.lr: a categorical parameter needs a non-empty `choices` list"),
        ({"tune": {"params": {"training.lr": {"type": "float", "low": 0.1, "high": 0.1}}}},
         "tune.params.training.lr: needs low < high, got low=0.1, high=0.1"),
        ({"tune": {"params": {"training.lr": {"type": "float", "high": 0.1}}}},
         "needs low < high, got low=None, high=0.1"),
        ({"tune": {"params": {"training.lr": {"type": "float", "low": 1}}}},
         "needs low < high, got low=1.0, high=None"),
        ({"tune": {"params": {"training.lr": {"type": "float", "low": 0.0, "high": 1.0,
                                              "log": True}}}},
         "tune.params.training.lr: a log range needs low > 0, got 0.0"),
    ],
)
def test_bad_values_name_the_key(write_space, extra, needle) -> None:
    path = write_space(extra)
    with pytest.raises(UserError) as exc:
        load_space(path)
    assert str(path) in str(exc.value)
    assert needle in str(exc.value)


@pytest.mark.parametrize(
    "extra",
    [
        {"dataset": {"name": "file", "path": "x.npz"}},
        {"dataset": {"name": "mnist1d", "split": "standard"}},
        {"dataset": {"val_fraction": 0.5, "test_fraction": 0.39}},
        {"activations": {"hidden": ["tanh", "relu(x) * x"], "initial": "relu(x) * x",
                         "primitives": ["neg", "sin"]}},
        {"sparse_training": {"method": "magnitude", "start_epoch": 0.5, "end_epoch": 1.0}},
        {"sparse_training": {"method": "dissipating", "watch_epochs": 1.0, "end_epoch": 9}},
        {"sparse_training": {"method": "snip", "end_epoch": 9}},
        {"evaluation": {"gpus_per_batch": 0.5}},
        {"evaluation": {"gpus_per_batch": 2}},
        {"evaluation": {"device": "cpu"}},
        {"kstarts": {"hidden": [4, 4]}},
        {"tune": {"params": {"training.lr": {"type": "float", "low": 0.001, "high": 0.1,
                                             "log": True},
                             "training.epochs": {"type": "int", "low": 1, "high": 3},
                             "mutation.add_node": {"type": "categorical",
                                                   "choices": [0.1, 0.5]}}}},
    ],
)
def test_values_at_the_limits_are_accepted(write_space, extra) -> None:
    """The counterparts of the refusals above: what is just allowed loads."""
    space = load_space(write_space(extra))
    for section, values in extra.items():
        for key, value in values.items():
            if key not in ("params", "path", "hidden", "initial", "primitives"):
                assert getattr(getattr(space, section), key) == value


def test_a_file_that_is_not_a_mapping_or_holds_a_key_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("- population\n- 4\n")
    with pytest.raises(UserError, match=r"s.yaml: expected a mapping of keys at the top level"):
        load_space(path)
    path.write_text("population: 4\nseed: 1\npopulation: 5\n")
    with pytest.raises(UserError, match=r"s.yaml, line 3: invalid YAML: duplicate key "
                                        r"'population' \(first on line 1\)"):
        load_space(path)
    path.write_text("network:\n  max_hidden: 4\n  max_hidden: 5\nobjectives:\n  x: 1\n")
    with pytest.raises(UserError, match=r"line 3: .*duplicate key 'max_hidden' \(first on line 2"):
        load_space(path)


def test_every_error_is_listed_with_the_value_given(write_space) -> None:
    path = write_space({"training": {"lr": "fast", "lrr": 1}, "population": 1})
    with pytest.raises(UserError) as exc:
        load_space(path)
    assert str(exc.value) == (
        f"{path}: population: Input should be greater than or equal to 2 (got 1); "
        "training.lr: Input should be a valid number, unable to parse string as a number "
        "(got 'fast'); training.lrr: unknown key")


def test_a_check_across_sections_is_one_line_without_the_whole_space(write_space) -> None:
    path = write_space({"kstarts": {"hidden": [2, 2, 2]}})
    with pytest.raises(UserError) as exc:
        load_space(path)
    assert str(exc.value) == (f"{path}: (top level): kstarts.hidden [2, 2, 2] does not fit "
                              "network.max_levels 2 / network.max_hidden 8")


def test_a_file_with_a_control_character_is_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("population: 4\x07\n")
    with pytest.raises(UserError, match=r"s.yaml: invalid YAML: unacceptable character #x0007"):
        load_space(path)


def test_the_resolved_space_round_trips_through_yaml(write_space, tmp_path: Path) -> None:
    space = load_space(write_space({"dataset": {"name": "file", "path": "d/x.npz"},
                                    "tune": LR}))
    copy = tmp_path / "copy.yaml"
    copy.write_text(space.to_yaml())
    assert load_space(copy) == space
    assert space.to_yaml().startswith("name: tiny\nseed: 3\n"), "keys in the file's order"


def test_overrides_update_a_section_and_ignore_none(write_space) -> None:
    space = load_space(write_space())
    new = space.with_overrides(evaluation={"device": "cpu", "threads": None}, seed=None,
                               generations=7)
    assert new.evaluation.device == "cpu" and new.evaluation.threads == space.evaluation.threads
    assert new.evaluation.batch_size == space.evaluation.batch_size == 2
    assert (new.seed, new.generations) == (space.seed, 7)
    with pytest.raises(UserError, match=r"command-line overrides: evaluation.device"):
        space.with_overrides(evaluation={"device": "tpu"})
    assert space.kstarts is None
    ks = space.with_overrides(kstarts={"k": 3}).kstarts  # a section the space leaves out
    assert ks is not None and (ks.k, ks.density) == (3, 0.3)


def test_missing_required_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("population: 4\n")
    with pytest.raises(UserError, match=r"s.yaml: objectives: required key is missing$"):
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


def test_fingerprint_of_a_file_dataset_depends_on_its_path(write_space) -> None:
    one = load_space(write_space({"dataset": {"name": "file", "path": "a.npz"}}))
    two = load_space(write_space({"dataset": {"name": "file", "path": "b.npz"}}, name="b.yaml"))
    assert one.fingerprint() != two.fingerprint()
    assert one.fingerprint() == one.with_overrides(generations=50).fingerprint()


def test_fingerprint_ignores_the_tune_section(write_space) -> None:
    space = load_space(write_space())
    tuned = load_space(write_space({"tune": LR}, name="tuned.yaml"))
    assert tuned.fingerprint() == space.fingerprint()
    assert len(space.fingerprint()) == 64
    assert space.with_overrides(training={"lr": 0.5}).fingerprint() != space.fingerprint()
