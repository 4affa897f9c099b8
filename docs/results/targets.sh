#!/usr/bin/env bash
# Prints the numbers of docs/RESULTS.md "Targets": `ours` at the defaults (HP, cyber) and HP's NPO, three seeds,
# on today's eval sets, whose retain file grew from 218 to 600 questions on 2026-12-06.
# The models' other rows were stored before that (hp_grid, cyber_answered_demos, hp_npo_mmlu500); their 600
# retain rows come from one later `mule evaluate` call (retain only, same models, same base; the first 218
# regenerate byte-identically), stored in {hp,cyber}_retain600. This joins them: each stored file with its
# retain rows replaced by the 600 (retain under quant4/quant8, not a target, is left out).
# Run from the repository root: bash docs/results/targets.sh
set -euo pipefail
D=docs/results
PY=${PYTHON:-.venv/bin/python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
join() {  # join STORED RETAIN600 OUT
  "$PY" - "$@" <<'EOF'
import gzip, json, sys
stored, retain, out = sys.argv[1:]
rows = [json.loads(line) for line in gzip.open(stored, "rt", encoding="utf-8")]
models = {r["model"] for r in rows}
extra = [json.loads(line) for line in gzip.open(retain, "rt", encoding="utf-8")]
extra = [r for r in extra if r["model"] in models]
missing = models - {r["model"] for r in extra}
if missing:
    raise SystemExit(f"{retain}: no retain rows for {sorted(missing)}")
with open(out, "w", encoding="utf-8") as f:
    for r in [r for r in rows if r["objective"] != "retain"] + extra:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
EOF
}
join "$D/hp_grid.jsonl.gz" "$D/hp_retain600.jsonl.gz" "$T/hp_ours.jsonl"
join "$D/hp_npo_mmlu500.jsonl.gz" "$D/hp_retain600.jsonl.gz" "$T/hp_npo.jsonl"
join "$D/cyber_answered_demos.jsonl.gz" "$D/cyber_retain600.jsonl.gz" "$T/cyber_ours.jsonl"
export PYTHONPATH="$PWD/examples${PYTHONPATH:+:$PYTHONPATH}"
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
echo "## HP: ours (grid) and NPO"
"$PY" examples/seed_means.py "$T/hp_ours.jsonl:grid=ours" "$T/hp_npo.jsonl:npo=NPO" --json "$T/hp.json"
deltas "$T/hp.json"
echo "## cyber: ours"
"$PY" examples/seed_means.py "$T/cyber_ours.jsonl:ours" --json "$T/cyber.json"
deltas "$T/cyber.json"
echo "## HP: every metric, ours - NPO (paired)"
"$PY" examples/paired_metrics.py "$T/hp_ours.jsonl:grid" "$T/hp_npo.jsonl:npo"
