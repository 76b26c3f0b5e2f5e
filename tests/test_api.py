"""The Python API as a notebook user calls it: search, resume, open_run, and the
scikit-learn estimator."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import check_estimator

import evosparse
from evosparse import EvoSparseClassifier, UserError
from evosparse.cli import main
from tests.conftest import TINY, deep_update
from tests.conftest import evosparse as cli

SMALL = deep_update(TINY, {"population": 4, "generations": 2,
                           "objectives": {"reference_flops": 300}})


def _iris() -> tuple[np.ndarray, np.ndarray]:
    d = load_iris()
    return d.data, d.target_names[d.target]


def test_search_on_arrays_saves_them_and_resumes_like_a_cli_run(tmp_path: Path) -> None:
    x, y = _iris()
    runs = tmp_path / "runs"
    result = evosparse.search(SMALL, data=(x, y), runs_dir=runs, name="a", progress=False,
                              generations=1)
    assert result.generation == 1 and result.classes == ["setosa", "versicolor", "virginica"]
    with np.load(result.path / "data.npz", allow_pickle=False) as f:
        assert np.allclose(f["x"], x) and np.array_equal(f["y"], y)
    out = cli("resume", str(result.path), "--generations", "2")
    assert out.returncode == 0, out.stderr
    straight = evosparse.search(SMALL, data=(x, y), runs_dir=runs, name="b", progress=False)
    resumed = evosparse.open_run(result.path)
    assert resumed.generation == straight.generation == 2
    assert [c.summary() for c in resumed.front] == [c.summary() for c in straight.front]
    status = json.loads(cli("status", str(result.path), "--json").stdout)
    assert status == json.loads(json.dumps(resumed.status()))
    read, write = os.pipe()
    os.close(read)  # a reader that left early (`| head`): printing raises BrokenPipeError
    with os.fdopen(write, "w") as closed, contextlib.redirect_stdout(closed):
        assert main(["status", str(result.path), "--json"]) == 141


def test_result_best_model_export_and_report(tmp_path: Path) -> None:
    x, y = _iris()
    result = evosparse.search(SMALL, data=(x, y), runs_dir=tmp_path, progress=False)
    best = result.best()
    assert best.val_accuracy == max(c.val_accuracy for c in result.front)
    cheapest = result.best(f"min-accuracy={best.val_accuracy}")
    assert cheapest.flops == min(c.flops for c in result.front
                                 if c.val_accuracy >= best.val_accuracy)
    assert result.best("max-flops=1e9") == best
    model = result.model()
    assert set(model.predict(x)) <= set(y)
    proba = model.predict_proba(x)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(pickle.loads(pickle.dumps(model)).predict(x), model.predict(x))
    (folder,) = result.export(select="best-accuracy", out=tmp_path / "ex")
    assert folder.name == str(best.genome_id)
    assert np.array_equal(evosparse.load(folder).predict(x), model.predict(x))
    assert result.report().is_file()
    more = evosparse.resume(result.path, generations=3, progress=False)
    assert more.generation == 3 and more.evaluations == 4 * 4


def test_api_bad_input_is_a_user_error_and_writes_nothing(tmp_path: Path) -> None:
    x, y = _iris()
    for data, needle in [((x[:0], y[:0]), "empty"), ((x, np.zeros(150)), "two classes"),
                         ((x, y[:10]), "one per sample"), ((x,), r"\(X, y\) pair")]:
        with pytest.raises(UserError, match=needle):
            evosparse.search(SMALL, data=data, runs_dir=tmp_path / "runs", progress=False)
    with pytest.raises(UserError, match="population"):
        evosparse.search(SMALL, data=(x, y), runs_dir=tmp_path / "runs", population=1)
    assert not (tmp_path / "runs").exists()


def test_classifier_in_cross_val_score_and_a_pipeline_on_wine() -> None:
    x, y = load_wine(return_X_y=True)
    clf = EvoSparseClassifier(generations=3, population=8)
    assert cross_val_score(clf, x, y, cv=3).mean() > 0.85
    pipe = make_pipeline(MinMaxScaler(), clone(clf).set_params(seed=1))
    assert pipe.fit(x, y).score(x, y) > 0.85
    assert pipe[-1].get_params()["seed"] == 1


def test_classifier_keeps_string_labels_and_the_chosen_member(tmp_path: Path) -> None:
    x, y = _iris()
    clf = EvoSparseClassifier(generations=2, population=6, runs_dir=tmp_path).fit(x, y)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(x)) <= set(clf.classes_)
    assert clf.best_["val_accuracy"] == max(m["val_accuracy"] for m in clf.front_)
    assert clf.run_dir_ == tmp_path / "fit-0" and (clf.run_dir_ / "data.npz").is_file()
    cheap = EvoSparseClassifier(generations=2, population=6, select="max-flops=1").fit
    with pytest.raises(ValueError, match="matches no front member"):
        cheap(x, y)


@pytest.mark.slow
def test_classifier_passes_scikit_learns_estimator_checks() -> None:
    results = check_estimator(EvoSparseClassifier(generations=3, population=8), on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    # check_array_api_input needs SCIPY_ARRAY_API and an array-API library: the estimator
    # converts every input to numpy, so it does not apply
    assert skipped <= {"check_array_api_input"}
    assert len(results) - len(skipped) >= 50
