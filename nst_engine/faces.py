"""Faces in a painting, so that a portrait's eyes and mouth stay out of the picture.

A portrait's deepest style target (relu5_1, about 200 px seen at 512 px) *is* its face: its
Gram matrix asks the picture for eyes, a nose and a mouth, and L-BFGS paints them into
rivers and skies (docs/quality.md, 2026-12-03). So a painting with a face gives relu5_1 the
statistics of the rest of its canvas only: the positions inside the face's box are left out
of that Gram matrix (`outside`), and the hair, collar and background's large strokes stay
(docs/quality.md, "the face masked"). Where the face fills the canvas, too little is left
(`MIN_OUTSIDE`) and the painting gives no relu5_1 target at all. Telling portraits apart by
a painting's own statistics failed (the distinctive patches' energy, the channels'
sparsity); a face detector does it: MTCNN finds the Picasso self-portrait's face
(probability 0.997, 42 % of the canvas) and nothing in The Starry Night, The Scream (whose
small face is never copied) or The Shipwreck.

MTCNN (Zhang et al. 2016) is three small networks: P-Net slides over an image pyramid
and proposes 12 px windows, R-Net (24 px) and O-Net (48 px) re-score and refine the
survivors. Weights: `data/mtcnn/` (see its README); about 2 MB, run on the CPU in a few
hundredths of a second at the 512 px a painting is looked at here.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from .weights import WeightsError

# The layers whose targets a painting with a face gives from outside its faces only
# (optimize.py): the deepest block, whose Gram matrices are the face.
FACE_BLOCK = ("relu5_", "conv5_")
# Below this share of the canvas outside its faces a painting gives the deepest block no
# target: a Gram matrix of a collar's edge is not the painting's statistics.
MIN_OUTSIDE = 0.25
DETECT_EDGE = 512  # px: the painting is looked at this size (the style targets' own size)
MIN_FACE = 20  # px at DETECT_EDGE: smaller faces are texture to every style layer
PYRAMID_STEP = 0.709  # MTCNN's: each pyramid level's side is 0.709 of the last (area halves)
THRESHOLDS = (0.6, 0.7, 0.7)  # MTCNN's per-stage scores
MIN_PROBABILITY = 0.9  # a face counts when O-Net is this sure
MIN_SHARE = 0.01  # ... and covers at least this share of the canvas


@dataclass(frozen=True)
class Face:
    """A face found in a painting: its box as fractions of the width and height, and O-Net's score."""

    box: tuple[float, float, float, float]  # left, top, right, bottom in 0..1
    probability: float

    @property
    def share(self) -> float:
        left, top, right, bottom = self.box
        return max(0.0, right - left) * max(0.0, bottom - top)

    def to_dict(self) -> dict:
        return {"box": [round(v, 3) for v in self.box], "probability": round(self.probability, 3),
                "share": round(self.share, 3)}


def outside(faces: list[Face], height: int, width: int) -> torch.Tensor:
    """Which positions of a height x width feature grid lie outside every face's box (by each
    cell's centre): a (height, width) bool tensor."""
    ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    keep = torch.ones(height, width, dtype=torch.bool)
    for face in faces:
        left, top, right, bottom = face.box
        keep &= ~(((ys >= top) & (ys <= bottom))[:, None] & ((xs >= left) & (xs <= right))[None, :])
    return keep


def share_outside(faces: list[Face]) -> float:
    """The share of the canvas outside every face's box (overlapping boxes counted once)."""
    return float(outside(faces, 200, 200).float().mean())


def masks(faces: list[Face]) -> bool:
    """Whether a painting with these faces gives the deepest block a target from outside them
    (else none: the faces fill the canvas, `MIN_OUTSIDE`)."""
    return bool(faces) and share_outside(faces) >= MIN_OUTSIDE


def find_faces(image: Image.Image) -> list[Face]:
    """The faces in `image` that count (see MIN_PROBABILITY, MIN_SHARE), most certain first."""
    small = image.convert("RGB")
    if max(small.size) > DETECT_EDGE:
        small = small.copy()
        small.thumbnail((DETECT_EDGE, DETECT_EDGE), Image.Resampling.LANCZOS)
    width, height = small.size
    pixels = torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(height, width, 3).permute(2, 0, 1).unsqueeze(0).float()
    with torch.no_grad():
        boxes = _detect(pixels)
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    faces = [Face(tuple(float(v) for v in (b[:4] / scale).clamp(0.0, 1.0)), float(b[4])) for b in boxes]
    return sorted((f for f in faces if f.probability >= MIN_PROBABILITY and f.share >= MIN_SHARE),
                  key=lambda f: -f.probability)


# -- the cascade ----------------------------------------------------------------------
# Boxes are rows (x1, y1, x2, y2, score, ...) in pixels of the image looked at.

def _detect(pixels: torch.Tensor) -> torch.Tensor:
    nets = _networks()
    boxes = _propose(pixels, nets["pnet"])
    if len(boxes):
        boxes = _refine(pixels, boxes, nets["rnet"], 24, THRESHOLDS[1])
    if len(boxes):
        boxes = _refine(pixels, boxes, nets["onet"], 48, THRESHOLDS[2], final=True)
    return boxes


def _propose(pixels: torch.Tensor, pnet) -> torch.Tensor:
    """P-Net over a pyramid that maps faces of MIN_FACE px and up onto its 12 px window."""
    _, _, height, width = pixels.shape
    scale = 12.0 / MIN_FACE
    found = []
    while min(height, width) * scale >= 12:
        level = _resize(pixels, (int(height * scale + 1), int(width * scale + 1)))
        regression, probability = pnet(_normalize(level))
        score = probability[0, 1]
        ys, xs = torch.nonzero(score >= THRESHOLDS[0], as_tuple=True)
        if len(ys):
            # Each output cell is a 12 px window at stride 2 of this level.
            x1 = ((2 * xs + 1) / scale).floor()
            y1 = ((2 * ys + 1) / scale).floor()
            x2 = ((2 * xs + 12) / scale).floor()
            y2 = ((2 * ys + 12) / scale).floor()
            level_boxes = torch.stack([x1, y1, x2, y2, score[ys, xs], *regression[0, :, ys, xs]], dim=1)
            found.append(level_boxes[_nms(level_boxes, 0.5)])
        scale *= PYRAMID_STEP
    if not found:
        return torch.zeros((0, 5))
    boxes = torch.cat(found)
    boxes = boxes[_nms(boxes, 0.7)]
    return _square(_regress(boxes[:, :5], boxes[:, 5:9], plus_one=False))


def _refine(pixels: torch.Tensor, boxes: torch.Tensor, net, side: int, threshold: float,
            final: bool = False) -> torch.Tensor:
    """Re-score each box's crop with R-Net or O-Net; keep the sure ones, moved by their regression."""
    crops = torch.cat([_resize(_crop(pixels, box), (side, side)) for box in boxes])
    regression, probability = net(_normalize(crops))
    keep = probability[:, 1] > threshold
    boxes = torch.cat([boxes[keep, :4], probability[keep, 1:2]], dim=1)
    regression = regression[keep]
    if not final:
        kept = _nms(boxes, 0.7)
        return _square(_regress(boxes[kept], regression[kept]))
    boxes = _regress(boxes, regression)
    return boxes[_nms(boxes, 0.7, by_smaller=True)]


def _crop(pixels: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    # Boxes are 1-based and inclusive as MTCNN's were trained; clipped to the image.
    _, _, height, width = pixels.shape
    x1, y1 = max(int(box[0]), 1), max(int(box[1]), 1)
    x2, y2 = min(int(box[2]), width), min(int(box[3]), height)
    if x2 < x1 or y2 < y1:
        return pixels[:, :, :1, :1]
    return pixels[:, :, y1 - 1:y2, x1 - 1:x2]


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """Move each box by its network's regression (fractions of its width and height)."""
    boxes = boxes.clone()
    extra = 1 if plus_one else 0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    boxes[:, 0] += offsets[:, 0] * w
    boxes[:, 1] += offsets[:, 1] * h
    boxes[:, 2] += offsets[:, 2] * w
    boxes[:, 3] += offsets[:, 3] * h
    return boxes


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box as the square around its centre with its longer side (the networks see squares)."""
    boxes = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _nms(boxes: torch.Tensor, overlap: float, by_smaller: bool = False) -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first: a box goes
    when it overlaps a kept one by more than `overlap` of their union (or of the smaller box)."""
    order = torch.argsort(boxes[:, 4], descending=True)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    kept = []
    while len(order):
        i = order[0]
        kept.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]) + 1).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]) + 1).clamp(min=0)
        inter = w * h
        base = torch.minimum(area[i], area[rest]) if by_smaller else area[i] + area[rest] - inter
        order = rest[inter / base <= overlap]
    return torch.stack(kept) if kept else torch.zeros(0, dtype=torch.long)


def _resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(pixels, size=size, mode="area")


def _normalize(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


# -- the networks ---------------------------------------------------------------------

def _pnet(w: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.max_pool2d(_conv(w, "conv1", x), 2, 2, ceil_mode=True)
    x = _conv(w, "conv3", _conv(w, "conv2", x))
    return F.conv2d(x, w["conv4_2.weight"], w["conv4_2.bias"]), \
        F.conv2d(x, w["conv4_1.weight"], w["conv4_1.bias"]).softmax(dim=1)


def _rnet(w: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.max_pool2d(_conv(w, "conv1", x), 3, 2, ceil_mode=True)
    x = F.max_pool2d(_conv(w, "conv2", x), 3, 2, ceil_mode=True)
    x = _dense(w, "dense4", _flatten(_conv(w, "conv3", x)))
    return F.linear(x, w["dense5_2.weight"], w["dense5_2.bias"]), \
        F.linear(x, w["dense5_1.weight"], w["dense5_1.bias"]).softmax(dim=1)


def _onet(w: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.max_pool2d(_conv(w, "conv1", x), 3, 2, ceil_mode=True)
    x = F.max_pool2d(_conv(w, "conv2", x), 3, 2, ceil_mode=True)
    x = F.max_pool2d(_conv(w, "conv3", x), 2, 2, ceil_mode=True)
    x = _dense(w, "dense5", _flatten(_conv(w, "conv4", x)))
    return F.linear(x, w["dense6_2.weight"], w["dense6_2.bias"]), \
        F.linear(x, w["dense6_1.weight"], w["dense6_1.bias"]).softmax(dim=1)


def _conv(w: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.prelu(F.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"]), w[f"prelu{name[-1]}.weight"])


def _dense(w: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.prelu(F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"]), w[f"prelu{name[-1]}.weight"])


def _flatten(x: torch.Tensor) -> torch.Tensor:
    # The dense layers were trained (in Caffe) on features laid out width, height, channel.
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


def ready() -> str:
    """Load the detector and run it once (a service's warm-up, `nst doctor`): where its weights
    are, or a WeightsError that says what to do."""
    find_faces(Image.new("RGB", (64, 64)))
    return str(importlib.resources.files("nst_engine") / "data" / "mtcnn")


@functools.lru_cache(maxsize=1)
def _networks() -> dict:
    folder = importlib.resources.files("nst_engine") / "data" / "mtcnn"
    nets = {}
    for name, forward in (("pnet", _pnet), ("rnet", _rnet), ("onet", _onet)):
        try:
            with importlib.resources.as_file(folder / f"{name}.pt") as path:
                weights = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # missing or damaged: the install is broken, not the job
            raise WeightsError(
                f"the face detector's weights ({folder / (name + '.pt')}) cannot be read: {type(e).__name__}: {e}",
                hint="reinstall nst (its package ships them), or set face_guard = \"off\" to stylize without "
                     "looking for faces in the paintings") from None
        nets[name] = functools.partial(forward, weights)
    return nets
