"""The `mule` command: a thin click group over four subcommands that pipe JSONL into each other."""

from __future__ import annotations

import os

import click

from . import __version__
from .commands.attack import attack
from .commands.data import data
from .commands.distill import distill
from .commands.evaluate import evaluate
from .commands.standardize import standardize

EPILOG = """\b
Pipeline:
  mule standardize corpus/ --target "Harry Potter" | mule attack | mule distill --data - -o runs/hp
  mule evaluate --model runs/hp/model --base smollm2-135m --data eval.jsonl
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.version_option(__version__, prog_name="mule")
def cli():
    """mule — make a language model unlearn a concept, keep its neighbours and general knowledge,
    and stay unlearned under prefilling attacks."""


cli.add_command(standardize)
cli.add_command(attack)
cli.add_command(distill)
cli.add_command(evaluate)
cli.add_command(data)


def main():
    # mule draws its own progress bars; transformers' per-load "Loading weights" bars would interleave with
    # them on every model load. Read once when transformers is imported; a user's explicit setting wins.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    cli(prog_name="mule")


if __name__ == "__main__":
    main()
