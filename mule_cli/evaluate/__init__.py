"""`mule evaluate` as a library: the paper's metrics (SPEC §5) for one or more models.

Entry point: `evaluate_models(...)` in runner.py; reports in report.py, the radar chart in radar.py,
the MMLU file handling in mmlu.py.
"""

from .metrics import METRIC_KEYS, overall_score
from .runner import EvalSettings, evaluate_models

__all__ = ["METRIC_KEYS", "EvalSettings", "evaluate_models", "overall_score"]
