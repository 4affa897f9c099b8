"""`mule standardize`: raw corpora -> unified QA records (placeholder until its issue lands)."""

import click

from ..errors import MuleError


@click.command(epilog="Example: mule standardize examples/harry_potter/forget --objective forget -o hp.jsonl")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--objective", default="forget", show_default=True, help="Objective of what is read.")
@click.option("-o", "--output", default="-", show_default=True, help="Output JSONL file (- = stdout).")
def standardize(inputs, objective, output):
    """Turn raw corpora (text, JSONL, CSV, MCQ) into unified QA records."""
    raise MuleError("standardize is not implemented yet")
