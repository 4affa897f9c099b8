"""The sixth round's weight-interpolation rows: OUT = base + ALPHA * (trained - base), weight by weight.

Why kept: the rows in docs/RESULTS.md (hp_r6_interpolation) came from exactly this; it tests whether
retreating part of the way back to the base keeps the forgetting while restoring Retain (it does not).
Usage: .venv/bin/python docs/results/hp_r6_interpolate.py BASE_DIR TRAINED_DIR OUT_DIR ALPHA
"""

import os
import shutil
import sys

from safetensors.torch import load_file, save_file

base, trained, out, alpha = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
shutil.copytree(trained, out, dirs_exist_ok=True)  # config, tokenizer, chat template of the trained folder
B = load_file(os.path.join(base, "model.safetensors"))
T = load_file(os.path.join(trained, "model.safetensors"))
mixed = {k: (B[k].float() + alpha * (T[k].float() - B[k].float())).to(T[k].dtype).contiguous() for k in T}
save_file(mixed, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
print(f"wrote {out} (alpha {alpha})")
