"""The fast path's network pieces against the dense ALNet they replace, on random weights of every layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alike_ros.model import sparse_head
from alike_ros.model.alnet import ALNet, model_config
from alike_ros.model.sparse_head import SparseHeadALNet, max_pool


def random_net(model: str, seed: int = 0) -> ALNet:
    torch.manual_seed(seed)
    net = ALNet(model_config(model)).eval()
    for module in net.modules():  # BatchNorm statistics away from identity, so folding is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return net


@pytest.mark.parametrize("shape", [(1, 8, 64, 96), (1, 3, 2, 2), (1, 16, 32, 6)])
def test_channels_last_pool_is_torchs_pool(shape):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    x[..., ::2, ::2] = x[..., 1::2, 1::2]  # ties inside windows
    for k in (2, 4):
        if shape[2] % k == 0 and shape[3] % k == 0:
            pooled = max_pool(x, k)
            assert torch.equal(pooled, F.max_pool2d(x, k))
    assert max_pool(x, 2).permute(0, 2, 3, 1).is_contiguous()  # stays channels-last for the next conv
    assert torch.equal(max_pool(x.contiguous(), 2), F.max_pool2d(x.contiguous(), 2))


@pytest.mark.parametrize("band_pixels", [96 * 5, 10**6])  # several bands with a shorter last one; one band
def test_fine_score_in_bands_is_the_dense_branchs_score(monkeypatch, band_pixels):
    monkeypatch.setattr(sparse_head, "BAND_PIXELS", band_pixels)
    sparse = SparseHeadALNet(random_net("alike-t"))
    fine = torch.rand(1, 8, 64, 96).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        dense_branch = F.relu(sparse.net.conv1(fine))
        expected = F.conv2d(dense_branch, sparse.score_rows[0][:, :, None, None])
        assert torch.allclose(sparse.fine_score(fine), expected, atol=1e-5)


@pytest.mark.parametrize("model", ["alike-t", "alike-l"])  # single head; alike-l's extra head layer
def test_fast_path_is_the_dense_network_at_every_pixel_it_reads(model):
    net = random_net(model)
    sparse = SparseHeadALNet(net).eval()
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        dense_logits, raw = net(image)
        logits, branches = sparse(image.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(logits, dense_logits, atol=1e-4)
        # every corner of the image and random pixels: the coarse branches' interpolation at its extremes
        pixels = torch.tensor([[0, 0], [95, 0], [0, 63], [95, 63], [31, 17], [64, 40]])
        pixels = torch.cat((pixels, torch.randint(0, 64, (50, 2))))
        expected = F.normalize(raw[0, :, pixels[:, 1], pixels[:, 0]].T, dim=1)
        got = sparse.descriptors_at(branches, pixels)
    assert (got * expected).sum(dim=1).min() > 0.99999
