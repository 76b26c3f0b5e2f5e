"""evosparse: evolutionary search for sparse neural networks that are accurate and cheap.

The top-level names are the torch-free ones, plus `load` (an exported network),
which imports torch on first use; import `evosparse.evolution`, `evosparse.fitness`
or `evosparse.runner` for the training side.
"""

from typing import Any

from evosparse.errors import UserError
from evosparse.genome import Genome, InnovationRegistry
from evosparse.space import SearchSpace, load_space

__version__ = "0.1.0"

__all__ = ["Genome", "InnovationRegistry", "SearchSpace", "UserError", "__version__", "load",
           "load_space"]


def __getattr__(name: str) -> Any:
    """`evosparse.load` without importing torch until it is used."""
    if name == "load":
        from evosparse.export import load

        return load
    raise AttributeError(f"module 'evosparse' has no attribute {name!r}")
