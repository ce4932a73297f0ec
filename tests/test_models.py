"""Backbones: ResNet-32 (He et al., option A), torchvision ResNet-50 / ResNeXt-50, cosine and linear heads."""

import pytest
import torch
import torch.nn.functional as F

from kps.models import CosineLinear, make_model

# ResNet-32 body: conv1 432 + bn1 32 + stage1 23,360 + stage2 88,192 + stage3 351,488 = 463,504
RESNET32_BODY = 463_504


def _params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("head,extra", [("linear", 64 * 10 + 10), ("cosine", 64 * 10)])
def test_resnet32_parameter_count(head, extra):
    model = make_model("resnet32", 10, head)
    assert _params(model.body) == RESNET32_BODY
    assert _params(model) == RESNET32_BODY + extra  # 464,154 linear, 464,144 cosine (about 0.46 M)


def test_resnet32_shapes_and_cosines():
    torch.manual_seed(0)
    model = make_model("resnet32", 100, "cosine").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        feats, out = model.features(x), model(x)
    assert feats.shape == (4, 64) and out.shape == (4, 100)
    assert model.head.weight.shape == (100, 64) and isinstance(model.head, CosineLinear)
    assert out.abs().max() <= 1 + 1e-6
    ref = F.cosine_similarity(feats[:, None, :], model.head.weight[None, :, :], dim=2)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(model.head.weight.norm(dim=1), torch.ones(100), atol=1e-5)  # NormedLinear init


def test_resnet32_linear_head_logits_and_backward():
    torch.manual_seed(0)
    model = make_model("resnet32", 10, "linear")
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and isinstance(model.head, torch.nn.Linear)
    out.sum().backward()
    assert model.body.conv1.weight.grad is not None


def test_option_a_shortcut_subsamples_and_zero_pads():
    block = make_model("resnet32", 10).body.layer2[0]  # 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 32, 32)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 16, 16)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_resnet32_kaiming_init():
    torch.manual_seed(0)
    w = make_model("resnet32", 10).body.layer3[1].conv1.weight  # fan_in 64*9
    assert abs(w.std().item() - (2 / 576) ** 0.5) < 0.003


@pytest.mark.parametrize("arch,body_params", [("resnet50", 23_508_032), ("resnext50_32x4d", 22_979_904)])
def test_torchvision_backbones(arch, body_params):
    torch.manual_seed(0)
    model = make_model(arch, 7, "cosine").eval()
    assert _params(model.body) == body_params  # torchvision's count minus its 1000-way fc
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.features(x).shape == (2, 2048)
        out = model(x)
    assert out.shape == (2, 7) and model.head.weight.shape == (7, 2048) and out.abs().max() <= 1 + 1e-6
    assert make_model(arch, 7, "linear").head.weight.shape == (7, 2048)


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch 'resnet18'"):
        make_model("resnet18", 10)
    with pytest.raises(ValueError, match="head 'arc'"):
        make_model("resnet32", 10, "arc")
    with pytest.raises(ValueError, match="num_classes"):
        make_model("resnet32", 0)
    with pytest.raises(ValueError, match="prior_bias needs a linear head"):
        make_model("resnet32", 10, "cosine", prior_bias=True)
    with pytest.raises(ValueError, match="over 1"):
        make_model("resnet32", 1, "linear", prior_bias=True)


def test_prior_bias_starts_every_sigmoid_at_one_over_c():
    """Cui et al.'s sigmoid-loss head: bias -log(C - 1) (-log 9 = -2.1972 for CIFAR-10,
    -log 99 = -4.5951 for CIFAR-100): sigmoid(bias) = 1/C; the weights keep their init."""
    for c, bias in ((10, -2.1972246), (100, -4.5951199)):
        model = make_model("resnet32", c, "linear", prior_bias=True)
        assert torch.allclose(model.head.bias, torch.full((c,), bias))
        assert torch.allclose(torch.sigmoid(model.head.bias), torch.full((c,), 1 / c))
    plain = make_model("resnet32", 10, "linear")
    assert plain.head.bias.abs().max() < 0.2 and plain.head.bias.std() > 0  # nn.Linear's uniform init


def test_half_width_resnet32():
    model = make_model("resnet32", 10, "cosine", width=8).eval()
    assert model.body.out_features == 32 and model.head.weight.shape == (10, 32)
    assert [model.body.layer1[0].conv1.out_channels, model.body.layer2[0].conv1.out_channels,
            model.body.layer3[0].conv1.out_channels] == [8, 16, 32]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    full = sum(p.numel() for p in make_model("resnet32", 10, "cosine").parameters())
    half = sum(p.numel() for p in model.parameters())
    assert 0.24 < half / full < 0.26  # conv weights scale with width squared
