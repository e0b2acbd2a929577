"""The batch annotation app: read a corpus, run a pipeline over it (in one
process, several, or on Dask workers), write one record per document."""
from .engine import AnnotateStats, annotate
from .io import AnnotateError, BadLineError, DaskError, InputOutputError, OptionError, PipelineError

__all__ = [
    "annotate",
    "AnnotateStats",
    "AnnotateError",
    "BadLineError",
    "OptionError",
    "InputOutputError",
    "PipelineError",
    "DaskError",
]
