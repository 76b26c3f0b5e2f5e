"""The run directory `runs/<name>/`: atomic checkpoints, history, front, lock, resume.

Layout:
    space.yaml                 the resolved search space (seed included)
    checkpoints/gen-NNNNNN.json  one per generation, checksummed, newest few kept
    history.jsonl              every evaluation ever made, one JSON object a line
    front.json                 the current Pareto front
    .lock                      held (flock) by the process working on the run

Every file is written atomically (temp file, fsync, rename); no pickle anywhere.
The history is appended per batch; a checkpoint records how many history lines
belong to it, and resuming truncates the lines a killed process wrote after
its last checkpoint, so a resumed run's files equal an uninterrupted run's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from evosparse.errors import UserError
from evosparse.fitness import EvalResult
from evosparse.search import GenerationRecord, Member, Reporter, SearchState
from evosparse.space import SearchSpace, load_space

FORMAT = 1


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
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
    }


class RunDir:
    """One run's folder; all file I/O of a search goes through here."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None

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

    def exists(self) -> bool:
        return self.space_file.is_file()

    def create(self, space: SearchSpace) -> None:
        """Start a new run: make the folder and write the resolved space."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.write_space(space)

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

    def write_checkpoint(self, state: SearchState, space: SearchSpace) -> None:
        body = {
            "format": FORMAT,
            "space": space.model_dump(mode="json", exclude={"generations"}),
            "fingerprint": space.fingerprint(),
            "state": state.to_dict(),
        }
        doc = {"sha256": hashlib.sha256(_canonical(body)).hexdigest(), "body": body}
        path = self.checkpoint_dir / f"gen-{state.generation:06d}.json"
        atomic_write(path, json.dumps(doc, allow_nan=False).encode())
        for old in self.checkpoints()[space.keep_checkpoints :]:
            old.unlink()

    def read_checkpoint(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint's body, or None (with a warning) when it is damaged."""
        try:
            doc = json.loads(path.read_bytes())
            body = doc["body"]
            if hashlib.sha256(_canonical(body)).hexdigest() != doc["sha256"]:
                raise ValueError("checksum mismatch")
            if body.get("format") != FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            return body
        except (ValueError, KeyError, TypeError, OSError) as exc:
            print(f"evosparse: warning: skipping damaged checkpoint {path}: {exc}", file=sys.stderr)
            return None

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
        if not self.history_file.is_file():
            return []
        with open(self.history_file) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def truncate_history(self, n: int) -> None:
        """Keep the first `n` complete lines (those covered by the checkpoint resumed from)."""
        if not self.history_file.is_file():
            return
        with open(self.history_file, "rb") as f:
            lines = f.read().split(b"\n")[:n]
        atomic_write(self.history_file, b"".join(line + b"\n" for line in lines))

    def write_front(self, record: GenerationRecord) -> None:
        doc = {
            "generation": record.generation,
            "evaluations": record.evaluations,
            "hypervolume": record.hypervolume,
            "front": [member_summary(m) for m in record.front],
        }
        atomic_write(self.front_file, (json.dumps(doc, indent=2) + "\n").encode())


class RunDirRecorder(Reporter):
    """Writes history as evaluations finish, then a checkpoint and front.json per generation.

    Order matters for crash safety: history lines first, then the checkpoint that
    counts them, then the derived front.
    """

    def __init__(self, run_dir: RunDir, space: SearchSpace) -> None:
        self.run_dir = run_dir
        self.space = space

    def evaluated(self, results: list[EvalResult]) -> None:
        self.run_dir.append_history(results)

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        self.run_dir.write_checkpoint(state, self.space)
        self.run_dir.write_front(record)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]
