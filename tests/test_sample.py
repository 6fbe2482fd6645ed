"""Sampling (`dualat.sample`, `dualat sample`): determinism, that ascent raises what it ascends,
the files the verb promises, and one-line errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import dualat
from dualat.checkpoint import file_hash
from dualat.cli import main
from dualat.data import make_seed_source
from dualat.errors import DualatError
from dualat.loading import load_model

# seconds on one core: a stage-1 model good enough to have structure, a few DAT steps so every
# checkpoint kind and the curriculum T exist; no periodic evaluation beyond the final one
TINY_RUN = ["stage1.iterations=60", "stage2.iterations=4", "stage2.t_init=3", "stage2.auc_window=2",
            "eval.every=100", "eval.n_test=50", "eval.n_samples=10", "eval.pgd_steps=2",
            "eval.evalnet_iterations=10", "log.every=2", "log.checkpoint_every=100"]


def tiny_digits_run(tmp_path_factory):
    """A digits run directory, trained once per test session (test_explain.py shares it)."""
    out = tmp_path_factory.getbasetemp() / "tiny-digits-run"
    if not (out / "summary.json").is_file():
        dualat.train("digits", TINY_RUN, out=out, show_progress=False)
    return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny 8x8 models: with a second job on the 2 cores, two OpenMP threads made a forward and
    # backward pass 10x slower than one (0.21 s vs 0.02 s measured); restored afterwards.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    return tiny_digits_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(run):
    return load_model(run)[0]


def _seeds(n, seed=0):
    return make_seed_source("patches", (1, 8, 8), "test").sample(n, None, torch.Generator().manual_seed(seed))


def test_same_seed_same_samples_other_seed_other_samples(run):
    kw = dict(n=12, steps=5, batch_size=5)
    x1, y1 = dualat.sample(run, seed=3, **kw)
    x2, y2 = dualat.sample(run, seed=3, **kw)
    x3, _ = dualat.sample(run, seed=4, **kw)
    assert x1.shape == (12, 1, 8, 8) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert y1.tolist() == [i % 10 for i in range(12)]          # classes cycled evenly
    assert 0 <= x1.min() and x1.max() <= 1


def test_unconditional_sampling_raises_logsumexp(model):
    seeds = _seeds(20)
    x, y = dualat.sample(model, n=20, seeds=seeds, unconditional=True, steps=10, step_size=0.2)
    with torch.no_grad():
        before, after = model(seeds), model(x)
    assert torch.logsumexp(after, 1).mean() > torch.logsumexp(before, 1).mean() + 0.5
    assert torch.equal(y, after.argmax(1))                       # unconditional y = the model's prediction


def test_class_conditional_sampling_raises_f_y(model):
    seeds = _seeds(20, seed=1)
    x, y = dualat.sample(model, n=20, classes=[3, 7], seeds=seeds, steps=10, step_size=0.2)
    assert y.tolist() == [3, 7] * 10
    with torch.no_grad():
        before = model(seeds).gather(1, y.view(-1, 1)).squeeze(1)
        after = model(x).gather(1, y.view(-1, 1)).squeeze(1)
    assert after.mean() > before.mean() + 0.5
    assert (after > before).float().mean() >= 0.9


def test_bare_module_needs_a_shape_and_checks_classes(model):
    with pytest.raises(DualatError, match="shape"):
        dualat.sample(model, n=4)
    with pytest.raises(DualatError, match=r"out of range.*0\.\.9"):
        dualat.sample(model, n=4, classes=[10], shape=(1, 8, 8))
    x, y = dualat.sample(model, n=3, shape=(1, 8, 8), steps=2)  # documented defaults: noise seeds, step 0.2
    assert x.shape == (3, 1, 8, 8) and y.tolist() == [0, 1, 2]


def test_cli_writes_every_promised_file(run, tmp_path):
    out = tmp_path / "s"
    # 13 samples in batches of 5 (not a multiple), default steps and step size from the run
    assert main(["sample", str(run), "--n", "13", "--batch-size", "5", "--png", "--trajectory", "2",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    _, cfg, info = load_model(run)
    rec = json.loads((out / "sample.json").read_text())
    assert rec["checkpoint"]["sha256"] == file_hash(run / "model_ema.safetensors")
    assert rec["steps"] == info["sample_steps"] == json.loads((run / "sample_steps.json").read_text())["sample_steps"] > 0
    assert rec["step_size"] == pytest.approx(2 * cfg.stage2.step_size)
    assert rec["n"] == 13 and rec["seeds"] == cfg.data.seeds and rec["seed"] == 0 and rec["torch"] == torch.__version__
    assert rec["mean_logsumexp_samples"] > rec["mean_logsumexp_seeds"]
    npz = np.load(out / "samples.npz")
    assert npz["x"].shape == (13, 1, 8, 8) and npz["x"].dtype == np.uint8
    assert npz["y"].tolist() == [i % 10 for i in range(13)]
    assert len(list((out / "png").glob("*.png"))) == 13
    assert Image.open(out / "png" / "000012_y2.png").size == (8, 8)
    cols = len(range(0, rec["steps"] + 1, 2)) + (rec["steps"] % 2 != 0)   # 0, 2, 4, ..., final
    assert rec["trajectory_steps"][-1] == rec["steps"] and len(rec["trajectory_steps"]) == cols
    w, h = Image.open(out / "trajectory.png").size
    assert (w, h) == ((cols * 9 + 1) * 8, (10 * 9 + 1) * 8)           # 10 rows; 8x8 cells + 1 px pad, x8
    w, h = Image.open(out / "grid.png").size
    assert (w, h) == ((10 * 9 + 1) * 8, (10 * 9 + 1) * 8)             # one row per class, 10 per row
    # the uint8 file holds the samples themselves: same seed through the API gives the same images
    x, _ = dualat.sample(run, n=13, batch_size=5)
    assert np.array_equal((x * 255).round().to(torch.uint8).numpy(), npz["x"])


@pytest.mark.parametrize("args, needle", [
    (["{tmp}/no_such.pt"], "neither a run directory nor a checkpoint"),
    (["{run}", "--classes", "3,12"], "class 12 is out of range: this model has 10 classes, 0..9"),
    (["{run}", "--classes", "x"], "--classes takes numbers"),
    (["{run}", "--seeds", "folder:{tmp}/none"], "does not exist"),
    (["{run}", "--trajectory", "0"], "trajectory interval must be"),
])
def test_cli_mistakes_give_one_error_line(run, tmp_path, capsys, args, needle):
    argv = ["sample"] + [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv + ["--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dualat: error:")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
