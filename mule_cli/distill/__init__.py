"""`mule distill` as a library: DistillConfig + distill(config) (see train.py for the loop).

    from mule_cli.distill import DistillConfig, distill
    distill(DistillConfig(data=["hp.jsonl"], target="Harry Potter", output="runs/hp", max_steps=60))
"""

from .config import METHODS, DistillConfig, parse_weights
from .prompts import render_prompts
from .train import distill

__all__ = ["DistillConfig", "distill", "render_prompts", "parse_weights", "METHODS"]
