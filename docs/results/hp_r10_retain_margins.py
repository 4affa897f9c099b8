"""Diagnostic (tenth round, docs/RESULTS.md): how close the base model is to a wrong answer on each eval retain
question of `make demo`.

For the base's greedy answer (from `make demo`'s runs/demo/eval_records.jsonl), forced token by token up to the
end of the reference fact: the smallest gap between the log-probs of the chosen token and the runner-up. A gap
of a few hundredths of a nat is a coin flip that any weight change can turn. Output:
docs/results/hp_r10_retain_margins.json (sorted, smallest gap first).
"""
import json

import torch

from mule_cli.attack.own_answer import fact_span
from mule_cli.lm import chat_prompt
from mule_cli.models import load_model

torch.set_num_threads(2)
model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
recs = [r for r in map(json.loads, open("runs/demo/eval.jsonl")) if r["objective"] == "retain"]
gens = {r["id"]: r["generation"] for r in map(json.loads, open("runs/demo/eval_records.jsonl"))
        if r["model"] == "smollm2-135m" and r["objective"] == "retain"}
out = []
with torch.inference_mode():
    for r in recs:
        g = gens[r["id"]]
        span = fact_span(g, r["answer"])
        text = g[:span[1]] if span else g
        p = tok(chat_prompt(tok, r["question"]), add_special_tokens=False)["input_ids"]
        a = tok(text, add_special_tokens=False)["input_ids"]
        lp = torch.log_softmax(model(torch.tensor([p + a])).logits[0, len(p) - 1:-1].float(), -1)
        top = lp.topk(2, -1)
        gap = top.values[:, 0] - top.values[:, 1]
        i = int(gap.argmin())
        out.append({"id": r["id"], "answer": r["answer"], "gap_nats": round(float(gap[i]), 3),
                    "at": tok.decode(a[:i]), "chosen": tok.decode([a[i]]), "runner_up": tok.decode([int(top.indices[i, 1])])})
out.sort(key=lambda d: d["gap_nats"])
for d in out:
    print(f"{d['gap_nats']:6.3f} {d['id']} {d['answer']!r}: {d['at'][-50:]!r} [{d['chosen']!r} | {d['runner_up']!r}]")
json.dump(out, open("docs/results/hp_r10_retain_margins.json", "w"), indent=1)
