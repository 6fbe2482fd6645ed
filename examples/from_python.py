"""From Python: the library API as a notebook would use it, on the bundled Fashion-MNIST model.

Every `dualat` verb is a function with the same arguments, so a notebook needs no command line.
This script opens the bundled model (`pretrained:fashion-mnist`, no training, no download),
checks its accuracy on 500 test images, draws 20 class-conditional samples by descending the
energy from held-out photo-patch seeds, finds a test image the model gets wrong and explains it
with counterfactuals (the smallest changes, inside L2 balls of growing radius, that make the
model see the true class), and measures the Frechet distance of 500 samples to 1,000 test images
in the features of the bundled evaluation network (not an FID). When matplotlib is installed it
plots the samples and the counterfactuals into `from_python.png`; when it is not, it says so and
skips the plot. It asserts accuracy above chance, samples in [0, 1] of shape (20, 1, 28, 28), a
counterfactual that raises p(true class), and a finite FD. Needs Fashion-MNIST
(`apt-get install dataset-fashion-mnist`, or data.root; see docs/guide.md).

    python examples/from_python.py [WORK_DIR]      (default: a temporary folder)
"""
import sys
import tempfile
from pathlib import Path

import torch

import dualat
from dualat.data import load_dataset
from dualat.evaluate.run import evaluate
from dualat.loading import load_model

MODEL = "pretrained:fashion-mnist"


def main(work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    model, cfg, info = load_model(MODEL)                  # EMA weights; model(x in [0, 1]) -> logits
    test = load_dataset("fashion_mnist", "test")
    x_test, y_test = test.batch(torch.arange(500))
    with torch.no_grad():
        pred = model(x_test).argmax(1)
    acc = (pred == y_test).float().mean().item()
    print(f"{MODEL}: {cfg.model.name}, trained to T={info['final_T']}; accuracy on 500 test images {acc:.1%}")
    assert acc > 0.5, acc

    x, y = dualat.sample(MODEL, n=20)                     # the run's sampler: 40 steps from held-out patches
    print(f"samples {tuple(x.shape)} in [{x.min():.2f}, {x.max():.2f}], classes {y.tolist()}")
    assert x.shape == (20, 1, 28, 28) and x.min() >= 0 and x.max() <= 1

    wrong = int((pred != y_test).nonzero()[0])
    true, seen = int(y_test[wrong]), int(pred[wrong])
    cf = dualat.explain(model, x_test[wrong:wrong + 1], target=true, radii=[1.0, 2.0, 4.0])
    conf = [round(float(c), 3) for c in cf.confidences[:, 0]]
    print(f"test image {wrong}: a {test.classes[true]} seen as a {test.classes[seen]}; p({test.classes[true]}) "
          f"{float(cf.original_confidence[0]):.3f} -> {conf} inside L2 balls of radius 1, 2, 4")
    assert conf[-1] > float(cf.original_confidence[0])

    m = evaluate(MODEL, robust=False, generative=True, ood=False, calibrate=False, n_samples=500,
                 ref_split="test", n_ref=1000, out=work / "eval", show_progress=False)
    print(f"FD of 500 samples to 1,000 test images (evaluation-network features, not an FID): {m['fd']:.2f}")
    assert m["fd"] == m["fd"] and m["fd"] < float("inf")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib to get from_python.png)")
        return {"accuracy": acc, "fd": m["fd"], "plot": None}
    fig, axes = plt.subplots(2, 10, figsize=(10, 2.4))
    for ax, img in zip(axes[0], x[:10]):
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    for ax, img, title in zip(axes[1], [x_test[wrong]] + list(cf.counterfactuals[:, 0]), ["input", "r=1", "r=2", "r=4"]):
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.savefig(work / "from_python.png", dpi=100)
    print(f"plot: {work / 'from_python.png'}")
    return {"accuracy": acc, "fd": m["fd"], "plot": work / "from_python.png"}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
