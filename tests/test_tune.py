"""`evosparse tune` with real Optuna storages (SQLite file, journal file) and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from evosparse.space import load_space
from tests.conftest import evosparse
from tests.test_cli import _assert_one_clear_error

TUNE = {
    "generations": 6,
    "tune": {
        "generations": 2,
        "params": {
            "mutation.add_node": {"type": "float", "low": 0.1, "high": 0.9},
            "training.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
            "network.initial_density": {"type": "categorical", "choices": [0.1, 0.3]},
        },
        "pruner": "MedianPruner",
        "pruner_args": {"n_startup_trials": 1},
    },
}


def _trials(study_dir: Path) -> list[dict]:
    return json.loads((study_dir / "trials.json").read_text())


def _start_tune(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "evosparse.cli", "tune", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_tune_reports_hypervolumes_and_writes_a_runnable_best_space(
        write_space, tmp_path: Path) -> None:
    """Each trial reports its generations' hypervolumes and best.yaml runs; the trials skip
    the refit (`training.refit_epochs`), which cannot change their value, and best.yaml
    keeps it."""
    space = write_space({**TUNE, "training": {"inheritance": "lamarckian", "refit_epochs": 2}})
    out = evosparse("tune", str(space), "--trials", "4", "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    study_dir = tmp_path / "tiny"
    trials = _trials(study_dir)
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'study.db'}")
    study = optuna.load_study(study_name="tiny", storage=storage)
    for t in study.trials:
        logged = [json.loads(line)["hypervolume"]
                  for line in (Path(t.user_attrs["run_dir"]) / "generations.jsonl").open()]
        assert [t.intermediate_values[g] for g in sorted(t.intermediate_values)] == logged
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.value == logged[-1] and len(logged) == 3  # generations 0, 1, 2
    best = load_space(study_dir / "best.yaml")
    winner = max((t for t in study.trials if t.value is not None
                  and t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert best.tune is None and best.generations == 6 and best.name == "tiny-best"
    assert best.training.refit_epochs == 2
    for t in study.trials:
        trial_run = Path(t.user_attrs["run_dir"])
        assert load_space(trial_run / "space.yaml").training.refit_epochs == 0
        assert not any(json.loads(line)["refit"] for line in (trial_run / "history.jsonl").open())
    assert best.mutation.add_node == winner.params["mutation.add_node"]
    assert best.training.lr == winner.params["training.lr"]
    run = evosparse("run", str(study_dir / "best.yaml"), "--generations", "1",
                    "--runs-dir", str(tmp_path / "runs"))
    assert run.returncode == 0, run.stderr

    again = evosparse("tune", str(space), "--trials", "5", "--runs-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert [t["number"] for t in _trials(study_dir)] == [0, 1, 2, 3, 4]


def test_a_trial_the_pruner_stops_ends_after_its_first_generation(write_space,
                                                                   tmp_path: Path) -> None:
    """A pruner that stops every trial below hypervolume 2 (all are) prunes each trial after
    the generation it first reports (with no complete trial, no best space: exit 2); an
    `int` parameter is drawn as an int in its range.
    Mutant that fails this: the `should_prune()` check in the trial's reporter removed
    (the trials then run to the end, COMPLETE)."""
    space = write_space({**TUNE, "tune": {
        **TUNE["tune"], "pruner": "ThresholdPruner", "pruner_args": {"lower": 2.0},
        "params": {"training.epochs": {"type": "int", "low": 1, "high": 2}}}})
    out = evosparse("tune", str(space), "--trials", "2", "--runs-dir", str(tmp_path))
    _assert_one_clear_error(out, "has no complete trial yet")  # so no best.yaml either
    trials = _trials(tmp_path / "tiny")
    assert [t["state"] for t in trials] == ["PRUNED", "PRUNED"]
    for t in trials:
        run = Path(t["run_dir"])
        assert [json.loads(line)["generation"] for line in (run / "generations.jsonl").open()
                ] == [0]
        epochs = load_space(run / "space.yaml").training.epochs
        assert type(epochs) is int and epochs in (1, 2)


def test_journal_storage(write_space, tmp_path: Path) -> None:
    space = write_space(TUNE)
    journal = tmp_path / "study.log"
    out = evosparse("tune", str(space), "--trials", "2", "--runs-dir", str(tmp_path),
                    "--storage", f"journal:{journal}", "--study", "j")
    assert out.returncode == 0, out.stderr
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    assert len(optuna.load_study(study_name="j", storage=storage).trials) == 2


POSTGRES = os.environ.get("EVOSPARSE_TEST_POSTGRES")


@pytest.mark.slow
@pytest.mark.parametrize("storage", [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(
        POSTGRES is None, reason="no PostgreSQL server (.ci/run starts one)")),
])
def test_two_processes_share_one_study_without_duplicates(write_space, tmp_path: Path,
                                                          storage: str) -> None:
    space = write_space(TUNE)
    args: tuple[str, ...] = (str(space), "--trials", "6", "--runs-dir", str(tmp_path))
    if storage == "postgresql":
        args += ("--storage", str(POSTGRES), "--study", f"two-{os.getpid()}-{time.time_ns()}")
    first = _start_tune(*args)
    while first.poll() is None and not list(tmp_path.glob("*/trial-0000")):
        time.sleep(0.05)
    second = _start_tune(*args)
    for proc in (first, second):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    trials = _trials(next(tmp_path.glob("*/trials.json")).parent)
    assert sorted(t["number"] for t in trials) == list(range(6))
    assert len({t["run_dir"] for t in trials}) == 6
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}


def test_a_trial_started_when_the_study_is_full_is_surplus_unless_it_is_a_retry() -> None:
    from evosparse.tune import surplus

    study = optuna.create_study()
    done = optuna.trial.create_trial(value=1.0, params={}, distributions={})
    study.add_trial(done)                                    # 0: complete
    study.ask()                                              # 1: running (another process)
    killed = study.ask()                                     # 2: killed, to be retried
    study.tell(killed, state=optuna.trial.TrialState.FAIL)
    study.ask()                                              # 3: this process's new trial
    study.ask()                                              # 4: the other process's new trial
    trials = study.get_trials(deepcopy=False)
    assert not surplus(trials, 3, 3) and surplus(trials, 4, 3)
    assert not surplus(trials, 3, 4) and not surplus(trials, 4, 4)
    study.add_trial(optuna.trial.create_trial(  # 5: trial 2's retry, queued
        state=optuna.trial.TrialState.WAITING, system_attrs={"failed_trial": 2}))
    trials = study.get_trials(deepcopy=False)
    assert surplus(trials, 3, 3) and not surplus(trials, 5, 3)  # trial 2 holds its place
    assert surplus(trials, 4, 4) and not surplus(trials, 3, 4)


@pytest.mark.slow
def test_a_killed_trial_fails_by_heartbeat_and_is_retried(write_space, tmp_path: Path) -> None:
    from evosparse.tune import GRACE_S

    space = write_space({**TUNE, "tune": {**TUNE["tune"], "generations": 4}})
    args = (str(space), "--trials", "2", "--runs-dir", str(tmp_path))
    proc = _start_tune(*args)
    history = tmp_path / "tiny" / "trial-0000" / "history.jsonl"
    while proc.poll() is None and not (history.exists() and history.read_text().count("\n") > 6):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(GRACE_S + 1)
    out = evosparse(*("tune", *args))
    assert out.returncode == 0, out.stderr
    states = {t["number"]: t["state"] for t in _trials(tmp_path / "tiny")}
    assert states[0] == "FAIL"  # the killed trial, failed through its missing heartbeat
    assert sum(s in ("COMPLETE", "PRUNED") for s in states.values()) == 2
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'tiny' / 'study.db'}")
    study = optuna.load_study(study_name="tiny", storage=storage)
    retried = [t for t in study.trials if t.number > 0 and t.params == study.trials[0].params]
    assert retried, "the failed trial's parameters are run again"


@pytest.mark.parametrize(("change", "needles"), [
    ({"sampler": "TPESamplr"}, ("tune.sampler", "TPESamplr", "TPESampler")),
    ({"pruner": "Median"}, ("tune.pruner", "Median", "MedianPruner")),
    ({"params": {"training.lr": {"type": "float", "low": 0.1, "high": 0.1}}},
     ("tune.params.training.lr", "low < high")),
    ({"params": {"training.lrr": {"type": "float", "low": 0.01, "high": 0.1}}},
     ("training.lrr", "unknown key")),
    ({"params": {"dataset.name": {"type": "categorical", "choices": ["digits"]}}},
     ("tune.params.dataset.name", "cannot be tuned")),
    ({"params": {"training.optimizer": {"type": "categorical", "choices": []}}},
     ("tune.params.training.optimizer", "non-empty")),
])
def test_bad_tune_sections_give_one_clear_error(write_space, tmp_path: Path, change,
                                                needles) -> None:
    space = write_space({"tune": {**TUNE["tune"], **change}})
    out = evosparse("tune", str(space), "--trials", "2", "--runs-dir", str(tmp_path))
    _assert_one_clear_error(out, *needles)


def test_unreachable_storage_gives_one_clear_error(write_space, tmp_path: Path) -> None:
    space = write_space(TUNE)
    url = "sqlite:////nonexistent-dir/study.db"
    out = evosparse("tune", str(space), "--trials", "2", "--runs-dir", str(tmp_path),
                    "--storage", url)
    _assert_one_clear_error(out, url, "cannot open the study storage")
