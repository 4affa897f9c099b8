"""`mule distill`: bidirectional top-K logit distillation from an intention-prompted teacher (SPEC §3–4).

Thin layer: parse options into a DistillConfig and call mule_cli.distill.distill.
"""

import os

import click

from ..distill.config import BASELINE_DEFAULTS, DISTILL_DEFAULTS, METHODS, ON_GRID_CHOICES, OURS_DEFAULTS, DistillConfig
from ..models import locate_model
from ..quant import GRID_NAMES
from ..records import read_many
from .common import device_options, model_option

METHOD_HELP = ("ours = bidirectional top-K Smooth-L1 (the paper); duet = teacher top-K only; bild = BiLD; "
               "sft, ga, graddiff, npo, simnpo = baselines.")
EPILOG = """\b
Examples:
  mule distill --data hp.jsonl --target "Harry Potter" -o runs/hp --max-steps 60
  mule distill --data hp.jsonl --target "Harry Potter" --show-prompts
  mule distill --data hp.jsonl --method npo -o runs/npo --epochs 2
  torchrun --nproc-per-node 4 -m mule_cli.cli distill -m llama-3.2-3b --data hp.jsonl --target "Harry Potter" -o runs/hp3b
"""


@click.command(epilog=EPILOG)
@model_option()
@click.option("--data", "-d", required=True, multiple=True, help="Training records, JSONL (- = stdin); repeatable.")
@click.option("-o", "--output", show_default=True,
              help="Output folder: model/ (HF format), train_log.jsonl, run.json, checkpoint/.")
@click.option("--method", type=click.Choice(METHODS),
              show_default=True, help=METHOD_HELP)
@click.option("--target", help="What to unlearn, e.g. \"Harry Potter\"; fills the built-in intention prompts.")
@click.option("--intentions", type=click.Path(dir_okay=False),
              help="Intention prompts file (JSON or [objective] sections); in JSON, null for an objective means "
                   "no intention: its teacher sees the student's own context.")
@click.option("--teacher", type=click.Choice(["oracle", "ensemble"]), show_default=True,
              help="oracle: each record's own objective prompt; ensemble: all prompts concatenated.")
@click.option("--demos", show_default=True,
              help="Few-shot demonstrations in the teacher context: one count, or per objective, e.g. retain=0 "
                   "(objectives not named keep 3).")
@click.option("--amplify",
              help="λ: teacher logits = t_p + λ(t_p − t_plain) (0 = the paper). One number applies to "
                   "forget/adversarial; per objective, e.g. forget=2,adversarial=2,neighbor=1 (unnamed: 0).")
@click.option("--response",
              help="Tokens both sides are forced on: data (the record's answer), teacher (the prompted teacher's "
                   "greedy answer) or base (the base model's greedy answer to the plain question); one for all "
                   "objectives or per objective, e.g. retain=base,neighbor=base. Generated answers are cached.")
@click.option("--demo-answers", metavar="SOURCE",
              help="What the teacher's neighbour/retain demonstrations answer: data (the records' answers) or base "
                   "(the base model's own greedy answer, where it says the whole data answer; cached), e.g. "
                   "neighbor=base. Demos in the base's words keep the student answering in sentences as the base "
                   "does; forget-like demos always show the refusal.")
@click.option("--refusal", show_default=True, metavar="TEXT",
              help="The answer the forget/adversarial demonstrations show, SFT trains on and refusal anchors "
                   "use; the built-in intention prompts say it too (an --intentions file should match it).")
@click.option("--refusal-anchors", metavar="OBJECTIVES",
              help="neighbor,retain: add a copy of each such record forced on the --refusal text and distilled from "
                   "the plain base model (trained as retain), so the student refuses them no more readily than the "
                   "base did (ours/duet/bild).")
@click.option("--weights",
              help="Per-objective loss weights.")
@click.option("--top-k", type=int, show_default=True, help="K of ours/duet.")
@click.option("--beta", type=float, show_default=True, help="Smooth-L1 β of ours/duet.")
@click.option("--bild-top-k", type=int, show_default=True)
@click.option("--bild-temperature", type=float, show_default=True)
@click.option("--npo-beta", type=float, show_default=True)
@click.option("--simnpo-beta", type=float, show_default=True)
@click.option("--simnpo-gamma", type=float, show_default=True)
@click.option("--forget-weight", type=float, help="Scale of the forget term of ga/graddiff/npo/simnpo "
              "(default: the method's: 1, simnpo 0.1375).")
@click.option("--retain-weight", type=float, help="Scale of the retain NLL of graddiff/npo/simnpo (default 1).")
@click.option("--loss-impl", type=click.Choice(["auto", "fused", "reference"]), show_default=True,
              help="Top-K loss implementation of `ours`.")
@click.option("--lr", type=float, show_default=True)
@click.option("--weight-decay", type=float, show_default=True)
@click.option("--warmup-steps", type=int, show_default=True)
@click.option("--schedule", type=click.Choice(["constant", "linear", "cosine"]), show_default=True)
@click.option("--max-grad-norm", type=float, show_default=True, help="Gradient clipping (0 = off).")
@click.option("--lora-rank", type=int, show_default=True,
              help="Train rank-R LoRA adapters on the attention/MLP projections instead of every weight (0 = off); "
                   "merged into the saved model.")
@click.option("--lora-alpha", type=float, show_default=True, help="LoRA scale numerator (scale = α/R).")
@click.option("--quant-aware", metavar="GRID", type=click.Choice(GRID_NAMES),
              help="Train through fake-quantized weights on every other step (q4_1 = GGUF Q4_1, int4 = symmetric "
                   "groups of 128, int8 = per channel) so a quantized copy of the saved model forgets too.")
@click.option("--on-grid", type=click.Choice(ON_GRID_CHOICES), show_default=True,
              help="Train only the Q4_1 grid's per-group steps and offsets (and the norm gains), so the saved "
                   "model stays on the 4-bit grid and a Q4_1 copy forgets as it does. auto = yes for "
                   "ours on a model that ships as Q4_1 (the default model), no otherwise.")
@click.option("--batch-size", type=int, show_default=True, help="Records per micro-batch (global).")
@click.option("--grad-accum", type=int, show_default=True, help="Micro-batches per optimizer step.")
@click.option("--epochs", type=int, show_default=True)
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps (overrides --epochs).")
@click.option("--seed", type=int, show_default=True)
@click.option("--max-length", type=int, show_default=True, help="Token limit per sequence.")
@device_options
@click.option("--fsdp", is_flag=True, help="Shard the student with FSDP (under torchrun; for models too big for one GPU).")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward (less memory).")
@click.option("--save-every", type=int, show_default=True, help="Checkpoint every N steps (0 = only on Ctrl-C).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--max-bad-steps", type=int, show_default=True, help="Abort after this many non-finite steps in a row.")
@click.option("--grad-cosine", type=int, show_default=True,
              help="Every N steps log cosines between per-objective gradients of the last 3 blocks (0 = off).")
@click.option("--show-prompts", is_flag=True, help="Print the teacher and student contexts for one record per objective and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def distill(show_prompts, quiet, data, **options):
    """Unlearn: distil a student from an intention-prompted frozen teacher."""
    locate_model(options["model"])  # fail fast, before reading possibly large data
    from ..distill import DistillConfig, distill as run_distill, render_prompts

    cfg = DistillConfig(data=list(data), progress=not quiet, **options)
    records = read_many(cfg.data)
    if show_prompts:
        click.echo(render_prompts(cfg, records))
        return
    summary = run_distill(cfg, records)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        click.echo(f"wrote {summary['model']} ({summary['steps']} steps); log: {cfg.output}/train_log.jsonl", err=True)


def _config_default_text(value):
    """A DistillConfig default as the option text that parses back to it (weights dict -> "forget=1,...")."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    return value


def _defaults_from_config(command: click.Command) -> click.Command:
    """Every option that is a DistillConfig field shows and uses the config's default: declared once there.
    Options whose default depends on the method stay unset (the config resolves them) and say both."""
    config = DistillConfig()
    for param in command.params:
        if param.name in DISTILL_DEFAULTS:
            ours, teacher = (_config_default_text(d[param.name]) for d in (OURS_DEFAULTS, DISTILL_DEFAULTS))
            which = f"{ours} for ours/duet/bild" if ours == teacher else f"{ours} for ours, {teacher} for duet/bild"
            param.help = (f"{param.help} [default: {which}, "
                          f"{_config_default_text(BASELINE_DEFAULTS[param.name]) or 'none'} for the baselines]")
        elif param.name in config.__dataclass_fields__ and param.name not in ("model", "device", "dtype"):
            param.default = _config_default_text(getattr(config, param.name))
    return command


_defaults_from_config(distill)
