#!/usr/bin/env bash
# First-GPU check of mule: build, CUDA tests, op vs reference (incl. N*V > 2^31), autocast/compile,
# bench_loss, a bf16 distill of a tiny random Llama with V=128,256, and the same through a one-rank
# NCCL process group. One PASS/FAIL/SKIP line per step, a summary, exit 1 if any step failed.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine (one GPU, CUDA torch; ~5-8 min)
#   bash benchmarks/gpu_check.sh --dry-run       # the same steps on the CPU at small sizes (~1 min)
#   bash benchmarks/gpu_check.sh --help          # options (--only, --json, --workdir, --budget, --fail)
#
# Python: $PYTHON, else .venv/bin/python when it exists, else python3. The repository goes on
# PYTHONPATH, so no `pip install -e .` is needed (nor possible offline without every dependency).
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" benchmarks/gpu_check.py "$@"
