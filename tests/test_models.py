"""Behaviour of dualat.models: shapes, normalisation, BN freezing, registry errors, sizes."""
import copy
import io

import pytest
import torch
from torch import nn

from dualat.errors import DualatError
from dualat.models import (
    IMAGENET_MEAN, IMAGENET_STD, Classifier, count_parameters, create_model, forward_flops, freeze_batchnorm,
    is_batchnorm_frozen, list_models, unfreeze_batchnorm,
)

torch.set_num_threads(2)


def _bn_state(model):
    """Clone of every BN buffer (running stats and batch counters)."""
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def _meta(name, num_classes, **kw):
    """Shape-only model: parameter counts and key names without allocating weights."""
    with torch.device("meta"):
        return create_model(name, num_classes, **kw)


def test_registry_lists_all_required_models():
    names = list_models()
    for n in ("small_cnn", "mlp", "preact_resnet18", "wrn28_10", "wrn34_10", "wrn16_4", "resnet50",
              "wide_resnet50_4"):
        assert n in names
    assert names == sorted(names)


# (name, num_classes, create kwargs, input shape) at the tiniest size each model takes.
TINY = [
    ("small_cnn", 10, dict(in_channels=1, image_size=28), (2, 1, 28, 28)),
    ("small_cnn", 10, dict(in_channels=1, image_size=8), (2, 1, 8, 8)),
    ("small_cnn", 5, dict(in_channels=3, image_size=8, width=0.25), (2, 3, 8, 8)),
    ("mlp", 3, dict(hidden=16), (2, 2)),
    ("mlp", 2, dict(hidden=8, in_features=5, activation="softplus"), (2, 5)),
    ("preact_resnet18", 10, dict(image_size=8), (2, 3, 8, 8)),
    ("wrn16_4", 10, dict(image_size=8, dropout=0.3), (2, 3, 8, 8)),
    ("wide_resnet", 4, dict(image_size=8, depth=10, widen=1), (2, 3, 8, 8)),
]


@pytest.mark.parametrize("name,k,kw,shape", TINY, ids=[f"{t[0]}-{t[3]}" for t in TINY])
def test_models_map_unit_images_to_finite_logits(name, k, kw, shape):
    torch.manual_seed(0)
    model = create_model(name, k, **kw)
    assert isinstance(model, Classifier)
    x = torch.rand(shape)
    for train in (True, False):
        out = model.train(train)(x)
        assert out.shape == (shape[0], k) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_resnet50_one_image_and_torchvision_names():
    torch.manual_seed(0)
    model = create_model("resnet50", 1000, image_size=64).eval()
    assert abs(count_parameters(model) - 25.6e6) / 25.6e6 < 0.02
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    keys = set(model.net.state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.running_var", "layer3.5.bn2.weight", "layer4.2.bn3.running_var",
                "layer4.2.conv3.weight", "fc.weight", "fc.bias"):
        assert key in keys
    assert len(keys) == 320  # torchvision resnet50: 161 params + 159 BN buffers


@pytest.mark.parametrize("name,k,expected", [
    ("wrn34_10", 10, 46.2e6), ("wrn28_10", 10, 36.5e6), ("preact_resnet18", 10, 11.2e6),
    ("resnet50", 1000, 25.6e6), ("wrn16_4", 10, 2.75e6), ("wide_resnet50_4", 1000, 223.4e6),
])
def test_parameter_counts(name, k, expected):
    n = count_parameters(_meta(name, k, image_size=224 if "50" in name else 32))
    assert abs(n - expected) / expected < 0.02, n


def test_wide_resnet50_4_keeps_torchvision_names():
    keys = set(_meta("wide_resnet50_4", 1000).net.state_dict())
    assert "layer4.2.bn3.running_var" in keys and "fc.weight" in keys


def test_checkpoint_key_names_of_cifar_models():
    wrn = set(_meta("wrn34_10", 10).net.state_dict())
    assert {"conv1.weight", "block1.layer.0.convShortcut.weight", "block3.layer.4.bn2.running_mean",
            "bn1.weight", "fc.bias"} <= wrn
    pre = set(_meta("preact_resnet18", 10).net.state_dict())
    assert {"conv1.weight", "layer2.0.shortcut.0.weight", "layer4.1.bn2.weight", "bn.weight",
            "linear.weight"} <= pre


def test_normalisation_is_inside_the_model():
    torch.manual_seed(0)
    mean, std = (0.2, 0.4, 0.6), (0.3, 0.2, 0.1)
    model = create_model("small_cnn", 4, in_channels=3, image_size=8, mean=mean, std=std).eval()
    x = torch.rand(2, 3, 8, 8)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.net((x - m) / s))
    assert model.mean.shape == (1, 3, 1, 1) and "mean" in model.state_dict()
    default = create_model("small_cnn", 4, in_channels=3, image_size=8)
    assert torch.equal(default.mean, torch.full((1, 3, 1, 1), 0.5))
    assert torch.equal(default.std, torch.full((1, 3, 1, 1), 0.5))


def test_mlp_input_width_follows_in_channels():
    assert create_model("mlp", 2).net.in_features == 2
    model = create_model("mlp", 2, in_channels=5, image_size=5, hidden=8)  # how training calls it
    assert model.net.in_features == 5 and model(torch.rand(2, 5)).shape == (2, 2)
    with pytest.raises(DualatError, match="in_features"):
        create_model("mlp", 2, in_channels=5, in_features=3)


def test_vector_inputs_use_identity_normalisation():
    model = create_model("mlp", 3, hidden=8)
    x = torch.rand(2, 2)
    assert model.mean.shape == (1, 2, 1, 1)
    torch.testing.assert_close(model(x), model.net(x))
    scaled = Classifier(model.net, mean=[1.0, 2.0], std=[2.0, 4.0])
    torch.testing.assert_close(scaled(x), model.net((x - torch.tensor([1.0, 2.0])) / torch.tensor([2.0, 4.0])))


def test_imagenet_models_default_to_imagenet_statistics():
    model = create_model("resnet50", 10, image_size=32)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(IMAGENET_STD))


def test_small_cnn_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, image_size=28).eval()
    x = torch.rand(2, 1, 28, 28)
    ref = model(x)
    cl = model.to(memory_format=torch.channels_last)
    assert cl.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    out = cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_freeze_batchnorm_keeps_statistics_and_trains_affine():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, in_channels=1, image_size=8)
    x = torch.rand(2, 1, 8, 8)
    model.train()(torch.rand(4, 1, 8, 8))  # move running stats away from their init
    keys = list(model.state_dict())
    assert freeze_batchnorm(model) is model and is_batchnorm_frozen(model)
    before = _bn_state(model)
    model.train()
    assert model.training and not model.net.features[1].training
    out_train = model(x)
    for k, v in _bn_state(model).items():
        assert torch.equal(v, before[k]), k
    torch.testing.assert_close(out_train, model.eval()(x))
    model.train()
    model(x).logsumexp(1).sum().backward()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(b.weight.requires_grad and b.weight.grad is not None and b.weight.grad.abs().sum() > 0
               and b.bias.grad is not None for b in bns)
    assert list(model.state_dict()) == keys
    model.load_state_dict(model.state_dict())  # checkpoints stay compatible


def test_freeze_survives_deepcopy_and_pickle_and_unfreeze_restores():
    torch.manual_seed(0)
    model = freeze_batchnorm(create_model("wrn16_4", 3, image_size=8))
    x = torch.rand(2, 3, 8, 8)
    clone = copy.deepcopy(model).train()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False).train()
    for m in (clone, loaded):
        assert is_batchnorm_frozen(m)
        before = _bn_state(m)
        out = m(x)
        assert all(torch.equal(v, before[k]) for k, v in _bn_state(m).items())
        torch.testing.assert_close(out, m.eval()(x))
    # The copy's override drives the copy, not the original.
    unfreeze_batchnorm(clone.train())
    assert is_batchnorm_frozen(model) and not is_batchnorm_frozen(clone)
    before = _bn_state(clone)
    clone(x)
    assert not torch.equal(_bn_state(clone)["net.bn1.running_mean"], before["net.bn1.running_mean"])
    clone.eval()
    assert not any(m.training for m in clone.modules())
    clone.train()
    assert all(m.training for m in clone.modules())


def test_freeze_leaves_other_norms_alone():
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.BatchNorm1d(4), nn.GroupNorm(2, 4))
    freeze_batchnorm(net).train()
    assert net[1].training and net[3].training and not net[2].training
    assert not is_batchnorm_frozen(create_model("mlp", 2))


def test_unknown_model_name_suggests_a_fix():
    with pytest.raises(DualatError, match="did you mean 'small_cnn'") as err:
        create_model("smal_cnn", 10)
    assert "wrn34_10" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("call,match", [
    (lambda: create_model("small_cnn", 10, image_size=4), "at least 8"),
    (lambda: create_model("resnet50", 10, image_size=16), "at least 32"),
    (lambda: create_model("small_cnn", 10, widht=2), "no option 'widht'"),
    (lambda: create_model("small_cnn", 0), "num_classes"),
    (lambda: create_model("small_cnn", 10, in_channels=1, mean=[0.1, 0.2, 0.3]), "3 values"),
    (lambda: create_model("small_cnn", 10, std=0.0), "positive"),
    (lambda: create_model("wide_resnet", 10, depth=20), "6n\\+4"),
    (lambda: create_model("mlp", 2, activation="tanh"), "activation"),
])
def test_user_mistakes_raise_dualat_error(call, match):
    with pytest.raises(DualatError, match=match):
        call()


def test_wrong_input_channels_raise_dualat_error():
    model = create_model("small_cnn", 10, in_channels=3, image_size=8)
    with pytest.raises(DualatError, match="channels"):
        model(torch.rand(2, 1, 8, 8))


def test_forward_flops_counts_conv_and_linear_macs():
    net = Classifier(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Flatten(),
                                   nn.Linear(2 * 4 * 4, 3)), in_channels=1)
    net.train()
    before = _bn_state(net)
    # conv: 2*4*4 outputs x 1*3*3 MACs = 288; linear: 3 x 32 = 96; FLOPs = 2 x MACs.
    assert forward_flops(net, (1, 4, 4)) == 2 * (288 + 96)
    assert net.training and all(torch.equal(v, before[k]) for k, v in _bn_state(net).items())
    assert forward_flops(_meta("resnet50", 1000), (3, 224, 224)) == pytest.approx(8.18e9, rel=0.01)
    with pytest.raises(DualatError):
        forward_flops(net, (0, 4))


def test_count_parameters_trainable_only():
    model = create_model("mlp", 2, hidden=4)
    total = count_parameters(model)
    assert total == (2 * 4 + 4) + 2 * (4 * 4 + 4) + (4 * 2 + 2)
    model.net.layers[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - 8
