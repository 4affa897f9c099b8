"""Twelfth round (docs/RESULTS.md): how a trained model's logits differ from the base's on retain answers.

Along the base's greedy answers (20 new tokens) to the first 24 training retain questions, per position:
the set U (base top-20 ∪ model top-20), the mean gap d = model − base over U (the part softmax ignores), the
mean |d − mean d| (the part that changes the distribution), the Smooth-L1 (β 1) that `ours` trains, and
whether the argmax agrees. Why: to see whether the retain loss that stays near 1 during training is a
logit level (harmless, and a waste of the retain gradient) or a change in preferences.
Usage: .venv/bin/python docs/results/hp_r12_logit_gap.py RETAIN.jsonl MODEL_DIR...
"""
import json
import sys

import torch
import torch.nn.functional as F

from mule_cli.lm import chat_prompt
from mule_cli.models import load_model

torch.set_num_threads(2)
data, dirs = sys.argv[1], sys.argv[2:]
base, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
questions = [json.loads(line)["question"] for line in open(data)][:24]
paths = []
with torch.no_grad():
    for q in questions:
        prompt = tok(chat_prompt(tok, q), return_tensors="pt", add_special_tokens=False).input_ids
        paths.append((prompt.shape[1], base.generate(prompt, max_new_tokens=20, do_sample=False)))
for d in dirs:
    model, _ = load_model(d, device="cpu", dtype="float32")
    level = spread = loss = agree = n = 0.0
    with torch.no_grad():
        for start, ids in paths:
            t, s = base(ids).logits[0, start - 1:-1], model(ids).logits[0, start - 1:-1]
            for i in range(t.shape[0]):
                u = torch.unique(torch.cat([t[i].topk(20).indices, s[i].topk(20).indices]))
                gap = s[i, u] - t[i, u]
                level += gap.mean().item()
                spread += (gap - gap.mean()).abs().mean().item()
                loss += F.smooth_l1_loss(s[i, u], t[i, u]).item()
                agree += float(s[i].argmax() == t[i].argmax())
                n += 1
    print(json.dumps({"model": d, "positions": int(n), "mean_gap": round(level / n, 3),
                      "centred_abs_gap": round(spread / n, 3), "smooth_l1": round(loss / n, 3),
                      "argmax_agrees": round(agree / n, 3)}))
