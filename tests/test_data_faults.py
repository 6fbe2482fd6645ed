"""Bad data files: each gives one DualatError line naming the file, and through the command line
exit code 2, no traceback and no run directory left behind."""
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dualat.cli import main
from dualat.data import load_dataset
from dualat.data.folder import load_image
from dualat.errors import DualatError

RNG = np.random.default_rng(0)


def _idx(path, arr, magic):
    path.write_bytes(struct.pack(">i", magic) + struct.pack(">" + "i" * arr.ndim, *arr.shape)
                     + arr.astype(np.uint8).tobytes())
    return path


def _fashion(folder, n=6, size=28, labels=None):
    """train and t10k idx files in `folder`; returns the two training file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pre in ("train", "t10k"):
        x = RNG.integers(0, 256, (n, size, size), dtype=np.uint8)
        y = np.array(labels if labels is not None else RNG.integers(0, 10, n), dtype=np.uint8)
        out.append((_idx(folder / f"{pre}-images-idx3-ubyte", x, 2051),
                    _idx(folder / f"{pre}-labels-idx1-ubyte", y, 2049)))
    return out[0]


def _cifar(folder, labels=(1, 2, 3)):
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": RNG.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": list(labels)}, f)
    return folder


def _image_tree(root, classes=("a", "b"), split="train", size=(10, 10)):
    for c in classes:
        (root / split / c).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 200, 30)).save(root / split / c / "0.png")


def _cli(capsys, *args):
    code = main(["train", "digits", "eval.evalnet_iterations=5", *args])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("dualat: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- each fault named, through the loader --------------------------------------------------

def test_idx_label_out_of_range_names_the_file(tmp_path):
    _, labels = _fashion(tmp_path, labels=[0, 3, 12, 1, 2, 9])
    with pytest.raises(DualatError, match=f"{labels}.*label 12.*10 classes"):
        load_dataset("fashion_mnist", root=str(tmp_path))


def test_idx_images_of_the_wrong_size_name_the_file(tmp_path):
    images, _ = _fashion(tmp_path, size=32)
    with pytest.raises(DualatError, match=f"{images} holds 32x32 images"):
        load_dataset("fashion_mnist", root=str(tmp_path))


def test_cifar_label_out_of_range_names_the_file(tmp_path):
    _cifar(tmp_path / "cifar-10-batches-py", labels=(0, 10, 3))
    with pytest.raises(DualatError, match="data_batch_1: labels must be in \\[0, 10\\)"):
        load_dataset("cifar10", root=str(tmp_path))


def test_image_folder_modes_and_sizes_are_converted(tmp_path):
    """Photos in one folder differ in size and mode (gray, palette, alpha, CMYK JPEG, 1-bit,
    16-bit PNG): every one is converted to the folder's channels and resized + centre-cropped,
    as ImageNet needs. 16-bit gray is scaled to 8 bits rather than clipped to white."""
    cls = tmp_path / "train" / "c"
    cls.mkdir(parents=True)
    Image.new("L", (3, 3), 100).save(cls / "tiny_gray.png")
    Image.new("RGBA", (100, 40), (0, 0, 255, 128)).save(cls / "wide_alpha.png")
    Image.new("P", (20, 20), 5).save(cls / "palette.png")
    Image.new("CMYK", (17, 30), (0, 0, 0, 0)).save(cls / "cmyk.jpg")
    Image.new("1", (12, 12), 1).save(cls / "bits.png")
    Image.fromarray(np.full((16, 16), 30000, dtype=np.uint16)).save(cls / "deep.png")
    ds = load_dataset("imagefolder", root=str(tmp_path), image_size=8, channels=3)
    names = [p.name for p in ds.files]
    x, _ = ds.batch(torch.arange(len(ds)))
    assert x.shape == (6, 3, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
    deep = x[names.index("deep.png")]
    assert torch.allclose(deep, torch.full_like(deep, round(30000 / 257) / 255))
    assert torch.allclose(x[names.index("tiny_gray.png")], torch.full((3, 8, 8), 100 / 255), atol=1e-6)
    gray = load_dataset("imagefolder", root=str(tmp_path), image_size=8, channels=1)
    assert gray.batch(torch.arange(6))[0].shape == (6, 1, 8, 8)


def test_float_image_is_refused_with_its_name(tmp_path):
    Image.fromarray(np.full((5, 5), 0.5, dtype=np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DualatError, match="f.tif holds 32-bit floats"):
        load_image(tmp_path / "f.tif", 3)


# ---- through the command line: exit 2, one line, nothing written -------------------------

def test_cli_truncated_idx(tmp_path, capsys):
    images, _ = _fashion(tmp_path / "fm")
    images.write_bytes(images.read_bytes()[:-100])
    line = _cli(capsys, "data.name=fashion_mnist", f"data.root={tmp_path / 'fm'}", "--out", str(tmp_path / "r"))
    assert str(images) in line and "truncated" in line and not (tmp_path / "r").exists()


def test_cli_idx_label_out_of_range(tmp_path, capsys):
    _, labels = _fashion(tmp_path / "mn", labels=[0, 1, 2, 3, 4, 200])
    line = _cli(capsys, "data.name=mnist", f"data.root={tmp_path / 'mn'}", "--out", str(tmp_path / "r"))
    assert str(labels) in line and "label 200" in line and not (tmp_path / "r").exists()


def test_cli_corrupt_cifar_pickle(tmp_path, capsys):
    folder = _cifar(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:500])
    line = _cli(capsys, "data.name=cifar10", f"data.root={tmp_path}", "--out", str(tmp_path / "r"))
    assert str(folder / "data_batch_3") in line and not (tmp_path / "r").exists()


def test_cli_empty_image_folder(tmp_path, capsys):
    (tmp_path / "imgs" / "train").mkdir(parents=True)
    line = _cli(capsys, "data.name=imagefolder", f"data.root={tmp_path / 'imgs'}", "data.image_size=8",
                "--out", str(tmp_path / "r"))
    assert str(tmp_path / "imgs" / "train") in line and "no class sub-folders" in line


def test_cli_train_and_test_folders_with_different_classes(tmp_path, capsys):
    _image_tree(tmp_path, ("cat", "dog"), "train")
    _image_tree(tmp_path, ("cat", "cow"), "test")
    line = _cli(capsys, "data.name=imagefolder", f"data.root={tmp_path}", "data.image_size=8",
                "--out", str(tmp_path / "r"))
    assert "different classes" in line and "cow" in line and not (tmp_path / "r").exists()


def test_cli_broken_image_found_during_training_names_it_and_can_resume(tmp_path, capsys):
    """A damaged file inside an image folder is only met when its batch is drawn: the run stops
    with its name; the run directory stays resumable once the file is replaced."""
    _image_tree(tmp_path, [f"c{i}" for i in range(2)], "train")
    _image_tree(tmp_path, [f"c{i}" for i in range(2)], "test")
    for i in range(1, 4):
        Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(tmp_path / "train" / "c0" / f"{i}.png")
    bad = tmp_path / "train" / "c1" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    args = ["data.name=imagefolder", f"data.root={tmp_path}", "data.image_size=8", "data.channels=1",
            "data.seeds=noise", "stage1.batch_size=2", "stage2.batch_size=2", "stage1.iterations=4",
            "stage2.iterations=0", "eval.n_test=2", "log.checkpoint_every=1"]
    line = _cli(capsys, *args, "--out", str(tmp_path / "r"))
    assert str(bad) in line
    Image.new("RGB", (10, 10)).save(bad)
    assert main(["train", "--resume", str(tmp_path / "r"), "--quiet"]) == 0
