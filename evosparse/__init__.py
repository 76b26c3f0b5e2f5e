"""evosparse: evolutionary search for sparse neural networks that are accurate and cheap.

The top-level names are the torch-free ones; import `evosparse.search`,
`evosparse.fitness` or `evosparse.runner` for the training side.
"""

from evosparse.errors import UserError
from evosparse.genome import Genome, InnovationRegistry
from evosparse.space import SearchSpace, load_space

__version__ = "0.1.0"

__all__ = ["Genome", "InnovationRegistry", "SearchSpace", "UserError", "__version__", "load_space"]
