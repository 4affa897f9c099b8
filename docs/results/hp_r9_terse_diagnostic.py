"""Diagnostic (ninth round, docs/RESULTS.md): does the BASE keep its retain answers when it must answer tersely?

Run from the repository root after `make demo` steps 1-2 (runs/demo/eval.jsonl); the overlap part reads the
evaluation records the ninth-round runs wrote under runs/exp/ (runs that are absent are skipped). Output:
runs/exp/terse.json (copied to docs/results/hp_r9_terse_diagnostic.json).
"""
import json, torch
from transformers import AutoModelForCausalLM
from mule_cli.models import resolve_model, load_tokenizer
from mule_cli.lm import chat_prompt, generate, cut_at_blank_line
from mule_cli.rouge import rouge_l
torch.set_num_threads(1)
path = resolve_model("smollm2-135m"); tok = load_tokenizer(path)
lm = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True).eval()
recs = [json.loads(l) for l in open("runs/demo/eval.jsonl")]
recs = [r for r in recs if r["objective"] == "retain"]
out = {}
for name, suffix, prefill in [("plain", "", None), ("terse-instr", " Answer with only the name or word.", None),
                              ("prefill-Answer:", "", "Answer:")]:
    prompts = [chat_prompt(tok, r["question"] + suffix, prefill=prefill) for r in recs]
    gens = [cut_at_blank_line(g) for g in generate(lm, tok, prompts, max_new_tokens=48)]
    rec = [rouge_l(r["answer"], g)[0] for r, g in zip(recs, gens)]
    out[name] = round(100 * sum(rec) / len(rec), 2)
    print(name, out[name], [g[:40] for g in gens[:8]], flush=True)
json.dump(out, open("runs/exp/terse.json", "w"))
# overlap: which questions the base gets wrong when prefilled "Answer:" vs the trained students
prompts = [chat_prompt(tok, r["question"], prefill="Answer:") for r in recs]
gens = [cut_at_blank_line(g) for g in generate(lm, tok, prompts, max_new_tokens=48)]
terse_fail = {r["id"] for r, g in zip(recs, gens) if rouge_l(r["answer"], g)[0] < 0.5}
rows = {}
for f in ["e1", "e2", "e3", "e5"]:
    try:
        for l in open(f"runs/exp/{f}.records.jsonl"):
            x = json.loads(l)
            if x["objective"] == "retain" and x["model"] != "smollm2-135m":
                rows.setdefault(x["model"], set())
                if x["rouge_recall"] < 0.5:
                    rows[x["model"]].add(x["id"])
    except FileNotFoundError:
        pass
res = {"base_prefill_answer_fails": sorted(terse_fail), "students": {}}
for m, fails in rows.items():
    res["students"][m] = {"fails": len(fails), "also_fail_in_base_terse": len(fails & terse_fail)}
    print(m, len(fails), "of which base-terse also fails:", len(fails & terse_fail), "/", len(terse_fail))
out["overlap"] = res
json.dump(out, open("runs/exp/terse.json", "w"), indent=1)
