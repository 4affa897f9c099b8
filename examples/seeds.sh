#!/usr/bin/env bash
# The docs/RESULTS.md three-seed method table, from scratch: results.sh at seeds 0, 1, 2 (every method
# trained and evaluated per seed; only the batch order changes), then the per-seed reports pooled by
# seed_means.py (per-record files: intervals over seeds × records) into runs/results/<domain>-seeds.md and a radar.
# Usage: bash examples/seeds.sh [harry_potter|cyber] [METHOD ...]   (needs `make demo` data; ~4 h on 2 CPU cores)
# SEEDS="0 1 2" picks the seeds; REUSE=1 and MMLU_LIMIT pass through to results.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
domain=${1:-harry_potter}; shift || true
source examples/results_dir.sh
reports=()
for seed in ${SEEDS:-0 1 2}; do
  dir=$(results_dir "$domain" "$seed")
  SEED=$seed OUT=$dir bash examples/results.sh "$domain" "$@"
  reports+=("$dir/records.jsonl")
done
"${PYTHON:-.venv/bin/python}" examples/seed_means.py "${reports[@]}" \
  --markdown "runs/results/$domain-seeds.md" --plot "runs/results/$domain-seeds-radar.png"
