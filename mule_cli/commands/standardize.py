"""`mule standardize`: raw corpora -> unified QA records (thin click layer over standardize.pipeline)."""

from __future__ import annotations

import click

from ..errors import MuleError
from ..models import DEFAULT_MODEL
from ..records import write_records
from .common import device_options, seed_option

EPILOG = """\b
Examples:
  mule standardize examples/harry_potter/forget --objective forget --target "Harry Potter" -o hp.jsonl
  mule standardize hp/ wiki_qa.csv --objective wiki_qa.csv=retain --generator none -o data.jsonl
  mule standardize hp/ --objective hp/=forget --objective wiki_qa.csv=retain \\
      --neighbor-corpus fantasy.md --mcq --split eval=0.2 -o data.jsonl   # -> data.train.jsonl, data.eval.jsonl
  mule standardize notes.md --generator none | mule attack | mule distill --data - -o runs/hp

\b
Inputs: .txt/.md files or folders are passages (turned into QA by --generator; `none` = deterministic
fill-in-the-blank questions, no model); .jsonl/.json rows may be unified records (passed through, unknown
keys kept), question/answer, prompt/completion, instruction/input/output, chat `messages`, MCQ
(question + choices/options or A..D + index/letter), or `text` passages; .csv/.tsv with a header of the
same names, or headerless MMLU CSV (question,A,B,C,D,letter). `-` reads stdin.
"""


def _objective_list(text: str) -> tuple[str, ...]:
    from ..records import OBJECTIVES

    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in OBJECTIVES]
    if bad or not items:
        raise MuleError(f"--mcq-objectives {text!r}: use a comma-separated subset of {', '.join(OBJECTIVES)}")
    return items


@click.command(epilog=EPILOG)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["auto", "text", "jsonl", "csv", "mcq"]), default="auto",
              show_default=True, help="Input format; auto = by extension, else by content.")
@click.option("--objective", "objectives", multiple=True, metavar="OBJ|PATH=OBJ",
              help="Objective of what is read (forget, retain, neighbor, adversarial; default forget), or "
                   "PATH=OBJ for one input (repeatable). Unified records keep their own objective unless "
                   "PATH=OBJ names their file.")
@click.option("--generator", default=DEFAULT_MODEL, show_default=True,
              help="Instruct model that writes QA pairs from passages (and neighbour topics), or `none` for the "
                   "deterministic cloze extractor (no model). Only loaded when passages/--neighbors need it.")
@click.option("--per-chunk", default=2, show_default=True, type=click.IntRange(1),
              help="QA pairs asked per passage chunk of one or two sentences (generator).")
@click.option("--min-overlap", default=0.75, show_default=True, type=click.FloatRange(0, 1),
              help="Keep a generated pair only if this share of its answer's words occurs in the passage.")
@click.option("--fallback/--no-fallback", default=True, show_default=True,
              help="Use the cloze extractor for passages where the generator produced no valid pair.")
@click.option("--target", default=None, help="The concept to unlearn, e.g. 'Harry Potter' (domain of forget records; "
                                             "needed by --neighbors).")
@click.option("--domain", default=None, help="Domain label for records read without one.")
@click.option("--neighbors", default=0, show_default=True, type=click.IntRange(0),
              help="Ask the generator for N topics adjacent to but outside --target, and QA about each.")
@click.option("--neighbor-qa", default=3, show_default=True, type=click.IntRange(1), help="QA pairs per neighbour topic.")
@click.option("--neighbor-corpus", multiple=True, metavar="PATH",
              help="Standardize this corpus as neighbour records instead of / besides generated ones (repeatable).")
@click.option("--mcq", is_flag=True, help="Turn QA into MCQ: correct answer, distractors from other answers of the "
                                          "same domain, and a refusal option, in a seeded order.")
@click.option("--mcq-objectives", default="neighbor,retain", show_default=True, metavar="LIST",
              help="Comma-separated objectives that --mcq applies to (forget/adversarial are scored by ROUGE/ASR).")
@click.option("--distractors", default=3, show_default=True, type=click.IntRange(0), help="Distractors per MCQ.")
@click.option("--refusal", default="I do not know.", show_default=True, help="The refusal option of MCQs.")
@click.option("--anchors/--no-anchors", default=True, show_default=True,
              help="Give each forget record `anchor_of` = its most similar retain/neighbour record (TF-IDF cosine).")
@click.option("--known-by", default=None, metavar="MODEL",
              help="Keep only forget/neighbour/retain records this model answers (ROUGE-L recall of greedy output).")
@click.option("--known-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--split", "split_spec", default=None, metavar="eval=FRACTION",
              help="Write disjoint train/eval sets (records sharing a question stay together): -o out.jsonl gives "
                   "out.train.jsonl and out.eval.jsonl; or name them with --train-out/--eval-out (train may be -).")
@click.option("--train-out", default=None, help="Train file with --split (default from -o; - = stdout).")
@click.option("--eval-out", default=None, help="Eval file with --split (default from -o).")
@click.option("-o", "--output", default="-", show_default=True, help="Output JSONL file (- = stdout).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Generation batch size.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@seed_option
@device_options
def standardize(inputs, fmt, objectives, generator, per_chunk, min_overlap, fallback, target, domain, neighbors,
                neighbor_qa, neighbor_corpus, mcq, mcq_objectives, distractors, refusal, anchors, known_by,
                known_threshold, split_spec, train_out, eval_out, output, batch_size, quiet, seed, device, dtype):
    """Turn raw corpora (text, markdown, JSONL, CSV, MCQ) into unified QA records with neighbours and anchors."""
    from ..standardize.pipeline import standardize as run
    from ..standardize.split import parse_split, split_paths

    eval_share = parse_split(split_spec) if split_spec else None
    if eval_share is None and (train_out or eval_out):
        raise MuleError("--train-out/--eval-out need --split eval=FRACTION")
    if eval_share is not None:
        if output != "-":
            dt, de = split_paths(output)
            train_out, eval_out = train_out or dt, eval_out or de
        train_out = train_out or "-"
        if not eval_out:
            raise MuleError("--split writes two files: give -o FILE (-> FILE.train/.eval) or --eval-out FILE")
        if eval_out == "-":
            raise MuleError("--eval-out cannot be stdout; only the train side may go to stdout")
    result = run(list(inputs), fmt=fmt, objectives=objectives, generator=generator, per_chunk=per_chunk,
                 min_overlap=min_overlap, fallback=fallback, target=target, domain=domain, neighbors=neighbors,
                 neighbor_qa=neighbor_qa, neighbor_corpus=neighbor_corpus, mcq=mcq,
                 mcq_objectives=_objective_list(mcq_objectives), n_distractors=distractors,
                 refusal=refusal, anchors=anchors, known_by=known_by, known_threshold=known_threshold,
                 eval_share=eval_share, seed=seed, device=device, dtype=dtype, batch_size=batch_size,
                 progress=not quiet)
    if result.eval is None:
        write_records(result.train, output)
        return
    write_records(result.eval, eval_out)
    write_records(result.train, train_out)
    if train_out != "-":
        click.echo(f"standardize: wrote {train_out} and {eval_out}", err=True)
