"""Seed sources: shapes, ranges, determinism, disjoint train/test pixels, class-conditional Gaussians."""

import numpy as np
import pytest
import torch
from PIL import Image

from dualat.data import SEED_SOURCES, ImageSet, load_dataset, make_seed_source
from dualat.data.seeds import PatchSource
from dualat.errors import DualatError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("seedimgs")
    rng = np.random.default_rng(0)
    for i in range(30):
        sub = root / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        arr = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
        Image.fromarray(arr).save(sub / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
@pytest.mark.parametrize("kind", ["patches", "noise", "folder"])
def test_kinds_shape_range_determinism(kind, shape, folder):
    src = make_seed_source(kind, shape, "train", folder=str(folder))
    a = src.sample(12, None, gen(1))
    assert a.shape == (12, *shape) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and float(a.std()) > 0.01
    assert torch.equal(a, src.sample(12, None, gen(1)))
    assert not torch.equal(a, src.sample(12, None, gen(2)))


def test_names_and_errors(tmp_path):
    assert SEED_SOURCES == ["patches", "folder", "noise", "gaussian"]
    with pytest.raises(DualatError, match="noise"):
        make_seed_source("patches", (2,))
    with pytest.raises(DualatError, match="train_set"):
        make_seed_source("gaussian", (1, 8, 8))
    with pytest.raises(DualatError, match=str(tmp_path / "nope")):
        make_seed_source("folder", (1, 8, 8), folder=str(tmp_path / "nope"))
    with pytest.raises(DualatError, match=f"{tmp_path}.*no images"):
        make_seed_source("folder", (1, 8, 8), folder=str(tmp_path))
    with pytest.raises(DualatError, match="patches, folder, noise, gaussian"):
        make_seed_source("tiny_images", (1, 8, 8))


def test_bundled_patches_regions_disjoint():
    tr, te = make_seed_source("patches", (3, 32, 32), "train"), make_seed_source("patches", (3, 32, 32), "test")
    assert len(tr.regions) >= 10 and [r[0] for r in tr.regions] == [r[0] for r in te.regions]
    for (name, a0, a1), (_, b0, b1) in zip(tr.regions, te.regions):
        assert a0 == 0 and a1 == b0 < b1  # train rows [0, r), test rows [r, H)
    for src in (tr, te):
        boxes = src.sampler.draw_boxes(300, gen(3))
        for i, top, left, h, w, _ in boxes.tolist():
            name, r0, r1 = src.regions[i]
            assert 0 <= top and r0 + top + h <= r1 and h >= 1 and w >= 1
        # sample() renders exactly the boxes drawn from the same generator state
        assert torch.equal(src.sample(5, None, gen(4)), src.sampler.render(src.sampler.draw_boxes(5, gen(4))))


def test_patches_pixels_come_from_own_region():
    # A photo whose grey level is its row index: every output pixel is a blend of source rows, so
    # its value bounds which rows it came from.
    h = 250
    ramp = torch.arange(h, dtype=torch.uint8).view(1, h, 1).expand(1, h, 300).clone()
    tr = PatchSource((1, 16, 16), "train", photos=[("ramp", ramp)])
    te = PatchSource((1, 16, 16), "test", photos=[("ramp", ramp)])
    split_row = tr.regions[0][2]
    assert split_row == te.regions[0][1] == 200
    a, b = tr.sample(200, None, gen(0)), te.sample(200, None, gen(0))
    assert float(a.max()) * 255 <= split_row - 1 + 1e-3
    assert float(b.min()) * 255 >= split_row - 1e-3
    assert float(a.min()) * 255 < 60  # and the train crops really roam over their region


def test_noise_splits_differ():
    tr, te = make_seed_source("noise", (2,), "train"), make_seed_source("noise", (2,), "test")
    a, b = tr.sample(100, None, gen(0)), te.sample(100, None, gen(0))
    assert a.shape == (100, 2) and not torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_folder_split_by_file(folder):
    tr = make_seed_source("folder", (3, 16, 16), "train", folder=str(folder))
    te = make_seed_source("folder", (3, 16, 16), "test", folder=str(folder))
    assert tr.files and te.files and not set(tr.files) & set(te.files)
    assert len(tr.files) + len(te.files) == 30


def test_folder_small_falls_back_to_rows(tmp_path):
    Image.fromarray(np.full((100, 60), 128, np.uint8)).save(tmp_path / "one.png")
    tr = make_seed_source("folder", (1, 8, 8), "train", folder=str(tmp_path))
    te = make_seed_source("folder", (1, 8, 8), "test", folder=str(tmp_path))
    tr.sample(2, None, gen(0)), te.sample(2, None, gen(0))
    assert tr.sampler.regions[0].row1 == te.sampler.regions[0].row0 == 80
    assert torch.allclose(te.sample(3, None, gen(0)), torch.full((3, 1, 8, 8), 128 / 255))


def test_gaussian_class_conditional():
    ds = load_dataset("digits")
    src = make_seed_source("gaussian", ds.shape, "train", train_set=ds)
    assert src.full  # d = 64 gets the full covariance
    means = src.means
    y = torch.arange(10).repeat_interleave(40)
    x = src.sample(len(y), y, gen(0))
    assert x.shape == (400, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, src.sample(len(y), y, gen(0)))
    per_class = x.view(10, 40, -1).mean(1)  # (10, 64)
    dist = torch.cdist(per_class, means)
    assert dist.argmin(1).tolist() == list(range(10))
    free = src.sample(50, None, gen(1))
    assert free.shape == (50, 1, 8, 8)


def test_gaussian_diagonal_and_toy():
    x = torch.randint(0, 256, (60, 3, 40, 40), dtype=torch.uint8)  # d = 4800 > 4096
    ds = ImageSet(x, torch.arange(60) % 3, ["a", "b", "c"])
    src = make_seed_source("gaussian", ds.shape, train_set=ds)
    assert not src.full and src.sample(4, torch.tensor([0, 1, 2, 0]), gen(0)).shape == (4, 3, 40, 40)
    toy = load_dataset("toy2d")
    pts = make_seed_source("gaussian", (2,), train_set=toy).sample(400, torch.full((400,), 1), gen(0))
    assert torch.allclose(pts.mean(0), torch.tensor([0.85, 0.15]), atol=0.02)
