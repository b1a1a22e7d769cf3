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
- **Launches.** The recursion is computed from a stacked history in a few matrix products
  (`LBFGS`'s docstring), not as hundreds of small kernels and host waits an iteration.

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
    with the history in `pair_dtype`. `step(closure)` evaluates once and moves `x` once.

    The history is one stacked buffer (the s of every pair, then every y), and the two-loop
    recursion is computed in its closed form: the recursion's coefficients solve two triangular
    systems of the small matrix s_i . y_j, kept up to date a pair at a time. So a step is six
    matrix-vector products over the history and a few small kernels, instead of four products
    and two host round trips for each pair (200 kernels and 100 waits for the GPU at 50 pairs:
    an iteration at 512 px was bound by them), and it moves less memory: the recursion read
    and wrote the whole direction twice for each pair."""

    def __init__(self, x: torch.Tensor, history: int, pair_dtype: torch.dtype = torch.bfloat16) -> None:
        self.x, self.history, self.pair_dtype = x, history, pair_dtype
        self.bank: torch.Tensor | None = None  # [2, history, n]: s rows, then y rows, by slot
        self.curvature: torch.Tensor | None = None  # [history, history] float32: s_i . y_j, by slot
        self.count = 0  # pairs kept; slots fill 0, 1, ... and then the oldest is replaced
        self.newest = -1  # the newest pair's slot
        self.direction: torch.Tensor | None = None
        self.previous_grad: torch.Tensor | None = None
        self.step_length = 1.0
        self.h_diag = 1.0

    @property
    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The (s, y) pairs kept, oldest first (views of the buffer)."""
        first = self._oldest()
        return [(self.bank[0, (first + k) % self.history], self.bank[1, (first + k) % self.history])
                for k in range(self.count)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.x.grad = None

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        loss = closure()
        self.advance(self.x.grad.reshape(-1))
        return loss

    def advance(self, g: torch.Tensor) -> None:
        """Move `x` once from its gradient `g` (flat): `step` without the evaluation, for pictures
        optimized as one batch, each with its own optimizer on its slice of the batch."""
        if self.direction is None:
            self.direction = g.neg()
            self.previous_grad = g.clone()
            # torch's first step: at most a unit step along the steepest descent, by the 1-norm. A
            # zero gradient (every weight 0, or the content alone from the photograph itself, no
            # noise) is already a minimum: the direction is zero, and so is every later one.
            norm = float(torch.linalg.vector_norm(g, 1))
            self.step_length = min(1.0, 1.0 / norm) if norm > 0 else 1.0
        else:
            self._remember(g)
            self._two_loop(g)
            self.previous_grad.copy_(g)
            self.step_length = 1.0
        # torch with tolerance_change=-1 (never stop early) leaves the image where it is when the
        # direction climbs steeply; the same here.
        if float(torch.dot(g, self.direction)) <= 1.0:
            self.x.data.add_(self.direction.view_as(self.x), alpha=self.step_length)

    def _oldest(self) -> int:
        return (self.newest - self.count + 1) % self.history if self.count else 0

    def _remember(self, g: torch.Tensor) -> None:
        """The pair of the last step: y = g - g_prev in the previous gradient's buffer, s = t d in
        the direction's; kept when the curvature is positive, as torch does, and not round-off
        (COSINE)."""
        y = self.previous_grad.sub_(g).neg_()
        s = self.direction.mul_(self.step_length)
        ys, yy, ss = torch.stack([torch.dot(y, s), torch.dot(y, y), torch.dot(s, s)]).tolist()  # one wait
        if not (ys > 1e-10 and ys > COSINE * (ss * yy) ** 0.5):
            return
        if self.bank is None:
            self.bank = torch.empty((2, self.history, s.numel()), dtype=self.pair_dtype, device=s.device)
            self.curvature = torch.zeros((self.history, self.history), dtype=torch.float32, device=s.device)
        slot = (self.newest + 1) % self.history
        self.bank[0, slot].copy_(s)
        self.bank[1, slot].copy_(y)
        self.newest, self.count = slot, min(self.count + 1, self.history)
        # The new pair's row and column of s_i . y_j (the slots past `count` are not filled yet);
        # its own product is the float32 one, as torch's 1 / rho.
        k = self.count
        self.curvature[:k, slot] = _rows_dot(self.bank[0, :k], y)
        self.curvature[slot, :k] = _rows_dot(self.bank[1, :k], s)
        self.curvature[slot, slot] = ys
        self.h_diag = ys / yy

    def _two_loop(self, g: torch.Tensor) -> None:
        """The direction -H g of the two-loop recursion, in the direction's buffer, in closed
        form. With B[i, j] = s_i . y_j (pairs oldest first; B[i, i] = 1 / rho_i), the first
        loop's alphas solve triu(B) alpha = S q (q = -g), the second loop's betas solve
        tril(B') beta = Y r + strict_tril(B') alpha (r = h (q - Y' alpha)), and the direction
        is r + S' (alpha - beta): the loops' own sums, as substitutions."""
        q = self.direction.copy_(g).neg_()
        k = self.count
        if not k:
            q.mul_(self.h_diag)
            return
        # Slots to oldest-first order: a rotation by the oldest slot (slots fill from 0, so
        # until the history is full the oldest is slot 0 and the rotation is none).
        first = self._oldest()
        order = lambda v: torch.roll(v, -first, dims=0) if first else v  # noqa: E731
        back = lambda v: torch.roll(v, first, dims=0) if first else v  # noqa: E731
        s_rows, y_rows = self.bank[0, :k], self.bank[1, :k]
        b = self.curvature[:k, :k]
        if first:
            b = torch.roll(b, (-first, -first), dims=(0, 1))
        alpha = torch.linalg.solve_triangular(torch.triu(b), order(_rows_dot(s_rows, q))[:, None], upper=True)
        _add_rows(q, y_rows, back(-alpha[:, 0]))
        q.mul_(self.h_diag)
        bt = b.t()
        rhs = order(_rows_dot(y_rows, q))[:, None] + torch.tril(bt, -1) @ alpha
        beta = torch.linalg.solve_triangular(torch.tril(bt), rhs, upper=False)
        _add_rows(q, s_rows, back((alpha - beta)[:, 0]))




def _rows_dot(rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """rows @ v in float32, for rows of the pairs' dtype: bfloat16 rows are converted a block of
    columns at a time (CHUNK elements in all), never as a whole float32 copy."""
    if rows.dtype == v.dtype:
        return torch.mv(rows, v)
    width = max(1, CHUNK // rows.shape[0])
    total = torch.zeros(rows.shape[0], dtype=torch.float32, device=v.device)
    for start in range(0, v.numel(), width):
        total.addmv_(rows[:, start:start + width].float(), v[start:start + width].float())
    return total


def _add_rows(q: torch.Tensor, rows: torch.Tensor, coefficients: torch.Tensor) -> None:
    """q += rows' coefficients, with bfloat16 rows converted a block of columns at a time."""
    if rows.dtype == q.dtype:
        q.addmv_(rows.t(), coefficients.to(q.dtype))
        return
    width = max(1, CHUNK // rows.shape[0])
    for start in range(0, q.numel(), width):
        q[start:start + width].addmv_(rows[:, start:start + width].t().to(q.dtype), coefficients.to(q.dtype))
