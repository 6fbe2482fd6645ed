"""Try each fault and bad input of docs/reliability.md and print what actually happens, as
markdown table rows (fault | how | observed). Everything runs in a temporary folder.

usage: OMP_NUM_THREADS=1 python scripts/reliability_faults.py      (about a minute on 2 CPU cores)
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TMP = Path(tempfile.mkdtemp(prefix="dualat-faults-"))
os.environ["DUALAT_CACHE"] = str(TMP / "cache")

from dualat.checkpoint import extract_state_dict, load_weights, safe_load  # noqa: E402
from dualat.cli import main  # noqa: E402
from dualat.models import create_model  # noqa: E402

TINY = ["stage1.iterations=6", "stage2.iterations=4", "eval.every=2", "eval.n_test=50", "eval.n_samples=20",
        "eval.pgd_steps=2", "eval.evalnet_iterations=20", "log.checkpoint_every=2"]
ROWS: list[tuple[str, str, str]] = []


def cli(*argv) -> str:
    """Run `dualat ARGV` in-process: the exit code and the error line (temporary paths shortened)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    lines = [l for l in err.getvalue().splitlines() if l.startswith("dualat: error:")]
    tb = " TRACEBACK" if "Traceback" in err.getvalue() else ""
    text = lines[-1] if lines else "(no error line)"
    return f"exit {code}{tb}: `{text.replace(str(TMP), '$TMP')}`"


def row(fault: str, how: str, observed: str) -> None:
    ROWS.append((fault, how.replace(str(TMP), "$TMP"), observed))


def train_cmd(*extra, out="r"):
    return ("train", "digits", *TINY, *extra, "--out", str(TMP / out), "--quiet")


# ---- configuration -------------------------------------------------------------------------

for fault, override in [
    ("unknown key (typo)", "stage2.optim.lrr=0.1"),
    ("unknown section key", "stage1.atack.eps=1"),
    ("wrong type: text for an integer", "stage2.batch_size=abc"),
    ("wrong type: number for a section", "stage2=3"),
    ("wrong type: list for a string", "data.name=[1]"),
    ("negative epsilon", "stage1.attack.eps=-0.5"),
    ("infinite epsilon", "stage2.attack.eps=.inf"),
    ("zero PGD step size", "stage1.attack.step_size=0"),
    ("zero contrastive step size", "stage2.step_size=0"),
    ("NaN contrastive step size", "stage2.step_size=.nan"),
    ("AUC threshold 1.5", "stage2.auc_threshold=1.5"),
    ("AUC threshold 0", "stage2.auc_threshold=0"),
    ("batch size 1", "stage1.batch_size=1"),
    ("t_init above t_max", "stage2.t_init=99"),
    ("negative seed", "seed=-1"),
    ("number too large for a float", "stage1.attack.eps=" + "9" * 400),
    ("Linf budget written 8/0", "stage1.attack.eps=8/0"),
    ("run name with a slash", "name=a/b"),
    ("unknown model option", "model.kwargs={widht: 2}"),
    ("bad device", "device=cuda:x"),
    ("data.channels 2", "data.channels=2"),
    ("not key=value", "stage2.optim.lr"),
]:
    row(f"config: {fault}", f"`dualat train digits {override[:60]}`", cli("train", "digits", override, "--out",
                                                                            str(TMP / "never")))
def torchrun(*argv) -> str:
    """Launch `torchrun --standalone --nproc_per_node=2 -m dualat ARGV`: its exit code and the
    processes' first error line."""
    import subprocess
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "dualat", *argv], capture_output=True, text=True, env=env, timeout=300)
    lines = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("dualat: error:")]
    text = lines[0] if lines else "(no error line)"
    return (f"exit {p.returncode}, {len(lines)} processes printed: `{text.replace(str(TMP), '$TMP')}`"
            + (", then torchrun's report of the failed processes" if "FAILED" in p.stdout + p.stderr else ""))


row("config: batch size not divisible by the world size",
    f"`torchrun --standalone --nproc_per_node=2 -m dualat train digits stage2.batch_size=63 --out {TMP / 'ws'}`",
    torchrun("train", "digits", "stage2.batch_size=63", "--out", str(TMP / "ws")))
(TMP / "bad.yaml").write_text("stage1: [unclosed")
row("config: file that is not YAML", "`dualat train $TMP/bad.yaml`", cli("train", str(TMP / "bad.yaml")))
row("config: preset that does not exist", "`dualat train no_such_preset`", cli("train", "no_such_preset"))
row("CLI: unknown verb", "`dualat frobnicate`", cli("frobnicate"))
row("CLI: unknown flag", "`dualat train digits --outt x`", cli("train", "digits", "--outt", "x"))

# ---- run directories -----------------------------------------------------------------------

row("fresh run", "`dualat train digits <tiny> --out $TMP/r`", cli(*train_cmd()))
before = (TMP / "r" / "last.pt").read_bytes()
row("existing run directory", "the same command again", cli(*train_cmd())
    + ("; last.pt unchanged" if (TMP / "r" / "last.pt").read_bytes() == before else "; last.pt CHANGED"))
row("resume a finished run", "`dualat train --resume $TMP/r`", cli("train", "--resume", str(TMP / "r"), "--quiet"))
row("resume a folder that is not a run", "`dualat train --resume $TMP/nothing`",
    cli("train", "--resume", str(TMP / "nothing")))
row("--resume plus a config", "`dualat train digits --resume $TMP/r`", cli("train", "digits", "--resume", str(TMP / "r")))
row("unwritable --out", "`dualat train digits <tiny> --out /proc/dualat-run`",
    cli("train", "digits", *TINY, "--out", "/proc/dualat-run", "--quiet"))

# ---- divergence ----------------------------------------------------------------------------

out = cli(*train_cmd("stage2.optim.lr=1.0e+6", "stage2.loss_bound=50", out="div"))
kept = safe_load(TMP / "div" / "last.pt")
row("loss explodes (lr 1e6)", "`dualat train digits <tiny> stage2.optim.lr=1.0e+6 stage2.loss_bound=50`",
    out + f"; last.pt kept at stage {kept['stage']} iteration {kept['iteration']}, all finite: "
    f"{all(bool(torch.isfinite(v).all()) for v in kept['model'].values() if v.is_floating_point())}")

dat = importlib.import_module("dualat.training.dat")
real_step, calls = dat.dat_step, []


def poisoned(model, *args, **kwargs):
    result = real_step(model, *args, **kwargs)
    calls.append(1)
    if len(calls) == 3:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
    return result


dat.dat_step = poisoned
out = cli(*train_cmd("eval.every=1", out="nan"))
dat.dat_step = real_step
kept = {n: safe_load(TMP / "nan" / n)["iteration"] for n in ("last.pt", "best_fid.pt", "best_robust.pt")}
row("a weight becomes NaN while the loss looks finite", "stage-2 step patched to write NaN at iteration 3 "
    "(script; test_a_nan_parameter_stops_the_run...)", out + f"; kept iterations {kept}")

# ---- checkpoints ---------------------------------------------------------------------------


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {TMP / 'pwned'}",))


(TMP / "evil.pth").write_bytes(pickle.dumps({"model_state_dict": Evil()}))
row("crafted pickle that would run `touch` on load", "`dualat train digits stage1.init=$TMP/evil.pth`",
    cli(*train_cmd(f"stage1.init={TMP / 'evil.pth'}", out="e1")) + f"; command ran: {(TMP / 'pwned').exists()}")
torch.save(create_model("small_cnn", 10, 1, 8), TMP / "whole.pth")
row("whole pickled nn.Module", "`dualat train digits stage1.init=$TMP/whole.pth`",
    cli(*train_cmd(f"stage1.init={TMP / 'whole.pth'}", out="e2")))
(TMP / "cut.pt").write_bytes((TMP / "r" / "last.pt").read_bytes()[:300])
row("truncated checkpoint", "`dualat train digits stage1.init=$TMP/cut.pt`",
    cli(*train_cmd(f"stage1.init={TMP / 'cut.pt'}", out="e3")))
row("checkpoint that does not exist", "`dualat eval $TMP/none.pt`", cli("eval", str(TMP / "none.pt")))

src = create_model("wrn16_4", 10, 3, 32)
bb = {k[4:]: v for k, v in src.state_dict().items() if k.startswith("net.")}
head = "fc"
layouts = {
    "DAT authors' model_bestfid.pth (nn.DataParallel: `module.`)": {"module." + k: v for k, v in bb.items()},
    "DAT authors' EMA (AveragedModel: `module.module.`, `module.n_averaged`)":
        {"module.n_averaged": torch.tensor(3), **{"module.module." + k: v for k, v in bb.items()}},
    "DAT authors' training_state_latest.pth (model/ema/optimizer state dicts)":
        {"model_state_dict": {"module." + k: v for k, v in bb.items()},
         "ema_state_dict": {"n_averaged": torch.tensor(3), **{"module.module." + k: v for k, v in bb.items()}},
         "training_state": {"global_step": 10, "cur_outdist_steps": 4}},
    "JEM {'model_state_dict': f.* + class_output.* + energy_output.*, 'replay_buffer'}":
        {"model_state_dict": {**{"f." + k: v for k, v in bb.items() if not k.startswith(head)},
                              "class_output.weight": bb["fc.weight"], "class_output.bias": bb["fc.bias"],
                              "energy_output.weight": torch.zeros(1, 256), "energy_output.bias": torch.zeros(1)},
         "replay_buffer": torch.rand(100, 3, 32, 32)},
    "RobustBench {'state_dict': module.*}": {"state_dict": {"module." + k: v for k, v in bb.items()}},
    "MadryLab robustness {'model': module.model.*, module.attacker.model.*, normalizer}":
        {"model": {**{"module.model." + k: v for k, v in bb.items()},
                   **{"module.attacker.model." + k: v for k, v in bb.items()},
                   "module.normalizer.new_mean": torch.zeros(3, 1, 1)}},
}
for name, sd in layouts.items():
    torch.save(sd, TMP / "foreign.pth")
    report = load_weights(create_model("wrn16_4", 10, 3, 32), extract_state_dict(safe_load(TMP / "foreign.pth")))
    row(f"foreign weights: {name}", "WRN-16-4 weights saved in that layout, `load_weights` "
        "(tests/test_checkpoints.py)", f"loaded {report['loaded']}/{len(bb)}, missing {report['missing']}, "
        f"{len(report['unexpected'])} unexpected {report['unexpected'][:3]}{' ...' if len(report['unexpected']) > 3 else ''}")

# ---- data ----------------------------------------------------------------------------------


def idx(path, arr, magic):
    path.write_bytes(struct.pack(">i", magic) + struct.pack(">" + "i" * arr.ndim, *arr.shape)
                     + arr.astype(np.uint8).tobytes())


def fashion(folder, size=28, labels=(0, 1, 2, 3)):
    folder.mkdir(parents=True, exist_ok=True)
    for pre in ("train", "t10k"):
        idx(folder / f"{pre}-images-idx3-ubyte", np.zeros((len(labels), size, size)), 2051)
        idx(folder / f"{pre}-labels-idx1-ubyte", np.array(labels), 2049)


data = ["data.name=fashion_mnist"]
fashion(TMP / "fm1")
p = TMP / "fm1" / "train-images-idx3-ubyte"
p.write_bytes(p.read_bytes()[:-50])
row("truncated idx file", "last 50 bytes of train-images cut", cli(*train_cmd(*data, f"data.root={TMP / 'fm1'}", out="d1")))
fashion(TMP / "fm2", labels=(0, 1, 12, 3))
row("idx label out of range", "a label 12 in a 10-class file", cli(*train_cmd(*data, f"data.root={TMP / 'fm2'}", out="d2")))
fashion(TMP / "fm3", size=32)
row("idx images of the wrong size", "32x32 images as Fashion-MNIST", cli(*train_cmd(*data, f"data.root={TMP / 'fm3'}", out="d3")))
row("Fashion-MNIST missing", "`data.root=$TMP/empty`", cli(*train_cmd(*data, f"data.root={TMP / 'empty'}", out="d4")))
cif = TMP / "cifar-10-batches-py"
cif.mkdir()
for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    with open(cif / name, "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]}, f)
(cif / "data_batch_2").write_bytes((cif / "data_batch_2").read_bytes()[:400])
row("corrupt (truncated) CIFAR pickle", "data_batch_2 cut to 400 bytes",
    cli(*train_cmd("data.name=cifar10", f"data.root={TMP}", out="d5")))
with open(cif / "data_batch_2", "wb") as f:
    pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 10, 2]}, f)
row("CIFAR label out of range", "a label 10 in data_batch_2", cli(*train_cmd("data.name=cifar10", f"data.root={TMP}", out="d6")))
with open(cif / "data_batch_2", "wb") as f:
    f.write(pickle.dumps({b"data": Evil(), b"labels": [0]}))
row("CIFAR pickle that would run code", "data_batch_2 replaced by a crafted pickle",
    cli(*train_cmd("data.name=cifar10", f"data.root={TMP}", out="d7")) + f"; command ran: {(TMP / 'pwned').exists()}")
img = ["data.name=imagefolder", f"data.root={TMP / 'img'}", "data.image_size=8", "data.channels=1", "data.seeds=noise"]
(TMP / "img" / "train").mkdir(parents=True)
row("empty image folder", "`data.root` whose train/ is empty", cli(*train_cmd(*img, out="d8")))
for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "cow"))):
    for c in classes:
        (TMP / "img" / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.new("RGB", (10, 12), (i * 50, 0, 0)).save(TMP / "img" / split / c / f"{i}.png")
row("train and test folders with different classes", "train/{cat,dog}, test/{cat,cow}", cli(*train_cmd(*img, out="d9")))
os.rename(TMP / "img" / "test" / "cow", TMP / "img" / "test" / "dog")
gray16 = TMP / "img" / "train" / "cat" / "deep.png"
Image.fromarray(np.full((9, 9), 30000, dtype=np.uint16)).save(gray16)
Image.new("CMYK", (30, 7)).save(TMP / "img" / "train" / "cat" / "cmyk.jpg")
Image.new("P", (5, 5)).save(TMP / "img" / "train" / "dog" / "palette.png")
from dualat.data import load_dataset  # noqa: E402
ds = load_dataset("imagefolder", "train", root=str(TMP / "img"), image_size=8, channels=1)
deep = ds[[p.name for p in ds.files].index("deep.png")][0]
row("images of other sizes and modes (16-bit gray, CMYK JPEG, palette, RGB) in one folder",
    "`load_dataset('imagefolder', image_size=8, channels=1)`",
    f"all converted and resized to {tuple(deep.shape)}; the 16-bit value 30000 reads as {float(deep.mean()):.3f} "
    f"(30000/65535 = {30000 / 65535:.3f}), not clipped to 1")
(TMP / "img" / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG not an image")
row("damaged image met during training", "a broken.png among the training images",
    cli(*train_cmd(*img, "stage1.batch_size=4", "stage2.batch_size=4", out="d10")))

# ---- print ---------------------------------------------------------------------------------

print("| fault / bad input | how | observed |")
print("|---|---|---|")
for fault, how, observed in ROWS:
    print(f"| {fault} | {how} | {observed.replace('|', '/')} |")
