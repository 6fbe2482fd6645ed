"""What the harness times: one model at its preset's DAT settings, as the library runs it and as
the straightforward reference does, plus the single passes that bound both.

The library side is what `dualat train` does: the preset's memory format (inputs converted
each iteration as Run.to_device does), bf16 autocast and torch.compile when asked for; the
process that runs it calls `speed.keep_large_buffers` as `dualat train` does. The reference side
is the authors' structure (`train.reference`) as a plain script runs it: default memory format,
fp32, no compile, in a process of its own that leaves glibc's allocator alone (plain.py). Inputs are random tensors of the dataset's shape: the cost of a
pass does not depend on pixel values, and no dataset has to be present.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dualat import speed
from dualat.config import load_config
from dualat.models import create_model, forward_flops, freeze_batchnorm
from dualat.pgd import eval_mode, input_grad_only
from dualat.samplers import generate
from dualat.optim import make_optimizer
from dualat.precision import cpu_native_bf16, precision
from dualat.training.common import maybe
from dualat.training.reference import reference_dat_step
from dualat.training.steps import StepRig, attack_steps, dat_step

from .timing import count_flops

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def BF16_CPU():
    """bf16 autocast on the CPU, as `amp=true` or `amp: auto` gives it where the CPU has native bf16
    (dualat.precision); the harness times it on any CPU (emulated where the instructions are missing)."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


@dataclass(frozen=True)
class Spec:
    title: str
    preset: str
    model: str | None   # None: the preset's own model
    shape: tuple


SPECS = {
    "small_cnn": Spec("small CNN, Fashion-MNIST 1x28x28 (preset fashion_mnist)", "fashion_mnist", None, (1, 28, 28)),
    "preact_resnet18": Spec("PreAct-ResNet-18, 3x32x32 (preset cifar10_wrn34 with model.name=preact_resnet18)",
                            "cifar10_wrn34", "preact_resnet18", (3, 32, 32)),
}


class Workload:
    """Models, optimisers, inputs and timed closures for one benchmark model."""

    def __init__(self, key: str, device: torch.device, batch_size: int | None = None, amp: bool = False,
                 compile: bool = False, channels_last: bool | None = None, max_attack_steps: int | None = None,
                 max_batch: int = 0, amp_variant: bool = False):
        spec = SPECS[key]
        overrides = [f"model.name={spec.model}"] if spec.model else []
        if batch_size:
            overrides.append(f"stage2.batch_size={batch_size}")
        cfg = load_config(spec.preset, overrides)
        self.key, self.spec, self.device, self.s2, self.threat = key, spec, device, cfg.stage2, cfg.threat
        if max_attack_steps is not None:
            self.threat.steps = min(self.threat.steps, max_attack_steps)
        self.B, self.K, self.shape = self.s2.batch_size, attack_steps(self.threat)[0], spec.shape
        self.lib_format_name = "channels_last" if (cfg.model.channels_last if channels_last is None
                                                    else channels_last) else "contiguous"
        self.lib_format = FORMATS[self.lib_format_name]
        self.autocast = precision(amp, device)[1]
        self.compiled = False
        torch.manual_seed(0)
        base = create_model(cfg.model.name, num_classes=10, in_channels=self.shape[0], image_size=self.shape[-1],
                            mean=cfg.data.mean, std=cfg.data.std, **cfg.model.kwargs).to(device)
        freeze_batchnorm(base)  # stage 2
        self.ref = copy.deepcopy(base)
        self.lib = copy.deepcopy(base).to(memory_format=self.lib_format)
        if compile:
            self.compiled = speed.compile_model(self.lib, device)
        # weight-frozen copies for the single passes, one per memory format
        self.pass_models = {name: copy.deepcopy(base).to(memory_format=fmt) for name, fmt in FORMATS.items()}
        if self.compiled:
            speed.compile_model(self.pass_models[self.lib_format_name], device)
        # amp_variant: also the library step under bf16 autocast, on any CPU; amp_native: whether the
        # CPU has the bf16 instructions `amp: auto` asks for (dualat.precision), else bf16 is emulated
        self.amp_native = device.type == "cpu" and cpu_native_bf16()
        self.amp_variant = amp_variant and not amp and device.type == "cpu"
        if self.amp_variant:
            self.lib_amp = copy.deepcopy(self.lib)
            self.pass_models["amp"] = copy.deepcopy(self.pass_models[self.lib_format_name])
            self.opt_lib_amp = make_optimizer(self.lib_amp.parameters(), self.s2.optim)
            self.gen_lib_amp = torch.Generator().manual_seed(1)
        self.opt_lib = make_optimizer(self.lib.parameters(), self.s2.optim)
        self.opt_ref = make_optimizer(self.ref.parameters(), self.s2.optim)
        self.gen_lib, self.gen_ref = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        g = torch.Generator().manual_seed(0)
        n = max(3 * self.B, max_batch)  # the fused pass and the batch sweep read slices of these
        self.data = {name: self._images(n, g) for name in ("real", "adv", "seeds")}
        self.labels = torch.randint(0, 10, (n,), generator=g).to(device)
        self.forward_flops = forward_flops(base, self.shape)

    def _images(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.rand(n, *self.shape, generator=g).to(self.device)

    def batch(self, name: str, n: int | None = None) -> torch.Tensor:
        return self.data[name][: n or self.B]

    # ------------------------------------------------------------------ the DAT step, both ways
    def lib_step(self, T: int, amp: bool = False):
        """The library step; amp=True: the amp_variant copy under CPU bf16 autocast."""
        fmt, b = self.lib_format, self.B
        y = self.labels[:b]
        model, opt, gen, autocast = ((self.lib_amp, self.opt_lib_amp, self.gen_lib_amp, BF16_CPU) if amp
                                     else (self.lib, self.opt_lib, self.gen_lib, self.autocast))

        def step():
            x_r, x_a, seeds = (self.batch(n).contiguous(memory_format=fmt) for n in ("real", "adv", "seeds"))
            return dat_step(model, opt, (x_r, y), seeds, (x_a, y), T, self.s2, gen, StepRig(autocast),
                            threat=self.threat)
        return step

    def ref_step(self, T: int):
        y = self.labels[: self.B]

        def step():
            return reference_dat_step(self.ref, self.opt_ref, (self.batch("real"), y), self.batch("seeds"),
                                      (self.batch("adv"), y), T, self.s2, self.gen_ref, threat=self.threat)
        return step

    def sample(self, which: str, steps: int):
        """A `steps`-step class-conditional generation of B images (sample.generate)."""
        y = self.labels[: self.B]

        def lib():
            seeds = self.batch("seeds").contiguous(memory_format=self.lib_format)
            return generate(self.lib, seeds, y, steps, 2 * self.s2.step_size, batch_size=self.B,
                            autocast=self.autocast)

        def ref():
            return generate(self.ref, self.batch("seeds"), y, steps, 2 * self.s2.step_size, batch_size=self.B)
        return lib if which == "lib" else ref

    # ------------------------------------------------------------------ single passes (the limit)
    def _pass_setup(self, fmt: str, batch: int):
        """(model, its forward, inputs, labels, autocast) for a single pass; fmt 'amp' is the
        library's format under CPU bf16 autocast."""
        model = self.pass_models[fmt]
        memory_format = self.lib_format if fmt == "amp" else FORMATS[fmt]
        autocast = BF16_CPU if fmt == "amp" else self.autocast if fmt == self.lib_format_name else None
        x = self.batch("real", batch).contiguous(memory_format=memory_format)
        return model, speed.forward_of(model), x, self.labels[:batch], autocast

    def input_grad_pass(self, fmt: str, batch: int, backward: bool = False):
        """One PGD pass: forward + gradient w.r.t. the inputs only, model in eval mode."""
        model, net, x, y, autocast = self._pass_setup(fmt, batch)

        def run():
            with eval_mode(model), input_grad_only(model):
                xx = x.detach().requires_grad_(True)
                with maybe(autocast):
                    value = net(xx).float().gather(1, y.view(-1, 1)).sum()
                if backward:  # FlopCounterMode cannot follow autograd.grad; the work is the same
                    value.backward()
                else:
                    torch.autograd.grad(value, xx)
        return run

    def train_pass(self, fmt: str, batch: int):
        """One training pass: forward + backward with the weights' gradients (no optimiser step)."""
        model, net, x, y, autocast = self._pass_setup(fmt, batch)

        def run():
            model.train()
            model.zero_grad(set_to_none=True)
            with maybe(autocast):
                logits = net(x)
            F.cross_entropy(logits.float(), y).backward()
        return run

    def pass_flops(self) -> dict:
        """FLOPs counted by torch for one forward, input-gradient pass and training pass at batch B."""
        fmt = self.lib_format_name
        model = self.pass_models[fmt]
        x = self.batch("real").contiguous(memory_format=self.lib_format)

        def forward():
            with torch.no_grad(), eval_mode(model):
                model(x)
        return {"forward": count_flops(forward),
                "input_grad_pass": count_flops(self.input_grad_pass(fmt, self.B, backward=True)),
                "train_pass": count_flops(self.train_pass(fmt, self.B)),
                "forward_per_image_models_forward_flops": self.forward_flops}
