"""Twelfth round (docs/RESULTS.md): retain-only "consolidation" steps on an already unlearned model.

The student starts from TRAINED_DIR, the teacher is the plain base (the default model), and only the
training retain records are distilled, along the base's own answers cut after their first sentence
(`--response retain=base --first-sentence retain`, as dra4cut). Why: a trained model loses about as many of
its own TRAINING retain answers as eval ones (RESULTS.md, twelfth round), so the question is whether
retain-only steps can put them back without undoing the forgetting. `mule distill` has no option to start
the student from another folder, so this script swaps the student's weights in (the second model load).
Usage: .venv/bin/python docs/results/hp_r12_consolidate.py TRAINED_DIR RETAIN.jsonl OUT STEPS [distill options]
RETAIN.jsonl: the retain records of make demo's train split (grep '"objective": "retain"' runs/demo/train.jsonl).
"""
import sys
from pathlib import Path

import mule_cli.distill.train as train
from mule_cli.cli import main

trained, data, out, steps = sys.argv[1:5]
_load = train._load_lm
loads = []


def student_from_trained(path, dtype, device):
    loads.append(path)  # load 1: the frozen teacher (the base); load 2: the student
    return _load(Path(trained) if len(loads) == 2 else path, dtype, device)


train._load_lm = student_from_trained
sys.argv = ["mule", "distill", "--data", data, "--intentions", "examples/harry_potter/intentions_plain_retain.json",
            "--target", "Harry Potter", "--response", "retain=base", "--first-sentence", "retain", "--output", out,
            "--max-steps", steps, "--batch-size", "8", "--lr", "5e-5", "--seed", "0", "--overwrite", *sys.argv[5:]]
main()
