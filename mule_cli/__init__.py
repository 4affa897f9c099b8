"""mule: make a language model unlearn a concept while it keeps everything else."""

__version__ = "0.1.0"
