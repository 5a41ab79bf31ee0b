"""The ranks of a training run started by torchrun (``avfuse train --nproc N`` or ``torchrun --nproc_per_node N
-m avfuse.models.train_cmd ...``): DistributedDataParallel over gloo on CPU and nccl on GPU.

Every rank holds the whole training set in memory and trains on its shard of it each epoch (the order
``DistributedSampler`` gives, reshuffled by ``set_epoch``). ``--batch-size`` stays the global batch: each rank
takes its share of it, so N ranks take the optimizer steps one process would. Rank 0 alone validates, and
broadcasts the metrics every rank then takes its early-stopping decision from, so no rank stops apart from
the others. In one process (no ``WORLD_SIZE`` above 1) every helper here is the identity: the single-process
run is unchanged.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from avfuse.stream.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# rank 0 decodes the data set into the segment cache while the others wait at a barrier: give it hours
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True, kw_only=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launched() -> Ranks:
    """What torchrun's variables say this process is (one process when they are absent)."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    return Ranks(rank=int(env["RANK"]), world=int(env["WORLD_SIZE"]), local_rank=int(env.get("LOCAL_RANK", 0)),
                 local_world=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))


def start(device: str) -> Ranks:
    """Join the process group torchrun set up (nccl for ``cuda``, gloo for ``cpu``); set this rank's GPU and
    its torch threads (the cores shared out among the ranks on this machine). One process: nothing."""
    ranks = launched()
    if ranks.world == 1:
        return ranks
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        gpus = torch.cuda.device_count()
        if ranks.local_world > gpus:
            raise ConfigError(f"--nproc {ranks.local_world} with --device cuda needs a GPU per rank; torch sees {gpus}")
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    torch.set_num_threads(max(1, cores() // ranks.local_world))
    return Ranks(rank=ranks.rank, world=ranks.world, local_rank=ranks.local_rank, local_world=ranks.local_world,
                 backend=backend)


def current() -> Ranks:
    if not dist.is_initialized():
        return Ranks()
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                 local_world=int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
                 backend=dist.get_backend())


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def main_first():
    """Rank 0 runs the body first (it decodes into the segment cache), then the others (from the cache)."""
    ranks = current()
    if ranks.world > 1 and not ranks.main:
        dist.barrier()
    yield
    if ranks.world > 1 and ranks.main:
        dist.barrier()


def check_segments(segments: int, world: int) -> None:
    """Every rank needs at least one training segment of its own."""
    if world > segments:
        raise DataError(f"--nproc {world} is more than the {segments} training segments: each rank needs at "
                        f"least one (use --nproc {max(1, segments)} or fewer)")


def batching(segments: int, batch_size: int) -> tuple[int, int]:
    """(this rank's batch size, steps per epoch): its share of the global batch over its shard."""
    world = current().world
    if world == 1:
        return batch_size, math.ceil(segments / batch_size)
    per_rank = math.ceil(batch_size / world)
    return per_rank, math.ceil(math.ceil(segments / world) / per_rank)


def epoch_order(segments: int, *, seed: int, epoch: int, generator: torch.Generator) -> torch.Tensor:
    """This epoch's order of this rank's segments: a shuffle of all of them in one process, else this rank's
    shard (``DistributedSampler``, the same shuffle on every rank for ``seed`` and ``epoch``)."""
    ranks = current()
    if ranks.world == 1:
        return torch.randperm(segments, generator=generator)
    sampler = torch.utils.data.DistributedSampler(range(segments), num_replicas=ranks.world, rank=ranks.rank,
                                                  shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.int64)


def seed_rank(seed: int) -> None:
    """Ranks other than 0 draw their own augmentation and modality dropout (all start from rank 0's weights)."""
    ranks = current()
    if ranks.rank > 0:
        torch.manual_seed(seed + ranks.rank)


class _TrainingOutputs(torch.nn.Module):
    """``model.training_outputs`` as a forward, so that DistributedDataParallel sees the call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor):
        return self.model.training_outputs(*inputs)


def training_forward(model: torch.nn.Module, device: torch.device, *, unused: bool) -> Callable:
    """``model.training_outputs``, through DistributedDataParallel when there are ranks (gradients averaged
    over them). ``unused``: some steps leave parameters out (the staged schedule's first stage trains without
    the fused head), which DDP then has to look for after every forward."""
    if current().world == 1:
        return model.training_outputs
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(_TrainingOutputs(model), device_ids=ids,
                                                     find_unused_parameters=unused)


def sums(*values: float) -> tuple[float, ...]:
    """Each value summed over the ranks (as it is in one process)."""
    if current().world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if current().backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return tuple(float(v) for v in t.cpu())


def from_main(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` run on rank 0 and its result broadcast to every rank."""
    ranks = current()
    if ranks.world == 1:
        return fn(*args, **kwargs)
    box = [fn(*args, **kwargs) if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
