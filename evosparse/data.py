"""Datasets and their train / val / test splits: the only module that reads data.

Embedded data needs no download: scikit-learn's digits, MNIST-1D generated
locally with `mnist1d.data.make_dataset` (cached as .npz), XOR and n-bit parity.
A user's own data comes from a `.npz` (arrays `x`, `y`) or `.csv` file. Splits
are stratified and seeded by `dataset.split_seed`; standardisation is fitted on
the training split only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evosparse.errors import UserError
from evosparse.space import DatasetSpec


@dataclass(frozen=True)
class Task:
    """A classification task split three ways; picklable, numpy only."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    mean: np.ndarray | None = None
    """Per-feature mean and standard deviation (float64) of the training split that
    standardised x; None when the space turns standardisation off."""
    std: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def cache_dir() -> Path:
    """Where generated datasets are cached (`EVOSPARSE_CACHE` or ~/.cache/evosparse)."""
    return Path(os.environ.get("EVOSPARSE_CACHE", Path.home() / ".cache" / "evosparse"))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def _mnist1d(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D generated locally (never downloaded), cached by its arguments."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = samples
    key = hashlib.sha256(
        json.dumps({k: v for k, v in vars(args).items() if k != "url"}, sort_keys=True).encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return f["x"], f["y"]
    data = make_dataset(args)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
    return x, y


def _parity(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2**bits inputs in {-1, 1}; label is the parity of the ones (XOR for 2 bits)."""
    rows = np.array(list(itertools.product((0, 1), repeat=bits)), dtype=np.int64)
    return (2.0 * rows - 1.0).astype(np.float32), rows.sum(axis=1) % 2


def _read_file(path: Path, label_column: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UserError(f"dataset file not found: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                missing = {"x", "y"} - set(f.files)
                if missing:
                    raise UserError(f"{path}: missing array(s) {sorted(missing)}; need 'x' and 'y'")
                x, y = f["x"], f["y"]
        elif path.suffix == ".csv":
            table = np.genfromtxt(path, delimiter=",", dtype=np.float64)
            if table.ndim != 2:
                raise UserError(f"{path}: expected a table with a header-free row per sample")
            y = table[:, label_column]
            x = np.delete(table, label_column % table.shape[1], axis=1)
        else:
            raise UserError(f"{path}: unsupported dataset format {path.suffix!r}; use .npz or .csv")
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: cannot read dataset: {exc}") from None
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise UserError(f"{path}: x must be 2-D (samples, features), got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise UserError(
            f"{path}: {bad.sum()} NaN/inf value(s) in the features, first at row {rows[0]}, "
            f"column {cols[0]}"
        )
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (x.shape[0],) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise UserError(f"{path}: labels must be one integer per sample (shape {x.shape[0]})")
    if y.min() < 0:
        raise UserError(f"{path}: labels must be 0..n_classes-1, found {int(y.min())}")
    return x.astype(np.float32), y.astype(np.int64)


def _split(
    y: np.ndarray, val: float, test: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded index split into train / val / test."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test * len(idx)))
        n_val = int(round(val * len(idx)))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def _raw(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a named or file dataset, before splitting."""
    if spec.name == "digits":
        return _digits()
    if spec.name == "mnist1d":
        return _mnist1d(spec.mnist1d_samples)
    assert spec.path is not None
    return _read_file(spec.path, spec.label_column)


def load_task(spec: DatasetSpec) -> Task:
    """Load and split the dataset a space names; raises `UserError` on bad data."""
    if spec.name in ("xor", "parity"):
        # Boolean functions: every input is a test case, so all three splits are the full table.
        x, y = _parity(2 if spec.name == "xor" else spec.parity_bits)
        return Task(spec.name, x, y, x, y, x, y, n_classes=2)
    x, y = _raw(spec)
    train, val, test = _split(y, spec.val_fraction, spec.test_fraction, spec.split_seed)
    if min(len(train), len(val), len(test)) == 0:
        raise UserError(f"dataset {spec.name!r}: too few samples ({len(y)}) for the split")
    mean = std = None
    if spec.standardize:
        mean = x[train].astype(np.float64).mean(axis=0)
        std = x[train].astype(np.float64).std(axis=0)
        std[std == 0] = 1.0
        x = standardize(x, mean, std)
    n_classes = int(y.max()) + 1
    return Task(spec.name, x[train], y[train], x[val], y[val], x[test], y[test], n_classes,
                mean, std)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std in float64, rounded once to float32: the exported models do the same."""
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def load_raw_test(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The test split as the user's data holds it (not standardised): what exported models take."""
    if spec.name in ("xor", "parity"):
        return _parity(2 if spec.name == "xor" else spec.parity_bits)
    x, y = _raw(spec)
    _, _, test = _split(y, spec.val_fraction, spec.test_fraction, spec.split_seed)
    return x[test], y[test]
