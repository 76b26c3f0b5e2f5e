"""evosparse: evolutionary search for sparse neural networks that are accurate and cheap.

The top-level names are the torch-free ones, plus the Python API, which imports torch
on first use: `search`, `resume` and `open_run` (`api.py`), `load` (an exported network)
and `EvoSparseClassifier` (a scikit-learn estimator, `estimator.py`).
"""

import importlib
from typing import Any

from evosparse.errors import UserError
from evosparse.genome import Genome, InnovationRegistry
from evosparse.space import SearchSpace, load_space

__version__ = "0.1.0"

_LAZY = {"load": "evosparse.export", "search": "evosparse.api", "resume": "evosparse.api",
         "open_run": "evosparse.api", "EvoSparseClassifier": "evosparse.estimator"}

__all__ = ["EvoSparseClassifier", "Genome", "InnovationRegistry", "SearchSpace", "UserError",
           "__version__", "load", "load_space", "open_run", "resume", "search"]


def __getattr__(name: str) -> Any:
    """The API's names without importing torch until one is used."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evosparse' has no attribute {name!r}")
