"""`EvoSparseClassifier`: a search behind scikit-learn's estimator interface.

`fit` runs a search on (X, y) (through `api.search`, so on the same code path as the
CLI) and keeps one front member, chosen on validation accuracy by `select`; `predict`
and `predict_proba` run that network. Its parameters are the space's main knobs;
`space=` takes a full search space (path, dict or `SearchSpace`) whose dataset is
replaced by X and y. Labels may be integers or strings: `classes_` holds them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from evosparse.api import search
from evosparse.errors import UserError
from evosparse.space import SearchSpace

DEFAULT_SPACE: dict[str, Any] = {
    "name": "fit",
    "dataset": {"name": "file", "path": "data.npz", "standardize": True},
    "network": {"topology": "layered", "max_levels": 1, "initial_density": 0.3},
    "activations": {"hidden": ["relu", "tanh", "sigmoid", "identity"], "initial": "relu"},
    "mutation": {"crossover": 0.5, "add_connection": 0.7, "add_connection_max": 64,
                 "add_node": 0.7, "add_node_max": 8, "add_node_fan_in": 48,
                 "remove_connection": 0.2, "remove_connection_max": 16,
                 "change_activation": 0.1},
    "training": {"batch_size": 64, "optimizer": "adam", "lr": 0.01,
                 "inheritance": "lamarckian"},
    "objectives": {"reference_flops": 10000},
    "evaluation": {"threads": 1},
}
"""The shipped digits space's settings (`search_spaces/digits.yaml`), without its data."""


class EvoSparseClassifier(ClassifierMixin, BaseEstimator):
    """A sparse network found by evosparse, as a scikit-learn classifier.

    Parameters: `generations`, `population`, `epochs` (training budget of each candidate),
    `max_hidden` (hidden nodes at most), `val_fraction` and `test_fraction` (the search's
    own split of the data `fit` gets), `select` (which front member to keep: best-accuracy,
    max-flops=X, min-accuracy=Y), `seed`, `device`, `space` (a full search space; the
    knobs above override it where set), `runs_dir` (keep each fit's run directory there;
    default: a temporary one, deleted after `fit`) and `progress`.

    Fitted attributes: `classes_`, `n_features_in_`, `front_` (the front's members as
    dicts, best accuracy first), `best_` (the kept member), `model_` (its network) and
    `run_dir_` (None without `runs_dir`).
    """

    def __init__(
        self,
        generations: int = 10,
        population: int = 16,
        epochs: int | None = 5,
        max_hidden: int | None = 64,
        val_fraction: float = 0.2,
        test_fraction: float = 0.1,
        select: str = "best-accuracy",
        seed: int = 0,
        device: str = "cpu",
        space: str | Path | dict[str, Any] | SearchSpace | None = None,
        runs_dir: str | Path | None = None,
        progress: bool = False,
    ) -> None:
        self.generations = generations
        self.population = population
        self.epochs = epochs
        self.max_hidden = max_hidden
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.select = select
        self.seed = seed
        self.device = device
        self.space = space
        self.runs_dir = runs_dir
        self.progress = progress

    def _overrides(self, n_features: int, n_classes: int) -> dict[str, Any]:
        """The space keys this estimator's parameters set."""
        out: dict[str, Any] = {
            "generations": self.generations, "population": self.population, "seed": self.seed,
            "dataset": {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction},
            "evaluation": {"device": self.device},
        }
        if self.epochs is not None:
            out["training"] = {"epochs": self.epochs}
        if self.max_hidden is not None:
            out["network"] = {"max_hidden": self.max_hidden}
        if self.space is None:  # the reference point: a dense one-hidden-layer MLP's FLOPs
            hidden = self.max_hidden or 64
            out["objectives"] = {"reference_flops": 2 * hidden * (n_features + n_classes)}
        return out

    def fit(self, X: Any, y: Any) -> EvoSparseClassifier:
        """Run a search on (X, y) and keep the front member `select` chooses."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y holds 1 class ({classes[0]!r}): a classifier needs at least two")
        space = DEFAULT_SPACE if self.space is None else self.space
        overrides = self._overrides(X.shape[1], len(classes))
        try:
            if self.runs_dir is None:
                with tempfile.TemporaryDirectory(prefix="evosparse-fit-") as tmp:
                    self._search(space, X, y, Path(tmp), overrides)
                self.run_dir_ = None
            else:
                self.run_dir_ = self._search(space, X, y, Path(self.runs_dir), overrides)
        except UserError as exc:  # scikit-learn's convention for bad input
            raise ValueError(str(exc)) from None
        self.classes_ = classes
        return self

    def _search(self, space: Any, X: np.ndarray, y: np.ndarray, runs_dir: Path,
                overrides: dict[str, Any]) -> Path:
        """Search, keep the chosen member's network and the front; the run's path."""
        k = 0
        while (runs_dir / f"fit-{k}").exists():
            k += 1
        result = search(space, data=(X, y), runs_dir=runs_dir, name=f"fit-{k}",
                        progress=self.progress, **overrides)
        chosen = result.best(self.select)
        self.model_ = result.model(chosen)
        self.front_ = [c.summary() for c in result.front]
        self.best_ = chosen.summary()
        return result.path

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the logits), columns in `classes_` order."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each sample."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.classes_[self.model_.predict_index(X)]
