"""The run folder: DIR/model (a Hugging Face folder), DIR/train_log.jsonl, DIR/run.json.

The model folder is written beside its final place and renamed in, so DIR/model is either the
previous complete model or the new complete one, never half of each.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from ..atomic import atomic_dir, write_json
from ..errors import MuleError
from . import checkpoint

MODEL = "model"
LOG = "train_log.jsonl"
RUN = "run.json"


def prepare(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber a finished or foreign folder unless asked (rank 0 only)."""
    if out.exists() and not out.is_dir():
        raise MuleError(f"{out}: exists and is not a folder")
    if resume:
        if checkpoint.find(out) is None:
            raise MuleError(f"{out}: nothing to resume (no checkpoint in it)")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MuleError(f"{out}: output folder exists and is not empty; pass --overwrite to replace it "
                            f"or --resume to continue its checkpoint")
        for name in (MODEL, LOG, RUN, checkpoint.NAME, f".{checkpoint.NAME}.old"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def data_fingerprint(paths, records) -> dict:
    """sha256 of each data file (of the records' JSON for stdin), so a run can be tied to its data."""
    out = {}
    for path in paths:
        if str(path) == "-":
            h = hashlib.sha256("".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
            out["<stdin>"] = h.hexdigest()
        else:
            h = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    h.update(chunk)
            out[str(path)] = h.hexdigest()
    return out


def versions() -> dict:
    import torch
    import transformers

    from .. import __version__

    return {"mule": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def write_run(out: Path, info: dict) -> None:
    write_json(out / RUN, info)


def read_run(out: Path) -> dict | None:
    path = out / RUN
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


class TrainLog:
    """Append-only JSONL of per-step metrics; on resume, lines past the checkpoint are dropped."""

    def __init__(self, out: Path, keep_until_step: int | None = None):
        self.path = out / LOG
        if keep_until_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= keep_until_step]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.handle.write(json.dumps({**row, "time": round(time.time(), 3)}) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def save_model(out: Path, lm, state_dict: dict, tokenizer) -> Path:
    """DIR/model: safetensors weights + config + tokenizer (with its chat template)."""
    final = out / MODEL
    with atomic_dir(final) as tmp:
        lm.config.__dict__.pop("quantization_config", None)  # SPEC §7: GGUF-converted configs carry one
        if hasattr(lm, "hf_quantizer"):
            lm.hf_quantizer = None
        lm.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return final
