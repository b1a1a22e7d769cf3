"""Reading `config.toml` into one typed object (no torch here: the CLI uses it)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nst_engine.errors import UserError
from nst_engine.params import Limits, ParamError, Params
from nst_engine.settings import build, setting, unknown_key

DEFAULT_IGNORE = (
    ".*", "*.part", "*.tmp", "*.crdownload", "~$*", "Thumbs.db", "desktop.ini",
    "@eaDir", "__MACOSX", "#recycle",
)


class ConfigError(UserError):
    """`config.toml` is wrong; the message names the key."""

    default_hint = "correct config.toml as the message says (nst doctor checks it), then start the service again"


DATABASE_SCHEMES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class WatchConfig:
    settle_seconds: float = setting(3.0, low=0, high=3600)
    rescan_seconds: float = setting(60.0, low=0.1, high=86400)
    polling: bool = False
    missing_timeout: float = setting(300.0, low=0, high=7 * 86400)
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    # The largest file a job may take from the inbox (images and extras).
    max_file_mb: float = setting(1024.0, low=1, high=2**20)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


@dataclass(frozen=True)
class WorkerConfig:
    checkpoint_seconds: float = setting(30.0, low=0.1, high=86400)
    max_attempts: int = setting(3, low=1, high=1000)
    stall_seconds: float = setting(300.0, low=1, high=7 * 86400)
    file_mode: int = setting(0o644, low=0o400, high=0o777)
    # A job whose outbox folder could not be written waits this long.
    retry_seconds: float = setting(30.0, low=0.1, high=86400)
    # What one job may use; 0: from the device (GPU: 90% free; CPU: half available).
    memory_budget_mib: int = setting(0, low=0, high=16 * 2**20)
    # Pictures optimized at once, as one batch: a job's outputs, and queued jobs of one shape
    # (their estimate's `together` key); 0: as many as fit the budget where a batch is faster
    # on the device; 1: each alone.
    batch: int = setting(0, low=0, high=64)
    # One worker process per device ("cuda:0", "cpu"...; "all": every GPU when there are
    # several); empty: one worker inside the daemon on the device the job asks for.
    devices: tuple[str, ...] = ()

    def memory_budget(self) -> int | None:
        """Bytes, or None for the engine's default from the device."""
        return self.memory_budget_mib * 2**20 if self.memory_budget_mib else None

    def batch_cap(self) -> int | None:
        """Pictures at most in one batch, or None for the engine's choice."""
        return self.batch or None


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = False  # also serve the web page from inside `nst serve`
    host: str = "127.0.0.1"
    port: int = setting(8750, low=1, high=65535)
    max_upload_mb: float = setting(50.0, low=0.1, high=100_000)
    password: str = ""  # a shared secret; empty means no login (fine on localhost only)
    trusted_proxy: str = ""  # the reverse proxy's address: its X-Forwarded-For names the client


@dataclass(frozen=True)
class ClusterConfig:
    roles: tuple[str, ...] = ("watch", "work")  # "watch": queue jobs from the inbox; "work": run them
    heartbeat_seconds: float = setting(5.0, low=0.1, high=3600)  # how often a worker renews its claim
    takeover_seconds: float = setting(30.0, low=0.5, high=86400)  # a worker silent this long loses its job
    max_size: int = setting(0, low=0, high=1_000_000)  # the largest `size` this worker takes (0: [limits] max_size)
    tags: tuple[str, ...] = ()  # a job with tags = [...] runs only on workers that have them all

    @property
    def alive_within_s(self) -> float:
        """A daemon silent for longer than this is lost: three heartbeats, and never under 30 s."""
        return max(30.0, 3 * self.heartbeat_seconds)


@dataclass(frozen=True)
class Config:
    path: Path | None
    inbox: Path
    outbox: Path
    state: Path
    database: str
    defaults: Params = field(default_factory=Params)
    limits: Limits = field(default_factory=Limits)
    watch: WatchConfig = field(default_factory=WatchConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    web: WebConfig = field(default_factory=WebConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    shared: Path | None = None  # job archive and checkpoints; on shared storage for several hosts

    @property
    def shared_dir(self) -> Path:
        return self.shared or self.state

    @property
    def checkpoints(self) -> Path:
        return self.shared_dir / "checkpoints"

    def archive(self, job_id: int) -> Path:
        """Where a queued or running job keeps its inputs and its live log."""
        return self.shared_dir / "jobs" / str(job_id)

    def inputs(self, job_id: int) -> Path:
        """A job's own files, moved or copied out of the inbox (its outbox folder's inputs/)."""
        return self.archive(job_id) / "inputs"

    def refusal(self, job_id: int) -> Path:
        """A refused job's message and advice, kept until its outbox folder is written."""
        return self.archive(job_id) / "error.json"

    def refused_files(self, job_id: int) -> Path:
        """Records of the files not taken with a job (links out, FIFOs...)."""
        return self.archive(job_id) / "refused.json"

    def checkpoint(self, job_id: int) -> Path:
        """A running job's saved place (a shutdown, a crash), on shared storage for a takeover."""
        return self.checkpoints / f"{job_id}.pt"

    def live_log(self, job_id: int) -> Path:
        """The log a job writes while it runs (moved into its outbox folder when it ends)."""
        return self.archive(job_id) / "job.log"

    def live_image(self, job_id: int) -> Path:
        """The image a running job is making, replaced every few seconds."""
        return self.archive(job_id) / "live.jpg"

    def live_losses(self, job_id: int) -> Path:
        """A running job's loss curve so far (JSON), replaced with the live image."""
        return self.archive(job_id) / "live-losses.json"

    def job_folder(self, outbox_dir: str | None) -> Path | None:
        """An ended job's folder in the outbox (its name is recorded with the job)."""
        return self.outbox / outbox_dir if outbox_dir else None

    def published_log(self, outbox_dir: str | None) -> Path | None:
        folder = self.job_folder(outbox_dir)
        return folder / "job.log" if folder else None


def find_config(explicit: str | os.PathLike | None = None) -> Path | None:
    """--config, else $NST_CONFIG, else ./config.toml if present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("NST_CONFIG")
    if env:
        return Path(env)
    here = Path("config.toml")
    return here if here.is_file() else None


def load_config(path: str | os.PathLike | None = None) -> Config:
    found = find_config(path)
    data: dict[str, Any] = {}
    if found is not None:
        try:
            data = tomllib.loads(found.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {found} not found (nst init creates one)") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{found}: not valid TOML: {e}") from None
    root = found.resolve().parent if found else Path.cwd()
    return config_from_dict(data, root=root, path=found)


def config_from_dict(data: dict[str, Any], *, root: Path, path: Path | None = None) -> Config:
    known = {"paths", "defaults", "limits", "watch", "worker", "web", "cluster"}
    for section in data:
        if section not in known:
            raise ConfigError(f"config: unknown section [{section}]; known: {', '.join(sorted(known))}")
    paths = _section(data, "paths", {"inbox", "outbox", "state", "shared", "database"})
    for key, value in paths.items():
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise ConfigError(f"config [paths] {key}: a path as a string, e.g. {key} = \"{key}\"; got {value!r}")
    inbox = _path(root, paths.get("inbox", "inbox"))
    outbox = _path(root, paths.get("outbox", "outbox"))
    state = _path(root, paths.get("state", "state"))
    shared = _path(root, paths["shared"]) if paths.get("shared") else None
    database = paths.get("database") or f"sqlite:///{state / 'jobs.sqlite3'}"
    scheme = database.split("://", 1)[0].split("+", 1)[0] if "://" in database else ""
    if scheme not in DATABASE_SCHEMES:
        raise ConfigError(f"config [paths] database: {redact_url(database)!r} is not a database nst can use; "
                          "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/NAME")
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        # A relative SQLite path is relative to the config file, like every other path.
        database = f"sqlite:///{_path(root, database[len('sqlite:///'):])}"
    limits = _build(Limits, _section(data, "limits", _names(Limits)), "limits")
    try:
        defaults = Params.from_mapping(data.get("defaults", {}), limits=limits)
    except ParamError as e:
        raise ConfigError(f"config [defaults]: {e}") from None
    watch_values = _section(data, "watch", _names(WatchConfig))
    if "ignore" in watch_values:
        ignore = watch_values["ignore"]
        if not isinstance(ignore, list) or not all(isinstance(p, str) and p for p in ignore):
            raise ConfigError('config [watch] ignore: a list of name patterns, e.g. [".*", "*.part"]')
        watch_values["ignore"] = tuple(ignore)
    watch = _build(WatchConfig, watch_values, "watch")
    worker_values = _section(data, "worker", _names(WorkerConfig))
    if isinstance(worker_values.get("file_mode"), str):
        try:
            worker_values["file_mode"] = int(worker_values["file_mode"], 8)
        except ValueError:
            raise ConfigError("config [worker] file_mode: an octal mode such as \"0o644\"") from None
    worker = _build(WorkerConfig, worker_values, "worker")
    if "all" in worker.devices and len(worker.devices) > 1:
        raise ConfigError('config [worker] devices: "all" stands alone (devices = "all"), or list each device')
    for device in worker.devices:
        if not re.fullmatch(r"all|cpu|cuda(:[0-9]{1,2})?", device):
            raise ConfigError(f'config [worker] devices: {device!r} is not a worker device; give "all" (a worker '
                              'for every GPU) or a list such as ["cuda:0", "cuda:1"] (or "cpu", for a CPU worker)')
    if worker.file_mode & 0o002:
        raise ConfigError("config [worker] file_mode: outputs must not be world-writable")
    web = _build(WebConfig, _section(data, "web", _names(WebConfig)), "web")
    if not web.host.strip():
        raise ConfigError("config [web] host: an address to listen on, e.g. \"127.0.0.1\"")
    cluster_values = _section(data, "cluster", _names(ClusterConfig))
    for key in ("roles", "tags"):
        if key in cluster_values:
            if not isinstance(cluster_values[key], list) or not all(isinstance(v, str) for v in cluster_values[key]):
                raise ConfigError(f"config [cluster] {key}: a list of strings")
            cluster_values[key] = tuple(cluster_values[key])
    cluster = _build(ClusterConfig, cluster_values, "cluster")
    if not cluster.roles or set(cluster.roles) - {"watch", "work"}:
        raise ConfigError('config [cluster] roles: ["watch"], ["work"] or ["watch", "work"]')
    return Config(path, inbox, outbox, state, database, defaults, limits, watch, worker, web, cluster, shared)


def _names(cls: type) -> set[str]:
    return set(cls.__dataclass_fields__)


def _section(data: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    for key in section:
        if key not in allowed:
            raise ConfigError(f"config [{name}] " + unknown_key(key, sorted(allowed)))
    return dict(section)


def _build(cls: type, values: dict[str, Any], name: str) -> Any:
    """A section as declared (`settings.setting`: its type, its range)."""
    return build(cls, values, ConfigError, prefix=f"config [{name}] ")


def redact_url(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def redact_password(text: str, url: str) -> str:
    """`text` (a driver's message, which may quote the URL) without the URL's password."""
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        return text.replace(url, redact_url(url))
    return text.replace(url, redact_url(url)).replace(password, "***") if password else text


def _path(root: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (root / p)
