"""Dataset loaders, batch stream and augmentations, on tiny files written to tmp_path."""

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualat.data import (DATASETS, BatchStream, ImageSet, augment, dataset_info, load_dataset)
from dualat.data.cifar import safe_load_pickle
from dualat.data.folder import FolderImageSet
from dualat.errors import DualatError

RNG = np.random.default_rng(0)


def write_idx(path: Path, arr: np.ndarray, magic: int, gz: bool) -> Path:
    raw = struct.pack(">i", magic) + struct.pack(">" + "i" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def make_idx_set(folder: Path, split: str, n: int, gz: bool):
    folder.mkdir(parents=True, exist_ok=True)
    pre = "train" if split == "train" else "t10k"
    x = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = RNG.integers(0, 10, n, dtype=np.uint8)
    pi = write_idx(folder / f"{pre}-images-idx3-ubyte", x, 2051, gz)
    pl = write_idx(folder / f"{pre}-labels-idx1-ubyte", y, 2049, gz)
    return x, y, pi, pl


# ---- idx (Fashion-MNIST / MNIST) ---------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_idx_exact_values(tmp_path, gz):
    x, y, _, _ = make_idx_set(tmp_path, "train", 7, gz)
    ds = load_dataset("fashion_mnist", "train", root=str(tmp_path))
    assert ds.x.dtype == torch.uint8 and ds.shape == (1, 28, 28) and len(ds) == 7
    assert np.array_equal(ds.x[:, 0].numpy(), x)
    assert np.array_equal(ds.y.numpy(), y.astype(np.int64))
    xb, yb = ds.batch(torch.tensor([3, 0]))
    assert xb.dtype == torch.float32 and torch.allclose(xb[0, 0], torch.from_numpy(x[3]).float() / 255)
    assert yb.tolist() == [int(y[3]), int(y[0])]
    item, label = ds[5]
    assert item.shape == (1, 28, 28) and label == int(y[5])
    assert ds.classes[0] == "T-shirt/top" and ds.num_classes == 10


def test_idx_torchvision_layout_and_mnist(tmp_path):
    x, y, _, _ = make_idx_set(tmp_path / "FashionMNIST" / "raw", "test", 4, True)
    ds = load_dataset("fashion_mnist", "test", root=str(tmp_path))
    assert np.array_equal(ds.x[:, 0].numpy(), x)
    x2, y2, _, _ = make_idx_set(tmp_path / "MNIST" / "raw", "train", 3, False)
    m = load_dataset("mnist", "train", root=str(tmp_path))
    assert np.array_equal(m.y.numpy(), y2) and m.classes == [str(i) for i in range(10)]


def test_idx_truncated_and_bad_magic(tmp_path):
    _, _, pi, pl = make_idx_set(tmp_path, "train", 5, gz=False)
    pi.write_bytes(pi.read_bytes()[:-10])
    with pytest.raises(DualatError, match="train-images-idx3-ubyte"):
        load_dataset("fashion_mnist", root=str(tmp_path))
    make_idx_set(tmp_path, "train", 5, gz=False)
    pl.write_bytes(struct.pack(">i", 1234) + pl.read_bytes()[4:])
    with pytest.raises(DualatError, match="train-labels-idx1-ubyte.*magic"):
        load_dataset("fashion_mnist", root=str(tmp_path))


def test_idx_truncated_gzip(tmp_path):
    _, _, pi, _ = make_idx_set(tmp_path, "train", 50, gz=True)
    pi.write_bytes(pi.read_bytes()[: len(pi.read_bytes()) // 2])
    with pytest.raises(DualatError, match=str(pi)):
        load_dataset("fashion_mnist", root=str(tmp_path))


def test_idx_missing(tmp_path):
    with pytest.raises(DualatError) as e:
        load_dataset("fashion_mnist", root=str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and str(tmp_path / "FashionMNIST" / "raw") in msg and "data.root" in msg
    assert "\n" not in msg
    with pytest.raises(DualatError, match="data.root"):
        load_dataset("mnist")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist():
    tr, te = load_dataset("fashion_mnist", "train"), load_dataset("fashion_mnist", "test")
    assert (len(tr), len(te)) == (60000, 10000)
    assert tr.shape == te.shape == (1, 28, 28)
    assert te.y.bincount().tolist() == [1000] * 10 and int(tr.y.min()) == 0 and int(tr.y.max()) == 9


# ---- CIFAR pickles -----------------------------------------------------------------------

def write_cifar10(folder: Path, n_per_batch=3, protocol=2):
    folder.mkdir(parents=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = RNG.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, n_per_batch).tolist()
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_pickles(tmp_path, protocol):
    b = write_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    tr = load_dataset("cifar10", "train", root=str(tmp_path))  # parent folder
    te = load_dataset("cifar10", "test", root=str(tmp_path / "cifar-10-batches-py"))  # folder itself
    assert len(tr) == 15 and tr.shape == (3, 32, 32) and tr.classes[3] == "c3"
    want = np.concatenate([b[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(tr.x.numpy(), want)
    assert te.y.tolist() == b["test_batch"][1]


def test_cifar100_pickles(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = RNG.integers(0, 256, (4, 3072), dtype=np.uint8)
    for split in ("train", "test"):
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": [0, 99, 5, 42], "coarse_labels": [0] * 4}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, f)
    ds = load_dataset("cifar100", "test", root=str(folder))
    assert ds.y.tolist() == [0, 99, 5, 42] and ds.num_classes == 100
    assert np.array_equal(ds.x.reshape(4, -1).numpy(), data)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_malicious_pickle_refused(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    evil.write_bytes(pickle.dumps({b"data": _Evil(target), b"labels": [0]}))
    with pytest.raises(DualatError, match="data_batch_2.*refused"):
        load_dataset("cifar10", root=str(tmp_path))
    assert not target.exists()
    bad = tmp_path / "garbage"
    bad.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(DualatError, match="garbage"):
        safe_load_pickle(bad)


def test_cifar_missing_says_where(tmp_path):
    with pytest.raises(DualatError, match=f"{tmp_path}.*data.root"):
        load_dataset("cifar100", root=str(tmp_path))


# ---- image folders -----------------------------------------------------------------------

def test_image_folder(tmp_path):
    layout = {"cat": [("RGB", (40, 30)), ("L", (20, 20))], "dog": [("RGBA", (17, 50)), ("P", (33, 33))]}
    for cls, specs in layout.items():
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i, (mode, size) in enumerate(specs):
            Image.new(mode, size, color=200 if mode in ("L", "P") else (200, 10, 10, 255)[: len(mode)]).save(
                tmp_path / "train" / cls / f"{i}.png")
    ds = load_dataset("imagefolder", "train", root=str(tmp_path), image_size=16)
    assert isinstance(ds, FolderImageSet) and ds.classes == ["cat", "dog"] and ds.shape == (3, 16, 16)
    x, y = ds.batch(torch.arange(len(ds)))
    assert x.shape == (4, 3, 16, 16) and y.tolist() == [0, 0, 1, 1]
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.allclose(x[0, 0], torch.full((16, 16), 200 / 255), atol=1e-3)  # red channel of a flat image
    gray = load_dataset("imagefolder", "train", root=str(tmp_path), image_size=8, channels=1)
    assert gray[1][0].shape == (1, 8, 8) and gray[3][1] == 1
    (tmp_path / "val" / "empty").mkdir(parents=True)
    with pytest.raises(DualatError, match="no images"):
        load_dataset("imagefolder", "test", root=str(tmp_path), image_size=8)
    with pytest.raises(DualatError, match="image_size"):
        load_dataset("imagefolder", root=str(tmp_path))
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"nope")
    ds = load_dataset("imagefolder", "train", root=str(tmp_path), image_size=8)
    with pytest.raises(DualatError, match="broken.png"):
        ds.batch(torch.arange(len(ds)))


# ---- small built-in sets -----------------------------------------------------------------

def test_digits_toy2d_fake():
    tr, te = load_dataset("digits"), load_dataset("digits", "test")
    assert (len(tr), len(te)) == (1500, 297) and tr.shape == (1, 8, 8)
    assert int(tr.x.max()) == 255 and int(tr.x.min()) == 0 and tr.num_classes == 10
    toy = load_dataset("toy2d")
    assert toy.x.shape == (4000, 2) and toy.x.dtype == torch.float32 and toy.shape == (2,)
    assert 0 <= float(toy.x.min()) and float(toy.x.max()) <= 1 and toy.y.bincount().tolist() == [1000] * 4
    xb, _ = toy.batch(torch.tensor([0, 1]))
    assert torch.equal(xb, toy.x[:2]) and len(load_dataset("toy2d", "test")) == 1000
    fake = load_dataset("fake", channels=1, image_size=12, num_classes=3)
    assert fake.shape == (1, 12, 12) and fake.num_classes == 3 and len(fake) == 256
    assert torch.equal(fake.x, load_dataset("fake", channels=1, image_size=12, num_classes=3).x)
    assert len(fake.subset(10)) == 10 and torch.equal(fake.subset(10).y, fake.y[:10])


def test_registry_and_info():
    assert set(DATASETS) >= {"fashion_mnist", "mnist", "digits", "cifar10", "cifar100", "imagenet",
                             "imagefolder", "toy2d", "fake"}
    with pytest.raises(DualatError, match="fashion_mnist"):
        load_dataset("fashon_mnist")
    assert dataset_info("cifar100")["num_classes"] == 100
    assert dataset_info("fashion_mnist")["shape"] == (1, 28, 28)
    assert dataset_info("imagenet")["shape"] == (3, 256, 256)
    assert dataset_info("fake", num_classes=7, image_size=64)["shape"] == (3, 64, 64)
    assert dataset_info("toy2d") == dict(shape=(2,), num_classes=4, default_root=None)


# ---- BatchStream -------------------------------------------------------------------------

def _toy_set(n=50):
    return ImageSet(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).repeat(1, 1, 2, 2),
                    torch.arange(n) % 5, [str(i) for i in range(5)])


def _ids(x):
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def test_stream_epoch_and_ranks():
    ds = _toy_set(50)
    s = BatchStream(ds, 8, seed=3)
    assert s.steps_per_epoch == 6
    seen = [i for _ in range(6) for i in _ids(next(s)[0])]
    assert len(seen) == 48 and len(set(seen)) == 48  # each index at most once, tail dropped
    x, y = next(s)
    assert x.shape == (8, 1, 2, 2) and y.dtype == torch.int64 and s.epoch == 1
    r0, r1 = BatchStream(ds, 5, 1, rank=0, world_size=2), BatchStream(ds, 5, 1, rank=1, world_size=2)
    a = [i for _ in range(5) for i in _ids(next(r0)[0])]
    b = [i for _ in range(5) for i in _ids(next(r1)[0])]
    assert len(set(a)) == 25 and not set(a) & set(b)


def test_stream_resume_bit_exact():
    ds = load_dataset("fake", channels=1, image_size=8)
    tf = augment.make_transform("strong", ds.shape)
    s = BatchStream(ds, 16, seed=7, transform=tf)
    for _ in range(20):  # crosses an epoch boundary (16 steps per epoch)
        next(s)
    state = s.state_dict()
    assert all(isinstance(v, (int, torch.Tensor)) for v in state.values())
    want = [next(s) for _ in range(3)]
    r = BatchStream(ds, 16, seed=7, transform=tf)
    r.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(want, (next(r) for _ in range(3))):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(DualatError, match="batch_size"):
        BatchStream(ds, 8, seed=7).load_state_dict(state)


# ---- augmentations -----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["flip", "crop", "crop_flip", "strong"])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_transforms_shape_range_determinism(spec, shape):
    x = torch.rand(24, *shape)
    tf = augment.make_transform(spec, shape)
    a = tf(x, torch.Generator().manual_seed(1))
    b = tf(x, torch.Generator().manual_seed(1))
    c = tf(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


def test_flip_crop_cutout_semantics():
    x = torch.rand(64, 3, 8, 8)
    out = augment.random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all()) and 10 < int(flipped.sum()) < 54
    ones = torch.ones(32, 1, 8, 8)
    crop = augment.random_crop(ones, 2, torch.Generator().manual_seed(0))
    # a shifted window of an all-ones image shows zero padding on some rows/columns only
    assert float(crop.min()) == 0 and bool((crop.sum((1, 2, 3)) >= 36).all())
    cut = augment.cutout(ones, 4, torch.Generator().manual_seed(0))
    assert bool(((cut == 0.5).sum((1, 2, 3)) <= 16).all()) and bool(((cut == 0.5).sum((1, 2, 3)) >= 4).all())
    assert augment.make_transform("none", (1, 8, 8)) is None
    assert augment.make_transform("strong", (2,)) is None
    assert [augment.crop_pad(s) for s in (32, 28, 8)] == [4, 2, 1]
    with pytest.raises(DualatError, match="crop_flip"):
        augment.make_transform("crops", (1, 8, 8))
