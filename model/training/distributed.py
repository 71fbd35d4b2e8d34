"""Devices and the torchrun job: which rank this process is, and the collectives the loop needs.

Without torchrun the context is one process (world_size 1) and every collective here is a no-op,
so the loop reads the same for one process and for DistributedDataParallel.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from model import InputError
from model.checkpoint import weights_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` as a device; plain ``cuda`` is this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available (use --device cpu)")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return torch.device("cpu")


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun job described by the environment, if any (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    context = DistContext(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, context.local_rank)
    if context.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return context, device


def barrier(context: DistContext) -> None:
    """Wait for every rank (nothing to wait for with one process)."""
    if context.enabled:
        dist.barrier()


def mean_over_ranks(values: torch.Tensor, context: DistContext) -> torch.Tensor:
    """The mean of ``values`` over every rank, in place (unchanged with one process)."""
    if context.enabled:
        dist.all_reduce(values)
        values /= context.world_size
    return values


def check_replicas_identical(model: torch.nn.Module, context: DistContext) -> None:
    """DDP keeps replicas in lock step; verify it, and record every rank's digest in the log."""
    digest = weights_sha256(model.state_dict())
    digests: list[Any] = [None] * context.world_size
    dist.all_gather_object(digests, digest)
    if context.is_main:
        log.info("replica weights sha256 by rank: %s", digests)
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP replicas diverged: weights sha256 by rank {digests}")

