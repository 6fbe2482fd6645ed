"""Your own images: train DAT on an ImageFolder tree, sample from your own seed images, explain.

Most users do not have their data as Fashion-MNIST idx files but as a folder of pictures, one
sub-folder per class, in whatever size and colour mode the camera or the export gave them. This
example writes such a tree from the bundled scikit-learn digits (`train/<class>/*.png` and
`test/<class>/*.png`, as 24x24 RGB PNGs although the digits are 8x8 grey), plus a folder of "your
own" seed images (crops of the two photos bundled with scikit-learn, as JPEGs). It then trains on
the tree with `data.name=imagefolder` (the loader converts every file to `data.channels` and
`data.image_size`), uses the seed folder for the contrastive samples and for generation
(`data.seeds=folder`), samples one image per class, and explains a test image with
counterfactuals. The budget is tiny (under a minute on 2 CPU cores), so expect blurry samples;
what it shows is the plumbing from your folders to a trained model. It asserts that the model
beats chance on the test folder, that the samples are in [0, 1] with the right shape, and that
the counterfactual raises p(target).

    python examples/own_images.py [WORK_DIR]      (default: a temporary folder)
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dualat
from dualat.data import load_dataset
from dualat.loading import load_model


def write_tree(root: Path) -> None:
    """root/train/<digit>/*.png and root/test/<digit>/*.png (24x24 RGB), root/seeds/*.jpg."""
    from sklearn.datasets import load_digits, load_sample_images
    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        split = "train" if i < 1500 else "test"
        gray = (img * 255 / 16).clip(0, 255).astype(np.uint8)
        rgb = Image.fromarray(gray).convert("RGB").resize((24, 24), Image.BILINEAR)
        (root / split / str(y)).mkdir(parents=True, exist_ok=True)
        rgb.save(root / split / str(y) / f"{i:04d}.png")
    (root / "seeds").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k, photo in enumerate(load_sample_images().images):  # china.jpg, flower.jpg: 427 x 640 RGB
        for j in range(20):
            r, c = rng.integers(0, photo.shape[0] - 64), rng.integers(0, photo.shape[1] - 64)
            Image.fromarray(photo[r:r + 64, c:c + 64]).save(root / "seeds" / f"photo{k}_{j:02d}.jpg")


def main(work: Path) -> dict:
    tree = work / "my_images"
    write_tree(tree)
    run = dualat.train("digits", [
        "data.name=imagefolder", f"data.root={tree}", "data.image_size=8", "data.channels=1",
        "data.seeds=folder", f"data.seed_folder={tree / 'seeds'}",
        "stage1.iterations=100", "stage2.iterations=30", "stage2.t_init=5", "eval.every=30",
        "eval.n_test=100", "eval.n_samples=50", "eval.evalnet_iterations=60", "threads=1"],
        out=work / "run", show_progress=False)
    model, cfg, _ = load_model(run)
    test = load_dataset("imagefolder", "test", root=str(tree), image_size=8, channels=1)
    x_test, y_test = test.batch(torch.arange(len(test)))
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"trained on {tree}: test accuracy {acc:.1%} ({len(test)} images, chance 10%)")
    assert acc > 0.3, acc

    x, y = dualat.sample(run, n=10, seeds=f"folder:{tree / 'seeds'}")  # held-out crops of your photos
    print(f"10 samples {tuple(x.shape)} in [{x.min():.2f}, {x.max():.2f}], classes {y.tolist()}")
    assert x.shape == (10, 1, 8, 8) and x.min() >= 0 and x.max() <= 1

    target = (int(y_test[0]) + 1) % 10
    e = dualat.explain(model, x_test[:1], target=target, radii=[0.5, 1.0, 2.0])
    conf = [round(float(c), 3) for c in e.confidences[:, 0]]
    print(f"test image 0 (a {int(y_test[0])}) pushed toward {target}: p(target) {float(e.original_confidence[0]):.3f}"
          f" -> {conf} at L2 radii 0.5, 1, 2")
    assert conf[-1] > float(e.original_confidence[0])
    return {"run": run, "accuracy": acc}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
