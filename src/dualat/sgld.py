"""JEM's sampler: stochastic gradient Langevin dynamics on E(x) = -logsumexp f(x), and the
persistent replay buffer its chains live in (method.md section 10), and what the `sgld` and
`buffer` samplers (samplers.py) draw from a JEM run with.

    x <- x - (alpha / 2) * grad_x E(x) + sigma * eps,   eps ~ N(0, I)

alpha = 2, sigma = 0.01 is the update of JEM's released code (x += 1 * grad log p(x) + 0.01 eps).
Chains run with the model in eval mode and without weight-gradient graphs, as PGD does.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .checkpoint import safe_load
from .data import make_seed_source
from .energy import energy
from .errors import DualatError
from .pgd import eval_mode, input_grad_only
from .rundir import RunDir


def energy_grad(model, x: torch.Tensor, autocast=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x E(x), E(x)) for a batch x, E = -logsumexp of the logits."""
    x = x.detach().requires_grad_(True)
    with autocast() if autocast else contextlib.nullcontext():
        e = energy(model(x).float())
    (g,) = torch.autograd.grad(e.sum(), x)
    return g, e.detach()


def sgld(model, x0: torch.Tensor, steps: int, step_size: float, noise: float,
         generator: torch.Generator | None = None, clamp: bool = True, autocast=None) -> torch.Tensor:
    """Run `steps` SGLD steps from x0 (B, ...) in eval mode; returns detached samples.

    The noise comes from `generator` (a CPU generator works for any device; a CUDA generator
    avoids the copy) so chains are reproducible. clamp keeps the chains inside the image domain [0, 1].
    """
    x = x0.detach().clone()
    with eval_mode(model), input_grad_only(model):
        for _ in range(steps):
            g, _ = energy_grad(model, x, autocast)
            dev = generator.device if generator is not None else x.device
            eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
            with torch.no_grad():
                x = x - 0.5 * step_size * g + noise * eps
                if clamp:
                    x = x.clamp_(0.0, 1.0)
    return x.detach()


class InitialDistribution:
    """Where chains start: uniform noise on [0, 1] (JEM) or a per-class Gaussian fitted to the
    training data (JEM++ / SADA-JEM; `gaussian_source` is a data.seeds.GaussianSource)."""

    def __init__(self, kind: str, shape: tuple, num_classes: int, gaussian_source=None):
        if kind not in ("uniform", "gaussian"):
            raise DualatError(f"unknown SGLD initial distribution {kind!r}; use uniform or gaussian")
        if kind == "gaussian" and gaussian_source is None:
            raise DualatError("buffer_init=gaussian needs the per-class Gaussian seed source")
        self.kind, self.shape, self.num_classes, self.source = kind, tuple(shape), num_classes, gaussian_source

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "uniform":
            return torch.rand((n, *self.shape), generator=generator)
        y = torch.randint(0, self.num_classes, (n,), generator=generator)
        return self.source.sample(n, y, generator)


class ReplayBuffer:
    """A persistent store of SGLD chains (CPU tensor of `size` images).

    `draw(n, generator)` picks n random chains and restarts each from the initial distribution
    with probability `reinit_prob`; returns (indices, starts). `put(indices, x)` stores the
    chains' new states. All randomness comes from the generator passed in. DAT's persistent
    contrastive chains (training/chains.py) are this buffer with class labels and ages added.
    """

    def __init__(self, size: int, init: InitialDistribution, reinit_prob: float, generator: torch.Generator):
        if size < 1:
            raise DualatError(f"replay buffer size must be >= 1, got {size}")
        self.init, self.reinit_prob = init, float(reinit_prob)
        self.images = init.sample(size, generator)
        self.restarts = 0  # chains restarted since creation (a measured rate, see tests)
        self.draws = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self), (n,), generator=generator)
        fresh = self.init.sample(n, generator)
        restart = torch.rand(n, generator=generator) < self.reinit_prob
        mask = restart.view(-1, *([1] * (fresh.dim() - 1)))
        starts = torch.where(mask, fresh, self.images[idx])
        self.restarts += int(restart.sum())
        self.draws += n
        return idx, starts

    def put(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        self.images[idx] = x.detach().to(self.images.device, self.images.dtype)

    def state_dict(self) -> dict:
        return {"images": self.images, "restarts": self.restarts, "draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        images = state["images"]
        if tuple(images.shape[1:]) != tuple(self.images.shape[1:]):
            raise DualatError(f"replay buffer holds images of shape {tuple(images.shape[1:])}, this run needs "
                              f"{tuple(self.images.shape[1:])}")
        self.images = images.clone().float()
        self.restarts, self.draws = int(state["restarts"]), int(state["draws"])


def initial_distribution(cfg, train_set, shape) -> InitialDistribution:
    """Where a run's chains start (cfg.jem.buffer_init), fitted to `train_set` when gaussian."""
    src = None
    if cfg.jem.buffer_init == "gaussian":
        src = make_seed_source("gaussian", tuple(shape), "train", train_set, None, cfg.seed)
    return InitialDistribution(cfg.jem.buffer_init, shape, train_set.num_classes, src)

def predictions(model, x, device, batch_size: int = 500) -> torch.Tensor:
    """The model's predicted class of every image of x, in batches; CPU result."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])

CHAIN_BATCH = 500  # chains run together by sgld_batches


def sgld_batches(model, x0: torch.Tensor, steps: int, step_size: float, noise: float, g, clamp: bool,
                 autocast=None) -> torch.Tensor:
    """Fresh SGLD chains for many starting points, CHAIN_BATCH at a time; CPU result."""
    device, batch_size = next(model.parameters()).device, CHAIN_BATCH
    out = [sgld(model, x0[i:i + batch_size].to(device), steps, step_size, noise, g, clamp, autocast).cpu()
           for i in range(0, len(x0), batch_size)]
    return torch.cat(out)

def load_buffer(run_dir) -> torch.Tensor:
    """The replay buffer of a JEM run directory: replay_buffer.safetensors (finished run) or the
    one inside last.pt (a run that diverged or was stopped)."""
    run_dir = Path(run_dir)
    if (run_dir / RunDir.BUFFER).is_file():
        return safe_load(run_dir / RunDir.BUFFER)["images"]
    if (run_dir / RunDir.STATE).is_file():
        state = safe_load(run_dir / RunDir.STATE)
        if isinstance(state.get("buffer"), dict):
            return state["buffer"]["images"]
    raise DualatError(f"{run_dir} holds no replay buffer (replay_buffer.safetensors or last.pt of a JEM run); "
                      "use --sampler sgld for fresh chains")


__all__ = ["sgld", "energy_grad", "InitialDistribution", "ReplayBuffer", "initial_distribution", "predictions",
           "sgld_batches", "load_buffer"]
