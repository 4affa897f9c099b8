#!/usr/bin/env bash
# Reruns the docs/RESULTS.md table for one domain on the default model: every method trained on the
# same training data (runs/demo*/train.jsonl, built from examples/<domain>/train/), then ONE `mule evaluate`
# call (base, in-context teachers, all trained models) on the fixed eval set examples/<domain>/eval/*.jsonl
# (examples/build_eval_set.py). Usage: bash examples/results.sh [harry_potter|cyber] [METHOD ...]
# Needs the data that `make demo` (or `make demo-cyber`) wrote; ~5 min per method on a 2-core CPU.
# OURS_ARGS adds options to `ours`; EXTRA_MODELS (e.g. "--model runs/exp/x/model") adds rows to the evaluation.
# ATTACKS=quant4,relearn,templates adds robustness attacks on every model (hours more on 2 cores).
# REUSE=1 keeps a method's already trained model (runs/results/<domain>/<method>/model); EVAL=0 only trains.
# SEED=N (default 0) sets the batch order; seeds other than 0 write to runs/results/<domain>-seedN
# (OUT=DIR writes there instead).
set -euo pipefail
cd "$(dirname "$0")/.."
domain=${1:-harry_potter}; shift || true
case "$domain" in
  harry_potter) target="Harry Potter"; data=runs/demo ;;
  cyber) target="offensive cybersecurity (hacking tools, malware and attacks)"; data=runs/demo-cyber ;;
  *) echo "unknown domain '$domain'" >&2; exit 2 ;;
esac
methods=("$@"); [ ${#methods[@]} -gt 0 ] || methods=(ours duet bild sft ga graddiff npo simnpo)
mule=${MULE:-.venv/bin/mule}
SEED=${SEED:-0}
source examples/results_dir.sh && out=${OUT:-$(results_dir "$domain" "$SEED")}
STEPS=${STEPS:-60}
[ -f "$data/train.jsonl" ] || { echo "run 'make demo' (or demo-cyber) first: $data/train.jsonl missing" >&2; exit 2; }
eval_data=(); for f in examples/"$domain"/eval/*.jsonl; do eval_data+=(--data "$f"); done
models=()
for method in "${methods[@]}"; do
  models+=(--model "$out/$method/model")
  if [ "${REUSE:-0}" = 1 ] && [ -f "$out/$method/model/config.json" ]; then
    echo "reusing $out/$method/model" >&2; continue
  fi
  # every method at its defaults; ours, DUET and BiLD share one teacher setting, so their rows differ in the loss
  extra=()
  case "$method" in
    ours) extra=(${OURS_ARGS:-}) ;;
    duet) extra=(--teacher ensemble) ;;   # DUET's teacher: all intentions in one prompt
  esac
  "$mule" distill --data "$data/train.jsonl" --target "$target" \
    --method "$method" "${extra[@]}" --max-steps "$STEPS" --batch-size 8 --seed "$SEED" --overwrite -q \
    ${DISTILL_ARGS:-} --output "$out/$method"
done
[ "${EVAL:-1}" = 1 ] || exit 0
"$mule" evaluate --model smollm2-135m "${models[@]}" ${EXTRA_MODELS:-} --teacher oracle --teacher ensemble \
  --target "$target" "${eval_data[@]}" \
  --mmlu auto --mmlu-limit "${MMLU_LIMIT:-200}" -q ${ATTACKS:+--attacks "$ATTACKS"} \
  --json "$out/eval.json" --markdown "$out/eval.md" --records "$out/records.jsonl" --plot "$out/radar.png"
