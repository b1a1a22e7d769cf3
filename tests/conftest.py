"""Shared fixtures: small copies of the bundled sample images."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def pytest_report_header(config) -> list[str]:
    """The machine the figures at the end were measured on: its CPU class and its pace now."""
    import pace

    return [f"cpu flags: {pace.cpu_flags()}; a 64 px stylization: {pace.measured():.2f} s "
            f"(reference {pace.REFERENCE_S} s): ceilings x{pace.factor():.2f}"]


def small(name: str, edge: int) -> Image.Image:
    img = Image.open(SAMPLES / name).convert("RGB")
    img.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    return img


@pytest.fixture(scope="session")
def content_image() -> Image.Image:
    return small("tubingen.jpg", 128)


@pytest.fixture(scope="session")
def style_image() -> Image.Image:
    return small("starry_night.jpg", 128)


@pytest.fixture
def pair_files(tmp_path, content_image, style_image) -> tuple[Path, Path]:
    c, s = tmp_path / "photo.jpg", tmp_path / "painting.png"
    content_image.save(c, quality=92)
    style_image.save(s)
    return c, s


@pytest.fixture
def service_dir(tmp_path):
    from servicekit import ServiceDir

    made = []

    def make(**kw):
        d = ServiceDir(tmp_path, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture(scope="session")
def postgres():
    from pgserver import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The whole store suite runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()
