"""Append hand-written candidate QA (TSV on stdin) to an example's candidates/<objective>.jsonl.

Why: writing hundreds of JSON lines by hand invites typos; a `question<TAB>answer[<TAB>answer_type]`
line is quick to write and review. Ids are numbered on from the last one, so the ids of records that
already survived probing never change; a question already present is skipped.

Example:
    printf 'Who wrote The Hobbit?\tJ.R.R. Tolkien\tperson\n' | \
        .venv/bin/python examples/add_candidates.py examples/harry_potter neighbor
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mule_cli.records import read_records, write_records

PREFIX = {"harry_potter": "hp", "cyber": "cy"}
DOMAIN_LABEL = {"harry_potter": "Harry Potter", "cyber": "offensive cybersecurity"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("domain", type=Path)
    ap.add_argument("objective", choices=["forget", "neighbor", "retain"])
    args = ap.parse_args(argv)

    name = args.domain.resolve().name
    path = args.domain / "candidates" / f"{args.objective}.jsonl"
    records = read_records(path, allow_empty=True) if path.is_file() else []
    seen = {r["question"] for r in records}
    nums = [int(r["id"].rsplit("-", 1)[1]) for r in records]
    nxt = max(nums, default=0) + 1
    added = 0
    for lineno, line in enumerate(sys.stdin, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.rstrip("\n").split("\t")]
        if len(parts) not in (2, 3) or not all(parts):
            sys.exit(f"<stdin>: line {lineno}: expected question<TAB>answer[<TAB>answer_type], got {line!r}")
        if parts[0] in seen:
            continue
        rec = {"id": f"{PREFIX.get(name, name)}-{args.objective}-{nxt:03d}", "objective": args.objective,
               "question": parts[0], "answer": parts[1], "domain": DOMAIN_LABEL.get(name, name),
               "source": f"examples/{name}"}
        if len(parts) == 3:
            rec["answer_type"] = parts[2]
        records.append(rec)
        seen.add(parts[0])
        nxt += 1
        added += 1
    write_records(records, path)
    print(f"{path}: +{added} ({len(records)} candidates)")


if __name__ == "__main__":
    main()
