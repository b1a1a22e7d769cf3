"""Our L-BFGS takes torch's steps in fewer image-sized vectors, and keeps its descent with
bfloat16 pairs."""

import pytest
import torch

from nst_engine import lbfgs
from nst_engine.lbfgs import LBFGS


def objective(x: torch.Tensor) -> torch.Tensor:
    """Smooth, not quadratic, badly scaled: a stand-in for the style loss's curvature."""
    scale = torch.linspace(0.5, 20.0, x.numel()).view_as(x)
    return (scale * (x - 0.3) ** 2).sum() + 0.5 * (x.sin() ** 2).sum() + (x[..., 1:] * x[..., :-1]).sum() ** 2 / x.numel()


def run(make, steps=15, shape=(1, 3, 16, 16)):
    x = torch.linspace(-1, 1, torch.Size(shape).numel()).reshape(shape).clone().requires_grad_(True)
    optimizer = make(x)
    losses = []

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = objective(x)
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(optimizer.step(closure).detach()))
    return x.detach(), losses


def torch_lbfgs(history):
    return lambda x: torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=history,
                                       tolerance_grad=-1.0, tolerance_change=-1.0)


@pytest.mark.parametrize("history", [3, 10])
def test_with_float32_pairs_it_takes_torchs_steps(history):
    expected, expected_losses = run(torch_lbfgs(history))
    got, losses = run(lambda x: LBFGS(x, history, torch.float32))
    assert losses[-1] < 0.05 * losses[0]  # it optimizes: the comparison is not of idle runs
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (got - expected).abs().max()
    assert losses == pytest.approx(expected_losses, rel=1e-4)


def test_bfloat16_pairs_keep_the_descent(monkeypatch):
    monkeypatch.setattr(lbfgs, "CHUNK", 100)  # several chunks: the chunked products are exercised
    _, expected = run(torch_lbfgs(3), steps=25)
    _, losses = run(lambda x: LBFGS(x, 3), steps=25)
    assert losses[-1] <= 1.05 * expected[-1]
    assert all(b <= a * 1.5 for a, b in zip(expected[5:], losses[5:]))


def test_the_history_holds_at_most_its_length_of_bfloat16_pairs():
    x = torch.zeros(1, 3, 8, 8, requires_grad=True)
    optimizer = LBFGS(x, 3)

    def closure():
        optimizer.zero_grad()
        loss = objective(x)
        loss.backward()
        return loss

    for _ in range(8):
        optimizer.step(closure)
    assert len(optimizer.pairs) == 3
    assert all(s.dtype == y.dtype == torch.bfloat16 for s, y in optimizer.pairs)


@pytest.mark.parametrize("pair_dtype", [torch.float32, torch.bfloat16])
def test_a_pair_whose_curvature_is_nearly_orthogonal_does_not_fling_the_image(pair_dtype):
    """A saddle coupling with almost no curvature along the first step: y.s = 1e-4 passes torch's
    y.s > 1e-10, but y is almost orthogonal to s (cos 1e-4), so torch's next step is 2e4 long
    against a gradient of length 1.4. The same mechanism sent a small fp32 stylization's loss from
    4.7 to 1.2e8 for a step (its first pair's cos was 3e-4, round-off)."""
    coupling = torch.tensor([[1e-4, 1.0], [1.0, 1e-4]])
    slope = torch.tensor([1.0, 0.0])

    def make_run(make):
        x = torch.zeros(2, requires_grad=True)
        optimizer = make(x)

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = slope @ x + 0.5 * x @ coupling @ x
            loss.backward()
            return loss

        steps, gradients = [], []
        for _ in range(2):
            before = x.detach().clone()
            optimizer.step(closure)
            gradients.append(float(x.grad.norm()))
            steps.append(float((x.detach() - before).norm()))
        return steps, gradients

    torch_steps, _ = make_run(torch_lbfgs(5))
    assert torch_steps[1] > 1000  # the case is the one described: torch's second step flies
    steps, gradients = make_run(lambda x: LBFGS(x, 5, pair_dtype))
    assert steps[1] <= 10 * gradients[1], (steps, gradients)


def test_a_zero_gradient_is_a_minimum_not_a_division_by_zero():
    """Every weight 0 (the sidecar allows it), or the content alone from the photograph itself
    without noise: the first gradient is zero. It raised ZeroDivisionError mid-job; torch's
    optimizer stays where it is, and so does ours."""
    x = torch.full((1, 3, 8, 8), 0.25, requires_grad=True)
    optimizer = LBFGS(x, history=5, pair_dtype=torch.float32)

    def closure():
        optimizer.zero_grad()
        loss = ((x - 0.25) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        assert float(optimizer.step(closure).detach()) == 0.0
    assert torch.equal(x.detach(), torch.full((1, 3, 8, 8), 0.25))
