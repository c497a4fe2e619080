"""ConvCRF: the dense CRF's mean field in a local window, in the engine's graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeseg.measure.crf import CrfParams, exact_dense_crf
from edgeseg.models.convcrf import ConvCRF, ConvCrfParams, CrfNet


def _inputs(seed=0, size=(12, 16), classes=3):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    logits = rng.normal(size=(classes, *size)).astype(np.float32)
    return image, logits


def test_a_window_over_the_whole_frame_is_the_exact_dense_crf():
    image, logits = _inputs()
    params = dict(w1=4.0, theta_alpha=10.0, theta_beta=20.0, w2=3.0, theta_gamma=3.0, iterations=5)
    exact = exact_dense_crf((np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32), image, CrfParams(**params))
    crf = ConvCRF(ConvCrfParams(window=31, downsample=1, **params))  # 31 cells reach every pixel of 12x16
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    q = crf(torch.from_numpy(logits)[None], rgb)[0].exp().numpy()  # ConvCRF returns log-marginals
    np.testing.assert_allclose(q, exact, atol=1e-5)


def test_at_a_lower_resolution_the_position_widths_are_in_input_pixels():
    """At 1/4, theta_alpha 40 and theta_gamma 12 input pixels are 10 and 3 cells: the exact CRF on the pooled frame."""
    image, logits = _inputs(2)
    params = dict(w1=4.0, theta_beta=20.0, w2=3.0, iterations=4)
    exact = exact_dense_crf((np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32), image,
                            CrfParams(theta_alpha=10.0, theta_gamma=3.0, **params))
    crf = ConvCRF(ConvCrfParams(window=31, downsample=4, theta_alpha=40.0, theta_gamma=12.0, **params))
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    q = crf(torch.from_numpy(logits)[None], rgb)[0].exp().numpy()
    np.testing.assert_allclose(q, exact, atol=1e-5)


def test_a_smaller_window_is_a_different_local_crf():
    image, logits = _inputs(1)
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float()
    wide = ConvCRF(ConvCrfParams(window=31, downsample=1))(torch.from_numpy(logits)[None], rgb).exp()
    local = ConvCRF(ConvCrfParams(window=3, downsample=1))(torch.from_numpy(logits)[None], rgb).exp()
    assert not torch.allclose(wide, local, atol=1e-3)
    with pytest.raises(ValueError, match="odd"):
        ConvCRF(ConvCrfParams(window=4))


def test_crfnet_refines_the_networks_logits_with_the_frame_it_was_given():
    from edgeseg.models import build

    torch.manual_seed(0)
    network = build("fastscnn", 11).eval()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    net = CrfNet(network, mean, std, ConvCrfParams(window=5, downsample=8))
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        out, logits = net(x), network(x)
        rgb = (x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)) * 255
        expected = torch.nn.functional.interpolate(net.crf(torch.nn.functional.avg_pool2d(logits, 8),
                                                           torch.nn.functional.avg_pool2d(rgb, 8)),
                                                   size=(64, 96), mode="bilinear", align_corners=False)
    assert out.shape == (1, 11, 64, 96)
    torch.testing.assert_close(out, expected)
