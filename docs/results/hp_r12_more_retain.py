"""Twelfth round (docs/RESULTS.md): 218 extra TRAIN-ONLY retain records for the more-retain-data run.

They are the HP example's neighbour and retain candidates the default model did NOT answer (so they are in
no split: standardize only sees the kept records), deduplicated by normalised question against every kept
record and both splits, relabelled `retain`. With `--response retain=base` only their questions matter: the
student is trained to keep the base's own answers to them, right or wrong. Why: the eleventh round's untried
idea, many more kinds of question than the 76 training retain ones (37 of them "What is the ...").
Usage: .venv/bin/python docs/results/hp_r12_more_retain.py OUT.jsonl   (after make demo's steps 1-2)
then:  mule distill --data runs/demo/train.jsonl --data OUT.jsonl <make demo's options> --seed 0
"""
import json
import sys

from mule_cli.standardize.text import normalize_question

ex = "examples/harry_potter/"
taken = set()
for path in [ex + f"{o}.jsonl" for o in ("forget", "neighbor", "retain")] + ["runs/demo/train.jsonl",
                                                                           "runs/demo/eval.jsonl"]:
    taken.update(normalize_question(json.loads(line)["question"]) for line in open(path))
out, seen = [], set()
for objective in ("neighbor", "retain"):
    for line in open(ex + f"candidates/{objective}.jsonl"):
        r = json.loads(line)
        q = normalize_question(r["question"])
        if q in taken or q in seen:
            continue
        seen.add(q)
        out.append({"id": "extra-" + r["id"], "objective": "retain", "question": r["question"], "answer": r["answer"],
                    "domain": r["domain"], "source": "examples/harry_potter/candidates (not known by the base)"})
with open(sys.argv[1], "w") as fh:
    fh.writelines(json.dumps(r) + "\n" for r in out)
print(f"{len(out)} records -> {sys.argv[1]}")
