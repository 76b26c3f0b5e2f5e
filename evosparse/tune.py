"""`evosparse tune`: Optuna searches the search's own meta-parameters.

Each Optuna trial is a short evolutionary search (`tune.generations`) in its own
run directory `<runs-dir>/<study>/trial-NNNN/`, with the trial's values written
into the space at the dotted keys of `tune.params`. After every generation the
trial reports the population's hypervolume (`trial.report`), so Optuna's
pruners (median, Hyperband, ...) stop weak searches early: multi-objective early
stopping through one scalar. The trial's value is its final hypervolume
(maximised); all trials share the base space's reference point, so their
hypervolumes compare.

Storage: a SQLite file `<runs-dir>/<study>/study.db` by default, any SQLAlchemy
URL (e.g. postgresql://...), or `journal:PATH` for a journal file. With an RDB
storage, trials send heartbeats; a trial whose process was killed is marked
FAIL by the next process and queued again. Several processes on one study
share its trials; re-running the command continues the study until it holds
`--trials` finished or running trials.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.table import Table

from evosparse.errors import UserError
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import GenerationRecord, Reporter, SearchState
from evosparse.rundir import RunDir, atomic_write
from evosparse.runner import start_run
from evosparse.space import SearchSpace, TuneSpec
from evosparse.trial_values import suggest, trial_run_space, trial_space, with_values

HEARTBEAT_S, GRACE_S = 2, 10
"""A trial without a heartbeat for GRACE_S seconds is failed (its process died) and retried."""
UNTUNABLE = ("name", "seed", "generations", "tune", "objectives", "dataset")
"""Keys a trial may not change: they define the study's comparison (data, reference point)."""
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
           optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)


def check(space: SearchSpace) -> TuneSpec:
    """The space's tune section, with every parameter tried at its bounds or choices, and
    the sampler and pruner names checked; one `UserError` naming the key otherwise."""
    if space.tune is None:
        raise UserError(f"space {space.name!r} has no `tune:` section to tune")
    tune = space.tune
    for key, p in tune.params.items():
        if key.split(".")[0] in UNTUNABLE:
            raise UserError(f"tune.params.{key}: cannot be tuned (it would change what the "
                            f"trials are compared on); tunable: everything but {UNTUNABLE}")
        samples = p.choices if p.type == "categorical" else (p.low, p.high)
        for v in samples or ():
            value = int(v) if p.type == "int" else v
            with_values(space, {key: value}, f"tune.params.{key}={value!r}")
    make_sampler(tune, 0)
    make_pruner(tune)
    return tune


def _named(module: Any, base: type, name: str, args: dict[str, Any], what: str,
           seed: int | None = None) -> Any:
    """An instance of the class `name` of `module` (a subclass of `base`); `seed` is passed
    when the class takes one and `args` does not set it."""
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        known = sorted(n for n in dir(module) if isinstance(getattr(module, n), type)
                       and issubclass(getattr(module, n), base) and not n.startswith("Base"))
        raise UserError(f"tune.{what}: unknown {what} {name!r}; Optuna has {', '.join(known)}")
    if seed is not None and "seed" in inspect.signature(cls).parameters:
        args = {"seed": seed, **args}
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise UserError(f"tune.{what}_args: {exc}") from None


def make_sampler(tune: TuneSpec, seed: int) -> optuna.samplers.BaseSampler:
    """The named Optuna sampler, seeded with `seed` unless `sampler_args` sets a seed."""
    return _named(optuna.samplers, optuna.samplers.BaseSampler, tune.sampler,
                  tune.sampler_args, "sampler", seed)


def make_pruner(tune: TuneSpec) -> optuna.pruners.BasePruner:
    return _named(optuna.pruners, optuna.pruners.BasePruner, tune.pruner, tune.pruner_args,
                  "pruner")


def make_storage(url: str | None, study_dir: Path,
                 heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """SQLite in the study folder by default; `journal:PATH`; or any RDB URL. RDB storages
    get heartbeats (unless Ray Tune runs the trials), and a trial left by a killed process
    is retried (twice at most)."""
    try:
        if url is not None and url.startswith("journal:"):
            backend = optuna.storages.journal.JournalFileBackend(url.removeprefix("journal:"))
            return optuna.storages.JournalStorage(backend)
        url = url or f"sqlite:///{study_dir / 'study.db'}"
        if not heartbeat:
            return optuna.storages.RDBStorage(url)
        with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=2))
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy, drivers and files raise many kinds
        raise UserError(f"--storage {url}: cannot open the study storage "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


class _Surplus(Exception):
    """Raised by a trial started after the study already held `--trials` trials."""


def surplus(trials: Sequence[optuna.trial.FrozenTrial], number: int, wanted: int) -> bool:
    """Whether trial `number` is one too many: `wanted` trials older than it are finished,
    running or queued, each retry chain counted once at its first trial.

    Processes sharing a study each stop at `--trials` (MaxTrialsCallback), but two that
    start a trial at the same moment both see room for it. The storage numbers trials
    atomically, so only the later of the two finds `wanted` older ones. A retry takes its
    failed trial's place and is never one too many.
    """
    def first(t: optuna.trial.FrozenTrial) -> int:
        with warnings.catch_warnings():  # marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
        return t.number if retried is None else retried

    if first(next(t for t in trials if t.number == number)) != number:
        return False
    chains = {first(t) for t in trials if t.state in COUNTED and t.number != number}
    return sum(c < number for c in chains) >= wanted


class _ReportHypervolume(Reporter):
    """Reports each generation's hypervolume to the trial; raises TrialPruned when told."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        self.trial.report(record.hypervolume, record.generation)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after generation {record.generation}")


def _objective(base: SearchSpace, tune: TuneSpec, study_dir: Path, trials: int):
    def objective(trial: optuna.Trial) -> float:
        if surplus(trial.study.get_trials(deepcopy=False), trial.number, trials):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number} not run: the study already holds "
                           f"--trials {trials} (another process started one at the same time)")
        values = {key: suggest(trial, key, p) for key, p in tune.params.items()}
        space = trial_run_space(base, values, trial.number, f"trial-{trial.number:04d}",
                                tune.generations)
        run_dir = RunDir(study_dir / space.name)
        trial.set_user_attr("run_dir", str(run_dir.path))
        search = start_run(run_dir, space, LocalEvaluator(), [_ReportHypervolume(trial)])
        try:
            state = search.run()
        finally:
            run_dir.unlock()
        trial.set_user_attr("evaluations", state.evaluations)
        return json.loads(run_dir.front_file.read_text())["hypervolume"]

    return objective


def tune(space: SearchSpace, trials: int, storage_url: str | None, study_name: str | None,
         runs_dir: Path, console: Console, ray_address: str | None = None) -> Path:
    """Run (or continue) the study until it holds `trials` trials; write best.yaml.

    With `ray_address`, the trials run through Ray Tune on that cluster (`tune_ray.py`).
    """
    spec = check(space)
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    name = study_name or space.name
    study_dir = runs_dir / name
    if RunDir(study_dir).exists():
        raise UserError(f"{study_dir} is a run directory of `evosparse run`; "
                        "choose another --study or --runs-dir")
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = make_storage(storage_url, study_dir, heartbeat=ray_address is None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    try:
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                    direction="maximize", pruner=make_pruner(spec))
    except Exception as exc:  # noqa: BLE001 - e.g. a reachable URL with a broken database
        raise UserError(f"--storage {storage_url}: cannot use study {name!r} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(spec, space.seed + existing)
    if isinstance(storage, optuna.storages.RDBStorage):
        with warnings.catch_warnings():  # marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # killed processes' trials: FAIL, re-queued
    # Queued (WAITING) trials are run by this call, so they count as left to do.
    left = trials - len(study.get_trials(deepcopy=False, states=COUNTED[:3]))
    if left > 0 and ray_address is not None:
        from evosparse.tune_ray import tune_on_ray

        tune_on_ray(space, spec, left, storage, name, study_dir, study.sampler, ray_address)
    elif left > 0:
        try:
            study.optimize(_objective(space, spec, study_dir, trials), n_trials=left,
                           callbacks=[optuna.study.MaxTrialsCallback(trials, states=COUNTED),
                                      _announce(console)])
        except _Surplus as stop:
            console.print(str(stop), highlight=False)
    return write_outputs(study, space, study_dir, console)


def _announce(console: Console):
    def announce(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        value = "" if t.value is None else f", hypervolume {t.value:.4f}"
        console.print(f"trial {t.number}: {t.state.name.lower()}{value}", highlight=False)

    return announce


def write_outputs(study: optuna.Study, base: SearchSpace, study_dir: Path,
                  console: Console) -> Path:
    """best.yaml (the best trial's values in the full-length base space), trials.json and
    a summary table."""
    frozen = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    rows = [{"number": t.number, "state": t.state.name, "hypervolume": t.value,
             "generations": len(t.intermediate_values), "params": t.params,
             "run_dir": t.user_attrs.get("run_dir")} for t in frozen]
    atomic_write(study_dir / "trials.json", (json.dumps(rows, indent=2) + "\n").encode())
    table = Table(title=f"study {study.study_name}: {len(frozen)} trials")
    for col in ("trial", "state", "hypervolume", "generations", "parameters"):
        table.add_column(col)
    for r in rows:
        hv = "" if r["hypervolume"] is None else f"{r['hypervolume']:.4f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r["params"].items())
        table.add_row(str(r["number"]), r["state"].lower(), hv, str(r["generations"]), params)
    console.print(table)
    complete = [t for t in frozen if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise UserError(f"study {study.study_name!r} has no complete trial yet")
    best = max(complete, key=lambda t: t.value or 0.0)
    space = trial_space(base, best.params, best.number).with_overrides(
        name=f"{study.study_name}-best")
    path = study_dir / "best.yaml"
    header = (f"# evosparse tune: best of {len(complete)} complete trials of study "
              f"{study.study_name!r}: trial {best.number}, hypervolume {best.value:.4f}\n"
              f"# after {base.tune.generations if base.tune else '?'} generations; "
              f"parameters: {json.dumps(best.params)}\n")
    atomic_write(path, (header + space.to_yaml()).encode())
    console.print(f"best: trial {best.number}, hypervolume {best.value:.4f} -> {path}",
                  highlight=False)
    return path

