"""A trained `SparseNetwork` as a self-contained ONNX model (standard operators only).

The graph mirrors `network.py`: each depth level is a MatMul with the level's
masked weight matrix (absent connections are zero), an Add of its biases and its
activation functions (nodes grouped per function with Gather); the level's
output is concatenated to the running activations, and the logits are gathered
at the end. Input `x` is [batch, features] float32 (standardised inside the model
when the search standardised its data), output `logits` is [batch, classes].
Every one-input library activation has a recipe in `RECIPES` and every two-input
unit one in `RECIPES2` (a level with two-input units has a second MatMul for their
second pre-activation), and an evolved expression
is emitted operator by operator from its tree, all with operators of the default
domain, so onnxruntime runs the file with nothing of
evosparse installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from evosparse.expressions import Tree, parse
from evosparse.library import ACTIVATIONS, ail_moments
from evosparse.network import SparseNetwork

OPSET = 18
IR_VERSION = 8
"""Readable by onnxruntime releases from 1.14 on."""

_Emit = Callable[[str, str, list[onnx.NodeProto], list[onnx.TensorProto]], str]
"""A recipe: (input name, unique prefix, nodes, initializers) -> output name; appends nodes."""


def _op(op: str, **attrs: float) -> _Emit:
    def emit(x: str, p: str, nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
        nodes.append(helper.make_node(op, [x], [p], **attrs))
        return p

    return emit


def _square(x: str, p: str, nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
    nodes.append(helper.make_node("Mul", [x, x], [p]))
    return p


def _silu(x: str, p: str, nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
    nodes += [helper.make_node("Sigmoid", [x], [p + "_s"]),
              helper.make_node("Mul", [x, p + "_s"], [p])]
    return p


def _gelu(x: str, p: str, nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
    """Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, as torch's default computes it."""
    init += [numpy_helper.from_array(np.array(2**-0.5, np.float32), p + "_c"),
             numpy_helper.from_array(np.array(1.0, np.float32), p + "_one"),
             numpy_helper.from_array(np.array(0.5, np.float32), p + "_half")]
    nodes += [helper.make_node("Mul", [x, p + "_c"], [p + "_a"]),
              helper.make_node("Erf", [p + "_a"], [p + "_e"]),
              helper.make_node("Add", [p + "_e", p + "_one"], [p + "_b"]),
              helper.make_node("Mul", [x, p + "_b"], [p + "_d"]),
              helper.make_node("Mul", [p + "_d", p + "_half"], [p])]
    return p


def _gaussian(x: str, p: str, nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
    nodes += [helper.make_node("Mul", [x, x], [p + "_sq"]),
              helper.make_node("Neg", [p + "_sq"], [p + "_n"]),
              helper.make_node("Exp", [p + "_n"], [p])]
    return p


RECIPES: dict[str, _Emit] = {
    "identity": _op("Identity"),
    "relu": _op("Relu"),
    "leaky_relu": _op("LeakyRelu", alpha=0.01),
    "abs": _op("Abs"),
    "square": _square,
    "tanh": _op("Tanh"),
    "sigmoid": _op("Sigmoid"),
    "elu": _op("Elu", alpha=1.0),
    "softplus": _op("Softplus"),
    "gelu": _gelu,
    "silu": _silu,
    "sin": _op("Sin"),
    "gaussian": _gaussian,
}


_Emit2 = Callable[[str, str, str, list[onnx.NodeProto], list[onnx.TensorProto]], str]
"""A two-input recipe: (x, y, unique prefix, nodes, initializers) -> output name."""


def _ail(kind: str) -> _Emit2:
    """AND / OR / XNOR AIL (`library.py`), optionally normalised: `kind` is the name."""
    base = kind.removesuffix("_norm")

    def emit(x: str, y: str, p: str, nodes: list[onnx.NodeProto],
             init: list[onnx.TensorProto]) -> str:
        zero = const(init, p + "_zero", np.array(0.0, np.float32))
        if base == "xnor_ail":
            nodes += [helper.make_node("Mul", [x, y], [p + "_xy"]),
                      helper.make_node("Sign", [p + "_xy"], [p + "_sign"]),
                      helper.make_node("Abs", [x], [p + "_ax"]),
                      helper.make_node("Abs", [y], [p + "_ay"]),
                      helper.make_node("Min", [p + "_ax", p + "_ay"], [p + "_m"]),
                      helper.make_node("Mul", [p + "_sign", p + "_m"], [p + "_f"])]
        else:
            side, pick = ("Less", "Min") if base == "and_ail" else ("Greater", "Max")
            nodes += [helper.make_node(side, [x, zero], [p + "_cx"]),
                      helper.make_node(side, [y, zero], [p + "_cy"]),
                      helper.make_node("And", [p + "_cx", p + "_cy"], [p + "_both"]),
                      helper.make_node("Add", [x, y], [p + "_sum"]),
                      helper.make_node(pick, [x, y], [p + "_pick"]),
                      helper.make_node("Where", [p + "_both", p + "_sum", p + "_pick"],
                                       [p + "_f"])]
        if kind == base:
            nodes.append(helper.make_node("Identity", [p + "_f"], [p]))
            return p
        mean, std = ail_moments(base)
        nodes += [helper.make_node("Sub", [p + "_f", const(init, p + "_mean", np.array(
                      mean, np.float32))], [p + "_c"]),
                  helper.make_node("Mul", [p + "_c", const(init, p + "_scale", np.array(
                      1.0 / std, np.float32))], [p])]
        return p

    return emit


RECIPES2: dict[str, _Emit2] = {name: _ail(name) for name in ACTIVATIONS
                               if ACTIVATIONS[name].arity == 2}


def const(init: list[onnx.TensorProto], name: str, value: np.ndarray) -> str:
    init.append(numpy_helper.from_array(value, name))
    return name


def standardised(x: str, scale: tuple[np.ndarray, np.ndarray] | None,
                 nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
    """The input `x` standardised by `scale` (mean, std) as `data.standardize` does it
    (float64, rounded once to float32); `x` itself without a scale."""
    if scale is None:
        return x
    mean = const(init, "input_mean", np.asarray(scale[0], np.float64))
    std = const(init, "input_std", np.asarray(scale[1], np.float64))
    nodes += [helper.make_node("Cast", [x], ["x64"], to=TensorProto.DOUBLE),
              helper.make_node("Sub", ["x64", mean], ["x_centred"]),
              helper.make_node("Div", ["x_centred", std], ["x_scaled"]),
              helper.make_node("Cast", ["x_scaled"], ["z"], to=TensorProto.FLOAT)]
    return "z"


BINARY_OPS = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "max": "Max", "min": "Min"}


def _expression(tree: Tree) -> _Emit:
    """The recipe of an evolved expression: its tree, operator by operator."""

    def emit(x: str, p: str, nodes: list[onnx.NodeProto], init: list[onnx.TensorProto]) -> str:
        def walk(t: Tree, at: str) -> str:
            head = t[0]
            if head == "x":
                return x
            if head == "const":
                return const(init, at, np.array(t[1], np.float32))
            args = [walk(c, f"{at}_{i}") for i, c in enumerate(t[1:])]
            if head in BINARY_OPS or head == "neg":
                nodes.append(helper.make_node(BINARY_OPS.get(head, "Neg"), args, [at]))
                return at
            return RECIPES[head](args[0], at, nodes, init)

        out = walk(tree, p + "_e")
        nodes.append(helper.make_node("Identity", [out], [p]))
        return p

    return emit


def recipe(name: str) -> _Emit:
    """The recipe of a library activation or an evolved expression."""
    return RECIPES[name] if name in RECIPES else _expression(parse(name))


def to_onnx(
    net: SparseNetwork,
    scale: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "evosparse",
    classes: list[Any] | None = None,
) -> onnx.ModelProto:
    """The ONNX model of a trained network; checked with the full ONNX checker.

    `scale` (mean, std) puts the search's input standardisation in front, computed as
    `data.standardize` does (float64, rounded once to float32), so the model takes
    features as the user's data holds them. `classes`, the labels in logit order, go into
    the model's metadata as JSON under the key `classes`.
    """
    nodes: list[onnx.NodeProto] = []
    init: list[onnx.TensorProto] = []
    h = standardised("x", scale, nodes, init)
    for k, lv in enumerate(net.levels):
        w = (lv.weight * lv.mask).detach().cpu().numpy().astype(np.float32)
        pre = f"l{k}_pre"
        nodes.append(helper.make_node("MatMul", [h, const(init, f"l{k}_weight_t", w.T.copy())],
                                      [pre if lv.bias is None else f"l{k}_mm"]))
        if lv.bias is not None:
            b = lv.bias.detach().cpu().numpy().astype(np.float32)
            nodes.append(helper.make_node("Add", [f"l{k}_mm", const(init, f"l{k}_bias", b)],
                                          [pre]))
        pre2 = None
        if lv.weight2 is not None:  # two-input units' second pre-activation
            pre2 = f"l{k}_pre2"
            w2 = lv.second_weight().detach().cpu().numpy().astype(np.float32)
            nodes.append(helper.make_node(
                "MatMul", [h, const(init, f"l{k}_weight2_t", w2.T.copy())],
                [pre2 if lv.bias2 is None else f"l{k}_mm2"]))
            if lv.bias2 is not None:
                b2 = lv.bias2.detach().cpu().numpy().astype(np.float32)
                nodes.append(helper.make_node("Add", [f"l{k}_mm2", const(init, f"l{k}_bias2",
                                                                          b2)], [pre2]))
        acts = np.asarray(lv.act_names)
        names = sorted(set(lv.act_names))

        def apply(a: str, x: str, y: str | None, p: str) -> str:
            return recipe(a)(x, p, nodes, init) if y is None or a not in RECIPES2 \
                else RECIPES2[a](x, y, p, nodes, init)

        if len(names) == 1:
            out = apply(names[0], pre, pre2, f"l{k}_act")
        else:
            parts = []
            for j, a in enumerate(names):
                idx = const(init, f"l{k}_g{j}_idx", np.flatnonzero(acts == a).astype(np.int64))
                nodes.append(helper.make_node("Gather", [pre, idx], [f"l{k}_g{j}_in"], axis=1))
                y = None
                if pre2 is not None and a in RECIPES2:
                    y = f"l{k}_g{j}_in2"
                    nodes.append(helper.make_node("Gather", [pre2, idx], [y], axis=1))
                parts.append(apply(a, f"l{k}_g{j}_in", y, f"l{k}_g{j}_out"))
            order = np.concatenate([np.flatnonzero(acts == a) for a in names])
            nodes.append(helper.make_node("Concat", parts, [f"l{k}_grouped"], axis=1))
            inverse = const(init, f"l{k}_inverse", np.argsort(order).astype(np.int64))
            out = f"l{k}_act"
            nodes.append(helper.make_node("Gather", [f"l{k}_grouped", inverse], [out], axis=1))
        nodes.append(helper.make_node("Concat", [h, out], [f"h{k + 1}"], axis=1))
        h = f"h{k + 1}"
    outputs = const(init, "output_columns", net._outputs.cpu().numpy().astype(np.int64))
    nodes.append(helper.make_node("Gather", [h, outputs], ["logits"], axis=1))
    n_out = len(net._outputs)
    return checked_model(nodes, init, name, (net.n_inputs, n_out), classes)


def checked_model(nodes: list[onnx.NodeProto], init: list[onnx.TensorProto], name: str,
                  sizes: tuple[int, int], classes: list[Any] | None) -> onnx.ModelProto:
    """The model of a graph from input `x` [batch, sizes[0]] to `logits` [batch, sizes[1]],
    with `classes` in its metadata; checked with the full ONNX checker."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[1]])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="evosparse")
    model.ir_version = IR_VERSION
    if classes is not None:
        helper.set_model_props(model, {"classes": json.dumps(list(classes))})
    onnx.checker.check_model(model, full_check=True)
    return model
