#!/usr/bin/env bash
# The whole pipeline on the default model: standardize -> attack -> distill (ours) -> evaluate.
# Usage: bash examples/demo.sh [harry_potter|cyber]   (what `make demo` / `make demo-cyber` run)
# Outputs land in runs/demo/ (runs/demo-cyber/ for cyber; OUT=DIR elsewhere); the unlearned model in <out>/model/.
# STEPS, MMLU_LIMIT and DISTILL_ARGS (extra distill options) change the run. distill runs at its defaults
# (the best measured setting, docs/RESULTS.md "Defaults"): only data, target, output, length and seed are given.
set -euo pipefail
cd "$(dirname "$0")/.."
domain=${1:-harry_potter}
case "$domain" in
  harry_potter) target="Harry Potter"; out=${OUT:-runs/demo} ;;
  cyber) target="offensive cybersecurity (hacking tools, malware and attacks)"; out=${OUT:-runs/demo-cyber} ;;
  *) echo "unknown domain '$domain' (harry_potter or cyber)" >&2; exit 2 ;;
esac
ex=examples/$domain
mule=${MULE:-.venv/bin/mule}
STEPS=${STEPS:-60}
MMLU_LIMIT=${MMLU_LIMIT:-200}
mkdir -p "$out"
say() { printf '\n== %s ==\n' "$*" >&2; }

say "1/5 standardize: unified records, neighbour MCQs, anchors from the fixed train files ($ex/train/)"
"$mule" standardize "$ex/train/forget.jsonl" "$ex/train/neighbor.jsonl" "$ex/train/retain.jsonl" \
  --target "$target" --mcq --mcq-objectives neighbor --seed 0 -o "$out/data.jsonl"

say "2/5 attack: searched and own-answer prefills against the base model (train only; eval has its own, fixed)"
"$mule" attack -i "$out/data.jsonl" -o "$out/train.jsonl" --rounds 2 --seed 0 --summary "$out/attack_train.json"
# The fixed eval set (examples/build_eval_set.py; no question shared with train/): one file for results.sh.
eval_files=("$ex"/eval/*.jsonl)
cat "${eval_files[@]}" > "$out/eval.jsonl"
eval_data=(); for f in "${eval_files[@]}"; do eval_data+=(--data "$f"); done

say "3/5 distill: bidirectional top-K logit distillation from the intention-prompted teacher ($STEPS steps)"
"$mule" distill --data "$out/train.jsonl" --target "$target" \
  --output "$out" --max-steps "$STEPS" --batch-size 8 --lr 5e-5 --seed 0 --overwrite ${DISTILL_ARGS:-}

say "4/5 MMLU sample (fetched once into the cache)"
"$mule" data mmlu

say "5/5 evaluate: base vs unlearned on the fixed eval set $ex/eval/ (no question shared with training)"
"$mule" evaluate --model smollm2-135m --model "$out/model" "${eval_data[@]}" \
  --mmlu auto --mmlu-limit "$MMLU_LIMIT" \
  --json "$out/eval.json" --markdown "$out/eval.md" --records "$out/eval_records.jsonl" --plot "$out/radar.png"

say "done: model in $out/model, report in $out/eval.md, radar in $out/radar.png"
