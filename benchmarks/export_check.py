"""Export a finished run's whole front and compare every file with the search's records.

    evosparse run search_spaces/digits.yaml && python benchmarks/export_check.py runs/digits

For each front member: test accuracy in front.json, of `evosparse.load` and of the
ONNX model in onnxruntime (fed the raw test split); FLOPs in front.json and
recounted from model.safetensors (an MLP: 2 x non-zero weights + biases + activation
cost of the activations in genome.json; a conv network: `conv_flops_from_weights` of
the network loaded from those files, each kept tap at each of its output positions);
ONNX-versus-torch largest logit difference.
The last line is `all_equal=<True|False>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.numpy import load_file

import evosparse
from evosparse.activations import activation_cost
from evosparse.api import open_run
from evosparse.conv_export import conv_flops_from_weights
from evosparse.conv_network import ConvNetwork
from evosparse.data import load_raw_test
from evosparse.export import ExportedModel, export_run
from evosparse.rundir import RunDir


def recount(folder: Path, model: ExportedModel) -> int:
    """The network's non-zero FLOPs counted from its exported files."""
    if isinstance(model.net, ConvNetwork):
        return conv_flops_from_weights(model.net)["flops"]
    tensors = load_file(str(folder / "model.safetensors"))
    doc = json.loads((folder / "genome.json").read_text())
    nonzero = sum(int(np.count_nonzero(t)) for n, t in tensors.items() if n.endswith(".weight"))
    biases = sum(t.size for n, t in tensors.items() if n.endswith(".bias"))
    return 2 * nonzero + biases + sum(activation_cost(n["activation"])
                                      for level in doc["levels"] for n in level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    front = {m["genome_id"]: m for m in json.loads(run.front_file.read_text())["front"]}
    x, y = load_raw_test(run.load_space().dataset)
    with tempfile.TemporaryDirectory() as out:
        folders = export_run(open_run(run.path), "front", Path(out))
        print(f"{'genome':>7} {'front.json':>10} {'load':>7} {'onnx':>7} {'FLOPs':>6} "
              f"{'recount':>7} {'max|diff|':>9}")
        ok = True
        for folder in folders:
            rec = front[int(folder.name)]
            model = evosparse.load(folder)
            logits = model(torch.from_numpy(x)).detach().numpy()
            session = ort.InferenceSession(str(folder / "model.onnx"))
            onnx_logits = session.run(None, {"x": x.astype(np.float32)})[0]
            acc_load = float((logits.argmax(1) == y).mean())
            acc_onnx = float((onnx_logits.argmax(1) == y).mean())
            flops = recount(folder, model)
            diff = float(np.abs(onnx_logits - logits).max())
            ok &= acc_load == rec["test_accuracy"] == acc_onnx and flops == rec["flops"]
            print(f"{folder.name:>7} {rec['test_accuracy']:>10.4f} {acc_load:>7.4f} "
                  f"{acc_onnx:>7.4f} {rec['flops']:>6} {flops:>7} {diff:>9.1e}")
    print(f"{len(folders)} networks exported")
    print(f"all_equal={ok}")


if __name__ == "__main__":
    main()
