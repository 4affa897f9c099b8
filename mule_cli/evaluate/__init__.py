"""`mule evaluate` as a library: the paper's metrics (SPEC §5) for one or more models.

Entry point: `evaluate_models(...)` in runner.py; reports in report.py, the radar chart in radar.py,
the MMLU file handling in mmlu.py. The runner (and with it torch) is imported on first use, so scripts
that only read reports (metrics, radar) stay light.
"""

from .metrics import METRIC_KEYS, overall_score

__all__ = ["METRIC_KEYS", "EvalSettings", "evaluate_models", "overall_score"]


def __getattr__(name: str):
    if name in ("EvalSettings", "evaluate_models"):
        from . import runner
        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
