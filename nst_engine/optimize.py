"""The optimization: coarse-to-fine Gatys style transfer with L-BFGS or Adam."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import math
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from PIL import Image
from torch.nn import functional as F

from .version import __version__
from .color import match_colors, preserve_color
from .device import describe, pick_device, use_bf16
from .faces import FACE_BLOCK, Face, find_faces, masks, outside, ready as faces_ready
from .heap import release_above, reuse_freed_memory
from .images import MIN_EDGE, fit_long_edge, to_image, to_tensor, to_uint8
from .lbfgs import LBFGS
from .losses import LossTerms, StyleTransferLoss, gram, gram_tap
from .memory import BudgetError, ScalePlan, forward_tile, plan_batch
from .params import ParamError, Params
from .planning import MIN_SCALE_EDGE, RunPlan, most_pictures, plan_here
from .progress import Progress
from . import winograd
from .tiling import Tile, TiledObjective, halo_for, plan_tiles, tiled_features, tiled_grams
from .topology import CONV_NAMES, conv_channels
from .vgg import VGG19
from .weights import Weights, load_weights


@dataclass(frozen=True)
class RunState:
    """Where a run stands: enough to resume it after a stop or a crash.

    L-BFGS's curvature history is not kept; a resumed run rebuilds it in a few
    iterations. Serialize with `to_dict` and `torch.save`; load with
    `torch.load(..., weights_only=True)` and `from_dict`.
    """

    output: int  # the first of the outputs being optimized (a batch: `pictures` of them)
    scale: int
    iteration: int
    image: torch.Tensor  # (pictures, 3, H, W) float32 on the CPU, the images being optimized
    finished: tuple[torch.Tensor, ...] = ()  # uint8 (3, H, W) of outputs already done
    history: tuple[dict[str, float], ...] = ()  # the loss history so far, so a resumed run keeps it

    def complete(self, outputs: int) -> bool:
        """Whether every one of `outputs` is done: resuming only rebuilds the result."""
        return self.output >= outputs

    @property
    def pictures(self) -> int:
        """How many outputs were being optimized together, as one batch."""
        return self.image.shape[0]

    def to_dict(self) -> dict:
        # The image as 16-bit fixed point (steps of 1.5e-5, far below a pixel's 1/255): half
        # the float32 bytes, which at print sizes is hundreds of megabytes a checkpoint.
        return {
            "version": 2,
            "output": self.output,
            "scale": self.scale,
            "iteration": self.iteration,
            "image": self.image.clamp(0, 1).mul_(65535).round_().to(torch.uint16),  # one temporary
            "finished": list(self.finished),
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RunState":
        return cls(
            output=int(data["output"]),
            scale=int(data["scale"]),
            iteration=int(data["iteration"]),
            image=_image_from(data["image"]),
            finished=tuple(data["finished"]),
            history=tuple(data.get("history", ())),
        )


@dataclass(frozen=True)
class Output:
    seed: int
    stylized: Image.Image
    variant: str = "as given"  # what this output changes (Params.variant_name)
    # The photograph whose colours `corrected` takes; None where no colour correction was asked.
    reference: Image.Image | None = field(default=None, repr=False)

    @functools.cached_property
    def corrected(self) -> Image.Image | None:
        """`stylized` in the photograph's colours, computed when first asked for: a caller that
        writes its pictures on another thread (the service's writer) pays for it there, not on
        the thread that drives the device (a 512 px picture: about 0.1 s on a CPU core)."""
        return None if self.reference is None else match_colors(self.stylized, self.reference)


@dataclass
class Result:
    outputs: list[Output]
    record: dict
    history: list[dict[str, float]]  # one entry per iteration: step, total, content, style, tv
    stopped: bool = False  # should_stop ended it early: outputs hold the partial image
    # When stopped: where to resume. When finished: every output done, so that a caller who
    # could not store the result (a full disk) can rebuild it later without recomputing.
    state: RunState | None = None


ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True)
class Request:
    """One job for `stylize_many`: `stylize`'s arguments of the same names."""

    content: Image.Image
    styles: Sequence[Image.Image]
    params: Params = Params()
    init_image: Image.Image | None = None
    progress: ProgressCallback | None = field(default=None, compare=False)
    should_stop: StopCheck | None = field(default=None, compare=False)
    resume: RunState | None = None


def stylize(
    content: Image.Image,
    styles: Sequence[Image.Image],
    *,
    params: Params = Params(),
    init_image: Image.Image | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    resume: RunState | None = None,
    memory_budget: int | None = None,
    tile: int | None = None,
    batch: int | None = None,
) -> Result:
    """Paint `content` in the manner of `styles`.

    `progress` is called after every iteration; `should_stop` is checked after
    every iteration and, when true, the run ends with `stopped` set, the latest
    image as a partial output and a `state` to resume from. The network and the
    style targets stay cached in this process, so repeated calls are warm.

    `memory_budget` (bytes; default: from the device, see `memory.default_budget`) decides
    for each scale whether the image is evaluated whole or in tiles (the same loss and
    gradient either way) and how long L-BFGS's history is; `tile` forces a tile edge.
    Outputs are optimized as one batch where that fits the budget and pays on the device
    (`planning.batch_pays`), each picture with its own L-BFGS state, so a picture is the one
    made alone, within round-off; `batch` caps it (1: one after another).
    The plan is in the record's "memory".
    """
    request = Request(content, styles, params, init_image, progress, should_stop, resume)
    (result,) = stylize_many([request], memory_budget=memory_budget, tile=tile, batch=batch)
    if isinstance(result, Exception):
        raise result
    return result


def stylize_many(requests: Sequence[Request], *, memory_budget: int | None = None, tile: int | None = None,
                 batch: int | None = None) -> list[Result | Exception]:
    """Several jobs, optimized as one batch where they can be: requests whose runs share the
    network, the layers, the sizes and the iterations (`planning.together_key`) and fit the
    memory budget together are one batch, each picture with its own targets and L-BFGS state
    (so each is the picture made alone, within round-off) and each request with its own
    progress, stop check and result; a request whose `should_stop` says so leaves the batch at
    that iteration, stopped as `stylize`'s, and the others go on. The rest run one after another.
    `batch` caps the pictures in one batch (1: none shared; on the CPU at most
    `planning.CPU_MAX_BATCH`). A request resuming a checkpoint part way runs alone.

    Returns the results in the requests' order; a request's failure (a bad picture, a budget it
    cannot fit, a bug) is returned in its place, never raised, so that it costs no other
    request its result."""
    outcomes: list[Result | Exception | None] = [None] * len(requests)
    planned: list[_Planned] = []
    for index, request in enumerate(requests):
        try:
            planned.append(_plan(index, request, memory_budget, tile, batch))
        except Exception as e:
            outcomes[index] = e
    for members, memory in _batches(planned, batch):
        for p, outcome in zip(members, _run_batch(members, memory)):
            outcomes[p.index] = outcome
    return outcomes


@dataclass
class _Planned:
    """A request with its plan, before anything heavy is loaded: what decides its batch."""

    index: int  # in the caller's requests
    request: Request
    content: Image.Image  # fitted to the size
    device: torch.device
    bf16: bool
    fast_convolutions: bool  # the network runs some convolutions as Winograd
    plan: RunPlan
    resume: RunState | None  # as it is resumed here (`_resumable`)
    key: str | None  # runs of one key can share a batch; None: runs alone


def _plan(index: int, request: Request, memory_budget: int | None, tile: int | None, batch: int | None) -> _Planned:
    params = request.params
    if not request.styles:
        raise ValueError("at least one style image is needed")
    if params.init_is_image and request.init_image is None:
        raise ValueError(f"init={params.init!r} names an image: pass it as init_image")
    content = fit_long_edge(request.content, params.size, what="content image")
    here = plan_here(params, content.size, memory_budget=memory_budget, tile=tile, batch=batch)
    plan, resume = here.plan, request.resume
    if resume is not None and not resume.complete(params.outputs):
        plan, resume = _resumable(plan, resume, bf16=here.bf16, winograd=here.winograd)
    # A forced tile and a run resumed part way go alone; so does a finished one (rebuilt only).
    key = None if tile is not None or resume is not None else here.together
    return _Planned(index, request, content, here.device, here.bf16, here.winograd, plan, resume, key)


def _batches(planned: list[_Planned], cap: int | None) -> list[tuple[list[_Planned], tuple[ScalePlan, ...] | None]]:
    """The requests as the batches they run in, in the order of their first request: those of one
    key together while their pictures fit the budget (`memory.plan_batch`), `cap` and the
    device's most (`planning.most_pictures`), each batch with its memory plan (None: a request
    alone, as its own plan says)."""
    batches: list[tuple[list[_Planned], tuple[ScalePlan, ...] | None]] = []
    open_batch: dict[str, int] = {}  # key -> the batch still taking requests of that key
    for p in planned:
        at = open_batch.get(p.key) if p.key is not None else None
        if at is not None:
            members, _ = batches[at]
            pictures = sum(m.plan.outputs for m in members) + p.plan.outputs
            memory = [plan_batch(m, pictures, p.plan.budget, bf16=p.bf16, winograd=p.fast_convolutions)
                      for m in members[0].plan.memory]
            if pictures <= most_pictures(p.device.type, cap) and all(memory):
                batches[at] = (members + [p], tuple(memory))
                continue
        if p.key is not None:
            open_batch[p.key] = len(batches)
        batches.append(([p], None))
    return batches


def _run_batch(members: list[_Planned], memory: tuple[ScalePlan, ...] | None) -> list[Result | Exception]:
    """One batch's requests run: one alone (its outputs in the groups its plan makes), or
    several together in one batch of all their pictures (`memory`: its plan)."""
    started = time.perf_counter()
    device = members[0].device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the record's peak is this batch's alone
        # cuDNN rounds float32 convolutions to TF32 by default; "fp32" promises float32.
        torch.backends.cudnn.allow_tf32 = members[0].request.params.precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = False
        # bf16 products reduced in float32 throughout: the Gram matrices' split products need it.
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    outcomes: list[Result | Exception | None] = [None] * len(members)
    runs: list[tuple[int, _Run]] = []
    for k, p in enumerate(members):
        try:
            runs.append((k, _Run(p, started)))
        except Exception as e:
            outcomes[k] = e
    try:
        if len(runs) == 1:  # alone, or the one of a batch whose others could not start
            k, run = runs[0]
            outcomes[k] = run.alone()
        elif runs:
            for k, result in zip([k for k, _ in runs], _together([run for _, run in runs], memory)):
                outcomes[k] = result
    except Exception as e:  # the batch's own pass failed: every request in it did
        for k, _ in runs:
            outcomes[k] = e
    return outcomes


def _together(runs: list[_Run], memory: tuple[ScalePlan, ...] | None) -> list[Result | Exception]:
    """Runs optimized as one batch of all their outputs (each run's, one group)."""
    pictures = sum(run.params.outputs for run in runs)
    if memory is not None:
        for run in runs:
            run.plan = dataclasses.replace(run.plan, memory=memory, batch=pictures)
            run.jobs = len(runs)
    members = [_Member(run, range(run.params.outputs), None) for run in runs]
    lead = runs[0]
    with _kept_heap(lead.device, lead.plan), _out_of_memory(lead.plan, lambda: lead.current_size):
        _batch(members)
    return [member.run.failure or member.run.conclude(member) for member in members]


def _kept_heap(device: torch.device, plan: RunPlan):
    """glibc keeping freed memory saves page faults when every iteration allocates the same
    buffers; tiles of several sizes instead fragment a heap that is never trimmed (a 4096 px
    job planned at 5.2 GiB peaked at 8.6 GiB with it), so tiled runs go without."""
    keep = device.type == "cpu" and not any(m.tile for m in plan.memory)
    return reuse_freed_memory() if keep else contextlib.nullcontext()


@dataclass
class _Member:
    """A run's outputs of `group`, in a batch: their images and this scale's losses."""

    run: "_Run"
    group: range
    resume: RunState | None  # the state this group resumes from, if it does
    images: torch.Tensor | None = None  # (len(group), 3, H, W): where the group is
    loss_fns: list[StyleTransferLoss] = field(default_factory=list)  # this scale's, one per picture
    start_iteration: int = 0  # this scale's first iteration is the one after it


def _batch(members: list[_Member]) -> None:
    """The members' outputs made as one batch, coarse to fine: each member's images in its
    `images` when the run ends or the member stops (its run's `stopped`). The members of one
    batch are at the same scale and iteration (one run's resumed group, or fresh runs)."""
    first = members[0].resume
    first_scale = first.scale if first else 0
    for m in members:
        m.run.step = (m.group.start * sum(m.run.iterations) + len(m.group)
                      * (sum(m.run.iterations[:first_scale]) + (m.resume.iteration if m.resume else 0)))
    for scale_index in range(first_scale, len(members[0].run.sizes)):
        active = [m for m in members if not m.run.stopped]
        if not active:
            return
        for m in active:
            m.run.enter_scale(m, scale_index)
        _optimize(active, scale_index)
    for m in members:
        if not m.run.stopped:
            m.images = m.images.detach().clamp(0, 1)


def _optimize(members: list[_Member], scale_index: int) -> None:
    """One scale's iterations for the members' pictures, one pass of the network for all of
    them an iteration. A member whose run stops leaves the batch; the others go on."""
    lead = members[0].run
    p = lead.params  # Adam and tiles are a run's alone: only L-BFGS runs whole share a batch
    entered = time.perf_counter()  # the optimizer's making counts (Adam's first imports for 1.5 s)
    # The optimized images stay plain contiguous (L-BFGS flattens each); the network
    # sees a channels-last copy, a cheap one of three channels. The starting images are
    # made plain contiguous, so that x shares their memory rather than copying it while the
    # caller still holds it (12 bytes a pixel for the whole scale: 600 MB at 8192 px).
    images = members[0].images if len(members) == 1 else torch.cat([m.images for m in members])
    for m in members:
        m.images = None
    x = images.detach().contiguous().requires_grad_(True)
    del images
    owners = [m for m in members for _ in m.group]  # the member of each picture, in order
    loss_fns = [fn for m in members for fn in m.loss_fns]
    last: list[LossTerms] = []
    tiles = lead.tiles(scale_index)
    plan = lead.plan.memory[scale_index]
    tiled = TiledObjective(lead.within(plan), loss_fns[0], tiles) if tiles else None
    start_iteration = members[0].start_iteration
    evaluations = 0

    def closure() -> None:
        nonlocal evaluations
        x.grad = None
        lead.exact_convolutions = not adam and evaluations < 2
        evaluations += 1
        if tiled is not None:  # one picture: a batch is planned only where each scale runs whole
            terms, x.grad = tiled(x.detach())
            last[:] = [terms]
        else:
            last[:] = lead.evaluate(x, loss_fns)
            sum(t.total for t in last).backward()

    adam = plan.optimizer == "adam"
    scheduler = None
    if plan.optimizer in ("lbfgs", "lbfgs-compact"):
        # One function evaluation per step, so progress and stopping work per iteration, for
        # exactly the iterations asked for; the history in bfloat16 where float32 does not fit.
        # Its buffer holds the whole history from the first pair: no more pairs than the
        # scale's remaining iterations can make (a 10-iteration job does not hold 50).
        # Each picture of a batch has its own, on its slice of the batch.
        history = max(1, min(plan.history, lead.iterations[scale_index] - start_iteration - 1))
        pair_dtype = torch.float32 if plan.optimizer == "lbfgs" else torch.bfloat16
        optimizers = [LBFGS(x.detach()[k:k + 1], history, pair_dtype) for k in range(x.shape[0])]
    else:
        optimizer = torch.optim.Adam([x], lr=p.learning_rate)
        if p.lr_schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=25,
                                                                   threshold=1e-3)
    scale_started = time.perf_counter()
    for iteration in range(start_iteration + 1, lead.iterations[scale_index] + 1):
        closure()
        if adam:
            optimizer.step()
        else:
            for k, optimizer_k in enumerate(optimizers):
                optimizer_k.advance(x.grad[k].reshape(-1))
        losses = LossTerms.floats_of(last)
        if scheduler is not None:
            scheduler.step(losses[0]["total"])
        extra = {"lr": optimizer.param_groups[0]["lr"]} if adam else {}
        row = 0
        for m in members:
            mine = slice(row, row + len(m.group))
            m.run.iterated(m, scale_index, iteration, losses[mine], x.detach()[mine], extra)
            row = mine.stop
        leaving = [m for m in members if m.run.stopped]
        if leaving:
            now = time.perf_counter()
            for m in leaving:  # where it stopped, to resume from; its time in the batch is its own
                rows = [k for k, owner in enumerate(owners) if owner is m]
                m.images = x.detach()[rows[0]:rows[-1] + 1].clone()
                m.run.left_scale(scale_index, now - scale_started, now - entered)
            members = [m for m in members if not m.run.stopped]
            if not members:
                break
            kept = [k for k, owner in enumerate(owners) if not owner.run.stopped]
            x = x.detach()[kept].contiguous().requires_grad_(True)
            owners, loss_fns = [owners[k] for k in kept], [loss_fns[k] for k in kept]
            optimizers = [optimizers[k] for k in kept]
            for k, optimizer_k in enumerate(optimizers):  # each on its picture's row of the new batch
                optimizer_k.x = x.detach()[k:k + 1]
    lead.exact_convolutions = False
    now = time.perf_counter()
    row = 0
    for m in members:
        m.images = x.detach()[row:row + len(m.group)]
        row += len(m.group)
        m.run.left_scale(scale_index, now - scale_started, now - entered)


class _Run:
    """The state of one request: its inputs, plan and network, shared by its outputs and scales."""

    def __init__(self, planned: _Planned, started: float):
        """`started`: when its batch began (its elapsed time and ETA count from there)."""
        constructed = time.perf_counter()
        request, params = planned.request, planned.request.params
        self.params, self.device, self.bf16, self.plan = params, planned.device, planned.bf16, planned.plan
        self.resume = planned.resume
        with _out_of_memory(self.plan, lambda: self.plan.sizes[0]):  # Winograd's weight tiles are 387 MiB
            self.net = _network(params.weights, params.pooling, self.device, params.deepest_layer(), self.bf16)
        self.weights = _weights(params.weights)
        self.blend = _blend_weights(params.style_blend, len(request.styles))
        # A job whose style layers are all in the deepest block asked for exactly them: no guard.
        guard = params.face_guard == "auto" and not all(layer.startswith(FACE_BLOCK) for layer in params.style_layers)
        # Per painting: a painting with a face gives relu5_* from outside it.
        self.faces = [_faces(style) if guard else [] for style in request.styles]
        styles = list(request.styles)
        self.styles = [match_colors(style, planned.content) for style in styles] if params.style_color_match else styles
        self.content, self.init_image = planned.content, request.init_image
        self.sizes, self.iterations = self.plan.sizes, self.plan.iterations  # per scale
        self.progress, self.should_stop, self.started = request.progress, request.should_stop, started
        self.history: list[dict[str, float]] = list(self.resume.history) if self.resume else []
        self.finished: list[torch.Tensor] = list(self.resume.finished) if self.resume else []
        self.jobs = 1  # requests in this run's batch
        self.failure: Exception | None = None  # raised by its progress callback or stop check
        self.stopped = False
        self.stopped_at = (0, 0)
        self.step = 0
        self.total_steps = self.plan.total_steps
        self.pixel_steps_done = 0.0
        self.optimize_seconds = 0.0
        self.targets_seconds = 0.0  # each scale's content features and style Gram matrices
        self.seconds_per_iteration: dict[str, float] = {}
        self.last_losses: dict[str, float] = {}
        self._rate_origin: tuple[float, float] | None = None
        self._iterations_here = 0  # this scale's iterations so far
        self.current_size = self.plan.sizes[0]
        # L-BFGS's first pair comes from torch's probe step (|g|_2 / |g|_1 long, a few
        # millionths of the image's range a pixel): the curvature it measures can be smaller
        # than Winograd's round-off (a 160 px run's first pair at cos 2.6e-3 with it, 2.9e-4
        # without: kept, it sent the next step 200 times too far). Those two evaluations run
        # the direct convolution (`VGG19.forward`'s exact); every later pair comes from a
        # step a thousand times longer.
        self.exact_convolutions = False
        self.setup_seconds = time.perf_counter() - constructed  # its own: a batch's runs are set up in turn

    def alone(self) -> Result:
        """This run's outputs in the groups its plan makes, one batch after another."""
        first = self.resume.output if self.resume else 0
        # The batch in progress goes on as it was (none where its pictures start again:
        # `_resumable`), the rest as planned.
        ongoing = self.resume.pictures if self.resume is not None and not self.resume.complete(self.params.outputs) else 0
        groups = ([range(first, first + ongoing)] if ongoing else []) + self.plan.groups(first + ongoing)
        with _kept_heap(self.device, self.plan), _out_of_memory(self.plan, lambda: self.current_size):
            for group in groups:
                member = _Member(self, group, self.resume if ongoing and group.start == first else None)
                _batch([member])
                if self.failure is not None:
                    raise self.failure
                if self.stopped:
                    return self.conclude(member)
                self.finished.extend(_pictures(member.images))
        return self.conclude(None)

    def conclude(self, member: _Member | None) -> Result:
        """The result once `member`'s group has ended: stopped where it stands, or finished
        (None: every output is in `finished`)."""
        if member is not None and self.stopped:
            state = RunState(member.group.start, self.stopped_at[0], self.stopped_at[1], member.images.detach().cpu(),
                             tuple(self.finished), self.ordered_history())
            return _result(self.finished + _pictures(member.images), self, state)
        if member is not None:
            self.finished.extend(_pictures(member.images))
        last = self.finished[-1].unsqueeze(0).float().div_(255.0)
        return _result(self.finished, self, RunState(self.params.outputs, 0, 0, last, tuple(self.finished),
                                                     self.ordered_history()))

    def enter_scale(self, member: _Member, scale_index: int) -> None:
        """`member`'s targets and starting images at a scale: the run's start, its checkpoint's
        place, or the last scale's images enlarged."""
        size = self.current_size = self.sizes[scale_index]
        content_t = to_tensor(self.content.resize(size, Image.Resampling.LANCZOS)
                              if size != self.content.size else self.content)
        content_t = self._to_device(content_t)
        targets_started = time.perf_counter()
        variants = [self.params.variant(index) for index in member.group]
        # The photograph's features once: every variant's content target.
        content_targets = self._content_targets(content_t, self.tiles(scale_index))
        member.loss_fns = [self._loss(v, content_targets, size) for v in variants]
        self.targets_seconds += time.perf_counter() - targets_started
        resume, images = member.resume, member.images
        member.start_iteration = 0
        if resume and scale_index == resume.scale:
            images = resume.image.to(self.device, copy=True)  # the state stays as it was
            member.start_iteration = resume.iteration
        elif images is None:
            generators = [torch.Generator().manual_seed(v.seed) for v in variants]
            images = torch.cat([self._initial(content_t, size, g) for g in generators])
        else:
            images = F.interpolate(images, size=(size[1], size[0]), mode="bicubic", align_corners=False)
            images = images.clamp(0, 1).to(self.device)
        member.images = images

    def iterated(self, member: _Member, scale_index: int, iteration: int, losses: list[dict[str, float]],
                 images: torch.Tensor, extra: dict[str, float]) -> None:
        """After an iteration of `member`'s pictures: the history, the progress report, the stop check."""
        width, height = self.sizes[scale_index]
        pictures = len(member.group)
        self.step += pictures
        self._iterations_here += 1
        self.pixel_steps_done += width * height * pictures
        self.last_losses = losses[-1]
        for index, picture_losses in zip(member.group, losses):
            self.history.append({"step": self.picture_step(index, scale_index, iteration), **picture_losses, **extra})
        try:
            if self.progress is not None:
                self.progress(self._report(member.group, scale_index, iteration, losses[0], images))
            stop = self.should_stop is not None and self.should_stop()
        except Exception as e:  # the caller's own fault: this run ends with it, a batch's others go on
            self.failure, stop = e, True
        if stop:
            self.stopped = True
            self.stopped_at = (scale_index, iteration)

    def left_scale(self, scale_index: int, iterating: float, optimizing: float) -> None:
        """The end of this run's part of a scale: `iterating` seconds of its iterations (after
        the optimizer's making), `optimizing` in all."""
        width, height = self.sizes[scale_index]
        self.optimize_seconds += optimizing
        if self._iterations_here:
            self.seconds_per_iteration[f"{width}x{height}"] = round(iterating / self._iterations_here, 4)
        self._iterations_here = 0

    def picture_step(self, output: int, scale: int, iteration: int) -> int:
        """The step (1-based) an output's iteration has in the loss history: its number had the
        outputs been made one after another, batched or not."""
        return output * sum(self.iterations) + sum(self.iterations[:scale]) + iteration

    def ordered_history(self) -> tuple[dict[str, float], ...]:
        """The loss history by step: a batch's pictures report their iterations side by side."""
        return tuple(sorted(self.history, key=lambda h: h["step"]))

    def tiles(self, scale_index: int) -> list[Tile] | None:
        """This scale's tiles, or None where it runs whole."""
        m = self.plan.memory[scale_index]
        if m.tile is None:
            return None
        width, height = m.size
        return plan_tiles(height, width, m.tile, halo_for(self.params.content_layers + self.params.style_layers))

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device).contiguous(memory_format=torch.channels_last)

    def _initial(self, content_t, size, generator) -> torch.Tensor:
        p = self.params
        if p.init == "noise":
            noise = torch.rand(content_t.shape, generator=generator)
            return noise.to(self.device)
        if p.init == "content":
            base = content_t
        else:
            base = self._to_device(to_tensor(self.init_image.convert("RGB").resize(size, Image.Resampling.LANCZOS)))
        noise = torch.randn(base.shape, generator=generator).to(self.device) * p.init_noise
        return (base + noise).clamp(0, 1).contiguous()

    def _features(self, image: torch.Tensor, layers, tap=None) -> dict[str, torch.Tensor]:
        return self.net(image.contiguous(memory_format=torch.channels_last), layers, tap=tap,
                        exact=self.exact_convolutions)

    def evaluate(self, images: torch.Tensor, loss_fns: Sequence[StyleTransferLoss]) -> list[LossTerms]:
        """Each picture's terms against its own targets, from one pass of the batch: the
        network and the Gram matrices treat a batch's pictures apart, so the sum of the terms
        gives each picture the gradient it has alone."""
        grams: dict[str, torch.Tensor] = {}
        styled = frozenset().union(*(fn.style_targets for fn in loss_fns))

        def tap(name: str, features: torch.Tensor) -> torch.Tensor:
            if name in styled:
                features, grams[name] = gram_tap(features)
            return features

        features = self._features(images, frozenset().union(*(fn.layers for fn in loss_fns)), tap)
        if len(loss_fns) == 1:  # no slices: a slice's backward would allocate its layer's gradient again
            return [loss_fns[0](features, images, grams)]
        return [fn({k: v[i:i + 1] for k, v in features.items()}, images[i:i + 1], {k: g[i:i + 1] for k, g in grams.items()})
                for i, fn in enumerate(loss_fns)]

    def _content_targets(self, content_t: torch.Tensor, tiles: list[Tile] | None) -> dict[str, torch.Tensor]:
        layers = frozenset(self.params.content_layers)
        with torch.no_grad():
            if tiles:
                features = tiled_features(self._features, content_t, layers, tiles)
            else:
                features = self._features(content_t, layers)
        return {k: features[k] for k in self.params.content_layers}

    def _loss(self, p: Params, content_targets, size) -> StyleTransferLoss:
        style_edge = max(MIN_SCALE_EDGE // 4, round(max(size) * p.style_scale))
        grams = [self._style_grams(style, style_edge, found) for style, found in zip(self.styles, self.faces)]
        style_targets, layer_weights = {}, []
        for layer, layer_weight in zip(p.style_layers, p.style_layer_weights or [1.0] * len(p.style_layers)):
            weights = _painting_weights(layer, self.blend, grams)
            if weights:  # else every painting's face fills it: the layer is left out
                style_targets[layer] = sum(weights[i] * grams[i][layer] for i in weights)
                layer_weights.append(layer_weight)
        return StyleTransferLoss(
            content_targets=content_targets,
            style_targets=style_targets,
            style_layer_weights=layer_weights,
            content_weight=p.content_weight,
            style_weight=p.effective_style_weight,
            tv_weight=p.tv_weight,
        )

    def _style_grams(self, style: Image.Image, edge: int, faces: list[Face]) -> dict[str, torch.Tensor]:
        """The painting's Gram matrix at each style layer; with a face, the deepest block's from
        the positions outside it, or none where the face fills the canvas (faces.py)."""
        p = self.params
        key = (
            _image_digest(style), edge, tuple(p.style_layers), p.weights, p.pooling, str(self.device), self.bf16,
            bool(faces),
        )
        cached = _STYLE_CACHE.get(key)
        if cached is not None:
            _STYLE_CACHE.move_to_end(key)
            return cached
        # A wide painting at a small edge (a coarse scale, a "finer brushwork" variant) keeps the
        # short side the network needs, rather than failing the job.
        edge = max(edge, math.ceil(MIN_EDGE * max(style.size) / min(style.size)))
        style_t = self._to_device(to_tensor(fit_long_edge(style, edge, what="style image")))
        layers = frozenset(p.style_layers)
        _, _, height, width = style_t.shape
        tile = forward_tile((width, height), self.plan.budget, bf16=self.bf16, layers=list(layers),
                            winograd=bool(self.net.winograd_layers))
        deep = frozenset(layer for layer in layers if faces and layer.startswith(FACE_BLOCK))
        with torch.no_grad():
            if tile is None:
                features = self._features(style_t, layers)
                grams = {layer: gram(features[layer]) for layer in p.style_layers if layer not in deep}
            else:
                tiles = plan_tiles(height, width, tile, halo_for(layers))
                grams, features = tiled_grams(self._features, style_t, layers, tiles, stitch=deep)
            for layer in deep:
                grams.pop(layer, None)  # the whole painting's: it holds the face
                masked = _gram_outside(features[layer], faces) if masks(faces) else None
                if masked is not None:
                    grams[layer] = masked
        return _remember(_STYLE_CACHE, key, grams)

    def within(self, plan: ScalePlan):
        """The network's pass for tiles: on the CPU each first gives the heap's free pages back
        when the process is over the plan (tiles of several shapes fragment glibc's heap:
        300-400 MiB free but resident in a 2048 px run planned at 1330 MiB; see heap.py)."""
        if self.device.type != "cpu":
            return self._features

        def features(image, layers, tap=None):
            release_above(plan.peak_bytes)
            return self._features(image, layers, tap)

        return features

    def _report(self, group, scale_index, iteration, losses, x) -> Progress:
        elapsed = time.perf_counter() - self.started
        remaining_pixel_steps = self.plan.remaining_work(group.start, scale_index, iteration, len(group))
        rate = self._seconds_per_pixel_step(elapsed)
        total = self.plan.total_work
        return Progress(
            output=group.start,
            outputs=self.params.outputs,
            pictures=len(group),
            scale=scale_index,
            scales=len(self.sizes),
            size=self.sizes[scale_index],
            iteration=iteration,
            iterations=self.iterations[scale_index],
            step=self.step,
            total_steps=self.total_steps,
            losses=losses,
            elapsed=elapsed,
            eta=rate * remaining_pixel_steps,
            snapshot=lambda: RunState(
                group.start, scale_index, iteration, x.detach().float().cpu().clone(), tuple(self.finished),
                self.ordered_history(),
            ),
            work=(total - remaining_pixel_steps) / 1e6,
            work_total=total / 1e6,
            image=lambda max_edge=None: to_image(_side_by_side(x.detach()), max_edge),
        )

    def _seconds_per_pixel_step(self, elapsed: float) -> float:
        """Measured from the end of the first iteration, which pays for warm-up and setup;
        per pixel because a coarse scale's step costs less than a fine one's."""
        now = time.perf_counter()
        if self._rate_origin is None:
            self._rate_origin = (now, self.pixel_steps_done)
            return elapsed / max(self.pixel_steps_done, 1.0)
        t0, done0 = self._rate_origin
        if self.pixel_steps_done <= done0:
            return elapsed / max(self.pixel_steps_done, 1.0)
        return (now - t0) / (self.pixel_steps_done - done0)


def _resumable(plan: RunPlan, resume: RunState, *, bf16: bool, winograd: bool) -> tuple[RunPlan, RunState]:
    """The plan and the state to resume a checkpoint with. Its batch goes on as one batch where
    that fits this budget (a checkpoint of this worker's always does); where it does not (a
    machine with less memory took the job over), the batch's pictures start again as planned
    here (a state with no picture in progress), and the outputs finished before it are kept."""
    if resume.pictures <= plan.batch:
        return plan, resume
    batched = [plan_batch(m, resume.pictures, plan.budget, bf16=bf16, winograd=winograd) for m in plan.memory]
    if all(batched):
        return dataclasses.replace(plan, memory=tuple(batched), batch=resume.pictures), resume
    before = resume.output * sum(plan.iterations)
    return plan, RunState(resume.output, 0, 0, torch.empty(0), resume.finished,
                          tuple(h for h in resume.history if h["step"] <= before))


def _side_by_side(images: torch.Tensor) -> torch.Tensor:
    """A batch's pictures (B, 3, H, W) as one (3, H', W') image: a grid about as wide as high
    (two across for two to four), white where a cell is empty; one picture as it is."""
    count, _, height, width = images.shape
    if count == 1:
        return images[0]
    across = math.ceil(math.sqrt(count))
    down = math.ceil(count / across)
    grid = images.new_ones((3, down * height, across * width))
    for k in range(count):
        row, column = divmod(k, across)
        grid[:, row * height:(row + 1) * height, column * width:(column + 1) * width] = images[k]
    return grid


def _image_from(saved: torch.Tensor) -> torch.Tensor:
    """A checkpoint's image as float32: 16-bit fixed point (version 2) or float32 (version 1)."""
    return saved.float() / 65535.0 if saved.dtype == torch.uint16 else saved.float()


def _variant_record(params: Params, index: int) -> dict:
    v = params.variant(index)
    return {"output": index + 1, "variant": Params.variant_name(index), "seed": v.seed,
            "style_scale": v.style_scale, "strength": v.strength,
            "style_weight": round(v.effective_style_weight, 4)}


def _pictures(images: torch.Tensor) -> list[torch.Tensor]:
    """A batch's pictures as uint8 (3, H, W) on the CPU."""
    return [to_uint8(images[k:k + 1]).cpu() for k in range(images.shape[0])]


def _result(finished: list[torch.Tensor], run: _Run, state: RunState) -> Result:
    content, params, device, bf16 = run.content, run.params, run.device, run.bf16
    outputs_started = time.perf_counter()
    outputs = []
    for index, pixels in enumerate(finished):
        stylized = to_image(pixels)
        if params.preserve_color:
            stylized = preserve_color(stylized, content)
        outputs.append(Output(seed=params.variant(index).seed, stylized=stylized, variant=Params.variant_name(index),
                              reference=content if params.color_correction else None))
    total = time.perf_counter() - run.started
    record = {
        "engine": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": describe(device),
        "precision": "bf16" if bf16 else "fp32",
        "weights": {"spec": params.weights, "source": run.weights.source, "sha256": run.weights.sha256},
        "params": params.to_dict(),
        "size": list(content.size),
        "scales": [list(s) for s in run.sizes],
        "iterations_per_scale": list(run.iterations),
        "seeds": [o.seed for o in outputs],
        "variants": [_variant_record(params, index) for index in range(len(outputs))],
        "faces": _faces_record(params, run.faces),
        "iterations_run": run.step,
        "final_losses": run.last_losses,
        "timings": {
            "setup_s": round(run.setup_seconds, 3),
            "optimize_s": round(run.optimize_seconds, 3),
            "targets_s": round(run.targets_seconds, 3),
            "outputs_s": round(time.perf_counter() - outputs_started, 3),  # the pictures (colour correction: on demand)
            "total_s": round(total, 3),
            "seconds_per_iteration": run.seconds_per_iteration,
        },
        "work_mpix_iterations": round(run.plan.total_work / 1e6, 3),
        "memory": {"budget_mib": round(run.plan.budget / 2**20), "batch": run.plan.batch, "jobs": run.jobs,
                   "scales": [m.to_dict() for m in run.plan.memory]},
        "stopped": run.stopped,
    }
    if device.type == "cuda":
        record["gpu_peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return Result(outputs=outputs, record=record, history=list(run.ordered_history()), stopped=run.stopped,
                  state=state)


def _faces_record(params: Params, faces: list[list[Face]]) -> dict:
    """What the face guard found in each painting, and for which layers it gave each painting's
    target from outside its faces ("masked") or gave none ("left_out": the face fills it)."""
    deep = [layer for layer in params.style_layers if layer.startswith(FACE_BLOCK)]

    masked = [i + 1 for i, found in enumerate(faces) if masks(found)]
    left_out = [i + 1 for i, found in enumerate(faces) if found and not masks(found)]
    return {
        "guard": params.face_guard,
        "paintings": [[f.to_dict() for f in found] for found in faces],
        "masked": {layer: masked for layer in deep if masked},
        "left_out": {layer: left_out for layer in deep if left_out},
    }


@contextlib.contextmanager
def _out_of_memory(plan: RunPlan, where: Callable[[], tuple[int, int]]):
    """Memory running out anyway (another process took it, or the cost model is wrong) becomes
    a BudgetError with the plan and advice, on the CPU as on a GPU, instead of a traceback.
    torch gives the CPU's case no type of its own: its allocator's message is the sign, and
    oneDNN's bare "could not create a primitive" (making a convolution's primitive allocates its
    JIT code and scratchpad; a shape it cannot do fails earlier, at the primitive's descriptor,
    in other words). Seen under an address-space limit on the AVX2 class, where the first pass
    at a new size creates its primitives."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e) \
                and str(e).strip() != "could not create a primitive":
            raise
        size = where()
        raise BudgetError(
            f"ran out of memory at {size[0]}x{size[1]} (planned peak "
            f"{max(m.peak_bytes for m in plan.memory) / 2**30:.1f} GiB of a {plan.budget / 2**30:.1f} GiB budget; "
            f"{type(e).__name__}: {str(e)[:160]})",
            hint="other programs may be using the memory: lower the worker's budget ([worker] memory_budget_mib) "
                 "so that the job runs in smaller tiles, or choose a smaller size") from None


def _blend_weights(blend: Sequence[float] | None, count: int) -> list[float]:
    if blend is None:
        return [1.0 / count] * count
    if len(blend) != count:
        raise ParamError(f"style_blend has {len(blend)} weights for {count} style images; give one per style")
    total = sum(blend)
    return [w / total for w in blend]


def _painting_weights(layer: str, blend: Sequence[float], grams: Sequence[Mapping[str, torch.Tensor]]
                      ) -> dict[int, float]:
    """Each painting's share of `layer`'s target: its blend weight, except that a painting whose
    face fills its canvas gives no target for the deepest block (its Gram matrix would ask the
    picture for that face: see faces.py); the others' weights are scaled to sum to 1."""
    weights = {i: w for i, w in enumerate(blend) if w > 0 and layer in grams[i]}
    if len(weights) == len(blend):
        return weights
    total = sum(weights.values())
    return {i: w / total for i, w in weights.items()}


def _gram_outside(features: torch.Tensor, faces: list[Face]) -> torch.Tensor | None:
    """The Gram matrix of the positions outside `faces` (normalized by those positions), or
    None where a grid this coarse has none outside."""
    keep = outside(faces, features.shape[2], features.shape[3]).to(features.device)
    if not bool(keep.any()):
        return None
    return gram(features[:, :, keep].unsqueeze(-1))


def _faces(style: Image.Image) -> list[Face]:
    key = _image_digest(style)
    found = _FACES_CACHE.get(key)
    return _remember(_FACES_CACHE, key, find_faces(style) if found is None else found)


def _remember(cache: collections.OrderedDict, key, value):
    """Keep `value` in one of the painting caches, the least recently used going past
    _STYLE_CACHE_SIZE entries."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _STYLE_CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _image_digest(img: Image.Image) -> str:
    return hashlib.sha1(img.tobytes() + repr(img.size).encode()).hexdigest()


_STYLE_CACHE: "collections.OrderedDict[tuple, dict[str, torch.Tensor]]" = collections.OrderedDict()
_STYLE_CACHE_SIZE = 32
_FACES_CACHE: "collections.OrderedDict[str, list[Face]]" = collections.OrderedDict()


@functools.lru_cache(maxsize=2)
def _weights(spec: str) -> Weights:
    return load_weights(spec)


@functools.lru_cache(maxsize=4)
def _network(weights: str, pooling: str, device: torch.device, last_layer: str, bf16: bool) -> VGG19:
    dtype = torch.bfloat16 if bf16 else torch.float32
    fast = frozenset(name for name in CONV_NAMES if winograd.worth_it(device, dtype, *conv_channels(name)))
    net = VGG19(_weights(weights), last_layer=last_layer, pooling=pooling, dtype=dtype, winograd_layers=fast)
    return net.to(device).to(memory_format=torch.channels_last)


def preload(params: Params = Params()) -> None:
    """Load what `stylize(params=params)` will need: the weights, the network, the face detector.

    A long-running caller (the service) calls it once at start, so that its first job
    starts at full speed and no thread waits on a slow import in the middle of a job.
    """
    device = pick_device(params.device)
    _network(params.weights, params.pooling, device, params.deepest_layer(), use_bf16(params.precision, device))
    if params.face_guard == "auto":
        faces_ready()


def clear_caches() -> None:
    """Forget the loaded networks and style targets (tests; freeing GPU memory)."""
    _STYLE_CACHE.clear()
    _FACES_CACHE.clear()
    _network.cache_clear()
    _weights.cache_clear()
