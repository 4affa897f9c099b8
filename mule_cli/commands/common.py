"""Options shared by several subcommands, so they are spelled and documented one way."""

from __future__ import annotations

import click

from ..models import DEFAULT_MODEL, DEVICES, DTYPES


def model_option(**kwargs):
    kwargs.setdefault("default", DEFAULT_MODEL)
    kwargs.setdefault("show_default", True)
    kwargs.setdefault("help", "Model: an alias (smollm2-135m, llama-3.2-3b, …), a local folder, or an HF repo id "
                              "already in the local Hugging Face cache.")
    return click.option("--model", "-m", **kwargs)


def device_options(func):
    func = click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                        help="Weights dtype; auto = bfloat16 on a GPU that supports it, else float32.")(func)
    func = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help="Where to run; auto = cuda when available, else cpu.")(func)
    return func


def seed_option(func):
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(func)
