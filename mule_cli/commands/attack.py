"""`mule attack`: search prefilling prefixes (placeholder until its issue lands)."""

import click

from ..errors import MuleError
from ..records import read_records
from .common import model_option


@click.command(epilog="Example: mule attack -i hp.jsonl -o hp_adv.jsonl")
@click.option("-i", "--input", "input_path", default="-", show_default=True, help="Forget records (- = stdin).")
@click.option("-o", "--output", default="-", show_default=True, help="Output JSONL file (- = stdout).")
@model_option()
def attack(input_path, output, model):
    """Search prefilling prefixes that still elicit the target knowledge."""
    read_records(input_path, objectives=["forget"])
    raise MuleError("attack is not implemented yet")
