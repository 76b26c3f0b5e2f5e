"""Datasets: deterministic stratified splits, train-only standardisation, user files, bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.space import DatasetSpec


def test_digits_split_is_deterministic_disjoint_and_standardised_on_train() -> None:
    a = load_task(DatasetSpec(name="digits"))
    b = load_task(DatasetSpec(name="digits"))
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.y_test, b.y_test)
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert a.n_features == 64 and a.n_classes == 10
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0.0, atol=1e-4)
    assert abs(float(a.x_test.mean())) > 1e-4  # test rows were not used to fit the scaler
    rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in rows for r in a.x_test[:50])
    c = load_task(DatasetSpec(name="digits", split_seed=1))
    assert not np.array_equal(a.y_val, c.y_val)


def test_xor_is_the_truth_table() -> None:
    t = load_task(DatasetSpec(name="xor"))
    assert t.x_train.shape == (4, 2)
    assert t.y_train.tolist() == [0, 1, 1, 0]


def test_mnist1d_is_generated_locally_and_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVOSPARSE_CACHE", str(tmp_path))
    spec = DatasetSpec(name="mnist1d", mnist1d_samples=500)
    t = load_task(spec)
    assert t.n_features == 40 and t.n_classes == 10
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1
    assert np.array_equal(load_task(spec).x_train, t.x_train)


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    np.savetxt(path, np.column_stack([x, y]), delimiter=",")


def test_user_npz_and_csv(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] > 0).astype(int)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    _write_csv(tmp_path / "d.csv", x, y)
    a = load_task(DatasetSpec(name="file", path=tmp_path / "d.npz"))
    b = load_task(DatasetSpec(name="file", path=tmp_path / "d.csv"))
    assert a.n_features == 5 and a.n_classes == 2
    np.testing.assert_allclose(a.x_train, b.x_train, rtol=1e-5)


def test_nan_in_data_names_the_file_and_position(tmp_path) -> None:
    x = np.ones((50, 3))
    x[7, 2] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(50, dtype=int))
    with pytest.raises(UserError, match=r"d\.npz: 1 NaN/inf value\(s\).*row 7, column 2"):
        load_task(DatasetSpec(name="file", path=tmp_path / "d.npz"))


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(UserError, match="dataset file not found"):
        load_task(DatasetSpec(name="file", path=tmp_path / "none.npz"))
    np.savez(tmp_path / "d.npz", features=np.ones((5, 2)))
    with pytest.raises(UserError, match=r"missing array\(s\) \['x', 'y'\]"):
        load_task(DatasetSpec(name="file", path=tmp_path / "d.npz"))
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(UserError, match="unsupported dataset format"):
        load_task(DatasetSpec(name="file", path=tmp_path / "d.txt"))
    np.savez(tmp_path / "f.npz", x=np.ones((20, 2)), y=np.full(20, 0.5))
    with pytest.raises(UserError, match="class labels must be integers or strings"):
        load_task(DatasetSpec(name="file", path=tmp_path / "f.npz"))
