"""smr: MapReduce on serverless functions."""
from .api import Job, Step, map_reduce

__version__ = "0.1.0"
__all__ = ["Job", "Step", "map_reduce", "__version__"]
