"""The quality grid's measure of a painting's face copied into a picture (bench/copying.py).

The Scream's face pasted into Tübingen's sky, at the scale the style targets see it (and
twice that, as a coarse start enlarges it), is found where it was pasted; the photograph
itself, and the photograph with a patch of the painting's sky pasted instead, hold none.
"""

import sys
from pathlib import Path

import pytest
import torch

from nst_engine import load_image
from nst_engine.images import fit_long_edge, to_tensor
from nst_engine.optimize import _network

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import copying  # noqa: E402

SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def features():
    net = _network("caffe", "max", torch.device("cpu"), copying.LAYER, False)

    def of(image):
        with torch.no_grad():
            return net(to_tensor(image), {copying.LAYER})[copying.LAYER]

    return of


@pytest.fixture(scope="module")
def pair():
    photo = fit_long_edge(load_image(SAMPLES / "tubingen.jpg"), 512)
    return photo, load_image(SAMPLES / "the_scream.jpg")


def _crop(painting, box, long_edge):
    """The painting's region `box` (fractions) at the scale it has when fitted to long_edge."""
    fitted = fit_long_edge(painting, long_edge)
    left, top, right, bottom = box
    return fitted.crop((round(left * fitted.width), round(top * fitted.height),
                        round(right * fitted.width), round(bottom * fitted.height)))


def _pasted(photo, patch, at=(300, 10)):
    picture = photo.copy()
    picture.paste(patch, at)
    return picture


def test_the_photograph_alone_holds_no_copied_face(features, pair):
    photo, painting = pair
    assert copying.face_copied(features, photo, photo, painting, "the_scream")[0] == 0.0


@pytest.mark.parametrize("enlarged", [1, 2])
def test_a_pasted_face_is_found_where_it_was_pasted(features, pair, enlarged):
    photo, painting = pair
    face = _crop(painting, copying.FACES["the_scream"], 512 * enlarged)
    picture = _pasted(photo, face)
    share, mask = copying.face_copied(features, picture, photo, painting, "the_scream")
    assert share > copying.LIMIT
    # Every position found lies on the pasted face (a position is 8 pixels at relu4_1).
    ys, xs = mask.nonzero(as_tuple=True)
    step = picture.width / mask.shape[1]
    assert xs.min() * step >= 300 - 16 and (xs.max() + 1) * step <= 300 + face.width + 16
    assert (ys.max() + 1) * step <= 10 + face.height + 16


def test_a_pasted_patch_of_the_paintings_sky_is_not_a_face(features, pair):
    photo, painting = pair
    sky = _crop(painting, (0.2, 0.05, 0.45, 0.25), 512)
    picture = _pasted(photo, sky)
    assert copying.face_copied(features, picture, photo, painting, "the_scream")[0] <= copying.LIMIT
