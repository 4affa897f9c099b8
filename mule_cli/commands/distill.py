"""`mule distill`: bidirectional top-K logit distillation (placeholder until its issue lands)."""

import click

from ..errors import MuleError
from ..models import locate_model
from ..records import read_records
from .common import device_options, model_option


@click.command(epilog="Example: mule distill --model llama-3.2-3b --data hp.jsonl --target 'Harry Potter' -o runs/hp")
@model_option()
@click.option("--data", required=True, help="Training records, JSONL (- = stdin).")
@click.option("-o", "--output", default="runs/distill", show_default=True, help="Output folder.")
@device_options
def distill(model, data, output, device, dtype):
    """Unlearn: distil a student from an intention-prompted frozen teacher."""
    locate_model(model)
    read_records(data)
    raise MuleError("distill is not implemented yet")
