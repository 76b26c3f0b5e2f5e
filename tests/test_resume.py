"""Kill a run at any moment (SIGKILL, Ctrl-C, a damaged checkpoint) and resume: same result.

The reference is the same space and seed run without interruption. Front and
history must be identical except for wall-clock timings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import evosparse

SPACE = {"generations": 4, "population": 6}


def _comparable(run: Path) -> tuple[list[dict], dict, str, dict[str, bytes]]:
    """History (without timings), front, generation log and the trained weights kept."""
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    for h in history:
        h.pop("wall_time")
    models = {p.name: p.read_bytes() for p in (run / "models").glob("*.safetensors")}
    return (history, json.loads((run / "front.json").read_text()),
            (run / "generations.jsonl").read_text(), models)


def _reference(space: Path, runs: Path) -> tuple[Path, tuple]:
    """The space's uninterrupted run: what every interrupted run must end identical to."""
    out = evosparse("run", str(space), "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr
    return space, _comparable(runs / "tiny")


@pytest.fixture
def reference(write_space, tmp_path: Path) -> tuple[Path, tuple]:
    return _reference(write_space(SPACE), tmp_path / "ref")


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "evosparse.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(run: Path, n: int, proc: subprocess.Popen[str]) -> None:
    history = run / "history.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and history.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.005)
    pytest.fail(f"run ended or stalled before {n} evaluations were recorded")


@pytest.mark.parametrize(
    "kills",
    [
        (3,),
        pytest.param((8, 20), marks=pytest.mark.slow),
        pytest.param((13,), marks=pytest.mark.slow),
    ],
    ids=["gen0", "twice", "gen2"],
)
def test_sigkill_and_resume_ends_identical(reference, tmp_path: Path, kills) -> None:
    _kill_and_resume(reference, tmp_path, kills)


def test_lamarckian_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed in generation 2, the run must read its members' trained weights (written
    back into the genomes) from the generation-1 checkpoint (with digits.yaml's label
    smoothing on)."""
    space = write_space({**SPACE, "training": {"inheritance": "lamarckian",
                                               "label_smoothing": 0.1}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))


def test_finishing_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed while the finishing generation (4, `training.finish_epochs`) trains copies of
    generation 3's front and their pruned copies (`finish_prune`): the copies, their ids,
    masks and weights, are made again on resume."""
    space = write_space({**SPACE, "training": {"inheritance": "lamarckian",
                                               "finish_epochs": 2, "finish_prune": [0.6]}})
    reference = _reference(space, tmp_path / "ref")
    assert len(reference[1][0]) >= 4 * 6 + 3, "the kill lands inside the finishing generation"
    _kill_and_resume(reference, tmp_path, (25,))


def test_refit_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed after the last generation's children, while its front is refit on the
    training and validation samples (`training.refit_epochs`): the refit copies, their ids
    and weights, are made again on resume."""
    space = write_space({**SPACE, "training": {"inheritance": "lamarckian", "refit_epochs": 2}})
    reference = _reference(space, tmp_path / "ref")
    assert len(reference[1][0]) > 5 * 6, "the refit adds evaluations after generation 4's"
    _kill_and_resume(reference, tmp_path, (30,))


def test_an_extended_refit_run_breeds_from_before_its_refit(write_space, tmp_path: Path
                                                            ) -> None:
    """`resume --generations` on a refit run goes back to the checkpoint before its last
    generation (the refit weights have seen the validation samples: children bred from
    them would be scored on what they learned) and ends as the run given that many
    generations from the start; without that checkpoint it refuses and names the key."""
    refit = {"training": {"inheritance": "lamarckian", "refit_epochs": 2}}
    space, expected = _reference(write_space({**SPACE, **refit}), tmp_path / "ref")
    runs = tmp_path / "ext"
    out = evosparse("run", str(space), "--runs-dir", str(runs), "--generations", "2")
    assert out.returncode == 0, out.stderr
    out = evosparse("resume", str(runs / "tiny"), "--generations", "4")
    assert out.returncode == 0, out.stderr
    assert _comparable(runs / "tiny") == expected

    one = write_space({**SPACE, **refit, "keep_checkpoints": 1}, name="one.yaml")
    out = evosparse("run", str(one), "--runs-dir", str(tmp_path / "one"), "--generations", "2")
    assert out.returncode == 0, out.stderr
    run = tmp_path / "one" / "tiny"
    before = _comparable(run)
    out = evosparse("resume", str(run), "--generations", "3")
    assert out.returncode != 0
    assert "training.refit_epochs" in out.stderr and "generation 1" in out.stderr
    assert _comparable(run) == before


def test_kstarts_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed while generation 1 trains: K-starts chose generation 0's masks and those of
    generation 1's children before it."""
    ks = {"k": 3, "density": 0.25, "hidden": [6], "criterion": "magnitude_gradient",
          "children": True}
    space = write_space({**SPACE, "kstarts": ks})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (9,))


@pytest.mark.parametrize("pruning", [
    {"method": "magnitude", "density": 0.6, "end_epoch": 1, "interval": 2},
    {"method": "snip", "density": 0.5},
    {"method": "dissipating", "watch_epochs": 0.5, "threshold": 0.5},
], ids=["magnitude", "snip", "dissipating"])
def test_pruning_run_resumes_identical(write_space, tmp_path: Path, pruning: dict) -> None:
    """Pruning disables genes of evaluated genomes; a resumed run must too."""
    space = write_space({**SPACE, "sparse_training": pruning})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (9,))


@pytest.mark.parametrize("method", ["set", "rigl", "ctre"])
def test_regrowth_run_resumes_identical(write_space, tmp_path: Path, method: str) -> None:
    """Prune-and-regrow adds genes whose innovation ids the driver assigns in evaluation
    order; with Lamarckian inheritance the grown weights travel in the checkpoint too."""
    regrow = {"method": method, "zeta": 0.3, "end_epoch": 1, "interval": 3}
    space = write_space({**SPACE, "sparse_training": regrow,
                         "training": {"inheritance": "lamarckian"}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (9,))


def test_speciation_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Species, their representatives, stagnation records and threshold are checkpointed."""
    speciation = {"target_species": 2, "threshold": 0.5, "max_stagnation": 2}
    space = write_space({**SPACE, "speciation": speciation})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))


def test_evolved_expression_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Evolved activation expressions live in the genomes' activation names."""
    space = write_space({**SPACE, "mutation": {"change_activation": 0.9, "add_node": 0.9},
                         "activations": {"expressions": 1.0}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))


def test_coevolution_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """The populations of activation functions and their fitness are checkpointed."""
    space = write_space({**SPACE, "mutation": {"add_node": 0.9, "change_activation": 0.0},
                         "coevolution": {"size": 4, "granularity": "node", "reassign": 0.3}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))


def test_ail_unit_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Two-input units carry a second weight per connection in the weight files."""
    space = write_space({**SPACE, "mutation": {"add_node": 0.9, "change_activation": 0.5},
                         "activations": {"hidden": ["relu", "and_ail", "or_ail",
                                                    "xnor_ail_norm"], "initial": "and_ail"}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))


def test_every_operator_at_once_resumes_identical(write_space, tmp_path: Path) -> None:
    """K-starts (initial and children), RigL, speciation and Lamarckian inheritance
    together, killed twice."""
    ks = {"k": 2, "density": 0.3, "hidden": [6], "children": True}
    space = write_space({**SPACE, "kstarts": ks, "speciation": {"target_species": 2},
                         "training": {"inheritance": "lamarckian"},
                         "sparse_training": {"method": "rigl", "end_epoch": 1, "interval": 3}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (7, 16))


def _kill_and_resume(reference: tuple[Path, tuple], tmp_path: Path, kills: tuple[int, ...]) -> None:
    space, expected = reference
    run = tmp_path / "killed" / "tiny"
    proc = _start("run", str(space), "--runs-dir", str(tmp_path / "killed"))
    for i, n in enumerate(kills):
        _wait_for_lines(run, n, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if i + 1 < len(kills):
            proc = _start("resume", str(run))
    out = evosparse("resume", str(run))
    assert out.returncode == 0, out.stderr
    assert _comparable(run) == expected


def test_damaged_newest_checkpoint_is_skipped(reference, tmp_path: Path) -> None:
    space, expected = reference
    runs = tmp_path / "dmg"
    out = evosparse("run", str(space), "--runs-dir", str(runs), "--generations", "2")
    assert out.returncode == 0
    run = runs / "tiny"
    newest = sorted((run / "checkpoints").glob("gen-*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[:-200])  # a torn write
    (run / "checkpoints" / ".gen-000003.json.999.tmp").write_text("{partial")
    out = evosparse("resume", str(run), "--generations", "4")
    assert out.returncode == 0, out.stderr
    assert "skipping damaged checkpoint" in out.stderr and newest.name in out.stderr
    assert _comparable(run) == expected


def test_ctrl_c_stops_after_a_checkpoint_and_resumes_identical(write_space, tmp_path: Path
                                                              ) -> None:
    """Ctrl-C in generation 1 of 10: the run stops at that generation's checkpoint, and the
    resumed run ends as the uninterrupted one (ten generations, so a loaded machine that
    delivers the signal late still finds the run going)."""
    space, expected = _reference(write_space({**SPACE, "generations": 10}), tmp_path / "ref")
    run = tmp_path / "int" / "tiny"
    proc = _start("run", str(space), "--runs-dir", str(tmp_path / "int"))
    _wait_for_lines(run, 8, proc)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert "stopped at generation" in stdout
    out = evosparse("resume", str(run))
    assert out.returncode == 0, out.stderr
    assert _comparable(run) == expected


def test_a_run_from_before_a_new_space_key_resumes(write_space, tmp_path: Path) -> None:
    """A checkpoint written before a key joined the space format (here `activations
    .expressions`) resumes: the key takes its default, which keeps the old behaviour."""
    import hashlib

    runs = tmp_path / "old"
    out = evosparse("run", str(write_space(SPACE)), "--runs-dir", str(runs), "--generations", "1")
    assert out.returncode == 0, out.stderr
    newest = sorted((runs / "tiny" / "checkpoints").glob("gen-*.json"))[-1]
    body = json.loads(newest.read_text())["body"]
    del body["space"]["activations"]["expressions"]
    old_space = {k: v for k, v in body["space"].items() if k != "tune"}  # as it was hashed
    body["fingerprint"] = hashlib.sha256(json.dumps(old_space, sort_keys=True).encode()
                                         ).hexdigest()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    newest.write_text('{"sha256":"' + digest + '","body":' + canonical + "}")
    out = evosparse("resume", str(runs / "tiny"), "--generations", "2")
    assert out.returncode == 0, out.stderr
    assert json.loads((runs / "tiny" / "front.json").read_text())["generation"] == 2
