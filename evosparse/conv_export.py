"""A trained `ConvNetwork` as ONNX (standard Conv operators) and its FLOPs from its tensors.

The graph mirrors `conv_network.py`: the flat input is standardised (as for MLPs) and
reshaped to [batch, channels, *spatial]; each group of channels is the sum of one Conv
per source scale and kernel dilation (masked kernels, stride 2^(r - a), "same"
padding) followed by its activation functions (a Split over runs of channels with one
function each; two-input units read a second pre-activation, one more Conv per block);
a level's groups are concatenated to their scale's maps; the logits are a MatMul of every
channel's pooled map (GlobalAveragePool; with the `bins` head a MatMul of the flattened
maps by the scale's `ConvGeometry.pooling` matrix). Activations use `onnx_export`'s
recipes, so onnxruntime runs the file with nothing of evosparse installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper

from evosparse.activations import activation_cost, arity
from evosparse.conv_network import ConvNetwork
from evosparse.onnx_export import RECIPES2, checked_model, const, recipe, standardised
from evosparse.sparse_inference import time_call


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def conv_to_onnx(net: ConvNetwork, scale: tuple[np.ndarray, np.ndarray] | None = None,
                 name: str = "evosparse", classes: list[Any] | None = None) -> onnx.ModelProto:
    """The ONNX model of a trained conv network (input `x` [batch, features] as the data
    holds it, output `logits` [batch, classes]); checked with the full ONNX checker."""
    g = net.geometry
    nodes: list[onnx.NodeProto] = []
    init: list[onnx.TensorProto] = []
    flat = standardised("x", scale, nodes, init)
    shape = const(init, "input_shape", np.array([-1, *g.shape], np.int64))
    nodes.append(helper.make_node("Reshape", [flat, shape], ["m0_0"]))
    maps: list[str | None] = ["m0_0"] + [None] * g.scales
    start = 0
    for level, end in enumerate(net.level_ends):
        new: list[list[str]] = [[] for _ in maps]
        for j, (r, pairs, runs) in enumerate(net.plan[start:end]):
            p = f"l{level}_g{j}"
            terms: list[str] = []
            seconds: list[str] = []  # two-input units' second pre-activation
            for b, a in pairs:
                blk = net.levels[b]
                kernels = [("", blk.weight * blk.mask, blk.bias, terms)]
                if blk.weight2 is not None:
                    kernels.append(("2", blk.second_weight(), blk.bias2, seconds))
                for tag, w, bias, out in kernels:
                    inputs = [maps[a], const(init, f"b{b}_w{tag}", _numpy(w))]
                    if bias is not None:
                        inputs.append(const(init, f"b{b}_bias{tag}", _numpy(bias)))
                    out.append(f"b{b}_out{tag}")
                    nodes.append(helper.make_node(
                        "Conv", inputs, [out[-1]], kernel_shape=[g.kernel] * g.dims,
                        strides=[1 << (r - a)] * g.dims, dilations=[blk.dilation] * g.dims,
                        pads=[blk.dilation * (g.kernel // 2)] * (2 * g.dims)))
            pre, pre2 = _added(terms, f"{p}_sum", nodes), _added(seconds, f"{p}_sum2", nodes)
            if len(runs) == 1:
                new[r].append(_activation(runs[0][0], pre, pre2, f"{p}_act", nodes, init))
                continue
            sizes = const(init, f"{p}_split", np.array([w for _, w in runs], np.int64))
            parts = [f"{p}_in{i}" for i in range(len(runs))]
            nodes.append(helper.make_node("Split", [pre, sizes], parts, axis=1))
            parts2: list[str | None] = [None] * len(runs)
            if pre2 is not None:
                parts2 = [f"{p}_in2_{i}" for i in range(len(runs))]
                nodes.append(helper.make_node("Split", [pre2, sizes], parts2, axis=1))
            outs = [_activation(fn, x, y, f"{p}_out{i}", nodes, init)
                    for i, ((fn, _), x, y) in enumerate(zip(runs, parts, parts2, strict=True))]
            nodes.append(helper.make_node("Concat", outs, [f"{p}_act"], axis=1))
            new[r].append(f"{p}_act")
        for r, extra in enumerate(new):
            if extra:
                parts = [m for m in (maps[r], *extra) if m is not None]
                maps[r] = f"m{r}_{level + 1}"
                nodes.append(helper.make_node("Concat", parts, [maps[r]], axis=1))
        start = end
    pooled = []
    for r, m in enumerate(maps):
        if m is None:
            continue
        if g.bins == 1:
            nodes.append(helper.make_node("GlobalAveragePool", [m], [f"pool{r}"]))
        else:
            flat_shape = const(init, f"maps{r}_shape", np.array([0, 0, -1], np.int64))
            nodes += [helper.make_node("Reshape", [m, flat_shape], [f"maps{r}_flat"]),
                      helper.make_node("MatMul", [f"maps{r}_flat",
                                                  const(init, f"pooling{r}", g.pooling(r))],
                                       [f"pool{r}"])]
        nodes.append(helper.make_node("Flatten", [f"pool{r}"], [f"pooled{r}"], axis=1))
        pooled.append(f"pooled{r}")
    nodes.append(helper.make_node("Concat", pooled, ["pooled"], axis=1))
    head = net.levels[-1]
    w = const(init, "head_weight_t", _numpy(head.weight * head.mask).T.copy())
    out = "logits" if head.bias is None else "head_mm"
    nodes.append(helper.make_node("MatMul", ["pooled", w], [out]))
    if head.bias is not None:
        nodes.append(helper.make_node("Add", [out, const(init, "head_bias", _numpy(head.bias))],
                                      ["logits"]))
    return checked_model(nodes, init, name, (int(np.prod(g.shape)), head.weight.shape[0]),
                         classes)


def _added(terms: list[str], name: str, nodes: list[onnx.NodeProto]) -> str | None:
    """The sum of `terms` (Add nodes named `name`k), or None when there are none."""
    total = terms[0] if terms else None
    for k, term in enumerate(terms[1:]):
        nodes.append(helper.make_node("Add", [total, term], [f"{name}{k}"]))
        total = f"{name}{k}"
    return total


def _activation(fn: str, x: str, y: str | None, name: str, nodes: list[onnx.NodeProto],
                init: list[onnx.TensorProto]) -> str:
    """Activation `fn` of pre-activation x (and y, the second, of a two-input unit)."""
    if arity(fn) == 2:
        assert y is not None
        return RECIPES2[fn](x, y, name, nodes, init)
    return recipe(fn)(x, name, nodes, init)


def conv_flops_from_weights(net: ConvNetwork) -> dict[str, int]:
    """Non-zero FLOPs per sample counted from the stored tensors, as `conv_cost` counts
    the genome: 2 x each non-zero kernel tap x its output positions, each bias and
    activation once per output position, each channel's average (its positions) that an
    output reads (an add per non-zero of its pooling matrix), 2 per non-zero head weight
    and one add per head bias."""
    g = net.geometry
    nonzero = flops = biases = acts = 0
    for r, pairs, runs in net.plan:
        at = g.positions(r)
        for b, _ in pairs:
            blk = net.levels[b]
            n = int(torch.count_nonzero(blk.weight * blk.mask))
            if blk.weight2 is not None:  # two-input units' second kernels and biases
                n += int(torch.count_nonzero(blk.second_weight()))
            nonzero, flops = nonzero + n, flops + 2 * n * at
            biases += 0 if blk.bias is None else blk.bias.numel() * at
            biases += 0 if blk.bias2 is None else int(blk.two.sum()) * at
        acts += sum(activation_cost(fn) * w for fn, w in runs) * at
    head = net.levels[-1]
    w = head.weight * head.mask
    read = head.mask.ne(0).reshape(head.mask.shape[0], -1, g.bins).any(dim=(0, 2)).numpy()
    starts = np.cumsum([0, *net.channels])  # read: the pooled channels some output reads
    pooling = sum(int(read[starts[r]:starts[r + 1]].sum()) * int(np.count_nonzero(g.pooling(r)))
                  for r in range(len(net.channels)))
    n_head = int(torch.count_nonzero(w))
    biases += 0 if head.bias is None else head.bias.numel()
    return {"flops": flops + biases + acts + pooling + 2 * n_head,
            "nonzero_weights": nonzero + n_head, "biases": biases, "activation_flops": acts,
            "pooling_flops": pooling}


def conv_latency(net: ConvNetwork, n_features: int, batches: tuple[int, ...] = (1, 256)
                 ) -> dict[str, Any]:
    """Milliseconds per batch of the torch network on this machine, in the shape of
    `export.latency`: conv families have no sparse kernel yet (masked taps are multiplied
    as zeros), so "sparse" is the same dense run."""
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    gen = torch.Generator().manual_seed(0)
    for batch in batches:
        x = torch.randn(batch, n_features, generator=gen)
        ms = time_call(lambda x=x: net(x)) * 1e3
        out[f"batch_{batch}"] = {"dense_ms": ms, "sparse_ms": ms, "speedup": 1.0,
                                 "kernels": ["dense conv"]}
    return out
