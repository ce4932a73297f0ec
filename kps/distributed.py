"""This process's place in a torchrun job (DistributedDataParallel): one run trained
by several processes, each on its shard of every epoch's permutation."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Distributed", "init_distributed"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def current() -> "Distributed":
        if dist.is_available() and dist.is_initialized():
            return Distributed(dist.get_rank(), dist.get_world_size())
        return Distributed()


def init_distributed(device: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun job described by the environment (WORLD_SIZE > 1):
    NCCL on CUDA (one GPU per local rank), gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed.current(), dev
