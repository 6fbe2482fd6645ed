"""Endless, resumable, rank-sharded stream of training batches."""

from __future__ import annotations

import torch

from ..errors import DualatError

_MASK63 = (1 << 63) - 1


def mix_seeds(*parts: int) -> int:
    """Combine ints into one 63-bit seed (splitmix64-style) so nearby (seed, epoch) pairs give
    unrelated permutations."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & _MASK63


class BatchStream:
    """Infinite iterator of (x float32 (B, *shape) in [0, 1], y int64 (B,)) batches.

    Epoch e uses the permutation drawn from a generator seeded by (seed, e): identical on every
    rank. Each global step takes the next batch_size * world_size indices of that permutation and
    rank r keeps slice [r*B, (r+1)*B), so ranks are disjoint; the incomplete tail of an epoch is
    dropped. `transform(x, generator)` gets the stream's own generator (seeded by (seed, rank)), so
    augmentations are reproducible and differ between ranks.

    state_dict()/load_state_dict() save epoch, position and the transform generator state, so a
    resumed stream yields bit-identical batches.
    """

    def __init__(self, dataset, batch_size: int, seed: int, transform=None, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1:
            raise DualatError(f"batch size must be at least 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DualatError(f"rank {rank} is not valid for world size {world_size}")
        n = len(dataset)
        if n < batch_size * world_size:
            raise DualatError(f"the dataset has {n} items, fewer than one global batch "
                              f"({batch_size} x {world_size} ranks); lower the batch size")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.transform = transform
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.steps_per_epoch = n // (self.batch_size * self.world_size)
        self.generator = torch.Generator().manual_seed(mix_seeds(self.seed, 0x7A, self.rank))
        self.epoch = 0
        self.position = 0  # batches already taken in this epoch
        self._perm: torch.Tensor | None = None

    def _permutation(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(mix_seeds(self.seed, self.epoch))
            self._perm = torch.randperm(len(self.dataset), generator=g)
        return self._perm

    def next_indices(self) -> torch.Tensor:
        """Indices (int64 (B,)) of this rank's next batch; advances the stream."""
        if self.position >= self.steps_per_epoch:
            self.epoch += 1
            self.position = 0
            self._perm = None
        start = (self.position * self.world_size + self.rank) * self.batch_size
        idx = self._permutation()[start:start + self.batch_size]
        self.position += 1
        return idx

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset.batch(self.next_indices())
        if self.transform is not None:
            x = self.transform(x, self.generator)
        return x, y

    def state_dict(self) -> dict:
        """Plain ints plus the generator state (uint8 tensor); enough to resume bit-exactly."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "rank": self.rank, "world_size": self.world_size, "batch_size": self.batch_size,
                "generator": self.generator.get_state().clone()}

    def load_state_dict(self, d: dict) -> None:
        """Restore a state_dict(); the stream must have the same seed, batch size and sharding."""
        for key in ("seed", "batch_size", "world_size", "rank"):
            if key in d and int(d[key]) != getattr(self, key):
                raise DualatError(f"cannot resume the batch stream: the checkpoint has {key}={int(d[key])} "
                                  f"but this run has {getattr(self, key)}; resume with the original setting")
        self.epoch = int(d["epoch"])
        self.position = int(d["position"])
        self._perm = None
        self.generator.set_state(torch.as_tensor(d["generator"], dtype=torch.uint8).cpu())
