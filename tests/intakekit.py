"""The intake in this process on a temporary folder: a real SQLite store, a real outbox."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from service.config import config_from_dict
from service.pipeline.intake import Intake
from service.pipeline.outbox import Outbox
from service.store import Store


def bomb_png(path: Path, width: int, height: int) -> None:
    """A small PNG whose header declares `width` x `height` pixels."""
    import struct
    import zlib

    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


class IntakeDir:
    def __init__(self, root: Path, worker: dict | None = None, **watch) -> None:
        self.root = root
        self.config = config_from_dict(
            {"watch": {"settle_seconds": 0, "missing_timeout": 0.2, **watch}, "worker": worker or {}}, root=root)
        for folder in (self.config.inbox, self.config.outbox, self.config.state):
            folder.mkdir(parents=True, exist_ok=True)
        self.inbox, self.outbox_dir = self.config.inbox, self.config.outbox
        self.store = Store(self.config.database)
        self.store.migrate()
        self.outbox = Outbox(self.config.outbox)
        self.intake = Intake(self.config, self.store, self.outbox)

    def image(self, name: str, colour=(200, 40, 40), size=(48, 40)) -> Path:
        path = self.inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(path, format="PNG" if name.lower().endswith(".png") else "JPEG")
        return path

    def pair(self, name: str) -> None:
        self.image(f"{name}.content.jpg")
        self.image(f"{name}.style.png", (20, 20, 200))

    def drop(self, name: str, sidecar: str = "") -> None:
        """A pair and its sidecar `NAME.toml`, as the contract says: images first."""
        self.pair(name)
        (self.inbox / f"{name}.toml").write_text(sidecar)

    def scan(self, times: int = 1) -> int:
        queued = 0
        for _ in range(times):
            queued += self.intake.scan()
        return queued

    def jobs(self) -> dict:
        return {j.name: j for j in self.store.list_jobs()}

    def everything_written(self) -> bytes:
        """The bytes of every regular file the service wrote: outbox and state (archive and database
        included), less the web page's own key."""
        data = b""
        for top in (self.outbox_dir, self.config.state):
            for path in sorted(top.rglob("*")):
                if path.is_file() and not path.is_symlink() and path.name != "web-secret":
                    data += path.read_bytes()
        return data

    def close(self) -> None:
        self.store.dispose()

    def __enter__(self) -> "IntakeDir":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
