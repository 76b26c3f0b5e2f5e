"""Export, load and report on a real (tiny) finished search."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from matplotlib.image import imread
from safetensors.numpy import load_file

import evosparse
from evosparse.activations import ACTIVATIONS, activation_cost
from evosparse.api import open_run
from evosparse.data import load_raw_test, load_task
from evosparse.errors import UserError
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import SearchState, front_of
from evosparse.export import export_run, select
from evosparse.genome import ACT_DTYPE, HIDDEN, InnovationRegistry
from evosparse.graph import analyse
from evosparse.network import SparseNetwork
from evosparse.onnx_export import RECIPES, RECIPES2, to_onnx
from evosparse.operators import add_nodes, minimal_genome
from evosparse.report import write_report
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import ActivationSpec, NetworkSpec, load_space
from evosparse.sparse_inference import SparseInference
from tests.conftest import TINY, deep_update
from tests.conftest import evosparse as cli
from tests.test_cli import _assert_one_clear_error

SPACE = deep_update(TINY, {
    "population": 8, "generations": 3,
    "activations": {"hidden": ["relu", "tanh", "gelu", "silu", "gaussian"]},
    "mutation": {"add_node": 0.8},
})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A finished tiny digits search (made in-process once for the module)."""
    root = tmp_path_factory.mktemp("export")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    run_dir = RunDir(root / "runs" / "tiny")
    start_run(run_dir, load_space(root / "space.yaml"), LocalEvaluator(), []).run()
    run_dir.unlock()
    return run_dir


@pytest.fixture(scope="module")
def exported(run: RunDir) -> list[Path]:
    return export_run(open_run(run.path), "front")


def _front(run: RunDir) -> dict[int, dict]:
    return {m["genome_id"]: m for m in json.loads(run.front_file.read_text())["front"]}


def test_export_writes_the_front_with_the_searchs_numbers(run: RunDir, exported) -> None:
    """Accuracies are measured again with the exported network, params counted from the
    weight file. Mutant that fails this: `count_cost` leaving biases out of `params` (the
    search's record and the export would agree with each other)."""
    front = _front(run)
    assert sorted(int(p.name) for p in exported) == sorted(front)
    task = load_task(run.load_space().dataset)
    for folder in exported:
        assert {p.name for p in folder.iterdir()} == {
            "genome.json", "model.safetensors", "model.onnx", "metrics.json", "README.md"}
        m = json.loads((folder / "metrics.json").read_text())
        recorded = front[int(folder.name)]
        assert m["test_accuracy"] == recorded["test_accuracy"]
        with torch.no_grad():
            val = evosparse.load(folder).net(torch.from_numpy(task.x_val)).argmax(dim=1).numpy()
        assert m["val_accuracy"] == recorded["val_accuracy"] == float((val == task.y_val).mean())
        tensors = load_file(str(folder / "model.safetensors"))
        params = sum(int(np.count_nonzero(t)) if n.endswith(".weight") else t.size
                     for n, t in tensors.items() if n.endswith((".weight", ".bias")))
        assert m["params"] == recorded["params"] == params
        assert m["flops"] == recorded["flops"]
        assert m["onnx"]["test_accuracy"] == recorded["test_accuracy"]
        for batch in ("batch_1", "batch_256"):
            assert m["latency"][batch]["dense_ms"] > 0 and m["latency"][batch]["sparse_ms"] > 0
        onnx.checker.check_model(onnx.load(str(folder / "model.onnx")), full_check=True)
        assert "How FLOPs are counted" in (folder / "README.md").read_text()


def test_flops_recounted_from_the_weight_file_equal_the_search(run: RunDir, exported) -> None:
    """2 x non-zero weights + biases + activation cost, from model.safetensors and the
    activations in genome.json only (the model card's recipe)."""
    front = _front(run)
    for folder in exported:
        tensors = load_file(str(folder / "model.safetensors"))
        doc = json.loads((folder / "genome.json").read_text())
        nonzero = sum(int(np.count_nonzero(t)) for n, t in tensors.items() if n.endswith(".weight"))
        biases = sum(t.size for n, t in tensors.items() if n.endswith(".bias"))
        acts = sum(activation_cost(n["activation"]) for level in doc["levels"] for n in level)
        assert 2 * nonzero + biases + acts == front[int(folder.name)]["flops"]


def test_load_predicts_exactly_what_the_search_recorded(run: RunDir, exported) -> None:
    x, y = load_raw_test(run.load_space().dataset)
    for folder in exported:
        model = evosparse.load(folder)
        recorded = load_file(str(run.model_file(int(folder.name))))["test_predictions"]
        predictions = model.predict(x)
        np.testing.assert_array_equal(predictions, recorded)
        assert (predictions == y).mean() == _front(run)[int(folder.name)]["test_accuracy"]


def test_onnx_runs_without_evosparse_and_agrees_with_torch(run: RunDir, exported,
                                                           tmp_path: Path) -> None:
    x, _ = load_raw_test(run.load_space().dataset)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    script = (
        "import sys; sys.modules['evosparse'] = None\n"  # importing evosparse now fails
        "import numpy as np, onnxruntime as ort\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"for i, p in enumerate({[str(f / 'model.onnx') for f in exported]!r}):\n"
        "    s = ort.InferenceSession(p, providers=['CPUExecutionProvider'])\n"
        f"    np.save({str(tmp_path)!r} + f'/out{{i}}.npy', s.run(None, {{'x': x}})[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for i, folder in enumerate(exported):
        logits = evosparse.load(folder)(torch.from_numpy(x)).detach().numpy()
        onnx_logits = np.load(tmp_path / f"out{i}.npy")
        np.testing.assert_allclose(onnx_logits, logits, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(onnx_logits.argmax(1), logits.argmax(1))


def _all_activations_net(names: tuple[str, ...] = tuple(ACTIVATIONS)) -> SparseNetwork:
    rng = np.random.default_rng(0)
    reg = InnovationRegistry(12, 4)
    g = minimal_genome(0, reg, 0.5, rng)
    acts = ActivationSpec(hidden=tuple(ACTIVATIONS))
    for _ in range(8):
        g = add_nodes(g, rng, reg, NetworkSpec(max_hidden=80, max_levels=3), acts, 6,
                      fan_in=4, fan_out=2)
    hidden = np.flatnonzero(g.node_kind == HIDDEN)
    node_act = g.node_act.copy()
    node_act[hidden] = np.resize(np.array(list(names), dtype=ACT_DTYPE), len(hidden))
    g = replace(g, node_act=node_act)
    active = g.node_act[analyse(g).node_active & (g.node_kind == HIDDEN)]
    assert set(active.tolist()) == set(names)
    return SparseNetwork(g, True, torch.Generator().manual_seed(1)).eval()


EXPRESSIONS = ("relu(x) * tanh(x)", "max(x, sin(x)) + 0.5", "min(x, 2.0) - gaussian(x)",
               "x / (1.0 + abs(x))", "neg(square(x)) * sigmoid(x)", "gelu(x) - silu(elu(x))",
               "softplus(x) * leaky_relu(x - 1.0)", "relu")


@pytest.mark.parametrize("names", [tuple(ACTIVATIONS), EXPRESSIONS], ids=["library",
                                                                          "expressions"])
def test_every_activation_exports_to_onnx_and_to_csr(names: tuple[str, ...]) -> None:
    assert set(RECIPES) | set(RECIPES2) == set(ACTIVATIONS)
    net = _all_activations_net(names)
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(2)) * 3
    with torch.no_grad():
        want = net(x).numpy()
    session = ort.InferenceSession(to_onnx(net).SerializeToString())
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], want, atol=1e-4, rtol=0)
    for threshold in (-1.0, 2.0):  # every level dense, every level CSR
        sparse = SparseInference(net, threshold=threshold)
        assert set(sparse.kernels) == {"dense" if threshold < 0 else "csr"}
        with torch.no_grad():
            np.testing.assert_allclose(sparse(x).numpy(), want, atol=1e-5, rtol=0)


def test_selection(run: RunDir) -> None:
    state = SearchState.from_dict(run.latest_checkpoint()["state"])
    front = front_of(state.population)
    best = select(front, "best-accuracy")
    assert len(best) == 1
    assert best[0].result.val_accuracy == max(m.result.val_accuracy for m in front)
    cheapest = min(m.result.flops for m in front)
    assert all(m.result.flops <= cheapest for m in select(front, f"max-flops={cheapest}"))
    top = best[0].result.val_accuracy
    assert select(front, f"min-accuracy={top}") == [m for m in front
                                                     if m.result.val_accuracy >= top]
    with pytest.raises(UserError, match="matches no front member; the front holds: genome"):
        select(front, "max-flops=1")
    for bad in ("fastest", "max-flops=abc", "min-accuracy=95", "front=3"):
        with pytest.raises(UserError, match="--select"):
            select(front, bad)


def test_export_cli_and_bad_selection(run: RunDir, tmp_path: Path) -> None:
    out = cli("export", str(run.path), "--select", "best-accuracy", "--out", str(tmp_path / "e"))
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "e").iterdir())) == 1
    bad = cli("export", str(run.path), "--select", "max-flops=1", "--out", str(tmp_path / "f"))
    _assert_one_clear_error(bad, "max-flops=1", "the front holds")
    assert not (tmp_path / "f").exists()


def test_a_refit_front_exports_its_refit_networks_and_says_so(tmp_path: Path) -> None:
    """With `training.refit_epochs` the exported networks are the refit ones (they predict
    the test labels recorded after the refit, in torch and ONNX), and the model card names
    the validation accuracy as the one that selected the member before its refit."""
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(deep_update(SPACE, {
        "generations": 2, "training": {"inheritance": "lamarckian", "refit_epochs": 2}})))
    run_dir = RunDir(tmp_path / "runs" / "tiny")
    start_run(run_dir, load_space(tmp_path / "space.yaml"), LocalEvaluator(), []).run()
    run_dir.unlock()
    front = _front(run_dir)
    assert all(m["refit"] for m in front.values())
    folders = export_run(open_run(run_dir.path), "front")
    assert sorted(int(p.name) for p in folders) == sorted(front)
    for folder in folders:
        m = json.loads((folder / "metrics.json").read_text())
        assert m["refit"] is True and m["generation"] == 2
        assert m["test_accuracy"] == m["onnx"]["test_accuracy"] == front[m["genome_id"]][
            "test_accuracy"]
        assert "before its refit" in (folder / "README.md").read_text()


def test_export_of_a_run_without_a_finished_generation(tmp_path: Path, write_space) -> None:
    run_dir = RunDir(tmp_path / "empty")
    run_dir.create(load_space(write_space()))
    _assert_one_clear_error(cli("export", str(run_dir.path)), "no finished generation")
    _assert_one_clear_error(cli("report", str(run_dir.path)), "no finished generation")


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for p in folder.iterdir():
        (to / p.name).write_bytes(p.read_bytes())
    return to


def test_damaged_or_tampered_files_are_refused(exported, tmp_path: Path) -> None:
    a, b = exported[0], exported[-1]
    cases = {}
    cut = _copy(a, tmp_path / "cut")
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases[cut] = "not a valid safetensors file"
    header = _copy(a, tmp_path / "header")
    (header / "model.safetensors").write_bytes(b"\xff" * 8 + data[8:])
    cases[header] = "not a valid safetensors file"
    edited = _copy(a, tmp_path / "edited")
    doc = json.loads((edited / "genome.json").read_text())
    doc["genome"]["connections"]["enabled"][0] ^= True
    (edited / "genome.json").write_text(json.dumps(doc))
    cases[edited] = "genome_sha256 does not match"
    garbage = _copy(a, tmp_path / "garbage")
    (garbage / "genome.json").write_text("{not json")
    cases[garbage] = "not a valid evosparse genome file"
    if a != b:
        swapped = _copy(a, tmp_path / "swapped")
        (swapped / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
        cases[swapped] = "belongs to another genome"
    missing = _copy(a, tmp_path / "missing")
    (missing / "model.safetensors").unlink()
    cases[missing] = "cannot read"
    for folder, message in cases.items():
        with pytest.raises(UserError, match=message):
            evosparse.load(folder)


def test_weights_kept_are_those_of_the_recent_populations(run: RunDir) -> None:
    kept = {int(p.stem) for p in run.model_dir.glob("*.safetensors")}
    recent = run.recent_populations(10**9)
    assert recent[-1] <= kept
    assert kept == set().union(*recent)


def test_report_writes_valid_images_and_a_page(run: RunDir) -> None:
    page = write_report(open_run(run.path))
    text = page.read_text()
    for name in ("fronts", "hypervolume", "topologies", "activations"):
        image = imread(page.parent / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f'src="{name}.png"' in text
    for genome_id in _front(run):
        assert f"<td>{genome_id}</td>" in text


def test_standardize_false_through_export_onnx_and_load(tmp_path: Path) -> None:
    """Data used as given: the export takes raw features (no scaler in the weight file or
    the ONNX graph), and load, ONNX and the search predict alike. Mutant that fails this:
    `load_task` standardising whatever `standardize` says."""
    space = deep_update(SPACE, {"generations": 1, "population": 4,
                                "dataset": {"standardize": False}})
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    run = RunDir(tmp_path / "runs" / "tiny")
    start_run(run, load_space(tmp_path / "space.yaml"), LocalEvaluator(), []).run()
    run.unlock()
    (folder,) = export_run(open_run(run.path), "best-accuracy", tmp_path / "out")
    model = evosparse.load(folder)
    assert model.scale is None
    assert not any(n.startswith("input.") for n in load_file(str(folder / "model.safetensors")))
    x, y = load_raw_test(run.load_space().dataset)
    recorded = load_file(str(run.model_file(int(folder.name))))["test_predictions"]
    np.testing.assert_array_equal(model.predict(x), recorded)
    session = ort.InferenceSession(str(folder / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    onnx_pred = session.run(None, {"x": x.astype(np.float32)})[0].argmax(axis=1)
    np.testing.assert_array_equal(onnx_pred, recorded)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test_accuracy"] == metrics["onnx"]["test_accuracy"] == (recorded == y).mean()
