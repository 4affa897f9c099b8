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
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        from .forward import decoder_layers

        block_types = {type(b) for b in decoder_layers(module)}
        kwargs = {"device_id": torch.device(device)} if device.startswith("cuda") else {}
        return FSDP(module, auto_wrap_policy=ModuleWrapPolicy(block_types), use_orig_params=True, **kwargs)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DDP(module, device_ids=ids)


def is_fsdp(module) -> bool:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return isinstance(module, FSDP)


def no_sync(module, active: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if active and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def full_state_dict(module) -> dict:
    """The unwrapped model's full state dict (gathered to rank 0 on CPU under FSDP)."""
    if is_fsdp(module):
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        cfg = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
        with FSDP.state_dict_type(module, StateDictType.FULL_STATE_DICT, cfg):
            return module.state_dict()
    inner = module.module if hasattr(module, "module") else module
    return inner.state_dict()
