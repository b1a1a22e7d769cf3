"""L-BFGS as the engine uses it: one evaluation a step, no line search, the steps of
`torch.optim.LBFGS(params=[x], lr=1, max_iter=1, history_size=m)`, in fewer image-sized vectors.

Ours rather than torch's for two reasons:
- **Start-up.** Constructing any `torch.optim` optimizer imports `torch._dynamo` (1.4-1.5 s on
  this project's CPU host), paid by the first job of every daemon and by every `nst stylize`.
- **Memory.** torch's holds six float32 vectors the size of the image besides its history, and
  each history pair is two more. At 8192x6144 that is 3.6 GB before the first pair. This one
  computes the same steps (the same two-loop recursion, initial scaling and first step) in four
  vectors: the image, its gradient, the previous gradient (which becomes y in place) and the
  direction (which becomes s in place, then the next direction).

The pairs are float32 where they fit (the plan's "lbfgs": torch's steps, to float round-off;
tests/unit/test_lbfgs.py) and bfloat16 where they do not ("lbfgs-compact": half the bytes; their
products accumulated in float32, chunk by chunk, so no float32 copy of a pair is ever made).
"""

from __future__ import annotations

from typing import Callable

import torch

# Elements converted to float32 at a time where a bf16 pair meets a float32 vector (16 MB).
CHUNK = 1 << 22

# A pair is kept only when y.s > COSINE |s| |y|: the step's curvature must be a measurable share
# of the gradient's change, not round-off. torch keeps any y.s > 1e-10; a pair with y nearly
# orthogonal to s then has rho = 1 / y.s so large that the next direction is thousands of times
# the gradient (measured: cos 3e-4 after the first, tiny step of a small fp32 run sent the loss
# from 4.7 to 1.2e8 for one step). On the quality grid at the defaults every pair with y.s > 0
# had cos >= 0.0072 (552 pairs, seven pairs of images), so none is refused there: 1e-3 sits
# between round-off and the least curvature a real pair showed.
COSINE = 1e-3


class LBFGS:
    """`torch.optim.LBFGS(params=[x], lr=1, max_iter=1, history_size=history)` without line search,
    with the history in `pair_dtype`. `step(closure)` evaluates once and moves `x` once."""

    def __init__(self, x: torch.Tensor, history: int, pair_dtype: torch.dtype = torch.bfloat16) -> None:
        self.x, self.history, self.pair_dtype = x, history, pair_dtype
        self.pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / y.s), oldest first
        self.direction: torch.Tensor | None = None
        self.previous_grad: torch.Tensor | None = None
        self.step_length = 1.0
        self.h_diag = 1.0

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.x.grad = None

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        loss = closure()
        g = self.x.grad.reshape(-1)
        if self.direction is None:
            self.direction = g.neg()
            self.previous_grad = g.clone()
            # torch's first step: at most a unit step along the steepest descent, by the 1-norm.
            self.step_length = min(1.0, 1.0 / float(torch.linalg.vector_norm(g, 1)))
        else:
            self._remember(g)
            self._two_loop(g)
            self.previous_grad.copy_(g)
            self.step_length = 1.0
        # torch with tolerance_change=-1 (never stop early) leaves the image where it is when the
        # direction climbs steeply; the same here.
        if float(_dot(g, self.direction)) <= 1.0:
            self.x.data.add_(self.direction.view_as(self.x), alpha=self.step_length)
        return loss

    def _remember(self, g: torch.Tensor) -> None:
        """The pair of the last step: y = g - g_prev in the previous gradient's buffer, s = t d in
        the direction's; kept when the curvature is positive, as torch does, and not round-off
        (COSINE)."""
        y = self.previous_grad.sub_(g).neg_()
        s = self.direction.mul_(self.step_length)
        ys = float(_dot(y, s))
        yy = float(_dot(y, y))
        if ys > 1e-10 and ys > COSINE * (float(_dot(s, s)) * yy) ** 0.5:
            if len(self.pairs) == self.history:
                self.pairs.pop(0)
            self.pairs.append((s.to(self.pair_dtype, copy=True), y.to(self.pair_dtype, copy=True), 1.0 / ys))
            self.h_diag = ys / yy

    def _two_loop(self, g: torch.Tensor) -> None:
        """The direction -H g by the two-loop recursion, computed in the direction's buffer."""
        q = self.direction.copy_(g).neg_()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(_dot(s, q))
            _axpy(q, -alpha, y)
            alphas.append(alpha)
        q.mul_(self.h_diag)
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            beta = rho * float(_dot(y, q))
            _axpy(q, alpha - beta, s)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dtype == b.dtype:
        return torch.dot(a, b)
    total = torch.zeros((), dtype=torch.float32, device=a.device)
    for start in range(0, a.numel(), CHUNK):
        total += torch.dot(a[start:start + CHUNK].float(), b[start:start + CHUNK].float())
    return total


def _axpy(q: torch.Tensor, alpha: float, v: torch.Tensor) -> None:
    """q += alpha v, with v converted to q's dtype a chunk at a time."""
    if v.dtype == q.dtype:
        q.add_(v, alpha=alpha)
        return
    for start in range(0, q.numel(), CHUNK):
        q[start:start + CHUNK].add_(v[start:start + CHUNK].to(q.dtype), alpha=alpha)
