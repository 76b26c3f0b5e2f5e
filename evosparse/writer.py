"""A background thread that does a run directory's disk work, in order.

Writing weight files and checkpoints (a temp file, an fsync and a rename each)
took about a quarter of a batched digits search on the reference machine, time
the CPU spent waiting on the disk. `OrderedWriter` runs those jobs on one
thread, in the order they were submitted, while the search breeds and trains
the next generation: the order that crash safety relies on (logs, then weights,
then the checkpoint that counts them, then deletions) is unchanged, a crash
only loses jobs that had not run yet (resume starts from the newest checkpoint
that did), and the first error a job raises is raised again in the caller at
its next `submit` or `flush`.
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable
from typing import Any


class OrderedWriter:
    """Runs submitted jobs one at a time, in order, on a daemon thread started on first use.

    `flush()` waits until every submitted job has run and lets the thread end (the
    next `submit` starts another); it is also called at interpreter exit, so a caller
    that never flushes loses nothing.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = \
            queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Queue `job(*args)` after every job submitted before it."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="evosparse-writer",
                                            daemon=True)
            self._thread.start()
            atexit.register(self.flush)
        self._jobs.put((job, args))

    def flush(self) -> None:
        """Wait for every submitted job; raise the first error one of them raised."""
        if self._thread is not None:
            self._jobs.put(None)  # the thread ends after the jobs before it
            self._thread.join()
            self._thread = None
            atexit.unregister(self.flush)
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, args = item
            try:
                if self._error is None:  # after a failure, later jobs (which may rely on
                    job(*args)           # the failed one) are dropped, not run
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc
