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
    """The second load reads the cache: generating again would raise. Mutant that fails
    this: the cache never read (`path.is_file()` check removed)."""
    import mnist1d.data

    monkeypatch.setenv("EVOSPARSE_CACHE", str(tmp_path))
    spec = DatasetSpec(name="mnist1d", mnist1d_samples=500)
    t = load_task(spec)
    assert t.n_features == 40 and t.n_classes == 10
    (cached,) = tmp_path.glob("mnist1d-*.npz")
    with np.load(cached, allow_pickle=False) as f:
        assert f["x"].shape == (500, 40) and f["y"].shape == (500,)

    def generate(*args: object) -> None:
        raise AssertionError("MNIST-1D generated again instead of read from the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", generate)
    again = load_task(spec)
    assert np.array_equal(again.x_train, t.x_train) and np.array_equal(again.y_test, t.y_test)


def test_parity_is_every_input_with_its_parity() -> None:
    t = load_task(DatasetSpec(name="parity", parity_bits=4))
    assert t.x_train.shape == (16, 4) and set(np.unique(t.x_train)) == {-1.0, 1.0}
    assert len({r.tobytes() for r in t.x_train}) == 16, "every input once"
    assert t.y_train.tolist() == [int((r > 0).sum()) % 2 for r in t.x_train]
    assert t.n_classes == 2 and np.array_equal(t.x_test, t.x_train)


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    np.savetxt(path, np.column_stack([x, y]), delimiter=",")


def test_user_npz_and_csv(tmp_path) -> None:
    """Features, labels and classes of an .npz and a .csv file agree, and every split's
    labels belong to its rows. Mutant that fails this: the task's training labels taken
    from the validation rows (`y[val]` for `y[train]`)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)  # three classes
    np.savez(tmp_path / "d.npz", x=x, y=y)
    _write_csv(tmp_path / "d.csv", x, y)
    a = load_task(DatasetSpec(name="file", path=tmp_path / "d.npz"))
    b = load_task(DatasetSpec(name="file", path=tmp_path / "d.csv"))
    for t in (a, b):
        assert t.n_features == 5 and t.n_classes == 3
        assert len(t.y_train) + len(t.y_val) + len(t.y_test) == 200
        for xs, ys in ((t.x_train, t.y_train), (t.x_val, t.y_val), (t.x_test, t.y_test)):
            raw = xs.astype(np.float64) * t.std + t.mean
            want = (raw[:, 0] > 0).astype(int) + (raw[:, 1] > 0).astype(int)
            assert np.array_equal(ys, want)
    np.testing.assert_allclose(a.x_train, b.x_train, rtol=1e-5)
    assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.y_test, b.y_test)


def test_standardize_false_keeps_the_features_as_given(tmp_path) -> None:
    x = np.arange(120, dtype=np.float64).reshape(40, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 2)
    t = load_task(DatasetSpec(name="file", path=tmp_path / "d.npz", standardize=False))
    assert t.mean is None and t.std is None
    rows = {r.tobytes() for r in x.astype(np.float32)}
    assert all(r.tobytes() in rows for r in np.concatenate([t.x_train, t.x_val, t.x_test]))


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
