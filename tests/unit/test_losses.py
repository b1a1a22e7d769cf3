import torch

from nst_engine.losses import StyleTransferLoss, content_loss, gram, gram_tap, style_loss, tv_loss


def test_gram_by_hand():
    # Two channels, two positions: F = [[1, 2], [3, 4]].
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / (2 * 2)
    assert torch.allclose(gram(f)[0], expected)


def test_gram_is_independent_of_image_size():
    torch.manual_seed(0)
    f = torch.rand(1, 8, 5, 7)
    tiled = f.repeat(1, 1, 3, 2)  # the same statistics over six times the positions
    assert torch.allclose(gram(f), gram(tiled), atol=1e-6)


def test_content_loss_by_hand():
    f = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    p = torch.zeros_like(f)
    assert content_loss(f, p).item() == 0.5 * (1 + 4 + 9 + 16) / 4


def test_style_loss_by_hand():
    g = torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])
    a = torch.zeros_like(g)
    assert style_loss(g, a).item() == 0.25 * (1 + 4 + 4 + 1)


def test_tv_loss_by_hand():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    # Horizontal differences are all 1, vertical all 0.
    assert tv_loss(x).item() == 1.0


def test_bf16_features_are_reduced_in_float32():
    f = torch.rand(1, 4, 6, 6).to(torch.bfloat16)
    assert gram(f).dtype == torch.float32
    assert content_loss(f, f.float()).dtype == torch.float32


def test_total_is_the_weighted_sum_and_layers_are_normalized():
    torch.manual_seed(1)
    target = {"relu1_1": torch.rand(1, 3, 4, 4) * 100}
    style = {"relu2_1": gram(torch.rand(1, 5, 4, 4) * 1000)}
    loss = StyleTransferLoss(
        content_targets=target, style_targets=style, style_layer_weights=[1.0],
        content_weight=2.0, style_weight=3.0, tv_weight=4.0,
    )
    feats = {"relu1_1": torch.zeros(1, 3, 4, 4), "relu2_1": torch.zeros(1, 5, 4, 4)}
    image = torch.rand(1, 3, 8, 8)
    terms = loss(feats, image)
    # Zero features against any target: a relative error of exactly 1/2 (content) and 1/4 (style).
    assert abs(terms.content.item() - 0.5) < 1e-5
    assert abs(terms.style.item() - 0.25) < 1e-5
    expected = 2.0 * terms.content + 3.0 * terms.style + 4.0 * terms.tv
    assert torch.allclose(terms.total, expected)


def test_gram_is_the_same_for_either_memory_layout():
    torch.manual_seed(2)
    f = torch.rand(1, 6, 5, 4)
    assert torch.allclose(gram(f), gram(f.contiguous(memory_format=torch.channels_last)), atol=1e-6)


def test_gram_gradient_is_exact():
    f = torch.randn(1, 3, 4, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (f,))
    # As a tap the features go on through the network: both gradients are summed in one product.
    assert torch.autograd.gradcheck(lambda t: tuple(gram_tap(t)), (f,))
    assert torch.autograd.gradcheck(lambda t: gram_tap(t)[0].pow(2).sum() + gram_tap(t)[1].sum(), (f,))


def test_bf16_gram_is_as_accurate_as_float32():
    torch.manual_seed(0)
    # Post-ReLU features of Caffe's VGG-19 scale (0..hundreds), 20,000 positions.
    f = (torch.randn(1, 64, 100, 200).relu() * 50).to(torch.bfloat16)
    exact = gram(f.double())
    error = lambda g: ((g.double() - exact).abs().max() / exact.abs().max()).item()
    assert gram(f).dtype == torch.float32
    assert error(gram(f)) < 2e-5  # one rounded bf16 product: about 3e-3
    assert error(gram(f.float())) < 2e-5


def test_bf16_gram_gradient_matches_float32():
    torch.manual_seed(0)
    f = (torch.randn(1, 8, 10, 12).relu() * 50).to(torch.bfloat16).requires_grad_(True)
    f32 = f.detach().float().requires_grad_(True)
    down = torch.randn(1, 8, 10, 12)
    for t in (f, f32):
        y, g = gram_tap(t)
        ((y.float() * down).sum() + g.pow(2).sum()).backward()
    assert f.grad.dtype == torch.bfloat16
    assert torch.allclose(f.grad.float(), f32.grad, rtol=2e-2, atol=1e-2 * f32.grad.abs().max().item())


def test_banded_tv_gradient_equals_autograds():
    """The tiles' total variation (value and gradient in bands of rows, without autograd's
    image-sized temporaries) equals autograd's, bands of 1 and several rows and uneven sizes."""
    from nst_engine.losses import tv_loss_and_grad_

    torch.manual_seed(0)
    image = torch.rand(1, 3, 37, 29)
    x = image.clone().requires_grad_(True)
    (0.7 * tv_loss(x)).backward()
    for band_pixels in (1, 29 * 5, 29 * 37, 10**6):
        grad = torch.full_like(image, 0.5)
        value = tv_loss_and_grad_(image, grad, 0.7, band_pixels=band_pixels)
        assert torch.allclose(value, tv_loss(image), rtol=1e-5), band_pixels
        assert torch.allclose(grad - 0.5, x.grad, atol=1e-7, rtol=1e-4), band_pixels
