"""`mule evaluate`: the paper's metrics (SPEC §5) for one or more models, side by side.

Thin layer: parse options, validate every input (data, MMLU file, models, intentions) BEFORE any
model is loaded, then call mule_cli.evaluate.evaluate_models and write the reports.
"""

from __future__ import annotations

import click

from ..errors import MuleError
from ..intentions import REFUSAL
from ..models import BATCH_SIZE, DEFAULT_MODEL, locate_model
from ..records import read_many
from .common import device_options

EXAMPLE = """\b
Examples:
  mule evaluate --model runs/hp/model --base smollm2-135m --data eval.jsonl --json eval.json
  mule evaluate -m smollm2-135m --data eval.jsonl --teacher oracle --target "Harry Potter" --plot radar.png
  mule data mmlu && mule evaluate --data eval.jsonl --mmlu auto --mmlu-limit 1000
  mule evaluate -m smollm2-135m -m runs/hp/model --data eval.jsonl --attacks quant4,relearn,templates --markdown eval.md
"""


@click.command(epilog=EXAMPLE)
@click.option("--model", "-m", "models", multiple=True,
              help=f"Model to evaluate (repeatable): alias, local folder or cached HF repo id. Default: {DEFAULT_MODEL}.")
@click.option("--base", default=None, help="Reference model for arrows and the overall score (default: the first "
                                           "--model; evaluated too if not among them).")
@click.option("--data", multiple=True, required=True, help="Evaluation records, JSONL (repeatable; - = stdin).")
@click.option("--mmlu", default="auto", show_default=True,
              help="MMLU-format JSONL; auto = the file cached by `mule data mmlu` if present; none = skip.")
@click.option("--mmlu-limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Evaluate a fixed subject-stratified sample of N MMLU questions (0 = the whole file, "
                   "14,042 for the cached split: hours on a CPU, minutes on a GPU).")
@click.option("--limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="At most N records per objective, in file order (0 = all).")
@click.option("--teacher", "teachers", multiple=True, type=click.Choice(["oracle", "ensemble"]),
              help="Add an in-context row: the base model steered by intention prompts (repeatable).")
@click.option("--target", default=None, help="What is unlearned, e.g. \"Harry Potter\" (fills the intention templates).")
@click.option("--intentions", type=click.Path(dir_okay=False), default=None, help="Intention prompts file.")
@click.option("--demos", default="3", show_default=True,
              help="Few-shot demonstrations in in-context rows: one count, or per objective, e.g. retain=0 "
                   "(objectives not named keep 3).")
@click.option("--refusal", default=REFUSAL, show_default=True, metavar="TEXT",
              help="In-context rows: the answer forget/adversarial demonstrations show (as distill --refusal).")
@click.option("--asr-threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="An attack succeeds when ROUGE-L recall of the answer is at least this.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=48, show_default=True,
              help="Greedy generation length (SPEC §5: 48); output is cut at the first blank line.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BATCH_SIZE, show_default=True,
              help="Questions per batch for generation and MCQ scoring (lower it when memory is short).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write {\"base\": …, \"models\": [{\"model\": …, metrics…}]} here.")
@click.option("--records", "records_path", type=click.Path(dir_okay=False), default=None,
              help="Write per-record details (generation, scores, picked option) as JSONL.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None,
              help="Write the table as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a radar chart (PNG) of the five metrics for all models.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Resamples for the 95% percentile-bootstrap intervals of every metric (records resampled within "
                   "each objective, the same draws for every model, so differences are paired); 0 = no intervals.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap draws and of relearn's half split.")
@click.option("--attacks", default="", metavar="LIST",
              help="Robustness attacks on a copy of every model, comma list: quant4 (GGUF Q4_1 weights), quant8 "
                   "(int8 per channel) re-measure Forget/ASR/Retain; relearn (NLL on half the forget answers, Forget "
                   "on the other half before/after); templates (jailbreak wrappers; leak rate).")
@click.option("--relearn-steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="relearn attack: NLL steps (batch 4, lr 1e-5).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@device_options
def evaluate(models, base, data, mmlu, mmlu_limit, limit, teachers, target, intentions, demos, refusal, asr_threshold,
             max_new_tokens, batch_size, json_path, records_path, markdown_path, plot_path, bootstrap, seed, attacks,
             relearn_steps, quiet, device, dtype):
    """Forget/Retain ROUGE, neighbour MCQ accuracy and refusals, ASR, MMLU and the overall score."""
    from ..evaluate.mmlu import read_mmlu, resolve_mmlu, stratified_sample

    # Everything that can be wrong with the inputs fails here, before a model is loaded.
    from ..evaluate.attacks import check_inputs, parse_attacks
    from ..evaluate.runner import limit_records

    attacks = parse_attacks(attacks)
    records = read_many(data)
    check_inputs(attacks, limit_records(records, limit or None))
    mmlu_path, mmlu_note = resolve_mmlu(mmlu)
    mmlu_all = read_mmlu(mmlu_path) if mmlu_path else None
    mmlu_items = stratified_sample(mmlu_all, mmlu_limit) if mmlu_all else None
    models = list(models) or ([base] if base else [DEFAULT_MODEL])
    for name in dict.fromkeys([*models, *([base] if base else [])]):
        locate_model(name)
    from ..intentions import build_intentions, parse_demos

    demos = parse_demos(demos)
    prompts = None
    if teachers:
        prompts = build_intentions(target, intentions, refusal)
    elif target or intentions:
        raise MuleError("--target/--intentions only matter with --teacher oracle|ensemble")
    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise MuleError("--plot needs matplotlib: pip install matplotlib") from None

    from ..evaluate.report import format_table, write_reports
    from ..evaluate.runner import EvalSettings, evaluate_models

    settings = EvalSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, asr_threshold=asr_threshold,
                            limit=limit or None, demos=demos, refusal=refusal, bootstrap=bootstrap, seed=seed,
                            attacks=attacks, relearn_steps=relearn_steps, progress=not quiet)
    result = evaluate_models(models, records, mmlu_items=mmlu_items, base=base, teachers=teachers,
                             intentions=prompts, settings=settings, device=device, dtype=dtype)
    if mmlu_note:
        result.notes.append(mmlu_note)
    elif mmlu_items is not None and len(mmlu_items) < len(mmlu_all):
        result.notes.append(f"MMLU: fixed subject-stratified sample of {len(mmlu_items)} of {len(mmlu_all)} "
                            f"questions from {mmlu_path} (--mmlu-limit 0 for all)")
    write_reports(result, json_path=json_path, markdown_path=markdown_path, records_path=records_path,
                  plot_path=plot_path)
    click.echo(format_table(result), nl=False)
