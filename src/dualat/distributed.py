"""Multi-process training under torchrun with PyTorch DistributedDataParallel (nccl on GPUs,
gloo on CPUs).

`from_env()` reads who this process is from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK); `start()` joins the process group. With no such environment, or WORLD_SIZE=1,
`Dist()` is a single process and every method below is the identity, so single-process
training stays exactly what it was.

Conventions (README "Multi-GPU and multi-node"): batch sizes in the config are global, each
process takes batch / world_size; data order is shared and sharded (BatchStream rank /
world_size); every random stream private to a process (augmentation, seed images, PGD starts)
is seeded per rank; logged numbers are means over all processes; rank 0 alone writes files.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import hashlib
import os

import numpy as np
import torch
import torch.distributed as tdist

from .data.stream import mix_seeds
from .errors import DualatError


class Dist:
    """Who this process is among `world_size`, and the few collectives training needs."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                 device: torch.device | None = None, owns_group: bool = False):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = device            # this process's device (None: decided by the config)
        self.owns_group = owns_group    # True when start() created the process group
        self._ddp = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _comm(self) -> torch.device:
        """Where collective tensors live: the GPU for nccl, the CPU for gloo."""
        return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cpu")

    # ---------------------------------------------------------------- seeds and shares
    def rank_seed(self, seed: int) -> int:
        """A per-process seed; rank 0 keeps `seed` so one process reproduces single-process runs."""
        return seed if self.rank == 0 else mix_seeds(seed, 0xD1, self.rank)

    def per_rank(self, batch_size: int) -> int:
        """This process's share of a global batch (check_config made it divide evenly)."""
        return batch_size // self.world_size

    def shard(self, n: int) -> torch.Tensor:
        """Indices (int64) of this process's contiguous share of range(n)."""
        return torch.arange(n).tensor_split(self.world_size)[self.rank]

    # ---------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def mean(self, values: dict) -> dict:
        """The mean of each float over all processes (one all-reduce); NaN anywhere gives NaN
        everywhere, so a divergence check on the result stops every process together."""
        if not self.enabled:
            return values
        t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=self._comm())
        tdist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist()))

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm())
        tdist.all_reduce(t)
        return float(t.item())

    def gather(self, t: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Every process's `t` (same shape on all) concatenated along `dim` in rank order."""
        if not self.enabled:
            return t
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        tdist.all_gather(parts, t)
        return torch.cat(parts, dim)

    def gather_objects(self, obj) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every process (pickled; for small things)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def gather_to_main(self, obj) -> list | None:
        """[obj of rank 0, obj of rank 1, ...] on rank 0, None elsewhere (pickled)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def gather_arrays(self, a: np.ndarray) -> np.ndarray:
        """Every process's array (any length) concatenated along axis 0 in rank order."""
        return a if not self.enabled else np.concatenate(self.gather_objects(a))

    def broadcast(self, obj):
        """Rank 0's `obj` on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics drift apart when each
        process normalises its own share of the batch)."""
        if self.enabled:
            for b in module.buffers():
                tdist.broadcast(b, src=0)

    # ---------------------------------------------------------------- model
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module that runs training forward/backward passes: a DistributedDataParallel
        wrapper of `model` (created once; it averages gradients over processes), or `model`.
        PGD passes call `model` itself, so they synchronise nothing."""
        if not self.enabled:
            return model
        if self._ddp is None:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device] if self.device is not None and self.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(model, device_ids=ids)
        return self._ddp

    def close(self, clean: bool = True) -> None:
        """Drop the DDP wrapper (its reducer threads), then leave the group start() joined;
        `clean` (every process got here) waits for the others first, so none exits early."""
        self._ddp = None
        gc.collect()
        if self.owns_group and tdist.is_initialized():
            if clean:
                tdist.barrier()
            tdist.destroy_process_group()
        self.owns_group = False


def from_env() -> Dist:
    """This process's rank and world size from torchrun's environment; joins nothing."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise DualatError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers; launch with torchrun") from None
    if world <= 1:
        return Dist()
    if not 0 <= rank < world:
        raise DualatError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun")
    return Dist(rank, world, local)


def check_config(cfg, world_size: int) -> None:
    """Refuse, before any work, what cannot run on `world_size` processes."""
    if world_size <= 1:
        return
    for key, b in (("stage1.batch_size", cfg.stage1.batch_size), ("stage2.batch_size", cfg.stage2.batch_size)):
        if b % world_size:
            raise DualatError(f"config key {key}={b} is the global batch and must divide evenly over the "
                              f"{world_size} processes; use a multiple of {world_size}, e.g. "
                              f"{key}={max(world_size, b - b % world_size)}")
    if cfg.method == "dat" and cfg.stage2.contrastive == "persistent":
        raise DualatError("config key stage2.contrastive=persistent keeps its chains in one process (they are not "
                          "sharded over torchrun's processes); launch it without torchrun or use stage2.contrastive=fresh")
    if cfg.distributed.sync_bn and (cfg.device == "cpu" or not torch.cuda.is_available()):
        raise DualatError("config key distributed.sync_bn=true needs CUDA GPUs (PyTorch's SyncBatchNorm has no "
                          "CPU implementation); set distributed.sync_bn=false for CPU processes")


def start(d: Dist, device_name: str, timeout_min: float) -> Dist:
    """Join the process group of `d` (nccl when the config's device is a GPU, else gloo) and
    fix this process's device (cuda:LOCAL_RANK). A single-process `d` is returned as it is."""
    if not d.enabled:
        return d
    if device_name.startswith("cuda:"):
        raise DualatError(f"device={device_name} names one GPU, but torchrun started {d.world_size} processes; "
                          "set device=cuda (each process takes cuda:LOCAL_RANK) or device=auto")
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name == "cuda" and not cuda:
        raise DualatError("device=cuda asked for, but this PyTorch sees no CUDA GPU; use device=cpu")
    if cuda:
        if d.local_rank >= torch.cuda.device_count():
            raise DualatError(f"LOCAL_RANK={d.local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                              "launch at most one process per GPU (torchrun --nproc_per_node)")
        d.device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(d.device)
    else:
        d.device = torch.device("cpu")
    if tdist.is_initialized():  # a caller that set the group up itself keeps it
        if tdist.get_world_size() != d.world_size:
            raise DualatError(f"the process group has {tdist.get_world_size()} processes, WORLD_SIZE says "
                              f"{d.world_size}")
        return d
    tdist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=timeout_min))
    d.owns_group = True
    return d


@contextlib.contextmanager
def session(d: Dist, device_name: str, timeout_min: float = 30.0):
    """`d` started (see start()) for the duration of a verb, and closed after it: cleanly when
    every process got through, without waiting for the others after an error."""
    start(d, device_name, timeout_min)
    try:
        yield d
    except BaseException:
        d.close(clean=False)
        raise
    d.close()


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on all processes while they stay in lock-step."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


class Shard:
    """The items `idx` of a dataset, with the `batch` / `len` interface evaluation uses."""

    def __init__(self, dataset, idx: torch.Tensor):
        self.dataset, self.idx = dataset, idx

    def __len__(self) -> int:
        return len(self.idx)

    def batch(self, i):
        return self.dataset.batch(self.idx[torch.as_tensor(i, dtype=torch.int64)])

    def __getattr__(self, name):  # shape, num_classes, ...
        return getattr(self.dataset, name)


def sharded_accuracy(d: Dist, fn, model, dataset, n: int | None, *args, **kwargs) -> float:
    """fn(model, dataset, n, ...) -> accuracy over the first n items (n None = all), with each
    process taking a contiguous share and the correct counts summed over processes."""
    n = len(dataset) if n is None else min(n, len(dataset))
    if not d.enabled:
        return fn(model, dataset, n, *args, **kwargs)
    part = Shard(dataset, d.shard(n))
    correct = round(fn(model, part, len(part), *args, **kwargs) * len(part)) if len(part) else 0
    return d.sum(correct) / max(n, 1)
