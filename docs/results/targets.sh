#!/usr/bin/env bash
# Prints the numbers of docs/RESULTS.md "Targets": `ours` at today's defaults (forget x8, adversarial x16; HP, cyber) and HP's NPO,
# three seeds, on today's eval sets (600 retain questions since 2026-12-06), and the overall against the other
# baselines, which were measured on the first 218 retain questions without MMLU; then the evidence for the last two
# amplification changes ("Defaults"): adversarial x16 against x8 ({hp,cyber}_forget8), and forget x8 against forget x4
# (hp_grid / cyber_answered_demos with their 600 retain rows).
# {hp,cyber}_adv16 and _forget8 hold the base and `ours`; their base rows are the stored ones (hp_grid / cyber_answered_demos,
# plus the base's 600 retain rows of {hp,cyber}_retain600: greedy decoding regenerates them byte-identically).
# NPO's stored file (hp_npo_mmlu500) gets its 600 retain rows from hp_retain600 the same way; for the 218-question
# comparisons `ours` keeps its rows on the first 218 with the base rows the baselines' files share.
# Run from the repository root: bash docs/results/targets.sh
set -euo pipefail
D=docs/results
PY=${PYTHON:-.venv/bin/python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$PY" - "$D" "$T" <<'EOF'
import gzip, json, sys
D, T = sys.argv[1:]
BASE = "smollm2-135m"
read = lambda name: [json.loads(line) for line in gzip.open(f"{D}/{name}.jsonl.gz", "rt", encoding="utf-8")]
def write(name, rows):
    with open(f"{T}/{name}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
def with_retain600(rows, domain):
    """A stored file's rows with its retain rows replaced by its models' rows on the 600 questions."""
    models = {r["model"] for r in rows}
    return [r for r in rows if r["objective"] != "retain"] + [r for r in read(f"{domain}_retain600") if r["model"] in models]
write("hp_npo", with_retain600(read("hp_npo_mmlu500"), "hp"))
first_218 = lambda r: r["objective"] != "retain" or (not r.get("attack") and int(r["id"].rsplit("-", 1)[1]) <= 218)
for domain, stored in (("hp", "hp_grid"), ("cyber", "cyber_answered_demos")):
    ours, old = [r for r in read(f"{domain}_adv16") if r["model"] != BASE and first_218(r)], read(stored)
    write(f"{domain}_adv16_218", [r for r in old if r["model"] == BASE] + ours)
    write(f"{domain}_forget4", with_retain600(old, domain))
EOF
deltas() {  # deltas SEED_MEANS_JSON: each drop target's metric minus the base's, with its paired interval
  "$PY" - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
for name, row in d["methods"].items():
    cells = [f"{k} {row[k] - d['base'][k]:+.1f} [{row[k + '_delta_ci'][0]:+.1f}, {row[k + '_delta_ci'][1]:+.1f}]"
             for k in ("retain_rouge", "neighbor_acc", "neighbor_refusal", "mmlu")]
    print(f"{name} - base:", ", ".join(cells))
EOF
}
export PYTHONPATH="$PWD/examples${PYTHONPATH:+:$PYTHONPATH}"
echo "## HP: ours and NPO (600 retain questions, MMLU 500)"
"$PY" examples/seed_means.py "$D/hp_adv16.jsonl.gz:adv16=ours" "$T/hp_npo.jsonl:npo=NPO" --json "$T/hp.json"
deltas "$T/hp.json"
echo "## cyber: ours (600 retain questions, MMLU 500)"
"$PY" examples/seed_means.py "$D/cyber_adv16.jsonl.gz:adv16=ours" --json "$T/cyber.json"
deltas "$T/cyber.json"
echo "## overall against the other baselines (first 218 retain questions)"
"$PY" examples/paired_metrics.py "$T/hp_adv16_218.jsonl:adv16" "$D/hp_methods_new.jsonl.gz:graddiff" --no-mmlu | grep overall
"$PY" examples/paired_metrics.py "$T/hp_adv16_218.jsonl:adv16" "$D/hp_baselines.jsonl.gz:bild" --no-mmlu | grep overall
"$PY" examples/seed_means.py "$T/cyber_adv16_218.jsonl:adv16=ours" "$D/cyber_baselines.jsonl.gz:bild" \
  "$D/cyber_methods_s01.jsonl.gz:graddiff" "$D/cyber_methods_s2.jsonl.gz:graddiff" | grep -A4 "method a"
echo "## adversarial x16 - x8, every metric (600 retain questions, MMLU 500)"
"$PY" examples/paired_metrics.py "$D/hp_adv16.jsonl.gz:adv16=new" "$D/hp_forget8.jsonl.gz:forget8=new" \
  "$D/cyber_adv16.jsonl.gz:adv16=new" "$D/cyber_forget8.jsonl.gz:forget8=new"
echo "## forget x8 - forget x4, every metric (600 retain questions, MMLU 500)"
"$PY" examples/paired_metrics.py "$D/hp_forget8.jsonl.gz:forget8" "$T/hp_forget4.jsonl:grid" \
  "$D/cyber_forget8.jsonl.gz:forget8" "$T/cyber_forget4.jsonl:ours"
