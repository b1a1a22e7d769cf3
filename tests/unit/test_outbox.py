"""The outbox's partial folders: whose they are decides who may remove them."""

import os
import time

from service.pipeline.outbox import JobFolder, Outbox


def test_a_restart_removes_its_own_partials_and_leaves_a_live_peers(tmp_path):
    root = tmp_path / "outbox"
    mine = Outbox(root, owner="host-a-1-run1")
    peer = Outbox(root, owner="host-b-7-run9")
    # A crash before the rename leaves these behind (publish() itself cleans up after an error).
    ours_dead = root / f".a.1.{mine.owner}.partial"
    theirs = root / f".b.2.{peer.owner}.partial"
    stale = root / f".c.3.{peer.owner}.partial"
    for folder in (ours_dead, theirs, stale):
        folder.mkdir(parents=True)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    restarted = Outbox(root, owner="host-a-1-run2")
    removed = restarted.remove_partials(dead_owners=["host-a-1-run1"])
    assert sorted(p.name for p in removed) == sorted([ours_dead.name, stale.name])
    assert theirs.is_dir()


def test_publish_names_its_partial_folder_with_its_owner(tmp_path):
    outbox = Outbox(tmp_path / "outbox", owner="run-x")
    seen = []
    folder = JobFolder(5, "job")
    folder.add_text("a.txt", "x")
    final = outbox.publish(folder, lambda d: seen.extend(os.listdir(tmp_path / "outbox")))
    assert seen == [f".job.5.{outbox.owner}.partial"] and final.name == "job"


def test_a_print_sized_png_is_compressed_fast_and_a_small_one_small():
    """A job writes two PNGs; at print sizes zlib's default level costs seconds each (4.2 s
    against 1.6 s at 4096x3072), so those are written at the fastest level; small pictures keep
    the default's smaller files. Both decode to the same pixels."""
    import io

    import numpy as np
    from PIL import Image

    from service.files import FAST_PNG_PIXELS, image_bytes

    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # compressible, but not trivially
    for edge, level in ((256, 6), (int(FAST_PNG_PIXELS ** 0.5) + 64, 1)):
        img = Image.fromarray(np.tile(tile, (edge // 64 + 1, edge // 64 + 1, 1))[:edge, :edge])
        data = image_bytes(img, ".png")
        want = io.BytesIO()
        img.save(want, format="PNG", compress_level=level)
        assert data == want.getvalue(), (edge, level)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(img))


def test_the_writability_probe_leaves_no_name_a_kill_could_leave_behind(tmp_path, monkeypatch):
    """Before every claim the worker writes and syncs a probe: a kill -9 during it left a named
    `.nst-probe-PID` in the users' outbox (seen under load in the takeover test)."""
    root = tmp_path / "outbox"
    root.mkdir()
    outbox = Outbox(root, owner="run-a")
    seen = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(sorted(os.listdir(root))), real_fsync(fd)))
    assert outbox.writable() is None
    assert seen == [[]], "the probe had a name while it was written"
    assert os.listdir(root) == []


def test_a_dead_owners_named_probe_is_removed_at_the_next_start(tmp_path):
    root = tmp_path / "outbox"
    root.mkdir()
    dead, live = Outbox(root, owner="host-a-1-run1"), Outbox(root, owner="host-b-2-run1")
    for o in (dead, live):
        (root / f".nst-probe-{o.owner}").write_bytes(b"\0")
    Outbox(root, owner="host-a-1-run2").remove_partials(dead_owners=["host-a-1-run1"])
    assert os.listdir(root) == [f".nst-probe-{live.owner}"]
