"""torchrun support: one process per device, DDP (or FSDP) over the student, global batch preserved.

Launched without torchrun (WORLD_SIZE unset) everything here is a no-op, so the same code path
serves a laptop and a multi-GPU node.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str) -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not tdist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        tdist.init_process_group(backend=backend)
    return Dist(rank, world, local, True)


def device_for(dist: Dist, device: str) -> str:
    return f"cuda:{dist.local_rank}" if dist.enabled and device.startswith("cuda") else device


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def all_reduce_sum(dist: Dist, tensor: torch.Tensor) -> torch.Tensor:
    if dist.enabled:
        tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor


def broadcast_object(dist: Dist, obj):
    if not dist.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(dist: Dist) -> None:
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(module: torch.nn.Module, dist: Dist, *, fsdp: bool, device: str) -> torch.nn.Module:
    """DDP by default; FSDP (full sharding of each decoder block) for models that do not fit one GPU."""
    if not dist.enabled:
        return module
    if fsdp:  # FSDP2: each decoder block its own shard group, the root holds embeddings and head
        from torch.distributed.fsdp import fully_shard

        from .forward import decoder_layers

        for block in decoder_layers(module):
            fully_shard(block)
        fully_shard(module)
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DDP(module, device_ids=ids)


def is_fsdp(module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


@contextlib.contextmanager
def _fsdp_no_sync(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def no_sync(module, active: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if not active:
        return contextlib.nullcontext()
    if is_fsdp(module):
        return _fsdp_no_sync(module)
    if hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def full_state_dict(module) -> dict:
    """The unwrapped model's full state dict (gathered on CPU under FSDP; every rank must call it)."""
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    inner = module.module if hasattr(module, "module") else module
    return inner.state_dict()


def full_optimizer_state(module, optimizer) -> dict:
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(module, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def load_full_state(module, optimizer, model_state: dict, optim_state: dict) -> None:
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(module, model_state, options=opts)
        set_optimizer_state_dict(module, optimizer, optim_state, options=opts)
        return
    inner = module.module if hasattr(module, "module") else module
    inner.load_state_dict(model_state)
    optimizer.load_state_dict(optim_state)
