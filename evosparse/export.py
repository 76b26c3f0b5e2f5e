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
from evosparse.conv_export import conv_flops_from_weights, conv_latency, conv_to_onnx
from evosparse.conv_network import ConvNetwork
from evosparse.data import load_raw_test
from evosparse.errors import UserError
from evosparse.families import MLP, Family, family_from_dict, family_of
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome
from evosparse.graph import analyse
from evosparse.network import SparseNetwork
from evosparse.onnx_export import to_onnx
from evosparse.results import Candidate, Run, choose, select  # noqa: F401 - select re-exported
from evosparse.rundir import atomic_write
from evosparse.sparse_inference import SparseInference, time_call
from evosparse.tables import Label
from evosparse.weights import (
    TEST_PREDICTIONS,
    genome_digest,
    model_bytes,
    network_from_model,
    read_bytes,
)

GENOME_FORMAT = "evosparse-genome-1"
LATENCY_BATCHES = (1, 256)
_REFIT = (" (before its refit on the training and validation samples, "
          "`training.refit_epochs`: the score that selected it)")


class ExportedModel(nn.Module):
    """A loaded export: features as the data holds them in, logits out.

    The search's standardisation runs first, exactly as `data.standardize` does it
    (float64, one rounding to float32), so predictions equal the recorded ones.
    `classes` are the data's labels in logit order: `predict` returns them.
    """

    def __init__(self, genome: Genome, net: SparseNetwork | ConvNetwork,
                 scale: tuple[torch.Tensor, torch.Tensor] | None,
                 classes: list[Label] | None = None, family: Family = MLP) -> None:
        super().__init__()
        self.genome = genome
        self.net = net.eval()
        self.scale = scale
        self.family = family
        self.classes = np.asarray(classes if classes is not None
                                  else range(int((genome.node_kind == OUTPUT).sum())))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (by a user: `joblib`, a fitted estimator) as its genome, safetensors bytes
        and classes: the compiled network holds functions that do not pickle."""
        return (model_from_bytes, (self.genome.to_dict(), model_to_bytes(self),
                                   self.classes.tolist(), "a pickled model",
                                   self.family.to_dict()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)  # signals and images as the data holds them, or flat
        if self.scale is not None:
            x = (x.to(torch.float64) - self.scale[0]) / self.scale[1]
        return self.net(x.to(torch.float32))

    def logits(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits (float32) for a batch of samples given as the data holds them."""
        with torch.inference_mode():
            return self(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()

    def predict_index(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class indices (logit order) for a batch of samples."""
        return self.logits(x).argmax(axis=1)

    def predict(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class labels, as the training data holds them, for a batch of samples."""
        return self.classes[self.predict_index(x)]

    def predict_proba(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities (softmax of the logits, float64), columns in `classes` order."""
        z = self.logits(x).astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


# -- genome.json ------------------------------------------------------------------------------

def genome_document(genome: Genome, classes: list[Label], family: Family = MLP
                    ) -> dict[str, Any]:
    """genome.json: the exact genome, its network family (with a conv family's input
    shape, kernel and scales), the class labels in logit order, and a readable view of
    what the network computes."""
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
        "family": family.to_dict(),
        "inputs": ids[genome.node_kind == INPUT].tolist(),
        "outputs": ids[genome.node_kind == OUTPUT].tolist(),
        "classes": list(classes),
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


def _read_genome(path: Path) -> tuple[Genome, list[Label] | None, Family]:
    """The genome, class labels and family of a genome.json (labels None and family mlp
    in older exports)."""
    try:
        doc = json.loads(read_bytes(path))
        if doc.get("format") != GENOME_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {GENOME_FORMAT!r}")
        genome = Genome.from_dict(doc["genome"])
        classes = doc.get("classes")
        if classes is not None and len(classes) != len(doc["outputs"]):
            raise ValueError(f"{len(classes)} classes for {len(doc['outputs'])} outputs")
        return genome, classes, family_from_dict(doc.get("family", {"name": "mlp"}))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path}: not a valid evosparse genome file ({exc})") from None


def load(path: str | Path) -> ExportedModel:
    """Rebuild an exported network from `path` (a folder with genome.json and
    model.safetensors). A damaged, mismatched or edited file raises `UserError`."""
    folder = Path(path)
    genome, classes, family = _read_genome(folder / "genome.json")
    source = folder / "model.safetensors"
    return model_from_bytes(genome, read_bytes(source), classes, str(source), family)


def model_from_bytes(genome: Genome | dict[str, Any], data: bytes, classes: list[Label] | None,
                     source: str, family: Family | dict[str, Any] = MLP) -> ExportedModel:
    """A model from its genome and the bytes of its `model.safetensors` (checked)."""
    if isinstance(genome, dict):
        genome = Genome.from_dict(genome)
    if isinstance(family, dict):
        family = family_from_dict(family)
    net, tensors = network_from_model(genome, data, source, family)
    scale = None
    if "input.mean" in tensors:
        scale = (tensors["input.mean"].to(torch.float64), tensors["input.std"].to(torch.float64))
    return ExportedModel(genome, net, scale, classes, family)


def model_to_bytes(model: ExportedModel) -> bytes:
    """The model's `model.safetensors`: weights, masks, biases and input standardisation,
    bound to its genome."""
    extra = {} if model.scale is None else {"input.mean": model.scale[0],
                                             "input.std": model.scale[1]}
    return model_bytes(model.net, extra, genome_digest(model.genome))


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


def run_model(run: Run, candidate: Candidate) -> ExportedModel:
    """A member's trained network rebuilt from the run directory's weight file, with the
    run's standardisation and classes (`export_run` also checks its test predictions
    against the search's records)."""
    return _stored(run, candidate)[0]


def _stored(run: Run, candidate: Candidate) -> tuple[ExportedModel, np.ndarray]:
    """`run_model` and the test-split predictions the search recorded with the weights."""
    g = candidate.genome
    task = run.task
    family = family_of(run.space.network, run.space.dataset.name, task.n_features,
                       task.sample_shape)
    path = run.dir.model_file(g.genome_id)
    if not path.is_file():
        raise UserError(f"{path} is missing: the trained weights of genome {g.genome_id} "
                        "were not kept (a run made before weights were stored?)")
    net, tensors = network_from_model(g, read_bytes(path), str(path), family)
    scale = None if task.mean is None else (torch.from_numpy(task.mean),
                                            torch.from_numpy(task.std))
    return (ExportedModel(g, net, scale, run.classes, family),
            tensors[TEST_PREDICTIONS].numpy())


@dataclass(frozen=True)
class _Checked:
    """One front member rebuilt from the run directory and checked against the search."""

    candidate: Candidate
    model: ExportedModel
    metrics: dict[str, Any]
    onnx_bytes: bytes


def _check(candidate: Candidate, run: Run, raw_test: tuple[np.ndarray, np.ndarray]) -> _Checked:
    import onnxruntime as ort

    g, r = candidate.genome, candidate.member.result
    model, recorded = _stored(run, candidate)
    x_raw, y = raw_test
    predictions = model.predict_index(x_raw)
    if not np.array_equal(predictions, recorded):
        raise UserError(f"genome {g.genome_id}: the rebuilt network predicts differently from "
                        f"the search on {int((predictions != recorded).sum())} test samples")
    task, net = run.task, model.net
    scale = None if task.mean is None else (task.mean, task.std)
    conv = isinstance(net, ConvNetwork)
    onnx_bytes = (conv_to_onnx if conv else to_onnx)(net, scale, name=f"evosparse_{g.genome_id}",
                                                     classes=run.classes).SerializeToString()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"x": x_raw.astype(np.float32)})[0]
    torch_logits = model.logits(x_raw)
    counted = conv_flops_from_weights(net) if conv else flops_from_weights(net)
    block = sum(lv.mask.numel() for lv in net.levels)
    metrics = {
        "genome_id": g.genome_id,
        "generation": g.generation,
        "dataset": run.space.dataset.name,
        "classes": run.classes,
        "val_accuracy": r.val_accuracy,
        "refit": r.refit,
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
        "latency": (conv_latency(net, x_raw.shape[1], LATENCY_BATCHES) if conv
                    else latency(net, x_raw.shape[1])),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
    }
    return _Checked(candidate, model, metrics, onnx_bytes)


def _flops_text(m: dict[str, Any]) -> str:
    """How the card's FLOPs were counted from the weights, for the member's family."""
    costs = ("(FLOPs per element:\n1 for add, multiply, compare or select, 4 for a "
             "transcendental; table in\n`evosparse/library.py`)")
    if "pooling_flops" not in m:
        return f"""**How FLOPs are counted** (from `model.safetensors`): 2 x the non-zero entries of the
`levels.k.weight` tensors (a multiply and an add each) + one add per entry of the
`levels.k.bias` tensors + the activation cost of each computed node {costs}: \
{m['nonzero_weights']} x 2 + {m['biases']} + \
{m['activation_flops']} = {m['flops']}. Input standardisation is not counted."""  # noqa: E501
    return f"""**How FLOPs are counted** (from `model.safetensors`; a convolutional network): 2 x
each non-zero kernel tap x the output positions of its channel (its scale's length, or
height x width) + one add per bias and output position + the activation cost at every
output position {costs} + one add per position of each channel average an output
reads + 2 per non-zero output weight: {m['flops']} in all, of which {m['biases']} bias
adds, {m['activation_flops']} activation FLOPs and {m['pooling_flops']} for the averages.
Input standardisation is not counted."""


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
search's standardisation is inside both model files). Output: {len(doc['outputs'])} logits,
one per class, in this order: {', '.join(repr(c) for c in doc['classes'])} (`predict` returns
these labels; the ONNX model lists them in its metadata under `classes`).

| metric | value |
| --- | --- |
| validation accuracy | {m['val_accuracy']:.4f}{_REFIT if m['refit'] else ''} |
| test accuracy | {m['test_accuracy']:.4f} (predictions equal the search's) |
| non-zero FLOPs per sample | {m['flops']} |
| parameters | {m['params']} |
| hidden nodes / levels | {m['hidden_nodes']} / {m['levels']} |
| density of the level blocks | {m['density']:.4f} |
| activation functions | {', '.join(acts)} |

{_flops_text(m)}

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
probabilities = model.predict_proba(x)     # columns in model.classes order
```

```python
import onnxruntime as ort                  # nothing of evosparse needed
session = ort.InferenceSession("{m['genome_id']}/model.onnx")
logits = session.run(None, {{"x": x.astype("float32")}})[0]
```

ONNX and torch logits agree to {m['onnx']['max_abs_diff_vs_torch']:.2e} on the test split.
"""


def export_run(run: Run, how: str = "front", out: Path | None = None) -> list[Path]:
    """Export the front members of a run chosen by `how`; returns the folders written.

    Everything is checked before the first file is written, so a failing export
    leaves nothing half done.
    """
    chosen = choose(run.front, how)
    raw_test = load_raw_test(run.space.dataset)
    checked = [_check(c, run, raw_test) for c in chosen]
    out = out or run.path / "export"
    folders = []
    for c in checked:
        g = c.candidate.genome
        folder = out / str(g.genome_id)
        folder.mkdir(parents=True, exist_ok=True)
        doc = genome_document(g, run.classes, c.model.family)
        atomic_write(folder / "genome.json", (readable_json(doc) + "\n").encode())
        atomic_write(folder / "model.safetensors", model_to_bytes(c.model))
        atomic_write(folder / "model.onnx", c.onnx_bytes)
        atomic_write(folder / "metrics.json", (json.dumps(c.metrics, indent=2) + "\n").encode())
        atomic_write(folder / "README.md", _model_card(c, doc).encode())
        folders.append(folder)
    return folders
