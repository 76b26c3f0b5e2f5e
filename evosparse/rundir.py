"""The run directory `runs/<name>/`: atomic checkpoints, history, front, lock, resume.

Layout:
    space.yaml                 the resolved search space (seed included)
    checkpoints/gen-NNNNNN.json  one per generation, checksummed, newest few kept
    history.jsonl              every evaluation ever made, one JSON object a line
    generations.jsonl          one line per generation: hypervolume and the front
    front.json                 the current Pareto front
    classes.json               the data's class labels in logit order
    data.npz                   the data, when it was given in memory (Python API)
    models/<genome_id>.safetensors  trained weights of the members of recent populations
    .lock                      held (flock) by the process working on the run

Every file is written atomically (temp file, fsync, rename); no pickle anywhere.
`RunDirRecorder` hands the writes to a background thread (`writer.py`) that keeps
their order; `Search.run` returns only when they are done.
The history is appended per batch; a checkpoint records how many history lines
belong to it, and resuming truncates the lines a killed process wrote after
its last checkpoint, so a resumed run's files equal an uninterrupted run's.
Weight files are written as evaluations finish and deleted once their genome
has left the populations of the checkpoints kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from evosparse.checkpoint_json import CheckpointEncoder, canonical
from evosparse.errors import UserError
from evosparse.evolution import GenerationRecord, Member, Reporter, SearchState
from evosparse.fitness import EvalResult
from evosparse.genome import HIDDEN, Genome
from evosparse.graph import analyse
from evosparse.space import SearchSpace, load_space
from evosparse.tables import Label
from evosparse.writer import OrderedWriter

FORMAT = 1


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old or the new file."""
    atomic_write_all(path.parent, {path.name: data})


def atomic_write_all(folder: Path, files: dict[str, bytes]) -> None:
    """Write files into one folder, each atomically (temp file, fsync, rename), with one
    fsync of the folder for all the renames."""
    for name, data in files.items():
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def member_summary(m: Member) -> dict[str, Any]:
    """The public description of a front member (`front.json`, `status --json`)."""
    r = m.result
    return {
        "genome_id": r.genome_id,
        "generation": r.generation,
        "val_accuracy": r.val_accuracy,
        "test_accuracy": r.test_accuracy,
        "flops": r.flops,
        "params": r.params,
        "connections": r.connections,
        "hidden_nodes": m.genome.n_hidden,
        "activations": activations_used(m.genome),
        "refit": r.refit,
    }


def activations_used(genome: Genome) -> list[str]:
    """The activation functions of the genome's computing hidden nodes, most used first
    (outputs are linear logits)."""
    used = genome.node_act[analyse(genome).node_active & (genome.node_kind == HIDDEN)]
    names, counts = np.unique(used, return_counts=True)
    return [str(names[i]) for i in sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))]


class RunDir:
    """One run's folder; all file I/O of a search goes through here."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None
        self.writer = OrderedWriter()
        """Runs the search's writes in the background, in order (`RunDirRecorder`)."""
        self._encoder = CheckpointEncoder()

    def flush(self) -> None:
        """Wait until the writes handed to `writer` are on disk: before reading the
        folder while a search runs (a Ray Tune checkpoint copies it)."""
        self.writer.flush()

    @property
    def space_file(self) -> Path:
        return self.path / "space.yaml"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def front_file(self) -> Path:
        return self.path / "front.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def generations_file(self) -> Path:
        return self.path / "generations.jsonl"

    @property
    def model_dir(self) -> Path:
        return self.path / "models"

    @property
    def classes_file(self) -> Path:
        return self.path / "classes.json"

    def write_classes(self, classes: list[Label]) -> None:
        """Record the data's class labels in logit order (class i is classes[i])."""
        atomic_write(self.classes_file, (json.dumps({"classes": classes}) + "\n").encode())

    def read_classes(self) -> list[Label] | None:
        """The recorded class labels, or None for a run made before they were recorded."""
        if not self.classes_file.is_file():
            return None
        return list(json.loads(self.classes_file.read_text())["classes"])

    def model_file(self, genome_id: int) -> Path:
        return self.model_dir / f"{genome_id}.safetensors"

    def exists(self) -> bool:
        return self.space_file.is_file()

    def create(self, space: SearchSpace, classes: list[Label] | None = None) -> None:
        """Start a new run: make the folder, record the classes (when known), write the
        resolved space (last: its presence marks a run)."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if classes is not None:
            self.write_classes(classes)
        self.write_space(space)

    def write_data(self, x: np.ndarray, y: np.ndarray) -> Path:
        """Save in-memory data as the run's `data.npz` (no pickle): what the run resumes from."""
        self.path.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=y)
        atomic_write(self.data_file, buffer.getvalue())
        return self.data_file

    @property
    def data_file(self) -> Path:
        return self.path / "data.npz"

    def write_space(self, space: SearchSpace) -> None:
        atomic_write(self.space_file, space.to_yaml().encode())

    def load_space(self) -> SearchSpace:
        if not self.exists():
            raise UserError(f"{self.path} is not a run directory (no space.yaml)")
        return load_space(self.space_file)

    # -- lock -------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the run's lock; refuse if another process holds it. Released at exit."""
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise UserError(
                f"{self.path} is in use by another evosparse process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock = f

    def unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, newest first."""
        return sorted(self.checkpoint_dir.glob("gen-*.json"), reverse=True)

    def checkpoint_file(self, state: SearchState, space: SearchSpace) -> tuple[Path, bytes]:
        """The checkpoint of `state` as its path and bytes (encoded now: the search goes
        on changing `state`)."""
        head = {"format": FORMAT, "fingerprint": space.fingerprint()}
        text = self._encoder.encode(head, space.model_dump(mode="json", exclude={"generations"}),
                                    state)  # encoded once: hashed and written as it is
        digest = hashlib.sha256(text).hexdigest()
        return (self.checkpoint_dir / f"gen-{state.generation:06d}.json",
                b'{"sha256":"' + digest.encode() + b'","body":' + text + b"}")

    def write_checkpoint(self, path: Path, data: bytes, keep: int) -> None:
        """Write a `checkpoint_file` atomically; delete all but the newest `keep`."""
        atomic_write(path, data)
        for old in self.checkpoints()[keep:]:
            old.unlink()

    def read_checkpoint(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint's body, or None (with a warning) when it is damaged."""
        try:
            doc = json.loads(path.read_bytes())
            body = doc["body"]
            if hashlib.sha256(canonical(body)).hexdigest() != doc["sha256"]:
                raise ValueError("checksum mismatch")
            if body.get("format") != FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            return body
        except (ValueError, KeyError, TypeError, OSError) as exc:
            print(f"evosparse: warning: skipping damaged checkpoint {path}: {exc}", file=sys.stderr)
            return None

    def recent_populations(self, generation: int) -> list[set[int]]:
        """Genome ids of the populations of the valid checkpoints up to `generation`, oldest
        first: the weights a resumed run must keep."""
        out = []
        for path in reversed(self.checkpoints()):
            body = self.read_checkpoint(path)
            if body is not None and body["state"]["generation"] <= generation:
                out.append({m["genome"]["genome_id"] for m in body["state"]["population"]})
        return out

    def checkpoint_at(self, generation: int) -> dict[str, Any] | None:
        """The checkpoint body of `generation`, or None when it is not kept (or damaged)."""
        path = self.checkpoint_dir / f"gen-{generation:06d}.json"
        return self.read_checkpoint(path) if path.exists() else None

    def drop_checkpoints_after(self, generation: int) -> None:
        """Delete the checkpoints of generations after `generation` (a run that resumes from
        an older one must not find them again)."""
        for path in self.checkpoints():
            if int(path.stem.removeprefix("gen-")) > generation:
                path.unlink()

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest valid checkpoint body, or None if there is none."""
        for path in self.checkpoints():
            body = self.read_checkpoint(path)
            if body is not None:
                return body
        return None

    # -- history and front ------------------------------------------------------------------

    def append_history(self, results: list[EvalResult]) -> None:
        lines = "".join(json.dumps(r.to_dict(), allow_nan=False) + "\n" for r in results)
        with open(self.history_file, "a") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def read_history(self) -> list[dict[str, Any]]:
        return _read_lines(self.history_file)

    def read_generations(self) -> list[dict[str, Any]]:
        """One record per finished generation: hypervolume and the front's summaries."""
        return _read_lines(self.generations_file)

    def truncate_logs(self, state: SearchState | None) -> None:
        """Keep the history and generation lines the checkpoint resumed from covers."""
        _truncate_lines(self.history_file, state.evaluations if state else 0)
        _truncate_lines(self.generations_file, state.generation + 1 if state else 0)

    def write_models(self, results: list[EvalResult]) -> None:
        """Store the trained weights that came with `results`."""
        self.model_dir.mkdir(exist_ok=True)
        atomic_write_all(self.model_dir, {self.model_file(r.genome_id).name: r.model
                                          for r in results if r.model is not None})

    def prune_models(self, keep: set[int]) -> None:
        """Delete the weight files of genomes not in `keep`."""
        for path in self.model_dir.glob("*.safetensors"):
            if int(path.stem) not in keep:
                path.unlink()

    def write_generation(self, record: GenerationRecord) -> None:
        """Append the generation's line to generations.jsonl and rewrite front.json."""
        doc = {
            "generation": record.generation,
            "evaluations": record.evaluations,
            "hypervolume": record.hypervolume,
            "front": [member_summary(m) for m in record.front],
        }
        with open(self.generations_file, "a") as f:
            f.write(json.dumps(doc, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        atomic_write(self.front_file, (json.dumps(doc, indent=2) + "\n").encode())


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a log file (a line cut by a crash is ignored)."""
    if not path.is_file():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _truncate_lines(path: Path, n: int) -> None:
    """Keep the first `n` complete lines of a log file."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")[:n]
    atomic_write(path, b"".join(line + b"\n" for line in lines))


class RunDirRecorder(Reporter):
    """Writes history and weights as evaluations finish, then per generation the
    generation line, front.json and a checkpoint, and prunes old weight files.

    Order matters for crash safety: the logs first, then the checkpoint that
    counts their lines; weights are deleted only after the checkpoint that no
    longer needs them (the populations of the newest `keep_checkpoints` checkpoints
    this process wrote, or the one it resumed from, keep theirs).
    """

    def __init__(self, run_dir: RunDir, space: SearchSpace, state: SearchState | None) -> None:
        self.run_dir = run_dir
        self.space = space
        self._recent = run_dir.recent_populations(state.generation) if state else []

    def evaluated(self, results: list[EvalResult]) -> None:
        self.run_dir.writer.submit(self.run_dir.append_history, results)
        self.run_dir.writer.submit(self.run_dir.write_models, results)

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        self.run_dir.writer.submit(self.run_dir.write_generation, record)
        path, data = self.run_dir.checkpoint_file(state, self.space)
        self.run_dir.writer.submit(self.run_dir.write_checkpoint, path, data,
                                   self.space.keep_checkpoints)
        ids = {m.genome.genome_id for m in state.population}
        self._recent = [*self._recent, ids][-self.space.keep_checkpoints :]
        self.run_dir.writer.submit(self.run_dir.prune_models, set().union(*self._recent))

    def flush(self) -> None:
        self.run_dir.flush()


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]
