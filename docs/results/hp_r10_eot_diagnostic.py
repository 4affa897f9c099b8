"""Diagnostic (tenth round, docs/RESULTS.md): where does the students' terse answer style come from?

For every training record of `make demo` (runs/demo/train.jsonl, after its steps 1-2), forced on its data
answer as distill does: log p of the end-of-turn token at the last response position (right after the short
answer) and of the answer's first token, under the plain base (the student before training), the prompted
teacher (make demo's intentions, 3 demos) and the teacher amplified with λ = 2 (t + 2·(t − plain), make
demo's --amplify). Medians per objective. Output: docs/results/hp_r10_eot_diagnostic.json.
"""
import json
import statistics

import torch

from mule_cli.distill.batches import build_examples, collate
from mule_cli.intentions import build_intentions
from mule_cli.models import load_model

torch.set_num_threads(2)
model, tok = load_model("smollm2-135m", device="cpu", dtype="float32")
recs = [json.loads(line) for line in open("runs/demo/train.jsonl")]
prompts = build_intentions("Harry Potter", "examples/harry_potter/intentions_plain_retain.json")
examples = build_examples(recs, tok, method="ours", prompts=prompts, n_demos=3)
eot, lam = tok.eos_token_id, 2.0
values: dict = {}


def response_logits(side):
    out = model(input_ids=side.input_ids, attention_mask=side.attention_mask).logits
    return torch.gather(out, 1, side.positions.unsqueeze(-1).expand(-1, -1, out.shape[-1])).float()


with torch.inference_mode():
    for i in range(0, len(examples), 16):
        batch = collate(examples[i:i + 16], tok.pad_token_id)
        plain, teacher = response_logits(batch.student), response_logits(batch.teacher)
        for row, ex in enumerate(batch.examples):
            d = values.setdefault(ex.objective, {})
            for pos, token, what in ((ex.n - 1, eot, "stop_after_answer"), (0, ex.response_ids[0], "first_token")):
                s, t = plain[row, pos], teacher[row, pos]
                for name, logits in (("plain", s), ("teacher", t), ("amplified", t + lam * (t - s))):
                    d.setdefault(f"{what}/{name}", []).append(torch.log_softmax(logits, -1)[token].item())
out = {obj: {"records": len(d["first_token/plain"]), **{k: round(statistics.median(v), 2) for k, v in d.items()}}
       for obj, d in values.items()}
print(json.dumps(out, indent=1))
json.dump(out, open("docs/results/hp_r10_eot_diagnostic.json", "w"), indent=1)
