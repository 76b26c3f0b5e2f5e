"""A user's own data through the CLI: labels of any value, CSV headers, and bad input that
ends in one clear message (exit 2) before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from sklearn.datasets import load_iris

import evosparse
from evosparse.data import load_raw_test, load_task
from evosparse.errors import UserError
from evosparse.space import DatasetSpec, load_space
from tests.conftest import TINY, deep_update
from tests.conftest import evosparse as cli

FEW = {"population": 4, "generations": 1, "training": {"epochs": 1}}


def _space(tmp_path: Path, dataset: dict, name: str = "u", extra: dict | None = None) -> Path:
    path = tmp_path / f"{name}.yaml"
    body = deep_update(deep_update(TINY, FEW), {"name": name, "dataset": dataset, **(extra or {})})
    path.write_text(yaml.safe_dump(body))
    return path


def _iris_csv(path: Path) -> None:
    d = load_iris()
    rows = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    rows += [",".join(f"{v:.1f}" for v in x) + f",{d.target_names[t]}"
             for x, t in zip(d.data, d.target, strict=True)]
    path.write_text("\n".join(rows) + "\n")


def test_labels_are_the_sorted_unique_values_whatever_they_are(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(tmp_path / "huge.npz", x=x, y=np.array([0, 1, 2, 1_000_000_000] * 10))
    task = load_task(DatasetSpec(name="file", path=tmp_path / "huge.npz"))
    assert task.n_classes == 4 and task.labels == [0, 1, 2, 1_000_000_000]
    assert set(np.concatenate([task.y_train, task.y_val, task.y_test]).tolist()) == {0, 1, 2, 3}
    np.savez(tmp_path / "s.npz", x=x, y=np.array(["cat", "ant", "bee", "cat"] * 10))
    task = load_task(DatasetSpec(name="file", path=tmp_path / "s.npz"))
    assert task.labels == ["ant", "bee", "cat"]
    _, y = load_raw_test(DatasetSpec(name="file", path=tmp_path / "s.npz"))
    assert set(y.tolist()) <= {0, 1, 2}


def test_csv_header_detected_or_declared_and_label_by_name_or_index(tmp_path: Path) -> None:
    _iris_csv(tmp_path / "iris.csv")
    by_name = load_task(DatasetSpec(name="file", path=tmp_path / "iris.csv",
                                    label_column="species"))
    detected = load_task(DatasetSpec(name="file", path=tmp_path / "iris.csv"))
    declared = load_task(DatasetSpec(name="file", path=tmp_path / "iris.csv", header=True,
                                     label_column=4))
    for t in (by_name, detected, declared):
        assert t.labels == ["setosa", "versicolor", "virginica"]
        assert t.n_features == 4 and len(t.y_train) + len(t.y_val) + len(t.y_test) == 150
        assert np.array_equal(t.x_train, by_name.x_train)
    lines = (tmp_path / "iris.csv").read_text().splitlines()
    (tmp_path / "bare.csv").write_text("\n".join(lines[1:]) + "\n")
    bare = load_task(DatasetSpec(name="file", path=tmp_path / "bare.csv"))
    assert np.array_equal(bare.x_train, by_name.x_train)
    (tmp_path / "first.csv").write_text("\n".join(
        ",".join([line.split(",")[-1], *line.split(",")[:-1]]) for line in lines) + "\n")
    first = load_task(DatasetSpec(name="file", path=tmp_path / "first.csv", label_column=0))
    assert first.labels == by_name.labels and np.array_equal(first.y_train, by_name.y_train)


def test_bad_data_is_one_error_naming_the_file_row_and_column(tmp_path: Path) -> None:
    def fails(name: str, needle: str, **spec) -> None:
        with pytest.raises(UserError, match=needle) as info:
            load_task(DatasetSpec(name="file", path=tmp_path / name, **spec))
        assert str(tmp_path / name) in str(info.value)

    x = np.ones((20, 2))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 2)), y=np.zeros(0))
    fails("empty.npz", "empty")
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(20))
    fails("one.npz", "at least two classes")
    np.savez(tmp_path / "nan.npz", x=x, y=np.r_[np.zeros(10), np.nan, np.ones(9)])
    fails("nan.npz", "label at row 10 is nan")
    (tmp_path / "cell.csv").write_text("a,b,y\n1,2,p\n3,x7,q\n5,6,p\n")
    fails("cell.csv", r"row 3, column 1 \('b'\): 'x7' is not a number")
    (tmp_path / "h.csv").write_text("a,b,y\n1,2,p\n3,4,q\n")
    fails("h.csv", "label_column 10 is out of range for a file with 3 columns", label_column=10)
    fails("h.csv", r"label_column 'z' is not in the header \(a, b, y\)", label_column="z")
    fails("h.csv", "no header row", label_column="y", header=False)
    (tmp_path / "ragged.csv").write_text("1,2,p\n3,q\n")
    fails("ragged.csv", "row 2 has 2 columns, expected 3")


def test_duplicate_yaml_keys_are_an_error_naming_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nobjectives: {reference_flops: 10}\npopulation: 4\n"
                    "training:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"line 6: invalid YAML: duplicate key 'epochs' "
                                        r"\(first on line 5\)"):
        load_space(path)


@pytest.mark.parametrize("case", ["huge-label", "empty", "one-class", "nan-label", "strings-x",
                                  "bad-column", "bad-cell", "duplicate-key"])
def test_cli_bad_input_exits_2_with_one_message_and_writes_nothing(tmp_path: Path,
                                                                   case: str) -> None:
    x = np.ones((20, 2))
    data = {"huge-label": None, "empty": (np.zeros((0, 2)), np.zeros(0)),
            "one-class": (x, np.zeros(20)), "nan-label": (x, np.r_[np.nan, np.ones(19)]),
            "strings-x": (np.array([["a", "b"]] * 20), np.arange(20) % 2)}.get(case)
    dataset = {"name": "file", "path": "d.npz"}
    if data is not None:
        np.savez(tmp_path / "d.npz", x=data[0], y=data[1])
    if case in ("bad-column", "bad-cell"):
        (tmp_path / "d.csv").write_text("a,b,y\n1,2,p\n3,4,q\n" if case == "bad-column"
                                        else "a,b,y\n1,2,p\n3,?,q\n")
        dataset = {"name": "file", "path": "d.csv", "label_column": 7 if case == "bad-column"
                   else -1}
    space = _space(tmp_path, dataset)
    if case == "huge-label":  # a valid 4-class problem, however large its label values
        np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(40, 2)),
                 y=np.array([0, 1, 2, 10**12] * 10))
        out = cli("run", str(space), "--runs-dir", str(tmp_path / "runs"))
        assert out.returncode == 0, out.stderr
        assert json.loads((tmp_path / "runs" / "u" / "classes.json").read_text()) == {
            "classes": [0, 1, 2, 10**12]}
        return
    if case == "duplicate-key":
        space.write_text(space.read_text() + "population: 8\n")
    out = cli("run", str(space), "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_csv_with_header_and_species_names_runs_exports_and_predicts_names(
        tmp_path: Path) -> None:
    _iris_csv(tmp_path / "iris.csv")
    space = _space(tmp_path, {"name": "file", "path": "iris.csv", "label_column": "species"},
                   name="iris", extra={"generations": 2, "objectives": {"reference_flops": 200}})
    assert cli("run", str(space), "--runs-dir", str(tmp_path / "runs")).returncode == 0
    run = tmp_path / "runs" / "iris"
    out = cli("export", str(run), "--select", "best-accuracy", "--out", str(tmp_path / "ex"))
    assert out.returncode == 0, out.stderr
    (folder,) = (tmp_path / "ex").iterdir()
    model = evosparse.load(folder)
    x_raw, y_index = load_raw_test(load_space(run / "space.yaml").dataset)
    names = np.array(["setosa", "versicolor", "virginica"])
    predicted = model.predict(x_raw)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(predicted) <= set(names) and metrics["classes"] == names.tolist()
    assert np.mean(predicted == names[y_index]) == pytest.approx(metrics["test_accuracy"])
    recorded = evosparse.open_run(run).model(int(folder.name)).predict(x_raw)
    assert np.array_equal(predicted, recorded)
    meta = {p.key: p.value for p in onnx.load(folder / "model.onnx").metadata_props}
    assert json.loads(meta["classes"]) == names.tolist()
    assert "'setosa', 'versicolor', 'virginica'" in (folder / "README.md").read_text()
    assert json.loads((folder / "genome.json").read_text())["classes"] == names.tolist()


def test_mnist1d_standard_split_is_the_packages_own_test_set() -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    spec = DatasetSpec(name="mnist1d", split="standard", val_fraction=0.15)
    task = load_task(spec)
    assert (len(task.y_train), len(task.y_val), len(task.y_test)) == (3400, 600, 1000)
    official = make_dataset(get_dataset_args())
    x, y = load_raw_test(spec)
    assert np.array_equal(x, official["x_test"].astype(np.float32))
    assert np.array_equal(y, official["y_test"])
    with pytest.raises(ValueError, match="split: standard is MNIST-1D's own split"):
        DatasetSpec(name="digits", split="standard")
