"""Export chosen front members as files that run anywhere, and load them back.

`export_run` writes, per chosen genome, `<out>/<genome_id>/`:
    genome.json        the topology, readable (levels, live connections, activations)
                       and exact (the genome's arrays)
    model.safetensors  masked weights, masks, biases and the input standardisation
    model.onnx         the same network in standard ONNX operators
    metrics.json       accuracies, non-zero FLOPs counted from the weights, params,
                       density, dense versus sparse latency at batch 1 and 256
    README.md          a short model card
Before writing, each network is checked against the search: its test-split
predictions must equal those recorded when it was evaluated, and the ONNX model
run in onnxruntime must agree with torch. `load` rebuilds the torch module from
genome.json and model.safetensors (no pickle anywhere).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evosparse.activations import activation_cost
from evosparse.data import Task, load_raw_test, load_task
from evosparse.errors import UserError
from evosparse.evolution import Member, SearchState, front_of
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome
from evosparse.graph import analyse
from evosparse.network import SparseNetwork
from evosparse.onnx_export import to_onnx
from evosparse.rundir import RunDir, atomic_write
from evosparse.space import SearchSpace
from evosparse.sparse_inference import SparseInference, time_call
from evosparse.weights import (
    TEST_PREDICTIONS,
    genome_digest,
    model_bytes,
    network_from_model,
    read_bytes,
)

GENOME_FORMAT = "evosparse-genome-1"
LATENCY_BATCHES = (1, 256)


class ExportedModel(nn.Module):
    """A loaded export: features as the data holds them in, logits out.

    The search's standardisation runs first, exactly as `data.standardize` does it
    (float64, one rounding to float32), so predictions equal the recorded ones.
    """

    def __init__(self, genome: Genome, net: SparseNetwork,
                 scale: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        super().__init__()
        self.genome = genome
        self.net = net.eval()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = (x.to(torch.float64) - self.scale[0]) / self.scale[1]
        return self.net(x.to(torch.float32))

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class labels for a batch of samples."""
        with torch.inference_mode():
            return self(torch.as_tensor(x)).argmax(dim=1).numpy()


# -- genome.json ------------------------------------------------------------------------------

def genome_document(genome: Genome) -> dict[str, Any]:
    """genome.json: the exact genome plus a readable view of what the network computes."""
    topo = analyse(genome)
    ids = genome.node_id
    levels = [
        [{"id": int(ids[r]), "activation": str(genome.node_act[r]),
          "kind": "output" if genome.node_kind[r] == OUTPUT else "hidden"}
         for r in np.flatnonzero(topo.depth == level)]
        for level in range(1, topo.n_levels + 1)
    ]
    live = np.flatnonzero(topo.conn_active)
    return {
        "format": GENOME_FORMAT,
        "inputs": ids[genome.node_kind == INPUT].tolist(),
        "outputs": ids[genome.node_kind == OUTPUT].tolist(),
        "levels": levels,
        "live_connections": [[int(genome.conn_src[i]), int(genome.conn_dst[i])] for i in live],
        "genome": genome.to_dict(),
    }


def readable_json(value: Any, indent: str = "") -> str:
    """JSON indented for reading, with every list or object of plain values on one line."""
    inner = indent + "  "
    nested = isinstance(value, dict) and any(isinstance(v, dict | list) for v in value.values())
    if nested:
        items = [f"{inner}{json.dumps(k)}: {readable_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(inner + readable_json(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value)


def _read_genome(path: Path) -> Genome:
    try:
        doc = json.loads(read_bytes(path))
        if doc.get("format") != GENOME_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {GENOME_FORMAT!r}")
        return Genome.from_dict(doc["genome"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path}: not a valid evosparse genome file ({exc})") from None


def load(path: str | Path) -> ExportedModel:
    """Rebuild an exported network from `path` (a folder with genome.json and
    model.safetensors). A damaged, mismatched or edited file raises `UserError`."""
    folder = Path(path)
    genome = _read_genome(folder / "genome.json")
    source = folder / "model.safetensors"
    data = read_bytes(source)
    net, tensors = network_from_model(genome, data, str(source))
    scale = None
    if "input.mean" in tensors:
        scale = (tensors["input.mean"].to(torch.float64), tensors["input.std"].to(torch.float64))
    return ExportedModel(genome, net, scale)


# -- selection ---------------------------------------------------------------------------------

def select(front: list[Member], how: str) -> list[Member]:
    """Front members chosen by `how`: front | best-accuracy | max-flops=X | min-accuracy=Y.

    Accuracies here are validation accuracies (choosing by test accuracy would leak
    the test split into the choice); Y is a fraction in [0, 1].
    """
    key, _, value = how.partition("=")
    if key in ("front", "best-accuracy") and not value:
        if key == "front":
            return list(front)
        return [max(front, key=lambda m: (m.result.val_accuracy, -m.result.flops))]
    if key in ("max-flops", "min-accuracy") and value:
        try:
            limit = float(value)
        except ValueError:
            raise UserError(f"--select {how}: {value!r} is not a number") from None
        if key == "min-accuracy":
            if not 0.0 <= limit <= 1.0:
                raise UserError(f"--select {how}: accuracy must be a fraction in [0, 1]")
            chosen = [m for m in front if m.result.val_accuracy >= limit]
        else:
            chosen = [m for m in front if m.result.flops <= limit]
        if not chosen:
            held = "; ".join(f"genome {m.result.genome_id}: val {m.result.val_accuracy:.4f}, "
                             f"{m.result.flops} FLOPs" for m in front)
            raise UserError(f"--select {how} matches no front member; the front holds: {held}")
        return chosen
    raise UserError(f"--select {how!r}: expected front, best-accuracy, max-flops=X "
                    "or min-accuracy=Y")


# -- metrics -----------------------------------------------------------------------------------

def flops_from_weights(net: SparseNetwork) -> dict[str, int]:
    """Non-zero FLOPs per sample counted from the stored tensors: 2 x non-zero weights
    + biases + each computed node's activation cost (input standardisation excluded)."""
    nonzero = sum(int(torch.count_nonzero(lv.weight * lv.mask)) for lv in net.levels)
    nonzero += sum(int(torch.count_nonzero(lv.second_weight())) for lv in net.levels
                   if lv.weight2 is not None)
    biases = sum(lv.bias.numel() for lv in net.levels if lv.bias is not None)
    biases += sum(int(lv.two.sum()) for lv in net.levels if lv.bias2 is not None)
    acts = sum(activation_cost(a) for lv in net.levels for a in lv.act_names)
    return {"flops": 2 * nonzero + biases + acts, "nonzero_weights": nonzero, "biases": biases,
            "activation_flops": acts}


def latency(net: SparseNetwork, n_features: int) -> dict[str, Any]:
    """Milliseconds per batch of `SparseInference` with dense blocks only and with the
    kernels it picks on this machine (CSR where that pays): the same code but the kernel."""
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    gen = torch.Generator().manual_seed(0)
    dense = SparseInference(net, threshold=-1.0)
    for batch in LATENCY_BATCHES:
        x = torch.randn(batch, n_features, generator=gen)
        sparse = SparseInference(net, batch=batch)
        dense_s = time_call(lambda x=x: dense(x))
        sparse_s = time_call(lambda x=x, s=sparse: s(x))
        out[f"batch_{batch}"] = {"dense_ms": dense_s * 1e3, "sparse_ms": sparse_s * 1e3,
                                 "speedup": dense_s / sparse_s, "kernels": sparse.kernels}
    return out


@dataclass(frozen=True)
class _Checked:
    """One front member rebuilt from the run directory and checked against the search."""

    member: Member
    net: SparseNetwork
    metrics: dict[str, Any]
    onnx_bytes: bytes


def _check(member: Member, run_dir: RunDir, space: SearchSpace, task: Task,
           raw_test: tuple[np.ndarray, np.ndarray]) -> _Checked:
    import onnxruntime as ort

    g, r = member.genome, member.result
    path = run_dir.model_file(g.genome_id)
    if not path.is_file():
        raise UserError(f"{path} is missing: the trained weights of genome {g.genome_id} "
                        "were not kept (a run made before weights were stored?)")
    data = read_bytes(path)
    net, tensors = network_from_model(g, data, str(path))
    recorded = tensors[TEST_PREDICTIONS].numpy()
    model = ExportedModel(g, net, None if task.mean is None else
                          (torch.from_numpy(task.mean), torch.from_numpy(task.std)))
    x_raw, y = raw_test
    predictions = model.predict(x_raw)
    if not np.array_equal(predictions, recorded):
        raise UserError(f"genome {g.genome_id}: the rebuilt network predicts differently from "
                        f"the search on {int((predictions != recorded).sum())} test samples")
    scale = None if task.mean is None else (task.mean, task.std)
    onnx_bytes = to_onnx(net, scale, name=f"evosparse_{g.genome_id}").SerializeToString()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"x": x_raw.astype(np.float32)})[0]
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x_raw)).numpy()
    counted = flops_from_weights(net)
    block = sum(lv.mask.numel() for lv in net.levels)
    metrics = {
        "genome_id": g.genome_id,
        "generation": g.generation,
        "dataset": space.dataset.name,
        "val_accuracy": r.val_accuracy,
        "test_accuracy": float((predictions == y).mean()),
        "test_accuracy_in_search": r.test_accuracy,
        "test_predictions_equal_search": True,
        **counted,
        "flops_in_search": r.flops,
        "params": r.params,
        "connections": r.connections,
        "hidden_nodes": int(analyse(g).node_active[g.node_kind == HIDDEN].sum()),
        "levels": len(net.levels),
        "density": counted["nonzero_weights"] / block if block else 0.0,
        "onnx": {"max_abs_diff_vs_torch": float(np.abs(onnx_logits - torch_logits).max()),
                 "test_accuracy": float((onnx_logits.argmax(axis=1) == y).mean())},
        "latency": latency(net, net.n_inputs),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
    }
    return _Checked(member, net, metrics, onnx_bytes)


def _model_card(c: _Checked, doc: dict[str, Any]) -> str:
    m = c.metrics
    lat = m["latency"]
    acts = sorted({n["activation"] for level in doc["levels"] for n in level})
    rows = "\n".join(
        f"| {b} | {lat[f'batch_{b}']['dense_ms']:.4f} | {lat[f'batch_{b}']['sparse_ms']:.4f} | "
        f"{lat[f'batch_{b}']['speedup']:.2f} | {', '.join(lat[f'batch_{b}']['kernels'])} |"
        for b in LATENCY_BATCHES)
    return f"""# evosparse genome {m['genome_id']}

A sparse network found by an evolutionary search on `{m['dataset']}` (generation
{m['generation']}). Input: {len(doc['inputs'])} features as the dataset holds them (the
search's standardisation is inside both model files). Output: {len(doc['outputs'])} logits.

| metric | value |
| --- | --- |
| validation accuracy | {m['val_accuracy']:.4f} |
| test accuracy | {m['test_accuracy']:.4f} (predictions equal the search's) |
| non-zero FLOPs per sample | {m['flops']} |
| parameters | {m['params']} |
| hidden nodes / levels | {m['hidden_nodes']} / {m['levels']} |
| density of the level blocks | {m['density']:.4f} |
| activation functions | {', '.join(acts)} |

**How FLOPs are counted** (from `model.safetensors`): 2 x the non-zero entries of the
`levels.k.weight` tensors (a multiply and an add each) + one add per entry of the
`levels.k.bias` tensors + the activation cost of each computed node (FLOPs per element:
1 for add, multiply, compare or select, 4 for a transcendental; table in
`evosparse/activations.py`): {m['nonzero_weights']} x 2 + {m['biases']} + \
{m['activation_flops']} = {m['flops']}. Input standardisation is not counted.

**Latency** on the exporting machine ({lat['threads']} threads, ms per batch; dense: every
level a dense block; sparse: CSR for the levels where it pays on this machine):

| batch | dense ms | sparse ms | speed-up | kernel per level |
| --- | --- | --- | --- | --- |
{rows}

## Use

```python
import evosparse
model = evosparse.load("{m['genome_id']}")        # torch module, no pickle
labels = model.predict(x)                  # x: [samples, {len(doc['inputs'])}] features
```

```python
import onnxruntime as ort                  # nothing of evosparse needed
session = ort.InferenceSession("{m['genome_id']}/model.onnx")
logits = session.run(None, {{"x": x.astype("float32")}})[0]
```

ONNX and torch logits agree to {m['onnx']['max_abs_diff_vs_torch']:.2e} on the test split.
"""


def export_run(run_dir: RunDir, how: str = "front", out: Path | None = None) -> list[Path]:
    """Export the front members of a run chosen by `how`; returns the folders written.

    Everything is checked before the first file is written, so a failing export
    leaves nothing half done.
    """
    space = run_dir.load_space()
    body = run_dir.latest_checkpoint()
    if body is None:
        raise UserError(f"{run_dir.path} has no finished generation yet: nothing to export")
    front = front_of(SearchState.from_dict(body["state"]).population)
    chosen = select(front, how)
    task, raw_test = load_task(space.dataset), load_raw_test(space.dataset)
    checked = [_check(m, run_dir, space, task, raw_test) for m in chosen]
    out = out or run_dir.path / "export"
    folders = []
    for c in checked:
        g = c.member.genome
        folder = out / str(g.genome_id)
        folder.mkdir(parents=True, exist_ok=True)
        doc = genome_document(g)
        extra = {} if task.mean is None else {"input.mean": torch.from_numpy(task.mean),
                                               "input.std": torch.from_numpy(task.std)}
        atomic_write(folder / "genome.json", (readable_json(doc) + "\n").encode())
        atomic_write(folder / "model.safetensors", model_bytes(c.net, extra, genome_digest(g)))
        atomic_write(folder / "model.onnx", c.onnx_bytes)
        atomic_write(folder / "metrics.json", (json.dumps(c.metrics, indent=2) + "\n").encode())
        atomic_write(folder / "README.md", _model_card(c, doc).encode())
        folders.append(folder)
    return folders

