"""Keep only the candidate QA that the default model actually knows (authoring tool for the examples).

Why: unlearning a fact the model never knew measures nothing, and a retain/neighbour question it
cannot answer cannot show damage either. So every example record must be one the base model answers.

For a domain folder (e.g. examples/harry_potter) this reads `candidates/{forget,neighbor,retain}.jsonl`,
asks the model each question (chat template, greedy, 48 new tokens, cut at the first blank line —
the same decoding as `mule evaluate`), scores ROUGE-L recall of the reference answer in the generation,
and writes the records that pass the checks below to `<domain>/<objective>.jsonl`.

Guards against lucky matches (ROUGE-L counts "the", "of", "a" like any other token, so "the Burrow"
scores 0.5 against any sentence that contains "the"; and an answer word the question already
contains is free for the model to echo):
- the *novel* tokens of an answer are its content tokens (stemmed, stop words dropped) that do not
  occur in the question; a candidate without novel tokens is never kept;
- a record is kept only if its ROUGE-L recall reaches --threshold AND its novel tokens appear in
  the generation: all of them when there are at most three (a name is known only if every part of
  it is right: "John Terry" is not "John Williams"), more than half of them for longer answers.

Generations are cached in `candidates/probe_cache.jsonl` keyed by (model, question), so adding
candidates and re-running only asks the new questions. Every generation and score lands in
`candidates/probe_report.jsonl` for inspection.

Example:
    nice .venv/bin/python examples/probe_known.py examples/harry_potter
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OBJECTIVES = ("forget", "neighbor", "retain")


STOP = frozenset("a an the of and or in on at to for from by with is are was were s".split())


def _tokens(text: str) -> list[str]:
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=True).tokenize(text)  # the tokenizer ROUGE-L itself uses


def novel_recall(answer: str, question: str, generation: str) -> tuple[float, int]:
    """(share of the answer's novel tokens found in the generation, number of novel tokens)."""
    asked = set(_tokens(question))
    novel = [t for t in _tokens(answer) if t not in STOP and t not in asked]
    if not novel:
        return 0.0, 0
    have = set(_tokens(generation))
    return sum(t in have for t in novel) / len(novel), len(novel)


def novel_ok(share: float, n: int) -> bool:
    """All novel tokens of a short answer (<= 3), a majority of a longer one."""
    if n == 0:
        return False
    return share >= 1.0 - 1e-9 if n <= 3 else share > 0.5


def load_cache(path: Path, model: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    cache = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["model"] == model:
                cache[row["question"]] = row["generation"]
    return cache


def probe(domain: Path, model_name: str, threshold: float, batch_size: int, threads: int = 0) -> dict:
    from mule_cli.atomic import write_text
    from mule_cli.records import read_records, write_records
    from mule_cli.rouge import rouge_l

    cand_dir = domain / "candidates"
    cands = {obj: read_records(cand_dir / f"{obj}.jsonl", objectives=[obj])
             for obj in OBJECTIVES if (cand_dir / f"{obj}.jsonl").is_file()}
    if not cands:
        sys.exit(f"{cand_dir}: no candidate files ({', '.join(o + '.jsonl' for o in OBJECTIVES)})")

    cache_path = cand_dir / "probe_cache.jsonl"
    cache = load_cache(cache_path, model_name)
    todo = sorted({r["question"] for recs in cands.values() for r in recs} - cache.keys())
    if todo:
        import torch
        from tqdm.auto import tqdm

        from mule_cli.lm import chat_prompt, generate
        from mule_cli.models import load_model

        if threads:
            torch.set_num_threads(threads)
        model, tok = load_model(model_name, device="cpu", dtype="float32")
        chunk = batch_size * 4  # save the cache every few batches: an interrupted run loses little
        for start in tqdm(range(0, len(todo), chunk), desc=f"probe {len(todo)} questions", unit="chunk"):
            part = todo[start:start + chunk]
            gens = generate(model, tok, [chat_prompt(tok, q) for q in part], max_new_tokens=48,
                            batch_size=batch_size)
            cache.update(zip(part, gens))
            rows = [{"model": model_name, "question": q, "generation": g} for q, g in sorted(cache.items())]
            write_text(cache_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    report, summary = [], {}
    for obj, recs in cands.items():
        kept = []
        for rec in recs:
            gen = cache[rec["question"]]
            recall, f1 = rouge_l(rec["answer"], gen)
            novel, n_novel = novel_recall(rec["answer"], rec["question"], gen)
            known = recall >= threshold and novel_ok(novel, n_novel)
            report.append({"id": rec["id"], "objective": obj, "question": rec["question"], "answer": rec["answer"],
                           "generation": gen, "recall": round(recall, 3), "f1": round(f1, 3),
                           "novel_recall": round(novel, 3), "answer_in_question": n_novel == 0,
                           "known": known})
            if known:
                kept.append(rec)
        write_records(kept, domain / f"{obj}.jsonl")
        summary[obj] = {"candidates": len(recs), "known": len(kept)}
    write_text(cand_dir / "probe_report.jsonl",
               "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report))
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", type=Path, help="example folder holding candidates/")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threshold", type=float, default=0.5, help="ROUGE-L recall needed to count as known")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = torch's default); 1 is faster on a shared, busy machine")
    args = ap.parse_args(argv)
    summary = probe(args.domain, args.model, args.threshold, args.batch_size, args.threads)
    for obj, s in summary.items():
        print(f"{args.domain.name}/{obj}: {s['known']} known of {s['candidates']} candidates")


if __name__ == "__main__":
    main()
