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
    device: str = "cpu"  # where tensors handed to a collective live: this rank's GPU under NCCL, else the CPU

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str) -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    nccl = device.startswith("cuda")
    if not tdist.is_initialized():
        if nccl:
            torch.cuda.set_device(local)
        tdist.init_process_group(backend="nccl" if nccl else "gloo")
    return Dist(rank, world, local, True, f"cuda:{local}" if nccl else "cpu")


def device_for(dist: Dist, device: str) -> str:
    """The model's device on this rank: its own GPU under torchrun (the collectives' device too)."""
    return dist.device if dist.enabled and device.startswith("cuda") else device


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def all_reduce_sum(dist: Dist, tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place. It must live on dist.device: NCCL has no CPU backend, so a CPU
    tensor would crash a GPU run's first step ("No backend type associated with device type cpu") while
    every CPU (gloo) test passes — checked here, on every backend, so the mistake shows up anywhere."""
    if dist.enabled:
        if tensor.device != torch.device(dist.device):
            raise RuntimeError(f"a {tensor.device} tensor was handed to a collective of a process group on "
                               f"{dist.device}; create it on dist.device")
        tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor


def sum_over_ranks(dist: Dist, values: list[float]) -> list[float]:
    """Element-wise sum of a few numbers over ranks (a step's loss sums, token count, non-finite flag).

    float64, on dist.device: NCCL reduces float64 in every version (ncclFloat64 is in NCCL 2's type list;
    it is bfloat16 that needs 2.10+), gloo does too, and sums of token counts stay exact past 2^24."""
    if not dist.enabled:
        return list(values)
    return all_reduce_sum(dist, torch.tensor(values, dtype=torch.float64, device=dist.device)).tolist()


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
