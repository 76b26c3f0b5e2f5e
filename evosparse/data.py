"""Datasets and their train / val / test splits: the only module that reads data.

Embedded data needs no download: scikit-learn's digits, MNIST-1D generated
locally with `mnist1d.data.make_dataset` (cached as .npz), XOR and n-bit parity.
A user's own data comes from a `.npz` (arrays `x`, `y`) or `.csv` file (`tables.py`);
its labels (integers or strings) become class indices in sorted order. Splits
are stratified and seeded by `dataset.split_seed`; standardisation is fitted on
the training split only.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evosparse.errors import UserError
from evosparse.space import DatasetSpec
from evosparse.tables import Label, check_features, encode_labels, read_csv, read_npz


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
    classes: tuple[Label, ...] = ()
    """The labels as the user's data holds them, in logit order (class i is classes[i]);
    empty means 0..n_classes-1."""
    sample_shape: tuple[int, ...] = ()
    """One sample's shape as the data holds it (x is always flat: [samples, features])."""

    @property
    def labels(self) -> list[Label]:
        """The class labels in logit order."""
        return list(self.classes) or list(range(self.n_classes))

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def with_val_in_train(self) -> Task:
        """The task whose training split also holds the validation samples: what a refit
        after a search trains on (`training.refit_epochs`, and the baselines' refits)."""
        return replace(self, x_train=np.concatenate([self.x_train, self.x_val]),
                       y_train=np.concatenate([self.y_train, self.y_val]))


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


def _read_file(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features and raw labels of a user's `.npz` or `.csv` file."""
    path = spec.path
    assert path is not None
    if not path.is_file():
        raise UserError(f"dataset file not found: {path}")
    if path.suffix == ".npz":
        return read_npz(path)
    if path.suffix == ".csv":
        return read_csv(path, spec.label_column, spec.header)
    raise UserError(f"{path}: unsupported dataset format {path.suffix!r}; use .npz or .csv")


def checked(x: Any, y: Any, source: str) -> tuple[np.ndarray, np.ndarray, tuple[Label, ...]]:
    """Features (float32), class indices and classes of raw data; `UserError` naming
    `source` when the data cannot train a classifier."""
    features = check_features(x, source)
    index, classes = encode_labels(y, features.shape[0], source)
    return features, index, classes


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
    for k, fraction in ((2, test), (1, val)):  # small data: a split that rounded to nothing
        train = parts[0]                          # takes a training sample
        if fraction and not sum(map(len, parts[k])) and max(map(len, train)) > 1:
            c = int(np.argmax([len(t) for t in train]))
            parts[k].append(train[c][:1])
            train[c] = train[c][1:]
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


MNIST1D_TRAIN_SPLIT = 0.8
"""The share of `make_dataset`'s samples that are its training split (its `train_split`)."""


def _indices(spec: DatasetSpec, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / val / test indices: stratified and seeded, or with `split: standard` the
    MNIST-1D package's own test split (its last samples) and validation carved from its
    training split, so test accuracies compare with the MNIST-1D paper's."""
    if spec.split == "stratified":
        return _split(y, spec.val_fraction, spec.test_fraction, spec.split_seed)
    n_train = int(len(y) * MNIST1D_TRAIN_SPLIT)
    train, val, _ = _split(y[:n_train], spec.val_fraction, 0.0, spec.split_seed)
    return train, val, np.arange(n_train, len(y))


def _raw(spec: DatasetSpec
         ) -> tuple[np.ndarray, np.ndarray, tuple[Label, ...], tuple[int, ...]]:
    """Features (flat), class indices, classes and one sample's shape of a named or file
    dataset, before splitting."""
    if spec.name == "digits":
        x, y = _digits()
    elif spec.name == "mnist1d":
        x, y = _mnist1d(spec.mnist1d_samples)
    else:
        raw_x, raw_y = _read_file(spec)
        return (*checked(raw_x, raw_y, str(spec.path)), tuple(np.shape(raw_x)[1:]))
    return x, y, tuple(range(int(y.max()) + 1)), x.shape[1:]


def load_task(spec: DatasetSpec) -> Task:
    """Load and split the dataset a space names; raises `UserError` on bad data."""
    if spec.name in ("xor", "parity"):
        # Boolean functions: every input is a test case, so all three splits are the full table.
        x, y = _parity(2 if spec.name == "xor" else spec.parity_bits)
        return Task(spec.name, x, y, x, y, x, y, n_classes=2, classes=(0, 1))
    x, y, classes, shape = _raw(spec)
    train, val, test = _indices(spec, y)
    if min(len(train), len(val), len(test)) == 0:
        source = spec.path if spec.name == "file" else repr(spec.name)
        raise UserError(f"dataset {source}: too few samples ({len(y)}) for the split")
    mean = std = None
    if spec.standardize:
        mean = x[train].astype(np.float64).mean(axis=0)
        std = x[train].astype(np.float64).std(axis=0)
        std[std == 0] = 1.0
        x = standardize(x, mean, std)
    return Task(spec.name, x[train], y[train], x[val], y[val], x[test], y[test], len(classes),
                mean, std, classes, shape)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std in float64, rounded once to float32: the exported models do the same."""
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def load_raw_test(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The test split as the user's data holds it (not standardised): what exported models
    take, with its class indices."""
    if spec.name in ("xor", "parity"):
        return _parity(2 if spec.name == "xor" else spec.parity_bits)
    x, y, _, _ = _raw(spec)
    _, _, test = _indices(spec, y)
    return x[test], y[test]
