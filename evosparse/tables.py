"""A user's own data: `.npz` and `.csv` files to checked features and class labels.

Labels may be integers or strings; the classes are their sorted unique values and a
sample's class index is its label's position among them, so memory never depends on
the label values. CSV files may have a header row (detected, or `header: true|false`),
and the label column is named by header name or index. Read with numpy and the
standard library only. Every problem is one `UserError` naming the file (and the row
and column where there is one).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from evosparse.errors import UserError

Label = int | str | bool
"""A class label as the user's data holds it (JSON-friendly)."""


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _has_header(rows: list[list[str]]) -> bool:
    """A first row is a header when some column holds text there and a number below it."""
    if len(rows) < 2:
        return not all(_is_number(c) for c in rows[0])
    return any(not _is_number(a) and _is_number(b) for a, b in zip(rows[0], rows[1], strict=False))


def _label_index(label_column: int | str, names: list[str] | None, width: int,
                 source: str) -> int:
    """The label column's index from an index (negative counts from the end) or a name."""
    if isinstance(label_column, str):
        if names is None:
            raise UserError(f"{source}: label_column {label_column!r} is a name, but the file "
                            "has no header row (set header: true, or give the column's index)")
        if label_column not in names:
            raise UserError(f"{source}: label_column {label_column!r} is not in the header "
                            f"({', '.join(names)})")
        return names.index(label_column)
    if not -width <= label_column < width:
        raise UserError(f"{source}: label_column {label_column} is out of range for a file "
                        f"with {width} columns")
    return label_column % width


def read_csv(path: Path, label_column: int | str, header: bool | None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Numeric features and raw labels (strings) of a CSV file; `header` None detects it."""
    source = str(path)
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{source}: cannot read CSV: {exc}") from None
    if not rows:
        raise UserError(f"{source}: the file holds no rows")
    if header is None:
        header = isinstance(label_column, str) or _has_header(rows)
    names = [c.strip() for c in rows[0]] if header else None
    first_line = 2 if header else 1
    body = rows[1:] if header else rows
    width = len(rows[0])
    if width < 2:
        raise UserError(f"{source}: expected at least two columns (features and a label), "
                        f"found {width}")
    label = _label_index(label_column, names, width, source)
    features = [j for j in range(width) if j != label]
    x = np.empty((len(body), len(features)), dtype=np.float64)
    y = []
    for i, row in enumerate(body):
        if len(row) != width:
            raise UserError(f"{source}: row {i + first_line} has {len(row)} columns, "
                            f"expected {width}")
        for k, j in enumerate(features):
            try:
                x[i, k] = float(row[j])
            except ValueError:
                column = f"column {j}" + (f" ({names[j]!r})" if names else "")
                raise UserError(f"{source}: row {i + first_line}, {column}: {row[j]!r} is not a "
                                "number (features must be numeric)") from None
        y.append(row[label].strip())
    return x, _numeric_if_possible(np.asarray(y, dtype=str))


def _numeric_if_possible(labels: np.ndarray) -> np.ndarray:
    """CSV labels as numbers when every one is a number ("1" and "1.0" are class 1)."""
    if labels.size and all(_is_number(v) for v in labels):
        return labels.astype(np.float64)
    return labels


def read_npz(path: Path) -> tuple[Any, Any]:
    """The `x` and `y` arrays of a `.npz` file (never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"x", "y"} - set(f.files)
            if missing:
                raise UserError(f"{path}: missing array(s) {sorted(missing)}; need 'x' and 'y'")
            return f["x"], f["y"]
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read dataset: {exc}") from None


def check_features(x: Any, source: str) -> np.ndarray:
    """Features as a finite 2-D float32 array with at least one sample; signals (samples,
    channels, length) and images (samples, [channels,] height, width) are flattened (the
    conv families read their shape back, see `families.family_of`)."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{source}: features must be numeric ({exc})") from None
    if not 2 <= x.ndim <= 4:
        raise UserError(f"{source}: x must be (samples, features), or for signals and images "
                        f"(samples, channels, length) or (samples, channels, height, width); got "
                        f"shape {x.shape}")
    if x.size == 0:
        raise UserError(f"{source}: the dataset is empty (x has shape {x.shape})")
    x = x.reshape(x.shape[0], -1)
    bad = ~np.isfinite(x)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise UserError(f"{source}: {bad.sum()} NaN/inf value(s) in the features, first at row "
                        f"{rows[0]}, column {cols[0]}")
    return x.astype(np.float32)


def encode_labels(y: Any, n_samples: int, source: str) -> tuple[np.ndarray, tuple[Label, ...]]:
    """Class indices (int64) and the sorted classes of raw labels (integers or strings)."""
    y = np.asarray(y)
    if y.shape != (n_samples,):
        raise UserError(f"{source}: labels must be one per sample (shape ({n_samples},)), "
                        f"got shape {y.shape}")
    if y.dtype.kind == "O":
        if all(isinstance(v, str) for v in y):
            y = y.astype(str)
        elif all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in y):
            y = y.astype(np.int64)
        else:
            raise UserError(f"{source}: labels must be all integers or all strings")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise UserError(f"{source}: label at row {bad[0]} is {y[bad[0]]} "
                            f"({bad.size} non-finite label(s))")
        frac = np.flatnonzero(y != np.round(y))
        if frac.size:
            raise UserError(f"{source}: label at row {frac[0]} is {y[frac[0]]}: class labels "
                            "must be integers or strings (is this a regression target?)")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iubUS":
        raise UserError(f"{source}: labels of type {y.dtype} are not supported; use integers "
                        "or strings")
    if y.dtype.kind == "S":
        y = y.astype(str)
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise UserError(f"{source}: every label is {classes[0].item()!r}: a classifier needs at "
                        "least two classes")
    return index.astype(np.int64), tuple(c.item() for c in classes)
