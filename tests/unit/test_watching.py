"""The inbox's watcher (a real watchdog observer): changes are hints, reads are not."""

import time

import pace

from service.daemon import observe


def test_reading_a_file_is_no_change_but_writing_one_is(tmp_path):
    """Staging a job reads the painting every job shares; were that a change, it re-armed the
    painting's settle clock and woke the intake with its own reads (one job a second)."""
    painting = tmp_path / "styles" / "s.png"
    painting.parent.mkdir()
    painting.write_bytes(b"painting")
    seen: list = []
    observer = observe(tmp_path, seen.extend, recursive=True)
    try:
        for _ in range(3):
            painting.read_bytes()
        (tmp_path / "new.toml").write_text("size = 64\n")
        deadline = time.monotonic() + pace.ceiling(10)
        # Events come in order: once the write is seen, the reads before it would have been.
        while tmp_path / "new.toml" not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tmp_path / "new.toml" in seen
        assert painting not in seen, seen
    finally:
        observer.stop()
        observer.join()
