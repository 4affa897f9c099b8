"""`mule evaluate`: the paper's metrics (placeholder until its issue lands)."""

import click

from ..errors import MuleError
from ..models import locate_model
from ..records import read_many
from .common import device_options, model_option


@click.command(epilog="Example: mule evaluate --model runs/hp/model --base smollm2-135m --data eval.jsonl")
@model_option(multiple=True, default=None, show_default=False)
@click.option("--data", multiple=True, required=True, help="Evaluation records, JSONL (repeatable).")
@device_options
def evaluate(model, data, device, dtype):
    """Forget/Retain ROUGE, neighbour MCQ accuracy, ASR, MMLU and the overall score."""
    read_many(data)
    for name in model or ("smollm2-135m",):
        locate_model(name)
    raise MuleError("evaluate is not implemented yet")
