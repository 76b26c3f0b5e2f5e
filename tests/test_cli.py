"""The real `evosparse` command on tiny searches: run, status, resume, bad input, locking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evosparse.activations import ACTIVATIONS
from evosparse.evolution import Member
from evosparse.fitness import EvalResult
from evosparse.rundir import RunDir, member_summary
from tests.conftest import evosparse
from tests.test_flops import hand_genome


def test_help_lists_the_commands() -> None:
    out = evosparse("--help")
    assert out.returncode == 0
    for cmd in ("run", "resume", "status", "export", "report"):
        assert cmd in out.stdout
    assert evosparse("run", "--help").returncode == 0


def test_tiny_search_end_to_end(write_space, tmp_path: Path) -> None:
    space = write_space()
    out = evosparse("run", str(space), "--runs-dir", str(tmp_path / "runs"), "--name", "t1",
                    "--generations", "2", "--seed", "7")
    assert out.returncode == 0, out.stderr
    assert "Pareto front after generation 2" in out.stdout
    run = tmp_path / "runs" / "t1"
    assert {p.name for p in run.iterdir()} >= {"space.yaml", "checkpoints", "history.jsonl",
                                               "front.json"}
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 6 * 3
    assert len({(h["generation"], h["genome_id"]) for h in history}) == len(history)
    assert "seed: 7" in (run / "space.yaml").read_text()

    status = evosparse("status", str(run), "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["generation"] == 2 and doc["evaluations"] == 18
    assert 0.0 < doc["hypervolume"] <= 1.0
    assert doc["front"] and set(doc["front"][0]) >= {"genome_id", "val_accuracy", "test_accuracy",
                                                     "flops", "params", "activations"}
    assert all(set(m["activations"]) <= set(ACTIVATIONS) for m in doc["front"])
    front = json.loads((run / "front.json").read_text())
    assert [m["genome_id"] for m in front["front"]] == [m["genome_id"] for m in doc["front"]]
    errors = [m["val_accuracy"] for m in doc["front"]]
    flops = [m["flops"] for m in doc["front"]]
    assert errors == sorted(errors, reverse=True) and flops == sorted(flops, reverse=True)
    assert "generation 2/2" in evosparse("status", str(run)).stdout


def _assert_one_clear_error(out, *needles: str) -> None:
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evosparse: error: ")
    for n in needles:
        assert n in lines[0]


def test_bad_input_exits_2_with_one_message(write_space, tmp_path: Path) -> None:
    runs = str(tmp_path / "runs")
    _assert_one_clear_error(evosparse("run", str(tmp_path / "none.yaml"), "--runs-dir", runs),
                            "none.yaml", "not found")
    bad = write_space({"training": {"epochz": 3}}, name="bad.yaml")
    _assert_one_clear_error(evosparse("run", str(bad), "--runs-dir", runs),
                            "bad.yaml", "training.epochz", "unknown key")
    nodata = write_space({"dataset": {"name": "file", "path": "missing.npz"}}, name="nodata.yaml")
    _assert_one_clear_error(evosparse("run", str(nodata), "--runs-dir", runs),
                            "missing.npz", "not found")
    nan = tmp_path / "nan.npz"
    x = np.ones((40, 3))
    x[2, 1] = np.inf
    np.savez(nan, x=x, y=np.arange(40) % 2)
    nanspace = write_space({"dataset": {"name": "file", "path": "nan.npz"}}, name="nan.yaml")
    _assert_one_clear_error(evosparse("run", str(nanspace), "--runs-dir", runs), "nan.npz", "row 2")
    workers = write_space({"evaluation": {"workers": -1}}, name="workers.yaml")
    _assert_one_clear_error(evosparse("run", str(workers), "--runs-dir", runs),
                            "workers.yaml", "evaluation.workers")
    good = write_space(name="good.yaml")
    _assert_one_clear_error(evosparse("run", str(good), "--population", "1", "--runs-dir", runs),
                            "command-line overrides", "population")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    _assert_one_clear_error(evosparse("status", str(tmp_path)), "not a run directory")


def test_existing_run_is_never_overwritten(write_space, tmp_path: Path) -> None:
    space = write_space({"generations": 0})
    runs = str(tmp_path / "runs")
    assert evosparse("run", str(space), "--runs-dir", runs).returncode == 0
    before = (tmp_path / "runs" / "tiny" / "history.jsonl").read_bytes()
    _assert_one_clear_error(evosparse("run", str(space), "--runs-dir", runs), "already exists",
                            "evosparse resume")
    assert (tmp_path / "runs" / "tiny" / "history.jsonl").read_bytes() == before


def test_resume_refuses_a_changed_space_and_a_busy_run(write_space, tmp_path: Path) -> None:
    space = write_space({"generations": 1})
    runs = tmp_path / "runs"
    assert evosparse("run", str(space), "--runs-dir", str(runs)).returncode == 0
    run = runs / "tiny"
    text = (run / "space.yaml").read_text()
    (run / "space.yaml").write_text(text.replace("lr: 0.01", "lr: 0.02"))
    _assert_one_clear_error(evosparse("resume", str(run)), "training.lr", "changed")
    (run / "space.yaml").write_text(text)

    holder = RunDir(run)
    holder.lock()
    try:
        _assert_one_clear_error(evosparse("resume", str(run)), "in use by another")
    finally:
        holder.unlock()
    out = evosparse("resume", str(run), "--generations", "2")
    assert out.returncode == 0, out.stderr
    assert json.loads(evosparse("status", str(run), "--json").stdout)["generation"] == 2


def test_status_of_a_run_with_no_finished_generation(write_space, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    from evosparse.space import load_space

    run.create(load_space(write_space()))
    _assert_one_clear_error(evosparse("status", str(run.path)), "no finished generation")


@pytest.mark.parametrize(("args", "needles"), [
    (("--population", "1"), ("command-line overrides", "population", "greater than or equal")),
    (("--device", "tpu"), ("--device", "invalid choice")),
])
def test_override_errors_name_the_field(write_space, tmp_path: Path, args, needles) -> None:
    """A valid space with a bad value given on the command line: one message naming the
    option, nothing written. Mutant that fails this: `with_overrides` returning
    `SearchSpace.model_construct(**data)` (no validation: the run then starts)."""
    out = evosparse("run", str(write_space()), *args, "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert all(n in last for n in needles), last
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_xor_is_solved_from_no_hidden_node_and_stops_early(tmp_path: Path) -> None:
    space = Path(__file__).parent.parent / "search_spaces" / "xor.yaml"
    out = evosparse("run", str(space), "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    history = [json.loads(line) for line in (tmp_path / "xor" / "history.jsonl").open()]
    assert history[0]["generation"] == 0 and all(h["val_accuracy"] < 1.0 for h in history[:50])
    solved = [h for h in history if h["val_accuracy"] == 1.0]
    assert solved, "XOR solved"
    status = json.loads(evosparse("status", str(tmp_path / "xor"), "--json").stdout)
    assert status["generation"] == max(h["generation"] for h in history) < 100
    assert status["front"][0]["val_accuracy"] == 1.0


def test_status_lists_the_activations_a_member_computes_with() -> None:
    member = Member(hand_genome(), EvalResult(0, 0, "ok", 0.5, 0.5, 25, 9, 6, 0.0))
    # hidden 3 (tanh) and 5 (sigmoid) compute; 4 (relu) reaches no output
    assert member_summary(member)["activations"] == ["sigmoid", "tanh"]
