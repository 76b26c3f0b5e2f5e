"""A tuning trial's values: drawn from `tune.params` and written into the space.

Shared by the local Optuna loop (`tune.py`) and Ray Tune (`tune_ray.py`), so that
neither imports the other's module for them.
"""

from __future__ import annotations

from typing import Any

import optuna

from evosparse.errors import UserError
from evosparse.space import ParamSpec, SearchSpace, validate_space


def with_values(space: SearchSpace, values: dict[str, Any], source: str) -> SearchSpace:
    """`space` with each dotted key (`mutation.add_node`) set to its value, re-validated."""
    data = space.model_dump(mode="json")
    for key, value in values.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise UserError(f"{source}: {key}: unknown key")
            node = node[part]
        if leaf not in node:
            raise UserError(f"{source}: {key}: unknown key")
        node[leaf] = value
    return validate_space(data, source)


def suggest(trial: optuna.Trial, key: str, p: ParamSpec) -> Any:
    """The trial's value for the dotted key `key`, drawn as `p` says."""
    if p.type == "categorical":
        return trial.suggest_categorical(key, list(p.choices or ()))
    if p.type == "int":
        return trial.suggest_int(key, int(p.low or 0), int(p.high or 0), log=p.log)
    return trial.suggest_float(key, float(p.low or 0), float(p.high or 0), log=p.log)


def trial_space(base: SearchSpace, values: dict[str, Any], number: int) -> SearchSpace:
    """The complete space one trial runs (also what best.yaml holds, with the full length)."""
    space = with_values(base, values, f"trial {number}")
    return space.model_copy(update={"tune": None})


def trial_run_space(base: SearchSpace, values: dict[str, Any], number: int, name: str,
                    generations: int) -> SearchSpace:
    """The space a trial runs: `trial_space` under `name`, `generations` long, and without
    the refit after its last generation (`training.refit_epochs`, unless the study tunes
    it): the trial's value, its front's validation hypervolume, is the same with it, so its
    time would buy nothing. `best.yaml` keeps the refit."""
    space = trial_space(base, values, number)
    refit = space.training.refit_epochs if "training.refit_epochs" in values else 0
    return space.with_overrides(name=name, generations=generations,
                                training={"refit_epochs": refit})
