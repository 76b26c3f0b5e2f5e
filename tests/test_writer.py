"""The background writer keeps the order of the run directory's disk work and loses none."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from evosparse.writer import OrderedWriter


def test_jobs_run_in_order_and_flush_waits_for_them() -> None:
    writer, done = OrderedWriter(), []
    for i in range(5):
        writer.submit(lambda i=i: (time.sleep(0.01 * (5 - i)), done.append(i)))
    writer.flush()
    assert done == [0, 1, 2, 3, 4], "a slow early job still runs before a quick late one"
    assert not any(t.name == "evosparse-writer" for t in threading.enumerate())


def test_a_failing_job_is_raised_in_the_caller_and_the_jobs_after_it_are_dropped() -> None:
    writer, done = OrderedWriter(), []
    writer.submit(lambda: 1 / 0)
    writer.submit(lambda: done.append("after the failure"))
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    assert done == []
    writer.submit(lambda: done.append("later"))  # the writer works again afterwards
    writer.flush()
    assert done == ["later"]


def test_pending_jobs_are_written_when_the_interpreter_exits(tmp_path) -> None:
    target = tmp_path / "written"
    code = ("import time; from evosparse.writer import OrderedWriter; w = OrderedWriter(); "
            f"w.submit(lambda: (time.sleep(0.3), open({str(target)!r}, 'w').write('ok')))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert target.read_text() == "ok"
