"""Diagnostic (eleventh round, docs/RESULTS.md): WHERE a trained model leaves the base's retain answers.

For each eval retain question, the base's greedy answer (its generation in an evaluate --records file) is
forced token by token through each trained model. Reported per model: at answer position 0 and at positions
>= 1, the mean drop of log p(base's token) against the base, and on how many questions the model's argmax
first differs from the base's token at position 0, later, or never. Why: the forget records train mostly the
first answer position (short data answers), where the amplified teacher pushes "The ..." openers down; if
that spills onto retain questions, their answers should leave the base's at position 0.
Usage: .venv/bin/python docs/results/hp_r11_divergence.py RECORDS.jsonl OUT.json MODEL_DIR...
The questions come from runs/demo/eval.jsonl (make demo's eval split; the records file holds only ids and
generations), so RECORDS must be an evaluation of that split that includes the base (smollm2-135m).
"""
import json
import sys

import torch

from mule_cli.lm import chat_prompt
from mule_cli.models import load_model

torch.set_num_threads(2)
records_file, out_file, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
recs = [r for r in map(json.loads, open(records_file)) if r["objective"] == "retain"]
base_name = "smollm2-135m"  # runs/ev.sh and examples/demo.sh evaluate the base under its alias
gens = {r["id"]: r["generation"] for r in recs if r["model"] == base_name}
questions = {r["id"]: r["question"] for r in map(json.loads, open("runs/demo/eval.jsonl")) if r["objective"] == "retain"}


def answer_logprobs(name):
    model, tok = load_model(name, device="cpu", dtype="float32")
    out = {}
    with torch.inference_mode():
        for rid, g in gens.items():
            p = tok(chat_prompt(tok, questions[rid]), add_special_tokens=False)["input_ids"]
            a = tok(g, add_special_tokens=False)["input_ids"][:24]
            lp = torch.log_softmax(model(torch.tensor([p + a])).logits[0, len(p) - 1:-1].float(), -1)
            chosen = lp.gather(1, torch.tensor(a)[:, None])[:, 0]
            out[rid] = {"lp": chosen.tolist(), "argmax": lp.argmax(-1).tolist(), "tokens": a,
                        "opener": tok.decode([int(lp[0].argmax())])}
    return out


base = answer_logprobs(base_name)
report = {}
for d in dirs:
    m = answer_logprobs(d)
    first, later, never, drop0, drop_rest, rows = 0, 0, 0, [], [], []
    for rid in gens:
        b, t = base[rid], m[rid]
        drop0.append(b["lp"][0] - t["lp"][0])
        drop_rest += [x - y for x, y in zip(b["lp"][1:], t["lp"][1:])]
        where = next((i for i, (tok_id, am) in enumerate(zip(t["tokens"], t["argmax"])) if tok_id != am), None)
        first += where == 0
        later += where is not None and where > 0
        never += where is None
        rows.append({"id": rid, "leaves_at": where, "drop_pos0": round(drop0[-1], 3), "model_opener": t["opener"],
                     "base_opener": base[rid]["opener"]})
    report[d] = {"n": len(gens), "leaves_at_pos0": first, "leaves_later": later, "never": never,
                 "mean_drop_pos0_nats": round(sum(drop0) / len(drop0), 3),
                 "mean_drop_later_nats": round(sum(drop_rest) / len(drop_rest), 3), "questions": rows}
    print(d, {k: v for k, v in report[d].items() if k != "questions"})
json.dump(report, open(out_file, "w"), indent=1)
