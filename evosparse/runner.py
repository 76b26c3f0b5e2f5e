"""Opening a search on a run directory: a fresh start or the exact continuation of one.

This is where the pieces meet: the space, the data, the evaluator, the run
directory and the reporters. The CLI and tests call these two functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from evosparse.data import Task, checked, load_task
from evosparse.errors import UserError
from evosparse.evaluators.base import BaseEvaluator
from evosparse.evolution import Reporter, Search, SearchState
from evosparse.families import family_of
from evosparse.rundir import RunDir, RunDirRecorder, changed_keys
from evosparse.space import SearchSpace


def start_run(
    run_dir: RunDir,
    space: SearchSpace,
    evaluator: BaseEvaluator,
    reporters: list[Reporter],
    data: tuple[Any, Any] | None = None,
    task: Task | None = None,
) -> Search:
    """Create a new run directory for `space` and return its search, ready to run.

    `data`, in-memory features and labels, is saved as the run's `data.npz` and takes
    the place of the space's dataset (so the run resumes like any other). The data is
    checked before anything is written; an existing run is never overwritten. `task` is
    the space's data when the caller loaded it already.
    """
    if run_dir.exists():
        raise UserError(
            f"run directory {run_dir.path} already exists; continue it with "
            f"`evosparse resume {run_dir.path}` or choose another --name"
        )
    if data is None:
        task = task or load_task(space.dataset)
        n_features, shape = task.n_features, task.sample_shape
    else:
        x, index, classes = checked(*data, "data")
        dataset = {"name": "file", "path": str(run_dir.data_file.resolve()), "header": None,
                   "label_column": -1}
        space = space.with_overrides(dataset=dataset)
        n_features, shape = x.shape[1], tuple(np.shape(data[0])[1:])
        x = x.reshape(-1, *shape)  # saved as given, so the run resumes with its shape
    family_of(space.network, space.dataset.name, n_features, shape)  # refuse before writing
    run_dir.lock()
    if data is not None:
        run_dir.write_data(x, np.asarray(classes)[index])
        task = load_task(space.dataset)
    run_dir.create(space, task.labels)
    return Search(space=space, task=task, evaluator=evaluator,
                  reporters=[RunDirRecorder(run_dir, space, None), *reporters])


def _edited_keys(body: dict[str, Any], space: SearchSpace) -> list[str]:
    """The keys of `space` that differ from the space a checkpoint was written under.

    The checkpoint's space is read by this version, so keys added to the format since
    then take their defaults (which keep the old behaviour): upgrading evosparse does
    not stop a run from resuming.
    """
    now = space.model_dump(mode="json", exclude={"generations"})
    try:
        then = SearchSpace.model_validate({**body["space"], "generations": space.generations})
    except ValidationError:
        return changed_keys(body["space"], now) or ["space"]
    if then.fingerprint() == space.fingerprint():
        return []
    return changed_keys(then.model_dump(mode="json", exclude={"generations"}), now)


def _refit_done(body: dict[str, Any], space: SearchSpace) -> bool:
    """Whether checkpoint `body` holds a last generation refit on the validation split."""
    return bool(space.training.refit_epochs) and body["state"]["generation"] == space.generations


def _before_refit(run_dir: RunDir, last: int) -> dict[str, Any]:
    """The checkpoint before generation `last`, whose refit networks have seen the
    validation split (children bred from them would be scored on samples their weights
    learned), with the newer ones deleted; `UserError` when it is not kept."""
    body = run_dir.checkpoint_at(last - 1)
    if body is None:
        run_dir.unlock()
        raise UserError(f"{run_dir.path}: generation {last} refit the front on the validation "
                        f"split (training.refit_epochs) and the checkpoint of generation "
                        f"{last - 1} is not kept, so the run cannot be extended; start a new "
                        "run with more generations")
    run_dir.drop_checkpoints_after(last - 1)
    return body


def resume_run(
    run_dir: RunDir,
    evaluator: BaseEvaluator,
    reporters: list[Reporter],
    generations: int | None = None,
) -> Search:
    """Continue a run from its newest valid checkpoint (or from scratch if it has none).

    Refuses when `space.yaml` was edited since the checkpoint (naming the keys), and
    when another process holds the run. `generations` may extend or shorten the run.
    """
    space = run_dir.load_space()
    run_dir.lock()
    body = run_dir.latest_checkpoint()
    keys = [] if body is None else _edited_keys(body, space)
    if keys:
        run_dir.unlock()
        raise UserError(
            f"{run_dir.space_file} was changed since the run started ({', '.join(keys)}); "
            "restore it, or start a new run with `evosparse run`"
        )
    if generations is not None and generations != space.generations:
        if body is not None and _refit_done(body, space) and generations > space.generations:
            body = _before_refit(run_dir, space.generations)
        space = space.with_overrides(generations=generations)
        run_dir.write_space(space)
    task = load_task(space.dataset)
    recorded = run_dir.read_classes()
    if recorded is not None and recorded != task.labels:
        run_dir.unlock()
        raise UserError(f"the classes of {space.dataset.path or space.dataset.name} changed since "
                        f"the run started (recorded {recorded}, now {task.labels}); restore the "
                        "data, or start a new run")
    state = SearchState.from_dict(body["state"]) if body is not None else None
    run_dir.truncate_logs(state)
    return Search(space=space, task=task, evaluator=evaluator, state=state,
                  reporters=[RunDirRecorder(run_dir, space, state), *reporters])
