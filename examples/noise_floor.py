"""How far do the metrics move when nothing is unlearned? Writes copies of the base model with small
Gaussian noise added to every weight matrix (std = REL x the matrix's own std, seed 0), to evaluate beside
the trained models. On records the base answers (the known forget set; retain and neighbour records it
gets right) any change to the weights can only lower the score: this measures that floor.

Usage: .venv/bin/python examples/noise_floor.py 0.01 0.03 [--model smollm2-135m] [--out runs/noise]
then:  mule evaluate -m smollm2-135m -m runs/noise/rel0.01 -m runs/noise/rel0.03 --data runs/demo/eval.jsonl
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from mule_cli.models import load_model


def noised_copy(name: str, rel: float, out: Path, seed: int = 0) -> Path:
    model, tokenizer = load_model(name, device="cpu", dtype="float32")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.add_(torch.randn(p.shape, generator=g) * p.std() * rel)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rel", type=float, nargs="+", help="noise std relative to each weight matrix's std")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="runs/noise")
    args = ap.parse_args()
    for rel in args.rel:
        print(noised_copy(args.model, rel, Path(args.out) / f"rel{rel}"))


if __name__ == "__main__":
    main()
