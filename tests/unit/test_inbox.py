"""The inbox contract: ignore patterns, settling, sidecars, paths."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nst_engine.params import Limits, Params
from service.config import DEFAULT_IGNORE
from service.pipeline.inbox import (
    Settle, Sidecar, SidecarError, default_images, is_ignored, is_own_file, job_key, parse_sidecar,
    resolve_in_inbox, safe_component,
)


def parse(text, suffix=".toml", **kw):
    data = text if isinstance(text, bytes) else text.encode()
    return parse_sidecar(data, name="job", suffix=suffix, base=Params(), limits=Limits(), **kw)


@pytest.mark.parametrize("name", [".hidden.toml", "x.part", "x.tmp", "x.crdownload", "~$doc.toml", "Thumbs.db",
                                  "desktop.ini", ".DS_Store", "._x.toml", "@eaDir/a.toml", "__MACOSX/a.toml",
                                  ".stfolder/a.toml"])
def test_litter_is_ignored(name):
    assert is_ignored(name, DEFAULT_IGNORE)


def test_real_names_are_not_ignored():
    for name in ("portrait.toml", "portrait.content.jpg", "styles/starry.jpg", "año nuevo.toml"):
        assert not is_ignored(name, DEFAULT_IGNORE)


def test_empty_sidecar_is_a_valid_job():
    s = parse("")
    assert s == Sidecar("job", None, None, 0, Params())
    assert parse("", suffix=".json").params == Params()


def test_sidecar_names_images_and_parameters():
    s = parse('content = "photo.jpg"\nstyle = ["a.jpg", "b.jpg"]\nstyle_blend = [1, 2]\nsize = 256\npriority = 3')
    assert (s.content, s.styles, s.priority, s.params.size, s.params.style_blend) == \
        ("photo.jpg", ("a.jpg", "b.jpg"), 3, 256, (1.0, 2.0))


def test_base_comes_from_config():
    s = parse_sidecar(b"iterations = 7", name="j", suffix=".toml", base=Params(size=300), limits=Limits())
    assert (s.params.size, s.params.iterations) == (300, 7)


@pytest.mark.parametrize("text,suffix,message", [
    ("size = ", ".toml", "not valid TOML"),
    ("{", ".json", "not valid JSON"),
    ("[1, 2]", ".json", "table"),
    ('{"size": NaN}', ".json", "NaN"),
    ('{"size": Infinity}', ".json", "Infinity"),
    ("size = nan", ".toml", "size"),
    ("style_weight = inf", ".toml", "finite"),
    ("size = 'big'", ".toml", "whole number"),
    ("size = 100000", ".toml", "out of range"),
    ("iterations = 1000000000", ".toml", "out of range"),
    ("iterations = -1", ".toml", "out of range"),
    ("sise = 3", ".toml", "did you mean 'size'"),
    ("content = 3", ".toml", "content must be a file name"),
    ("style = []", ".toml", "style must be"),
    ("priority = 'high'", ".toml", "priority"),
    ("init = '" + "x" * 5000 + "'", ".toml", "init"),
])
def test_bad_sidecars_say_what_is_wrong(text, suffix, message):
    with pytest.raises(SidecarError, match=message):
        parse(text, suffix)


def test_non_utf8_and_huge_sidecars():
    with pytest.raises(SidecarError, match="UTF-8"):
        parse(b"size = 1\xff\xfe")
    with pytest.raises(SidecarError, match="at most"):
        parse(b"# " + b"x" * 70000)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.text(max_size=12), st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=8,
    ), max_size=6).map(lambda d: json.dumps(d).encode()),
    st.sampled_from(["size", "iterations", "style", "content", "scales", "style_weight", "seed", "outputs"]).flatmap(
        lambda k: st.one_of(st.integers(), st.floats(), st.text(max_size=8), st.lists(st.floats(), max_size=3))
        .map(lambda v: json.dumps({k: v}).encode())),
), st.sampled_from([".toml", ".json"]))
def test_any_input_gives_valid_params_or_the_documented_error(data, suffix):
    try:
        s = parse(data, suffix)
    except SidecarError:
        return
    s.params.validate(Limits())
    assert isinstance(s, Sidecar)


def test_paths_must_stay_in_the_inbox(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "styles").mkdir(parents=True)
    (inbox / "styles" / "s.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    os.symlink(outside, inbox / "link.jpg")
    assert resolve_in_inbox(inbox, "styles/s.jpg") == inbox / "styles" / "s.jpg"
    for bad in ("../secret.jpg", "/etc/passwd", "styles/../../secret.jpg", "link.jpg"):
        with pytest.raises(SidecarError, match="inbox"):
            resolve_in_inbox(inbox, bad)


def test_default_pairing_and_ownership(tmp_path):
    for name in ("cat.content.PNG", "cat.style.jpeg", "cat.style.tif", "cat.Style.jpg", "cat.2.content.png",
                 "bird.CONTENT.Jpg", "bird.content.webp", "fish.Style.PNG", "notes.txt", "cat.toml"):
        (tmp_path / name).write_bytes(b"x")
    with os.scandir(tmp_path) as it:
        found = {key: path.name for key, path in default_images(list(it)).items()}
    assert found == {  # the usual spelling first, in IMAGE_EXTS's order; any other case after it
        ("cat", "content"): "cat.content.PNG", ("cat", "style"): "cat.style.jpeg",
        ("cat.2", "content"): "cat.2.content.png", ("bird", "content"): "bird.content.webp",
        ("fish", "style"): "fish.Style.PNG"}
    assert is_own_file(tmp_path, tmp_path / "cat.style.jpeg", "cat")
    assert not is_own_file(tmp_path, tmp_path / "styles" / "cat.style.jpeg", "cat")
    assert not is_own_file(tmp_path, tmp_path / "category.jpg", "cat")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_settle_waits_for_quiet_and_rearms_on_change(tmp_path):
    clock = Clock()
    settle = Settle(3.0, clock)
    f = tmp_path / "a.jpg"
    f.write_bytes(b"12")
    assert not settle.settled(f)
    clock.now += 2.9
    assert not settle.settled(f)
    f.write_bytes(b"1234")  # still being written
    clock.now += 0.2
    assert not settle.settled(f)
    clock.now += 2.0
    settle.hint(f)  # an event re-arms the timer even without a visible change
    clock.now += 2.0
    assert not settle.settled(f)
    clock.now += 1.1
    assert settle.settled(f)


def test_a_pairs_images_settle_while_its_sidecar_does(tmp_path):
    """The images' settle clocks start when the sidecar is first seen, not when it has settled:
    a job dropped as the contract says is taken one settle time after its sidecar arrived, and
    an image still being written then is not."""
    from intakekit import IntakeDir

    clock = Clock()
    with IntakeDir(tmp_path, settle_seconds=1.0) as d:
        d.intake.settle.clock = clock
        d.drop("quick")
        d.drop("slow")
        assert d.scan() == 0  # first seen
        (d.inbox / "slow.style.png").write_bytes((d.inbox / "slow.style.png").read_bytes() + b"more")
        clock.now += 1.5
        assert d.scan() == 1 and d.jobs()["quick"].staged  # its images were settled with it
        assert "slow" not in d.jobs()  # its style image changed since: not yet
        clock.now += 1.5
        assert d.scan() == 1 and d.jobs()["slow"].staged


def test_settle_ignores_odd_mtimes_and_wall_clock(tmp_path):
    clock = Clock()
    settle = Settle(1.0, clock)
    f = tmp_path / "future.jpg"
    f.write_bytes(b"x")
    os.utime(f, (4_000_000_000, 4_000_000_000))  # the year 2096
    g = tmp_path / "ancient.jpg"
    g.write_bytes(b"x")
    os.utime(g, (0, 0))
    assert not settle.settled(f) and not settle.settled(g)
    clock.now += 1.5
    assert settle.settled(f) and settle.settled(g)


def test_settle_state_is_bounded(tmp_path):
    settle = Settle(1.0, Clock())
    files = [tmp_path / f"{i}.toml" for i in range(50)]
    for f in files:
        f.write_bytes(b"")
        settle.settled(f)
    for f in files[10:]:
        f.unlink()
    settle.keep_only(p for p in list(settle.tracked()) if p.exists())
    assert len(settle) == 10


def test_job_key_distinguishes_redrops():
    assert job_key("a.toml", "h", 1) == job_key("a.toml", "h", 1)
    assert job_key("a.toml", "h", 1) != job_key("a.toml", "h", 2)


def test_safe_component():
    assert safe_component("../../etc") == "_.._etc"
    assert safe_component("-rf") == "rf"
    assert safe_component("a\nb") == "a_b"
    assert safe_component("") == "job"
    assert safe_component("año nuevo") == "año nuevo"
