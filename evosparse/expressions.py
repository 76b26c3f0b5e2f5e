"""Evolved activation functions: small expression trees over x, stored as readable text.

An expression such as `relu(x) * tanh(x)` or `max(x, sin(x)) + 0.5` combines the
variable `x`, numeric constants, the single-input library functions
(`library.py`) and `neg`, and the binary operators `+ - * /` and `max`,
`min`. Its canonical text (`to_text`) is the activation name a genome stores, so
checkpoints, genome files and exports hold it as a plain string, never a pickle;
`parse` reads it back (Python's `ast`, a whitelist of node types: no code runs).

Cost in FLOPs per element: each binary operator or `neg` 1, each library
function its library cost. Random expressions (`random_expression`,
`mutate_expression`) take an explicit numpy Generator; they are kept only if
finite on a probe grid (`is_finite`). An expression that still overflows on
real data makes the training loss non-finite, and the candidate is recorded as
failed (status `nan`) and never selected.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from evosparse.library import ACTIVATIONS, library_function

MAX_LENGTH = 64
"""Longest expression text: genomes store activation names as 64-character strings."""

BINARY = ("+", "-", "*", "/", "max", "min")
INFIX = {"+": (1, ast.Add), "-": (1, ast.Sub), "*": (2, ast.Mult), "/": (2, ast.Div)}
"""Infix operators: precedence and their `ast` node."""
CONSTANTS = (0.5, 1.0, 2.0)
"""Constants random expressions draw from."""

Tree = tuple[Any, ...]
"""("x",) | ("const", value) | (function, child) | (operator, left, right)."""


@functools.cache
def unary_names() -> tuple[str, ...]:
    """Functions of one argument an expression may call."""
    return tuple(sorted([n for n, a in ACTIVATIONS.items() if n != "identity" and a.arity == 1]
                        + ["neg"]))


def parse(text: str) -> Tree:
    """The tree of an expression's text; `ValueError` says what is not allowed."""
    try:
        body = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"{text!r} is not an expression ({exc.msg})") from None
    return _tree(body, text)


def _tree(node: ast.AST, text: str) -> Tree:
    if isinstance(node, ast.Name) and node.id == "x":
        return ("x",)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool) and math.isfinite(node.value):
        return ("const", float(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _tree(node.operand, text)
        return ("const", -inner[1]) if inner[0] == "const" else ("neg", inner)
    if isinstance(node, ast.BinOp):
        for op, (_, kind) in INFIX.items():
            if isinstance(node.op, kind):
                return (op, _tree(node.left, text), _tree(node.right, text))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name, args = node.func.id, node.args
        if name in ("max", "min") and len(args) == 2:
            return (name, _tree(args[0], text), _tree(args[1], text))
        if name in unary_names() and len(args) == 1:
            return (name, _tree(args[0], text))
    raise ValueError(f"{text!r}: {ast.unparse(node)!r} is not allowed (use x, numbers, "
                     f"+ - * /, max(a, b), min(a, b) and {', '.join(unary_names())})")


def to_text(tree: Tree, parent: int = 0) -> str:
    """Canonical readable text, with only the parentheses precedence needs."""
    head = tree[0]
    if head == "x":
        return "x"
    if head == "const":
        return repr(tree[1]) if tree[1] >= 0 or parent == 0 else f"({tree[1]!r})"
    if head in INFIX:
        level = INFIX[head][0]
        # a right operand of the same precedence keeps its parentheses: a - (b - c), and
        # a + (b + c), so that the text parses back to the very same tree
        text = f"{to_text(tree[1], level)} {head} {to_text(tree[2], level + 1)}"
        return f"({text})" if level < parent else text
    return f"{head}({', '.join(to_text(t) for t in tree[1:])})"


def simplify(tree: Tree) -> Tree:
    """The tree with constant parts folded (to 4 significant digits) and `max(a, a)`,
    `min(a, a)`, `a * 1`, `1 * a`, `a / 1`, `a + 0`, `0 + a`, `a - 0` reduced, bottom up
    (so it is idempotent)."""
    if tree[0] in ("x", "const"):
        return tree
    args = tuple(simplify(t) for t in tree[1:])
    head = tree[0]
    if all(a[0] == "const" for a in args):
        import torch  # lazily: genome-side modules import no torch

        value = float(_torch_tree((head, *args))(torch.zeros((), dtype=torch.float64)))
        if math.isfinite(value):  # four significant digits keep the text short and readable
            return ("const", float(f"{value:.4g}"))
    if head in ("max", "min") and args[0] == args[1]:
        return args[0]
    one, zero = ("const", 1.0), ("const", 0.0)
    if (head == "*" and args[1] == one) or (head == "/" and args[1] == one) \
            or (head in ("+", "-") and args[1] == zero):
        return args[0]
    if (head == "*" and args[0] == one) or (head == "+" and args[0] == zero):
        return args[1]
    return (head, *args)


def name_of(tree: Tree) -> str:
    """The activation name of a tree, simplified: a library name for `f(x)` and `x`
    (identity), else the canonical text, so one function never goes by two names."""
    tree = simplify(tree)
    if tree == ("x",):
        return "identity"
    if len(tree) == 2 and tree[1] == ("x",) and tree[0] in ACTIVATIONS:
        return str(tree[0])
    return to_text(tree)


def tree_of(name: str) -> Tree:
    """The tree of an activation name: `f(x)` for a library name, else its parse."""
    if name == "identity":
        return ("x",)
    return (name, ("x",)) if name in ACTIVATIONS else parse(name)


def canonical(text: str) -> str:
    """The canonical name of a library name or an expression (`ValueError` as `parse`)."""
    return name_of(tree_of(text.strip()))


def cost(tree: Tree) -> int:
    """FLOPs per element (see the module docstring)."""
    head = tree[0]
    if head in ("x", "const"):
        return 0
    own = 1 if head in BINARY or head == "neg" else ACTIVATIONS[head].cost
    return own + sum(cost(t) for t in tree[1:])


def uses_x(tree: Tree) -> bool:
    """True when the variable x occurs in the tree (an expression without it is constant)."""
    return tree[0] == "x" or (tree[0] != "const" and any(uses_x(t) for t in tree[1:]))


def depth(tree: Tree) -> int:
    """Operators on the longest path from the root to a leaf."""
    return 0 if tree[0] in ("x", "const") else 1 + max(depth(t) for t in tree[1:])


@functools.lru_cache(maxsize=4096)
def torch_function(text: str) -> Callable[[Any], Any]:
    """The expression as an elementwise torch function (vectorised; no Python loop)."""
    return _torch_tree(tree_of(text))


def _torch_tree(tree: Tree) -> Callable[[Any], Any]:
    import torch  # lazily: genome-side modules import no torch

    ops: dict[str, Callable[..., Any]] = {"+": torch.add, "-": torch.sub, "*": torch.mul,
                                         "/": torch.div, "max": torch.maximum,
                                         "min": torch.minimum, "neg": torch.neg}

    def build(tree: Tree) -> Callable[[Any], Any]:
        head = tree[0]
        if head == "x":
            return lambda x: x
        if head == "const":
            value = tree[1]
            return lambda x: torch.full_like(x, value)
        fn = ops.get(head) or library_function(head)
        parts = [build(t) for t in tree[1:]]
        if len(parts) == 1:
            return lambda x: fn(parts[0](x))
        return lambda x: fn(parts[0](x), parts[1](x))

    return build(tree)


PROBE = np.concatenate([np.linspace(-50.0, 50.0, 1001), [0.0, 1e-7, -1e-7]]).astype(np.float32)
"""Inputs a random expression must map to finite values before it is used."""


def is_finite(text: str) -> bool:
    """True when the expression is finite on every `PROBE` input (and its gradient too)."""
    import torch

    x = torch.from_numpy(PROBE).requires_grad_(True)
    y = torch_function(text)(x)
    (grad,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    return bool(torch.isfinite(y).all()) and (grad is None or bool(torch.isfinite(grad).all()))


def _random_tree(rng: np.random.Generator, unary: tuple[str, ...], levels: int) -> Tree:
    """A random tree with at most `levels` operators on any path (grow method)."""
    if levels == 0 or rng.random() < 0.3:
        return ("x",) if rng.random() < 0.8 else ("const", float(rng.choice(CONSTANTS)))
    if rng.random() < 0.5:
        return (str(rng.choice(unary)), _random_tree(rng, unary, levels - 1))
    return (str(rng.choice(BINARY)), _random_tree(rng, unary, levels - 1),
            _random_tree(rng, unary, levels - 1))


def _usable(tree: Tree) -> str | None:
    """The tree's text if it uses x, fits `MAX_LENGTH` and is finite on the probe."""
    text = name_of(tree)
    if not uses_x(tree_of(text)) or len(text) > MAX_LENGTH or not is_finite(text):
        return None
    return text


ATTEMPTS = 32


def random_expression(rng: np.random.Generator, unary: tuple[str, ...], max_depth: int) -> str:
    """A random usable expression of at most `max_depth` operators deep (falls back to
    `relu(x)` only if `ATTEMPTS` draws all fail)."""
    for _ in range(ATTEMPTS):
        text = _usable(_random_tree(rng, unary, max_depth))
        if text is not None and text != "identity":
            return text
    return "relu(x)"


def _subtrees(tree: Tree, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [path]
    if tree[0] not in ("x", "const"):
        for i, t in enumerate(tree[1:], start=1):
            out += _subtrees(t, (*path, i))
    return out


def _replace(tree: Tree, path: tuple[int, ...], new: Tree) -> Tree:
    if not path:
        return new
    i = path[0]
    return (*tree[:i], _replace(tree[i], path[1:], new), *tree[i + 1:])


def mutate_expression(text: str, rng: np.random.Generator, unary: tuple[str, ...],
                      max_depth: int) -> str:
    """`text` with one random subtree replaced by a random one, within `max_depth`; a
    library name counts as the expression `name(x)`."""
    if text in ACTIVATIONS and ACTIVATIONS[text].arity == 2:  # a two-input unit: start afresh
        return random_expression(rng, unary, max_depth)
    tree = tree_of(text)
    paths = _subtrees(tree)
    for _ in range(ATTEMPTS):
        path = paths[int(rng.integers(len(paths)))]
        new = _replace(tree, path, _random_tree(rng, unary, max(max_depth - len(path), 0)))
        candidate = _usable(new) if depth(new) <= max_depth else None
        if candidate is not None and candidate not in (text, "identity"):
            return candidate
    return random_expression(rng, unary, max_depth)
