"""Atomic training checkpoints: everything needed to continue a run bit for bit.

Holds the student weights, optimizer and scheduler state, the RNG states and the step counter
(the data position: the batch plan is a pure function of the seed, so the step number says where
the run is), and rank 0's teacher output cache, so a resumed run reuses the targets it had computed.
Written into a temporary folder and swapped in by rename, so a crash mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import MuleError
from . import distributed as D

NAME = "checkpoint"


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(out_dir: Path, module, optimizer, scheduler, trainer: dict, dist: D.Dist,
         teacher_cache: dict | None = None) -> Path:
    """Write DIR/checkpoint atomically (rank 0 writes; every rank joins the collectives)."""
    model_state = D.full_state_dict(module)
    optim_state = D.full_optimizer_state(module, optimizer)
    final = out_dir / NAME
    if dist.main:
        tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=out_dir))
        try:
            torch.save(model_state, tmp / "model.pt")
            torch.save(optim_state, tmp / "optimizer.pt")
            torch.save({**trainer, "scheduler": scheduler.state_dict(), "rng": rng_state()}, tmp / "trainer.pt")
            if teacher_cache:
                torch.save(teacher_cache, tmp / "teacher_cache.pt")
            old = out_dir / f".{NAME}.old"
            if old.exists():
                shutil.rmtree(old)
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    D.barrier(dist)
    return final


def find(out_dir: Path) -> Path | None:
    """The checkpoint folder, or the previous one if a crash hit between the two renames of save()."""
    for name in (NAME, f".{NAME}.old"):
        path = out_dir / name
        if (path / "trainer.pt").is_file():
            return path
    return None


def load(out_dir: Path, module, optimizer, scheduler) -> dict:
    """Restore state in place and return the trainer dict (step, bad-step count, config, ...)."""
    path = find(out_dir)
    if path is None:
        raise MuleError(f"{out_dir}: no checkpoint to resume from (was the run started with --save-every, "
                        f"or interrupted with Ctrl-C?)")
    try:
        model_state = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
        optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
        trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=False)
        cache_file = path / "teacher_cache.pt"
        trainer["teacher_cache"] = torch.load(cache_file, weights_only=False) if cache_file.is_file() else {}
    except Exception as exc:  # a damaged file: say which
        raise MuleError(f"{path}: cannot read checkpoint ({exc})") from None
    try:
        D.load_full_state(module, optimizer, model_state, optim_state)
    except (ValueError, RuntimeError, KeyError) as exc:  # e.g. a checkpoint of a mule that trained other parameters
        raise MuleError(f"{path}: the checkpoint does not fit this run's trainable parameters ({str(exc)[:200]}); "
                        f"resume with the mule and options that wrote it, or start again without --resume") from None
    scheduler.load_state_dict(trainer["scheduler"])
    set_rng_state(trainer["rng"])
    return trainer
