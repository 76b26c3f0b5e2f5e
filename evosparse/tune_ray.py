"""`evosparse tune --ray-address`: the same Optuna study, its trials run by Ray Tune.

Ray Tune's `OptunaSearch` asks the study (same storage, same sampler) for each
trial's values; every trial is a Tune function trainable that runs the short
search and, after each generation, reports the hypervolume with a checkpoint
holding the trial's run directory. Tune's `MedianStoppingRule` stops weak
trials (Tune's stand-in for Optuna's pruners here, set by `tune.median_stopping`),
and a trial whose worker died is restarted by Tune (twice at most) from its last
generation.
Intermediate hypervolumes reach the Optuna study through `OptunaSearch`, so
`best.yaml`, `trials.json` and optuna-dashboard work as without Ray. Besides
`evaluators/ray.py`, this is the only module that imports ray.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna

from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import GenerationRecord, Reporter, SearchState
from evosparse.rundir import RunDir
from evosparse.runner import resume_run, start_run
from evosparse.space import SearchSpace, TuneSpec
from evosparse.trial_values import suggest, trial_run_space


class _TuneReport(Reporter):
    """After each generation: report the hypervolume to Tune with the run directory as
    the checkpoint (written after the run directory's own checkpoint)."""

    def __init__(self, run_dir: RunDir) -> None:
        self.run_dir = run_dir

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        from ray import tune
        from ray.tune import Checkpoint

        self.run_dir.flush()  # the run directory's checkpoint of this generation is written
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(self.run_dir.path, Path(tmp) / "run", ignore=shutil.ignore_patterns(
                ".lock", ".*.tmp"))
            tune.report({"hypervolume": record.hypervolume, "generation": record.generation},
                        checkpoint=Checkpoint.from_directory(tmp))


def _trial(config: dict[str, Any], base: SearchSpace, study_dir: str, generations: int) -> None:
    """One Tune trial: a short search in `study_dir/trial-<tune trial id>/`."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    space = trial_run_space(base, config, 0, f"trial-{trial_id}", generations)
    run_dir = RunDir(Path(study_dir) / space.name)
    checkpoint = tune.get_checkpoint()
    reporters: list[Reporter] = [_TuneReport(run_dir)]
    if checkpoint is not None:  # Tune restarted this trial: continue from its last generation
        with checkpoint.as_directory() as saved:
            shutil.rmtree(run_dir.path, ignore_errors=True)
            shutil.copytree(Path(saved) / "run", run_dir.path)
        search = resume_run(run_dir, LocalEvaluator(), reporters)
    else:
        search = start_run(run_dir, space, LocalEvaluator(), reporters)
    try:
        search.run()
    finally:
        run_dir.unlock()


class _Suggest:
    """The define-by-run search space for OptunaSearch (a class: Tune pickles it)."""

    def __init__(self, spec: TuneSpec) -> None:
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> None:
        for key, p in self.spec.params.items():
            suggest(trial, key, p)


def tune_on_ray(space: SearchSpace, spec: TuneSpec, trials: int, storage: Any, study_name: str,
                study_dir: Path, sampler: optuna.samplers.BaseSampler, address: str) -> None:
    """Run `trials` more trials of the study through Ray Tune on the cluster at `address`."""
    import ray
    from ray import tune
    from ray.tune.schedulers import MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    from evosparse.evaluators.ray import join_cluster

    if not ray.is_initialized():
        join_cluster(address, warn=lambda m: print(f"evosparse: warning: {m}", file=sys.stderr))

    search_alg = OptunaSearch(space=_Suggest(spec), metric="hypervolume", mode="max",
                              sampler=sampler, study_name=study_name, storage=storage)
    stopping = spec.median_stopping  # training_iteration 1 is generation 0
    scheduler = MedianStoppingRule(time_attr="training_iteration", metric="hypervolume",
                                   mode="max", grace_period=stopping.grace_period,
                                   min_samples_required=stopping.min_samples_required)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=space, study_dir=str(study_dir.resolve()),
                             generations=spec.generations),
        {"cpu": space.evaluation.threads})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                    num_samples=trials),
        run_config=tune.RunConfig(name=study_name, storage_path=str(study_dir.resolve() / "tune"),
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=2)),
    )
    tuner.fit()
