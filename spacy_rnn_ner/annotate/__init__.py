"""The batch annotation app: read a corpus, run a pipeline over it (in one
process, several, or on Dask workers), write one record per document."""
from .engine import annotate
from .io import AnnotateError

__all__ = ["annotate", "AnnotateError"]
