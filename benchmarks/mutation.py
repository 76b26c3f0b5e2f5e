"""Mutation score of the pure modules: how many mutmut mutants the fast pure tests kill.

Not part of `.ci/run` (it takes a long while). Installs mutmut into this Python if it is
missing, copies the package, the tests, the shipped spaces and pyproject.toml into a
scratch directory (so mutmut's `mutants/` never lands in the working tree), mutates only
the pure modules (genome, operators, pareto, flops, expressions, checkpoint_json, space)
and runs only the fast tests that guard them (those that run searches are left out).
Prints mutmut's counts, one line per module (killed and timeout apart: on a shared
machine a slow survivor can time out), and the score: killed (or timed out) over mutants
checked.

    nice -n 10 .venv/bin/python benchmarks/mutation.py [--children 2] [--only genome.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("genome.py", "operators/*", "pareto.py", "flops.py", "expressions.py",
           "checkpoint_json.py", "space.py")
TESTS = ("test_genome.py", "test_pareto.py", "test_flops.py", "test_expressions.py",
         "test_checkpoint_json.py", "test_space.py", "test_speciation.py", "test_kstarts.py",
         "test_coevolution.py", "test_properties.py", "test_conv.py",
         "test_run_options.py::test_expression_search_draws_fresh_or_mutates")
# tests in those files that run searches or train networks: seconds each, run for every mutant
SLOW = ("search", "trained_masks", "initial_population_is", "non_finite_expressions",
        "onnxruntime", "bad_conv_spaces", "signals_and_images")
# fast tests whose names hold one of those words (-k matches substrings): kept
FAST = ("expression_search",)
MUTMUT = "mutmut==3.8.1"
KILLED = ("killed", "timeout")  # mutmut's score counts a timeout as caught: check them
CHECKED = (*KILLED, "survived", "no_tests", "suspicious", "segfault")


def _setup_cfg(modules: tuple[str, ...]) -> str:
    tests = [f"tests/{t}" for t in TESTS if (ROOT / "tests" / t.split("::")[0]).exists()]
    lines = ["[mutmut]", "source_paths=evosparse", "also_copy=search_spaces",
             "only_mutate=" + "\n    ".join(f"evosparse/{m}" for m in modules),
             "pytest_add_cli_args_test_selection=" + "\n    ".join(tests),
             "pytest_add_cli_args=-m\n    not slow\n    -k\n    "
             + " and ".join(f"({' or '.join(FAST)} or not {k})" for k in SLOW)
             + "\n    -p\n    no:cacheprovider",
             "use_git_change_detection=false",
             # mutmut's wall limit is (the tests' clean time + timeout_constant) x
             # timeout_multiplier (mutmut's default x 15: 8 minutes for each mutant that
             # loops forever, e.g. random_expression always "relu(x)" hangs coevolution's
             # initial populations); on a shared machine a busy minute also turns survivors
             # into "timeouts" (counted as killed): read killed and timeout apart
             "timeout_constant=20", "timeout_multiplier=1.5"]
    return "\n".join(lines) + "\n"


def _ensure_mutmut() -> None:
    if importlib.util.find_spec("mutmut") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)


def _counts(work: Path) -> dict[str, int]:
    """Outcome -> number of mutants, from mutmut's CI/CD stats file."""
    subprocess.run([sys.executable, "-m", "mutmut", "export-cicd-stats"], cwd=work, check=True,
                   capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    return {k: int(v) for k, v in stats.items() if isinstance(v, int)}


def _per_module(work: Path) -> list[str]:
    """One line per mutated module: killed, timeout, survived, no tests, of its mutants
    (from mutmut's per-file results; exit codes as mutmut's `status_by_exit_code`)."""
    outcome = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests",
               36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}
    lines = []
    for meta in sorted((work / "mutants" / "evosparse").rglob("*.py.meta")):
        codes = list(json.loads(meta.read_text())["exit_code_by_key"].values())
        if not codes:
            continue
        n = {k: sum(outcome.get(c, "other") == k for c in codes)
             for k in ("killed", "timeout", "survived", "no_tests")}
        unchecked = sum(c is None for c in codes)
        name = meta.relative_to(work / "mutants").as_posix().removesuffix(".meta")
        lines.append(f"{name}: {len(codes)} mutants, {unchecked} unchecked, "
                     + ", ".join(f"{v} {k}" for k, v in n.items())
                     + f"; killed {n['killed'] / max(len(codes) - unchecked, 1):.1%} of checked")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=2, help="parallel mutmut workers")
    p.add_argument("--only", nargs="*", default=list(MODULES),
                   help="modules under evosparse/ to mutate (globs; default: all pure ones)")
    p.add_argument("--keep", type=Path, help="keep the scratch directory here")
    p.add_argument("--max-seconds", type=float,
                   help="stop mutmut after this long; the score is then over the mutants checked")
    args = p.parse_args()
    _ensure_mutmut()
    work = args.keep or Path(tempfile.mkdtemp(prefix="evosparse-mutmut-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("evosparse", "tests", "search_spaces"):
        shutil.copytree(ROOT / name, work / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / "setup.cfg").write_text(_setup_cfg(tuple(args.only)))
    # mutmut forks each mutant's test run from a process that already ran the tests: an
    # OpenMP thread pool (torch, scikit-learn) started there deadlocks the forked child on
    # a futex that no CPU-time limit catches (seen: a mutant asleep for 7 minutes), so the
    # pools stay single-threaded
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env = {**os.environ, **threads, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "HYPOTHESIS_PROFILE": "mutation",
           "EVOSPARSE_CACHE": os.environ.get("EVOSPARSE_CACHE", str(ROOT / ".cache"))}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mutmut", "run", "--max-children",
                             str(args.children)], cwd=work, env=env, start_new_session=True)
    try:
        proc.wait(timeout=args.max_seconds)
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        stopped = True
    counts = _counts(work)
    killed = sum(counts.get(k, 0) for k in KILLED)
    # a finished run scores every mutant (mutmut leaves those no selected test reaches
    # unchecked); a stopped one only those it checked
    of = sum(counts.get(k, 0) for k in CHECKED) if stopped else counts.get("total", 0)
    print(json.dumps(counts))
    print("\n".join(_per_module(work)))
    print(f"mutated: {' '.join(args.only)}")
    print(f"killed {killed} of {of} mutants {'checked before the stop' if stopped else ''}"
          f"({counts.get('total', 0)} generated): {killed / max(of, 1):.1%} "
          f"in {time.monotonic() - start:.0f} s; scratch {work}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
