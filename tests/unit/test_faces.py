"""The face detector that keeps a portrait's face out of the picture (nst_engine/faces.py),
with its real weights: a photographed face, the same face pasted into a painting, and the
sample paintings, which hold none that counts."""

from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from nst_engine.faces import find_faces

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

# The astronaut's face in scikit-image's photograph, as fractions of its width and height
# (marked by eye: hairline to chin, ear to ear).
ASTRONAUT_FACE = (0.35, 0.12, 0.52, 0.34)


def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def overlap(a, b) -> float:
    """Intersection over union of two boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_a_photographed_face_is_found_where_it_is():
    faces = find_faces(astronaut())
    assert len(faces) == 1
    assert faces[0].probability > 0.99
    assert overlap(faces[0].box, ASTRONAUT_FACE) > 0.7, faces[0].box


def test_a_face_pasted_into_a_painting_is_found_there_at_any_size_of_the_painting():
    face = astronaut().crop((165, 45, 285, 185))  # the face with a margin, 120 x 140 px
    for edge in (1024, 400):
        painting = Image.open(SAMPLES / "starry_night.jpg").convert("RGB")
        painting.thumbnail((1024, 1024))
        painting.paste(face, (600, 250))
        where = (600 / painting.width, 250 / painting.height, 720 / painting.width, 390 / painting.height)
        painting.thumbnail((edge, edge))
        faces = find_faces(painting)
        assert len(faces) == 1, (edge, faces)
        assert overlap(faces[0].box, where) > 0.4, (edge, faces[0].box, where)


@pytest.mark.parametrize("name", ["starry_night.jpg", "the_scream.jpg", "shipwreck.jpg", "tubingen.jpg"])
def test_no_face_that_counts_in_the_sample_paintings(name):
    # The Scream's figure has a face, small and never copied into a picture (docs/quality.md):
    # the detector does not count it, so its paintings keep every style layer.
    assert find_faces(Image.open(SAMPLES / name)) == []


def test_missing_detector_weights_fail_the_job_with_advice_not_a_traceback(monkeypatch, tmp_path):
    import importlib.resources

    from nst_engine import faces
    from nst_engine.weights import WeightsError

    faces._networks.cache_clear()
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)  # an install without them
    try:
        with pytest.raises(WeightsError, match="face detector's weights") as raised:
            find_faces(astronaut())
        assert 'face_guard = "off"' in raised.value.hint
    finally:
        monkeypatch.undo()
        faces._networks.cache_clear()
    assert len(find_faces(astronaut())) == 1
