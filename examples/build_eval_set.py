"""Build an example domain's FIXED eval set (`eval/`) and the training files that go with it (`train/`).

Why: a train/eval split redrawn from the kept ("known") records gives a dozen eval records per
objective, chosen by what the base model knows. Such an eval set cannot carry a decision: one record
moves Forget by 8 points, and Retain/neighbour accuracy measured only on questions the base answers
are flattering by construction. This builder writes, once and deterministically, an eval set sized
for decisions and not selected on what the base knows where that is not needed, and removes every eval
question from the training files.

What it writes for DOMAIN (all seeded by --seed, default 0; every file sorted by id; atomic writes):

  eval/forget.jsonl             half of the known forget records (`forget.jsonl`), rounded up, at least
                                20 (forget is known-only: unlearning a fact the base never knew measures
                                nothing). Drawn in a seeded order from the records whose base generation
                                gives an own-answer prefill first, then from the rest, so that
                                eval/adversarial_own.jsonl gets as many records as possible.
  eval/adversarial_own.jsonl    per eval forget record: the base model's own greedy answer
                                (`generation` in candidates/probe_report.jsonl, the decoding of
                                `mule evaluate`) cut just before it states the fact
                                (`mule_cli.attack.own_answer.own_answer_prefill`); prefill_family "own".
  eval/adversarial_search.jsonl prefills found by `mule attack --no-own --rounds 2 --seed 1` against the base model
                                on eval/forget.jsonl; prefill_family "search". Needs the model (minutes on
                                a CPU); --skip-search keeps the file that is there.
  eval/neighbor_mcq.jsonl       --n-neighbor (default 60) neighbour MCQs, a seeded sample of ALL neighbour
                                candidates (`candidates/neighbor.jsonl`), known or not: the base scores
                                what it scores. Candidates whose question is a candidate of another example
                                domain (a folder beside DOMAIN with candidates/) are not drawn, so no eval
                                question is trained on there either. Same MCQ format and distractors as
                                neighbor_mcq.jsonl (examples/build_neighbor_mcq.py).
  eval/retain.jsonl             examples/general_retain_eval.jsonl: general-knowledge QA written for the
                                eval only, shared by both domains, not filtered on the base model.
  train/forget.jsonl, train/neighbor.jsonl, train/neighbor_mcq.jsonl, train/retain.jsonl
                                the known records (forget.jsonl, neighbor.jsonl, retain.jsonl) minus every
                                record whose question (case and punctuation ignored) is in eval/.

The known files themselves (forget.jsonl, neighbor.jsonl, retain.jsonl, neighbor_mcq.jsonl) are not
touched. Examples:

    nice .venv/bin/python examples/build_eval_set.py examples/harry_potter
    .venv/bin/python examples/build_eval_set.py examples/cyber --skip-search   # no model needed
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # build_neighbor_mcq, when run as a script or imported by the tests

from build_neighbor_mcq import build as build_mcq  # noqa: E402

from mule_cli.attack.own_answer import own_answer_prefill, own_answer_record  # noqa: E402
from mule_cli.records import read_records, write_records  # noqa: E402
from mule_cli.standardize.text import normalize_question  # noqa: E402

GENERAL_RETAIN = HERE / "general_retain_eval.jsonl"
MIN_FORGET = 20
N_NEIGHBOR = 60
SEARCH_ARGS = ("--only-adversarial", "--no-own", "--rounds", "2", "--seed", "1", "-q")
MULE = str(Path(sys.executable).with_name("mule"))  # the mule installed beside this Python (.venv/bin/mule)


def probe_generations(domain: Path) -> dict[str, str]:
    """id -> the base model's greedy answer, as probe_known.py recorded it."""
    out = {}
    for line in (domain / "candidates" / "probe_report.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["id"]] = row["generation"]
    return out


def own_prefill(rec: dict, generations: dict[str, str]) -> str | None:
    cut = own_answer_prefill(generations.get(rec["id"], ""), rec["answer"], rec["question"])
    return cut[0] if cut else None


def pick_eval_forget(known: list[dict], generations: dict[str, str], seed: int) -> list[dict]:
    """ceil(n/2) (at least MIN_FORGET) known forget records: records with an own prefill first, then the
    rest, each group in a seeded order; returned in file order."""
    n = min(len(known), max(MIN_FORGET, math.ceil(len(known) / 2)))
    with_own = [r for r in known if own_prefill(r, generations) is not None]
    without = [r for r in known if own_prefill(r, generations) is None]
    random.Random(f"{seed}:forget:own").shuffle(with_own)
    random.Random(f"{seed}:forget:rest").shuffle(without)
    chosen = {r["id"] for r in (with_own + without)[:n]}
    return [r for r in known if r["id"] in chosen]


def own_records(eval_forget: list[dict], generations: dict[str, str], domain_name: str) -> list[dict]:
    """One `adversarial` record per eval forget record whose base generation gives an own prefill."""
    source = f"examples/{domain_name}/candidates/probe_report.jsonl (base model's own answer)"
    made = (own_answer_record(rec, generations.get(rec["id"], ""), source) for rec in eval_forget)
    return [r for r in made if r is not None]


def other_domain_questions(others) -> set[str]:
    """Every candidate question of the other example domains (any objective): an eval question of this
    domain must not be a training question there either."""
    out = set()
    for other in others:
        for path in sorted((Path(other) / "candidates").glob("*.jsonl")):
            if path.name.startswith("probe_"):
                continue
            out |= {normalize_question(r["question"]) for r in read_records(path)}
    return out


def sample_neighbors(domain: Path, n: int, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """A seeded sample of n neighbour candidates, known or not, in file order; candidates whose question
    is in `exclude` are not drawn."""
    cands = read_records(domain / "candidates" / "neighbor.jsonl", objectives=["neighbor"])
    pool = [r for r in cands if normalize_question(r["question"]) not in exclude]
    chosen = {r["id"] for r in random.Random(f"{seed}:neighbor").sample(pool, min(n, len(pool)))}
    return [r for r in cands if r["id"] in chosen]


def sibling_domains(domain: Path) -> list[Path]:
    """The other example domains: folders beside DOMAIN that have candidates/."""
    domain = Path(domain).resolve()
    return sorted(p for p in domain.parent.iterdir() if p != domain and (p / "candidates").is_dir())


def search_records(eval_forget_path: Path, mule: str) -> list[dict]:
    """`mule attack` against the base model on the eval forget records; each result tagged "search"."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "search.jsonl"
        cmd = [mule, "attack", "-i", str(eval_forget_path), *SEARCH_ARGS, "-o", str(out)]
        print("running:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
        records = read_records(out, objectives=["adversarial"])
    return [{**r, "prefill_family": "search"} for r in records]


def minus(records: list[dict], questions: set[str]) -> list[dict]:
    return [r for r in records if normalize_question(r["question"]) not in questions]


def by_id(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["id"])


def build(domain: Path, *, seed: int = 0, n_neighbor: int = N_NEIGHBOR, skip_search: bool = False,
          mule: str = MULE, other_domains=None) -> dict[str, int]:
    """Write eval/ and train/ for `domain`; returns {relative path: record count}. `other_domains`
    (default: the sibling example folders) are the domains whose candidate questions stay out of eval."""
    domain = Path(domain)
    others = sibling_domains(domain) if other_domains is None else other_domains
    name = domain.resolve().name
    generations = probe_generations(domain)
    known = {obj: read_records(domain / f"{obj}.jsonl", objectives=[obj]) for obj in ("forget", "neighbor", "retain")}

    eval_forget = pick_eval_forget(known["forget"], generations, seed)
    eval_neighbors = sample_neighbors(domain, n_neighbor, seed, other_domain_questions(others))
    files = {
        "eval/forget.jsonl": eval_forget,
        "eval/adversarial_own.jsonl": own_records(eval_forget, generations, name),
        "eval/neighbor_mcq.jsonl": build_mcq(domain, seed, eval_neighbors),
        "eval/retain.jsonl": read_records(GENERAL_RETAIN, objectives=["retain"]),
    }
    eval_questions = {normalize_question(r["question"]) for recs in files.values() for r in recs}
    train_neighbors = minus(known["neighbor"], eval_questions)
    files.update({
        "train/forget.jsonl": minus(known["forget"], eval_questions),
        "train/neighbor.jsonl": train_neighbors,
        "train/neighbor_mcq.jsonl": build_mcq(domain, seed, train_neighbors),
        "train/retain.jsonl": minus(known["retain"], eval_questions),
    })
    counts = {}
    for rel, records in files.items():
        counts[rel] = write_records(by_id(records), domain / rel)

    search_path = domain / "eval" / "adversarial_search.jsonl"
    if not skip_search:
        counts["eval/adversarial_search.jsonl"] = write_records(
            by_id(search_records(domain / "eval" / "forget.jsonl", mule)), search_path)
    elif search_path.exists():
        search = read_records(search_path, objectives=["adversarial"])
        counts["eval/adversarial_search.jsonl"] = len(search)
        stale = {r["anchor_of"] for r in search} ^ {r["id"] for r in eval_forget}
        if stale:
            print(f"warning: {search_path} does not match eval/forget.jsonl ({len(stale)} ids differ); "
                  "rebuild without --skip-search", file=sys.stderr)
    else:
        print(f"warning: {search_path} missing; rebuild without --skip-search", file=sys.stderr)
    return counts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", type=Path, help="example folder, e.g. examples/harry_potter")
    ap.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    ap.add_argument("--n-neighbor", type=int, default=N_NEIGHBOR, help=f"eval neighbour MCQs (default {N_NEIGHBOR})")
    ap.add_argument("--skip-search", action="store_true",
                    help="do not run `mule attack` (no model); keep eval/adversarial_search.jsonl as it is")
    ap.add_argument("--mule", default=MULE, help="the mule executable (default: the one beside this Python)")
    args = ap.parse_args(argv)
    counts = build(args.domain, seed=args.seed, n_neighbor=args.n_neighbor, skip_search=args.skip_search,
                   mule=args.mule)
    for rel, n in counts.items():
        print(f"{args.domain / rel}: {n} records")


if __name__ == "__main__":
    main()
