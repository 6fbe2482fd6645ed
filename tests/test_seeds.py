"""Seed sources: shapes, ranges, determinism, disjoint train/test pixels, class-conditional Gaussians."""

import numpy as np
import pytest
import torch
from PIL import Image

from dualat.data import SEED_SOURCES, ImageSet, load_dataset, make_seed_source
from dualat.data.seeds import PatchSource
from dualat.data.seeds_extra import JitterPatchSource, MixSource, MorePhotosSource
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
    assert SEED_SOURCES == ["patches", "folder", "noise", "gaussian", "gaussian_lowrank", "gaussian_diag",
                            "gaussian_coarse", "patches_jitter", "photos_more", "mix", "mixture"]
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


# ---- issue 15's sources: patches_jitter, photos_more, mix[:F] (data/seeds_extra.py) ----

def _labelled(shape, n=30, k=3):
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen(5))
    return ImageSet(x, torch.arange(n) % k, [str(c) for c in range(k)])


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
@pytest.mark.parametrize("kind", ["patches_jitter", "photos_more", "mix", "mix:0.25"])
def test_new_sources_shape_range_determinism(kind, shape):
    if kind.startswith("mix") and shape[0] == 3:
        pytest.skip("a 3072-d full covariance per class is slow for a unit test; (1, 28, 28) covers mix")
    train_set = _labelled(shape) if kind.startswith("mix") else None
    tr = make_seed_source(kind, shape, "train", train_set=train_set)
    te = make_seed_source(kind, shape, "test", train_set=train_set)
    y = torch.arange(16) % 3
    a = tr.sample(16, y, gen(1))
    assert a.shape == (16, *shape) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1 and float(a.std()) > 0.01
    assert torch.equal(a, tr.sample(16, y, gen(1)))
    assert not torch.equal(a, tr.sample(16, y, gen(2)))
    assert not torch.equal(a, te.sample(16, y, gen(1)))  # the splits differ for the same generator
    assert te.sample(5, None, gen(1)).shape == (5, *shape)


def _ramp(h=250, w=300):
    """A photo whose grey level is its row index (see test_patches_pixels_come_from_own_region)."""
    return torch.arange(h, dtype=torch.uint8).view(1, h, 1).expand(1, h, w).clone()


def test_patches_jitter_crops_come_from_own_rows_then_are_jittered():
    tr = JitterPatchSource((1, 16, 16), "train", photos=[("ramp", _ramp())])
    te = JitterPatchSource((1, 16, 16), "test", photos=[("ramp", _ramp())])
    split_row = tr.regions[0][2]
    assert split_row == te.regions[0][1] == 200 and tr.regions[0][1] == 0 and te.regions[0][2] == 250
    for src, n in ((tr, 300), (te, 100)):
        g = gen(7)
        boxes, params = src.sampler.draw_boxes(n, g), src.draw_jitter(n, g)
        crops = src.sampler.render(boxes)
        out = src.sample(n, None, gen(7))
        assert torch.equal(out, src.apply_jitter(crops, params))  # the output is the jitter of these crops
        if src is tr:  # the crops' pixels come from the split's own rows only
            assert float(crops.max()) * 255 <= split_row - 1 + 1e-3
        else:
            assert float(crops.min()) * 255 >= split_row - 1e-3
        assert not torch.allclose(out, crops)
    heights = tr.sampler.draw_boxes(400, gen(8))[:, 3]
    assert int(heights.min()) < 30 and int(heights.max()) > 150  # 5%..100% of the shorter side (250)
    p = tr.draw_jitter(2000, gen(9))
    assert 0.5 - 1e-9 <= float(p[:, 0].min()) and float(p[:, 0].max()) <= 2 + 1e-9
    assert float(p[:, 1].min()) >= 0.6 and float(p[:, 1].max()) <= 1.4 and float(p[:, 2].abs().max()) <= 0.15
    assert 0.15 < float(p[:, 3].mean()) < 0.25


def test_photos_more_splits_share_no_pixels():
    # the ramp photo splits by rows; ten constant small images (levels 240..249) split by index
    small = [(f"s{i}", torch.full((1, 25, 25), 240 + i, dtype=torch.uint8)) for i in range(10)]
    tr = MorePhotosSource((1, 16, 16), "train", photos=[("ramp", _ramp(200))], small=small)
    te = MorePhotosSource((1, 16, 16), "test", photos=[("ramp", _ramp(200))], small=small)
    assert [r[0] for r in te.regions] == ["ramp", "s4", "s9"]
    levels = {"train": {240, 241, 242, 243, 245, 246, 247, 248}, "test": {244, 249}}
    for src in (tr, te):
        x = src.sample(400, None, gen(3)).mul(255).view(400, -1)
        is_small = x.max(1).values > 220
        assert 0.1 < float(is_small.float().mean()) < 0.9  # both kinds are drawn
        seen = {round(float(v)) for v in x[is_small].flatten().unique()}
        assert seen <= levels[src.split] and len(seen) >= 2
        ramp = x[~is_small]
        if src.split == "train":
            assert float(ramp.max()) <= 159 + 1e-3
        else:
            assert float(ramp.min()) >= 160 - 1e-3
    only_photos = MorePhotosSource((1, 16, 16), "test", photos=[("ramp", _ramp(200))], small=[])
    assert float(only_photos.sample(20, None, gen(0)).min()) * 255 >= 160 - 1e-3
    with pytest.raises(DualatError, match="photos_more found no images"):
        MorePhotosSource((1, 16, 16), "test", photos=[], small=[])
    bundled_tr = make_seed_source("photos_more", (1, 28, 28), "train")
    bundled_te = make_seed_source("photos_more", (1, 28, 28), "test")
    names_tr = {r[0] for r in bundled_tr.regions if r[0].startswith("lfw")}
    names_te = {r[0] for r in bundled_te.regions if r[0].startswith("lfw")}
    assert len(names_tr) == 160 and len(names_te) == 40 and not names_tr & names_te
    photos_tr = {r[0]: r[1:] for r in bundled_tr.regions if not r[0].startswith("lfw")}
    photos_te = {r[0]: r[1:] for r in bundled_te.regions if not r[0].startswith("lfw")}
    patches = {r[0] for r in make_seed_source("patches", (1, 28, 28)).regions}
    assert set(photos_tr) == set(photos_te) > patches and "microaneurysms" in photos_tr
    for name, (a0, a1) in photos_tr.items():
        b0, b1 = photos_te[name]
        assert a0 == 0 and a1 == b0 < b1  # train rows [0, r), test rows [r, H)


def test_mix_draws_patches_and_class_gaussians_from_split_streams():
    ds = load_dataset("digits")
    tr = make_seed_source("mix:0.25", ds.shape, "train", train_set=ds, seed=3)
    te = make_seed_source("mix:0.25", ds.shape, "test", train_set=ds, seed=3)
    assert isinstance(tr, MixSource) and tr.fraction == 0.25
    assert make_seed_source("mix", ds.shape, "train", train_set=ds).fraction == 0.5
    assert tr.patches.regions == make_seed_source("patches", ds.shape, "train").regions
    assert te.patches.regions == make_seed_source("patches", ds.shape, "test").regions
    n = 400
    y = torch.arange(n) % 10
    g = gen(0)
    mask = torch.rand(n, generator=g, dtype=torch.float64) < 0.25
    int(torch.randint(0, 2**62, (1,), generator=g))
    expect_patches = make_seed_source("patches", ds.shape, "train").sample(int((~mask).sum()), None, g)
    x = tr.sample(n, y, gen(0))
    assert 0.18 < float(mask.float().mean()) < 0.32
    assert torch.equal(x[~mask], expect_patches)  # the patch part is exactly `patches`' train seeds
    # the Gaussian part is class-conditional: each class's mean is nearest its own Gaussian mean
    means = torch.stack([x[mask & (y == c)].view(-1, 64).mean(0) for c in range(10)])
    assert torch.cdist(means, tr.gaussian.means).argmin(1).tolist() == list(range(10))
    xt = te.sample(n, y, gen(0))
    assert not torch.equal(x[mask], xt[mask])  # train and test Gaussian streams differ
    only_patches = make_seed_source("mix:0", ds.shape, "train", train_set=ds).sample(8, None, gen(1))
    g = gen(1)
    torch.rand(8, generator=g, dtype=torch.float64), torch.randint(0, 2**62, (1,), generator=g)
    assert torch.equal(only_patches, make_seed_source("patches", ds.shape, "train").sample(8, None, g))


def test_new_seed_names_are_validated():
    from dualat.config import load_config
    from dualat.sample import seed_source
    for name in ("patches_jitter", "photos_more", "mix", "mix:0.3", "mix:1"):
        assert load_config("digits", [f"data.seeds={name}"]).data.seeds == name
    for bad, needle in (("mix:2", "data.seeds.*in \\[0, 1\\]"), ("mix:x", "data.seeds.*mix:0.5"),
                        ("mixx", "did you mean mix"), ("tiny_images", "patches_jitter, photos_more, mix")):
        with pytest.raises(DualatError, match=needle):
            load_config("digits", [f"data.seeds={bad}"])
    with pytest.raises(DualatError, match="train_set"):
        make_seed_source("mix", (1, 8, 8))
    with pytest.raises(DualatError, match="fraction"):
        make_seed_source("mix:-1", (1, 8, 8))
    src = seed_source("mix:0.4", load_config("digits", []), (1, 8, 8))  # what `dualat sample --seeds` builds
    assert isinstance(src, MixSource) and src.split == "test" and src.fraction == 0.4
