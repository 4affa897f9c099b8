"""`mule attack`: search prefilling prefixes that still elicit the target knowledge (thin click layer)."""

from __future__ import annotations

import click

from ..errors import MuleError
from ..models import BATCH_SIZE
from ..records import read_records, write_records
from .common import device_options, model_option, seed_option

EPILOG = """\b
Examples:
  mule attack -i hp.jsonl -o hp_adv.jsonl
  mule standardize hp/ --generator none | mule attack --rounds 2 | mule distill --data - -o runs/hp
  mule attack -i hp_eval.jsonl --model runs/hp/model --only-adversarial -o asr_probe.jsonl   # test an unlearned model

\b
Input records pass through unchanged; every forget record adds `adversarial` records with the same question and
answer, `prefill` = the best prefix found (prefill_family search), `anchor_of` = the forget record's id and
`attack` = {score (mean log-lik of the answer after the prefill), base_score (plain question), gain, revealed,
recall, leaked_words, ...}; with --own (default) also `<id>-own`, prefilled with the model's own answer up to the fact.
Partial-answer prefills give away the first words of the answer (at most --max-leak of them); they are scored
and judged on the remaining words.
"""


@click.command(epilog=EPILOG)
@click.option("-i", "--input", "input_path", default="-", show_default=True, help="Records, JSONL (- = stdin).")
@click.option("-o", "--output", default="-", show_default=True, help="Output JSONL file (- = stdout).")
@model_option(help="The model under attack: the base model when making training data, an unlearned one when "
                   "testing it (alias, folder, or cached HF repo id).")
@click.option("--templates", "templates_path", default=None, metavar="FILE",
              help="Extra prefill templates, one per line ({question} is replaced by the question).")
@click.option("--no-builtin", is_flag=True, help="Use only --templates (and partial answers), not the built-in library.")
@click.option("--beam", default=4, show_default=True, type=click.IntRange(1), help="Prefills kept per record.")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(0), help="Mutation rounds.")
@click.option("--per-round", default=16, show_default=True, type=click.IntRange(1),
              help="New candidates scored per record and round (sampled with --seed).")
@click.option("--max-leak", default=0.34, show_default=True, type=click.FloatRange(0, 0.99),
              help="Largest share of the answer's words a partial-answer prefill may give away (0 = none).")
@click.option("--generator", default=None, metavar="MODEL",
              help="Also mutate by letting this instruct model rewrite beam prefills (default: no rewriting).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="ROUGE-L recall of the answer in the greedy output that counts as revealed.")
@click.option("--top", default=1, show_default=True, type=click.IntRange(1),
              help="Adversarial records written per forget record (best prefills of the beam).")
@click.option("--own/--no-own", default=True, show_default=True,
              help="Also write, per forget record, a prefill of the model's own greedy answer cut right before it "
                   "states the fact (prefill_family own), where its answer states it: the most natural prefill.")
@click.option("--only-adversarial", is_flag=True, help="Write only the new adversarial records.")
@click.option("--summary", "summary_path", default=None, metavar="FILE", help="Also write the summary as JSON.")
@click.option("--batch-size", default=BATCH_SIZE, show_default=True, type=click.IntRange(1),
              help="Prefills scored, and answers generated, per batch (lower it when memory is short).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@seed_option
@device_options
def attack(input_path, output, model, templates_path, no_builtin, beam, rounds, per_round, max_leak, generator,
           threshold, top, own, only_adversarial, summary_path, batch_size, quiet, seed, device, dtype):
    """Search prefilling prefixes that still elicit the target knowledge; emit adversarial records."""
    from ..atomic import write_json
    from ..attack.search import attack_records
    from ..attack.templates import read_templates
    from ..models import load_model, locate_model

    records = read_records(input_path)
    forget = [r for r in records if r["objective"] == "forget"]
    if not forget:
        raise MuleError(f"{'<stdin>' if input_path == '-' else input_path}: no forget records to attack")
    extra = read_templates(templates_path) if templates_path else []
    if no_builtin and not extra and max_leak <= 0:
        raise MuleError("--no-builtin with no --templates and --max-leak 0 leaves nothing to try")
    locate_model(model)
    if generator:
        locate_model(generator)
    lm, tok = load_model(model, device=device, dtype=dtype)
    gen = (lm, tok) if generator == model else (load_model(generator, device=device, dtype=dtype) if generator else None)
    adv, summary = attack_records(records, lm, tok, beam=beam, rounds=rounds, seed=seed, templates=extra,
                                  builtin=not no_builtin, max_leak=max_leak, per_round=per_round, generator=gen,
                                  threshold=threshold, top=top, batch_size=batch_size, model_name=model,
                                  progress=not quiet, own=own)
    write_records(adv if only_adversarial else records + adv, output)
    if summary_path:
        write_json(summary_path, summary)
