"""The eleventh round's weight-average ("model soup") row: OUT = mean of the trained folders, weight by weight.

Why kept: the soup3 row in docs/RESULTS.md came from exactly this. The three dra4 seeds differ only in batch
order and start from the same base, so their average is a cheap test of whether the seed-to-seed spread
(Forget 18-53, neighbour accuracy 31-62) is noise that averaging removes (it is not: the soup lands near the
seeds' mean). Usage: .venv/bin/python docs/results/hp_r11_soup.py OUT_DIR TRAINED_DIR...
"""

import os
import shutil
import sys

from safetensors.torch import load_file, save_file

out, trained = sys.argv[1], sys.argv[2:]
shutil.copytree(trained[0], out, dirs_exist_ok=True)  # config, tokenizer, chat template of the first folder
states = [load_file(os.path.join(t, "model.safetensors")) for t in trained]
soup = {k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype).contiguous() for k in states[0]}
save_file(soup, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
print(f"wrote {out} (mean of {len(trained)})")
