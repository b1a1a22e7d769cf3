"""A measure of objects copied from a painting into the picture: its face, above all.

SSIM and the Gram distance cannot see a stranger's eyes painted into a river: the
picture keeps the photograph's structure and the painting's statistics either way. What
they cannot see, deep features can. At relu4_1 (each position sees about 90 pixels),
a painted eye, nose or mouth is a feature vector found in the painting only inside its
face: brushstrokes, flat colour and background are found all over the canvas.

So, for a painting with a marked face (FACES: a box per portrait, marked by eye), each
position of a picture is compared, by cosine similarity, with every position of the
painting at the same scale as the style targets. A position holds a copied face part
when its best match inside the face is both close (at least MATCH) and clearly closer
(by at least MARGIN) than its best match anywhere else in the painting: a feature the
rest of the canvas has no likeness of. The photograph is measured the same way, and
positions where it already held such a feature (the astronaut's own face against a
portrait's) are not counted against the picture.

A painted eye covers several neighbouring positions; a chance likeness (a cup's rim, a
cat's own eye a position away from where the photograph had it) one or two: only groups
of at least CLUSTER neighbouring positions count.

A face can be copied larger than the painting holds it (a coarse-to-fine schedule paints
it at a quarter of the size and then enlarges it): the picture is also measured at half
its size, and a position counts when either scale finds a copied part there.

The figure, `face_copied`, is the share of the picture's area (in percent) holding copied
face parts; `face_map` draws them on the picture, for the eye to check the measure.
Calibrated against the eye on the grid (docs/quality.md, "Copied faces"): LIMIT.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

LAYER = "relu4_1"
MATCH = 0.60
MARGIN = 0.10
SCALES = (1.0, 0.5)
CLUSTER = 4
# A picture holds a copied face above this share (percent). Calibrated by eye on the grid:
# pictures with a painted eye, nose or mouth measured 0.39-2.54, pictures without one 0-0.33.
LIMIT = 0.35

# Each painting's face, as fractions of its width and height (left, top, right, bottom),
# marked by eye on the painting. Paintings without a face are measured as having none.
FACES = {
    "picasso_selfport1907": (0.33, 0.28, 0.85, 0.72),
    "the_scream": (0.43, 0.47, 0.62, 0.64),
}


def face_positions(features: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """A (positions,) mask of the feature map's positions inside the box."""
    _, _, h, w = features.shape
    left, top, right, bottom = box
    rows = torch.zeros(h, dtype=torch.bool)
    cols = torch.zeros(w, dtype=torch.bool)
    rows[int(top * h):max(int(top * h) + 1, round(bottom * h))] = True
    cols[int(left * w):max(int(left * w) + 1, round(right * w))] = True
    return (rows[:, None] & cols[None, :]).reshape(-1)


def _unit_rows(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (H*W, C), each row of unit length."""
    x = features[0].float().flatten(1).t()
    return F.normalize(x, dim=1)


def face_matches(picture: torch.Tensor, painting: torch.Tensor, box) -> torch.Tensor:
    """(H, W) bool: the picture's positions holding a feature of the painting's face only."""
    p = _unit_rows(painting)
    inside = face_positions(painting, box)
    q = _unit_rows(picture)
    sims = q @ p.t()
    best_face = sims[:, inside].max(dim=1).values
    best_rest = sims[:, ~inside].max(dim=1).values if (~inside).any() else torch.zeros_like(best_face)
    copied = (best_face >= MATCH) & (best_face - best_rest >= MARGIN)
    return copied.reshape(picture.shape[-2:])


def face_copied(features, picture, photo, painting, style: str) -> tuple[float, torch.Tensor]:
    """(percent of the picture's area holding copied face parts, their mask on LAYER's grid).

    `features(image)` gives an image's LAYER features; the painting is taken at the
    picture's long edge (the style targets' scale), the photograph at the picture's size."""
    from nst_engine.images import fit_long_edge

    box = FACES.get(style)
    base = features(picture)
    h, w = base.shape[-2:]
    copied = torch.zeros((h, w), dtype=torch.bool)
    if box is None:
        return 0.0, copied
    painted = features(fit_long_edge(painting, max(picture.size)))
    photo = photo.resize(picture.size)
    for scale in SCALES:
        size = (max(16, round(picture.width * scale)), max(16, round(picture.height * scale)))
        ours = face_matches(features(picture.resize(size)), painted, box)
        # Near a feature the photograph already had, within one position: its own face.
        theirs = face_matches(features(photo.resize(size)), painted, box)
        theirs = F.max_pool2d(theirs[None, None].float(), 3, stride=1, padding=1)[0, 0].bool()
        found = _clusters(ours & ~theirs)[None, None].float()
        copied |= F.interpolate(found, size=(h, w), mode="nearest")[0, 0].bool()
    return round(100.0 * float(copied.float().mean()), 2), copied


def _clusters(mask: torch.Tensor) -> torch.Tensor:
    """The mask's connected groups of at least CLUSTER positions (8-neighbours): a painted eye
    covers several neighbouring positions, a chance likeness one or two."""
    from scipy import ndimage

    labels, count = ndimage.label(mask.numpy(), structure=[[1, 1, 1]] * 3)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask.numpy(), labels, index=range(1, count + 1))
    keep = [i + 1 for i, n in enumerate(sizes) if n >= CLUSTER]
    return torch.from_numpy(__import__("numpy").isin(labels, keep)) & mask


def face_map(picture, copied: torch.Tensor):
    """The picture with its copied positions outlined in red (a PIL image)."""
    from PIL import ImageDraw

    out = picture.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    h, w = copied.shape
    sx, sy = out.width / w, out.height / h
    for y, x in copied.nonzero().tolist():
        draw.rectangle([x * sx, y * sy, (x + 1) * sx - 1, (y + 1) * sy - 1], outline=(255, 0, 0))
    return out

