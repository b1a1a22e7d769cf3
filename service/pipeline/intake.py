"""Turning settled files in the inbox into recorded, staged jobs.

The folder is the truth: every scan looks at what is there, and watchdog
events only make the next scan come sooner. Staging is idempotent, so a crash
at any step is finished by the next scan or the next start:

1. the job is recorded under the sidecar's key (once, whatever calls it);
2. shared images are copied and the job's own files moved into
   `state/jobs/<id>/inputs/`, the sidecar last;
3. the job is marked staged, and only then can a worker claim it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Config
from ..errors import RefusedFile, SidecarError
from ..models import SIDECAR_LEFT, WAITING, Job, utcnow
from ..safefiles import copy_regular, inside, kind_of, open_regular, refusal, sha256_regular, shown
from ..status import JobStatus
from ..store import Store
from .ending import Ending, Endings
from .inbox import (
    CHECK_EDGE, IMAGE_EXTS, SIDECAR_EXTS, Settle, Sidecar, default_images, image_owner, is_ignored,
    is_own_file, job_key, job_name, listdir, parse_sidecar, read_sidecar, resolve_in_inbox, sha256_bytes,
)
from .outbox import JobFolder, Outbox

log = logging.getLogger("nst.intake")

# A job recorded but not staged for this long was left by a watcher that died mid-way.
STAGING_GRACE_S = 30.0
# A waiting job is ended for its sidecar's absence only this long after it was recorded: on a
# network share another host's listing may lag new files by up to a minute (NFS's acdirmax).
ORPHAN_GRACE_S = 120.0
# How often ended jobs whose folder is not yet in the outbox are looked for (a cancel from
# the CLI or the web page, a failure while the outbox could not be written).
SWEEP_S = 2.0


@dataclass
class _Input:
    role: str  # content, style, init, sidecar
    source: Path  # where it is in the inbox
    own: bool  # moved with the job (else copied)


MISSING_HINT = ("drop the missing image(s) into the inbox before the sidecar, or name them in it "
                "(content = \"photo.jpg\", style = \"painting.jpg\"), then drop the sidecar again")


TWINS_HINT = "drop the job again with one sidecar (NAME.toml or NAME.json); its files are in this folder's inputs/"


class _Incomplete(Exception):
    """An image that is empty or cut short: it may still be arriving."""


class _NotReady(Exception):
    """Images named by a sidecar are missing, still being written, or not decodable yet."""


class _Waiting(_NotReady):
    """A sidecar waits for its images (up to missing_timeout): `why` says for what."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class _Wait:
    """A sidecar's wait for its images. A rewritten sidecar is a new job (a new key): it waits
    the whole missing_timeout of its own, and its record is told what it waits for again."""

    key: str  # the job's
    since: float  # when it first waited (the intake's clock)
    noted: str | None = None  # what the job's record says it waits for: written when it changes
    # The sidecar as read while it waits, and the file it was read from (`_seen`): a scan that
    # finds the same file takes its key and settings from here instead of reading, hashing and
    # parsing it again (0.27 ms a waiting sidecar, twice a second while anything settles).
    seen: tuple[int, ...] | None = None
    sidecar: Sidecar | None = None


class Intake:
    def __init__(self, config: Config, store: Store, outbox: Outbox,
                 image_check: Callable[[Path], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.store = store
        self.endings = Endings(config, store, outbox)
        self.settle = Settle(config.watch.settle_seconds, clock)
        self.clock = clock
        self.image_check = image_check or _decode_check(config.limits.max_image_pixels, config.inbox)
        self._waits: dict[Path, _Wait] = {}  # sidecar -> its job's wait for its images
        self._sidecars: dict[str, list[Path]] = {}  # job name -> its sidecars in the last scan (`_twins`)
        self._listing: list[os.DirEntry] = []  # the inbox root, during a scan
        self._images: dict[tuple[str, str], Path] | None = None  # its default images, when asked
        self._checked: dict[tuple[Path, int, int], None] = {}
        self.inbox_missing_reported = False

    def hint(self, path: Path) -> None:
        self.settle.hint(path)

    # -- the scan -------------------------------------------------------------------

    def scan(self) -> int:
        """Look at the whole inbox once; return how many jobs were queued."""
        inbox = self.config.inbox
        if not inbox.is_dir():
            if not self.inbox_missing_reported:
                log.error("inbox %s is missing or not a folder; waiting for it to come back", inbox)
                self.inbox_missing_reported = True
            return 0
        if self.inbox_missing_reported:
            log.warning("inbox %s is back; watching it again", inbox)
            self.inbox_missing_reported = False
        self._listing, self._images = sorted(listdir(inbox), key=lambda e: e.name), None
        seen = [Path(entry.path) for entry in self._listing
                # Most of a busy inbox is told apart by its name's end, before the ignore patterns.
                if entry.name.lower().endswith(SIDECAR_EXTS) and not is_ignored(entry.name, self.config.watch.ignore)
                and Path(entry.name).suffix.lower() in SIDECAR_EXTS]
        self._sidecars = {}
        for path in seen:
            self._sidecars.setdefault(job_name(path), []).append(path)
        queued = 0
        for path in seen:
            if not self.settle.settled(path):
                self._watch_images_of(path)
                continue
            try:
                if self._take(path):
                    queued += 1
            except _NotReady:
                continue
            except OSError as e:
                # A file vanished or is unreadable mid-scan: look again next time.
                log.warning("could not take %s yet: %s", path.name, e)
            except Exception:
                # A bug must not stop the inbox: every other file is still taken.
                log.exception("could not take %s (a bug in nst; please report it)", path.name)
        self._listing, self._images = [], None  # this scan's: a crowded inbox's listing is large
        # Only sidecars and the images they name are ever tracked; forget those that are gone.
        self.settle.keep_only(p for p in list(self.settle.tracked()) if p.exists())
        present = set(seen)
        for gone in [p for p in self._waits if p not in present]:
            del self._waits[gone]
        return queued

    def _watch_images_of(self, sidecar_path: Path) -> None:
        """Start the settle clocks of a sidecar's usual images (NAME.content.*, NAME.style.*)
        while the sidecar settles: images come first, so they are settled when it is, and the
        job is taken a settle time sooner (1.65 s from drop to queued became about 0.6 s)."""
        name = job_name(sidecar_path)
        for role in ("content", "style"):
            image = self._default_image(name, role)
            if image is not None:
                self.settle.settled(image)

    def _default_image(self, name: str, role: str) -> Path | None:
        """NAME.ROLE.EXT as the scan's listing has it, in any case (`trip.Content.JPG`: a
        camera's or Windows' habit). One table a scan, made when a job first asks: a waiting
        sidecar costs a lookup, not a file-system probe of every extension (an image that came
        after the listing is found by the next scan, as it must settle first anyway)."""
        if self._images is None:
            self._images = default_images(self._listing)
        return self._images.get((name, role))

    def _take(self, sidecar_path: Path) -> bool:
        """Record and stage one settled sidecar. True if a job was queued."""
        name = job_name(sidecar_path)  # as on disk: it finds the job's files
        st = sidecar_path.lstat()
        seen = _seen(st)
        wait = self._waits.get(sidecar_path)
        known = wait.sidecar if wait is not None and wait.seen == seen else None
        if known is not None:
            key, refused = wait.key, None
        else:
            key, data, refused = _identify(sidecar_path, self.config.inbox, st)
        try:
            if refused is not None:
                raise refused
            twins = self._twins(sidecar_path)
            if twins:
                raise SidecarError(
                    f"two sidecars for one job: {', '.join(shown(p.name) for p in sorted([sidecar_path, *twins]))}; "
                    "which one to read is not clear", hint=TWINS_HINT)
            sidecar = known or self._parse(sidecar_path, data)
            inputs = self._inputs(sidecar, sidecar_path, key)
            estimate = self._estimate(sidecar, inputs)
        except SidecarError as e:
            self._fail(key, name, sidecar_path, str(e), e.hint)
            return False
        except _Waiting as e:
            # Shown in the history at once: a queued job, and what it waits for. Written when
            # the reason changes, not at every scan of the wait (twice a second).
            wait = self._waits[sidecar_path]
            wait.seen, wait.sidecar = seen, sidecar  # (the file as it was before it was read)
            if wait.noted != e.why:
                job = self._record(key, name, sidecar)[0]
                self.store.note_waiting(job.id, e.why)
                wait.noted = e.why
            raise
        job, _created = self._record(key, name, sidecar)
        if job.state != JobStatus.QUEUED or job.staged:
            # Already taken by an earlier scan or another watcher: only its leftovers remain.
            self._finish_leftover(job.id, sidecar_path)
            return False
        if not self.store.begin_staging(job.id, grace_s=STAGING_GRACE_S):
            return False  # another watcher is staging it right now
        self._waits.pop(sidecar_path, None)
        staged = self._stage(job.id, inputs)
        self.store.note_estimate(job.id, estimate)
        self.store.mark_staged(job.id, staged)
        self.settle.forget(sidecar_path)
        log.info("queued job %d %r (%s)", job.id, shown(name), ", ".join(i["name"] for i in staged))
        return True

    def _record(self, key: str, name: str, sidecar: Sidecar):
        return self.store.enqueue(key=key, name=shown(name), params=sidecar.params.to_dict(), priority=sidecar.priority,
                                  requires_gpu=sidecar.requires_gpu, tags=sidecar.tags)

    def _parse(self, path: Path, data: bytes) -> Sidecar:
        return parse_sidecar(
            data, name=job_name(path), suffix=path.suffix, base=self.config.defaults, limits=self.config.limits
        )

    def _inputs(self, sidecar: Sidecar, sidecar_path: Path, key: str) -> list[_Input]:
        inbox = self.config.inbox
        missing: list[str] = []
        found: list[_Input] = []

        def locate(role: str, relative: str | None) -> None:
            if relative is None:
                path = self._default_image(sidecar.name, role)
                if path is None:
                    missing.append(f"{shown(sidecar.name)}.{role}{IMAGE_EXTS[0]} (or {', '.join(IMAGE_EXTS[1:])})")
                    return
            else:
                path = resolve_in_inbox(inbox, relative)
                if not os.path.lexists(path):
                    missing.append(relative)
                    return
            if path.is_symlink() and inside(path, inbox) and not path.exists():
                missing.append(f"{relative or shown(path.name)} (a link to a file not there yet)")
                return
            why = refusal(path, inbox, max_bytes=self.config.watch.max_file_bytes)
            if why:
                raise RefusedFile(why)  # a link out, a FIFO, a folder, too large: waiting would not help
            found.append(_Input(role, path, is_own_file(inbox, path, sidecar.name)))

        locate("content", sidecar.content)
        for style in sidecar.styles or [None]:
            locate("style", style)
        if sidecar.params.init_is_image:
            locate("init", sidecar.params.init)
        if missing:
            self._wait_or_fail(sidecar_path, key, f"still missing: {', '.join(missing)}", MISSING_HINT)
        undecodable = []
        for item in found:
            if not self.settle.settled(item.source):
                raise _NotReady()
            try:
                self._decodes(item.source)
            except _Incomplete as e:
                undecodable.append(str(e))  # may still be arriving: wait for it
        if undecodable:
            self._wait_or_fail(sidecar_path, key, "; ".join(undecodable),
                               "replace the picture with a complete one and drop the job again")
        taken = {item.source for item in found}
        # Every other NAME.* in the inbox root belongs to the job too and moves with it.
        found += [_Input("file", p, True) for p in self._own_files(sidecar.name, sidecar_path) if p not in taken]
        found.append(_Input("sidecar", sidecar_path, True))
        return found

    def _estimate(self, sidecar: Sidecar, inputs: list[_Input]) -> dict:
        """The job's plan and peak memory on this host's worker budget. A picture that cannot
        fit even in tiles is refused now, rather than after it has waited in the queue, where
        this host's worker is the only one; in a cluster a worker with more memory may take it
        (this watcher's budget is not theirs), and the worker that claims it decides."""
        from PIL import Image

        from nst_engine import BudgetError, ImageError, estimate

        content_edge, style_edge = sidecar.params.image_edges()
        size, decoding, kept = None, 0, 0
        for item in inputs:
            if item.role not in ("content", "style", "init"):
                continue
            with open_regular(item.source, self.config.inbox) as f, Image.open(f) as img:
                size = img.size if item.role == "content" else size
                edge = style_edge if item.role == "style" else content_edge
                decoding = max(decoding, img.width * img.height * len(img.getbands()))
                shrink = min(1.0, 2 * edge / max(img.size))  # decoded to at most twice what is needed
                kept += round(img.width * shrink) * round(img.height * shrink) * 3
        needs = self._needs(sidecar)
        try:
            planned = estimate(sidecar.params, size, memory_budget=self.config.worker.memory_budget(),
                               batch=self.config.worker.batch_cap())
            # The pictures beside the run: all kept as decoded, the largest one's decoding at full size.
            planned["images_mib"] = round((decoding + kept) / 2**20)
            return {**planned, "waits_for": needs} if needs else planned
        except ImageError as e:  # too narrow for its size: no worker anywhere could run it
            raise SidecarError(f"{shown(sidecar.name)}: {e}", hint=e.hint) from None
        except BudgetError as e:
            if self._one_host():
                raise SidecarError(f"{shown(sidecar.name)}: {e}", hint=e.hint) from None
            return {"waits_for": f"a worker with more memory than this host's ({e})"}
        except ValueError as e:  # e.g. a device this host does not have: the worker will say
            return {"unknown": str(e)}

    def _needs(self, sidecar: Sidecar) -> str | None:
        """What worker a job needs that this host's is not, or None. On one host (an SQLite
        store, this daemon working) no other worker can come: the job fails now, with advice,
        instead of staying queued forever; in a cluster it waits, saying for what."""
        from nst_engine.device import pick_device

        cluster = self.config.cluster
        lacking = []
        if sidecar.requires_gpu and pick_device(self.config.defaults.device).type == "cpu":
            lacking.append("a GPU")
        missing_tags = sorted(set(sidecar.tags) - set(cluster.tags))
        if missing_tags:
            lacking.append("the tag" + "s" * (len(missing_tags) > 1) + " " + ", ".join(missing_tags))
        largest = cluster.max_size or self.config.limits.max_size
        if sidecar.params.size > largest:
            lacking.append(f"room for size {sidecar.params.size} ([cluster] max_size here is {largest})")
        if not lacking:
            return None
        needs = "a worker with " + " and ".join(lacking)
        if self._one_host():
            raise SidecarError(f"{shown(sidecar.name)}: needs {needs}, and this service (one host) has none",
                               hint="drop it again without requires_gpu / tags, or run it where a worker "
                                    "has them (README 'Several hosts')")
        return needs

    def _one_host(self) -> bool:
        """An SQLite store and this daemon working: no other worker can ever take a job."""
        return self.config.database.startswith("sqlite") and "work" in self.config.cluster.roles

    def _wait_or_fail(self, sidecar_path: Path, key: str, why: str, hint: str) -> None:
        wait = self._waits.get(sidecar_path)
        if wait is None or wait.key != key:
            wait = self._waits[sidecar_path] = _Wait(key, self.clock())
        if self.clock() - wait.since < self.config.watch.missing_timeout:
            raise _Waiting(why)
        raise SidecarError(f"gave up after waiting {self.config.watch.missing_timeout:.0f} s; {why}", hint=hint)

    def _decodes(self, path: Path) -> None:
        st = path.stat()
        signature = (path, st.st_size, st.st_mtime_ns)
        if signature in self._checked:
            return
        try:
            self.image_check(path)
        except RefusedFile:
            raise
        except ValueError as e:
            if getattr(e, "incomplete", False):
                raise _Incomplete(str(e)) from None
            # A settled file that is plainly refused (not an image, too many pixels): at once.
            raise SidecarError(str(e), hint=f"{getattr(e, 'hint', 'replace the picture')}; then drop the job "
                                            "again") from None
        self._checked[signature] = None
        if len(self._checked) > 10_000:
            self._checked.clear()

    # -- staging --------------------------------------------------------------------

    def _stage(self, job_id: int, inputs: list[_Input]) -> list[dict]:
        """Copy shared images, move own files, the sidecar last; idempotent. Only regular
        files' bytes ever reach the archive; a link out or a special file is refused and
        recorded (its target is never opened)."""
        target = self.config.inputs(job_id)
        target.mkdir(parents=True, exist_ok=True)
        staged = []
        used: set[str] = set()
        for item in sorted(inputs, key=lambda i: i.role == "sidecar"):
            name = shown(item.source.name)  # the archive's names are text every later step can hold
            if name in used:
                name = f"{len(used)}-{name}"
            used.add(name)
            dest = target / name
            record = {"role": item.role, "name": name, "moved": item.own,
                      "source": name if item.own else shown(str(item.source.relative_to(self.config.inbox)))}
            try:
                if item.own:
                    self._take_own(item.source, dest)
                elif not dest.exists():
                    copy_regular(item.source, self.config.inbox, dest, max_bytes=self.config.watch.max_file_bytes)
            except RefusedFile as e:
                staged.append({**record, "refused": str(e), "sha256": None})
                continue
            record["sha256"] = sha256_regular(dest)
            staged.append(record)
        refused = [r for r in staged if r.get("refused")]
        if refused:
            self.config.refused_files(job_id).write_text(json.dumps(refused))
        return [r for r in staged if not r.get("refused")] + refused

    def _take_own(self, source: Path, dest: Path) -> None:
        """Move one of the job's own files into the archive. A regular file is renamed (a
        rename reads nothing); a link inside the inbox is replaced by a copy of what it names;
        a file over the size ceiling stays where it is; anything else (a link out, a FIFO, a
        second hard link) is removed from the inbox and refused, its target untouched."""
        try:
            st = source.lstat()
        except FileNotFoundError:
            return  # moved by an earlier, interrupted attempt
        inbox, ceiling = self.config.inbox, self.config.watch.max_file_bytes
        why = refusal(source, inbox, max_bytes=ceiling)
        if why is None:
            if stat.S_ISREG(st.st_mode):
                _move(source, dest, inbox)
            else:  # a link to a regular file inside the inbox
                copy_regular(source, inbox, dest, max_bytes=ceiling)
                source.unlink()
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            # Too large: the dropper's own file, left in the inbox for them to take back.
            raise RefusedFile(f"{why} ([watch] max_file_mb); left in the inbox")
        if not stat.S_ISDIR(st.st_mode):
            source.unlink()  # the link, FIFO or extra hard link itself, never what it names
        raise RefusedFile(why)

    def _fail(self, key: str, name: str, sidecar_path: Path, message: str, hint: str) -> None:
        """A job that cannot run: record it, move its files out of the inbox, answer in the outbox."""
        job, _ = self.store.enqueue(key=key, name=shown(name), params={}, error=message)
        if job.state != JobStatus.QUEUED or job.staged:
            self._finish_leftover(job.id, sidecar_path)
            return
        own = [_Input("sidecar" if p == sidecar_path else "file", p, True)
               for p in [sidecar_path, *self._twins(sidecar_path), *self._own_files(name, sidecar_path)]]
        self._stage(job.id, own)  # not marked staged: no worker may claim it
        self.config.refusal(job.id).write_text(json.dumps({"message": message, "hint": hint}))
        self._waits.pop(sidecar_path, None)
        self._publish_failure(job.id, shown(name), message)

    def _publish_failure(self, job_id: int, name: str, message: str) -> None:
        staged = _describe_archive(self.config, job_id)
        try:
            hint = json.loads(self.config.refusal(job_id).read_text())["hint"]
        except (OSError, ValueError, KeyError):
            hint = SidecarError("").hint  # refused before its advice was kept (an older release)
        refused = "".join(f"\n  not taken: {r['refused']}" for r in staged if r.get("refused"))
        job = self.store.get(job_id)
        ending = Ending(JobStatus.FAILED, error=message, hint=hint, detail=refused, inputs=staged)
        final = self.endings.write(job, ending, folder=JobFolder(job_id, name))
        # Failed first, then the inputs recorded: a staged, still-queued job could be claimed.
        self.store.mark_staged(job_id, staged)
        log.warning("job %d %r failed: %s (see %s)", job_id, name, message, final)

    def _publish_cancelled(self, job_id: int, name: str) -> None:
        """A job cancelled before it ran gets its folder like any other end: its inputs and a
        record, so that `nst retry` can queue it again."""
        job = self.store.get(job_id)
        final = self.endings.write(job, Ending(JobStatus.CANCELLED, error=job.error), folder=JobFolder(job_id, name))
        log.info("job %d %r cancelled before it started; its inputs are in %s", job_id, name, final)

    def _twins(self, sidecar_path: Path) -> list[Path]:
        """The job's other sidecars in this scan: NAME.json beside NAME.toml (any case). Both in
        the inbox at once fail together, at once: reading one would silently drop the other's
        settings, and the other, its images taken, would wait for them until `missing_timeout`."""
        return [p for p in self._sidecars.get(job_name(sidecar_path), []) if p != sidecar_path and not p.is_dir()]

    def _own_files(self, name: str, sidecar_path: Path) -> list[Path]:
        """NAME.* in the inbox root, other than sidecars and folders, and other than files of a
        longer job name: `a.b.content.jpg` belongs to job `a.b` whether or not its sidecar
        `a.b.toml` has arrived yet (images come first), and so does every `a.b.*` once it has."""
        inbox = self.config.inbox
        # Only NAME.* can be the job's or a longer name's: a folder of frames has thousands of others.
        entries = [e for e in listdir(inbox) if e.name.startswith(name + ".")]
        longer = {job_name(Path(e.name)) for e in entries if Path(e.name).suffix.lower() in SIDECAR_EXTS}
        longer |= {image_owner(e.name) for e in entries}
        longer = {other for other in longer if other and other != name and other.startswith(name + ".")}
        return [
            Path(e.path) for e in entries
            if e.name.startswith(name + ".") and Path(e.path) != sidecar_path
            and Path(e.path).suffix.lower() not in SIDECAR_EXTS and not e.is_dir(follow_symlinks=False)
            and not any(e.name.startswith(other + ".") for other in longer)
        ]

    def _finish_leftover(self, job_id: int, sidecar_path: Path) -> None:
        # The job exists and is staged, but its sidecar is still here: a crash between
        # moving the other files and the sidecar, or a second watcher. Move it now.
        target = self.config.inputs(job_id) / sidecar_path.name
        if target.parent.is_dir() and os.path.lexists(sidecar_path):
            try:
                self._take_own(sidecar_path, target)
            except RefusedFile:
                pass
        elif os.path.lexists(sidecar_path):
            log.debug("job %d already handled; leaving %s for its owner", job_id, sidecar_path.name)

    def recover(self) -> None:
        """At start-up: finish what a crash interrupted (see `sweep`)."""
        self.sweep(grace_s=0.0)

    def sweep(self, grace_s: float = STAGING_GRACE_S) -> None:
        """Finish jobs whose intake was interrupted, and publish the folders of jobs that ended
        without one: staging cut short by a crash, a refusal while the outbox could not be
        written, a queued job cancelled from the CLI or the web page (one cancelled while it
        waited for its images first takes its files out of the inbox). End the waiting jobs
        whose sidecar left the inbox."""
        unstaged = self.store.list_jobs_unstaged()
        dropped = _Dropped(self.config.inbox)
        self._end_orphans([job for job in unstaged if job.error and job.error.startswith(WAITING)], dropped)
        for job in unstaged:
            if (utcnow() - job.submitted_at).total_seconds() < grace_s:
                continue  # perhaps being staged right now by another watcher
            if not self._archived_sidecar(job.id):
                continue  # the sidecar is still in the inbox; the scan will finish it
            if job.error:
                self._try(self._publish_failure, job.id, job.name, job.error)
                continue
            self.store.mark_staged(job.id, _describe_archive(self.config, job.id))
        for job in self.store.list_unpublished():
            if (job.state == JobStatus.CANCELLED and not job.staged and job.error != SIDECAR_LEFT
                    and not self.config.inputs(job.id).is_dir()):
                self._take_back_cancelled(job, dropped)  # (a sidecar that left has nothing to take back)
            if not (self.config.inputs(job.id)).is_dir():
                continue
            if job.state == JobStatus.CANCELLED:
                self._try(self._publish_cancelled, job.id, job.name)
            elif job.state == JobStatus.FAILED and job.error:
                self._try(self._publish_failure, job.id, job.name, job.error)

    def _end_orphans(self, waiting: list[Job], dropped: "_Dropped") -> None:
        """End the jobs recorded while their sidecars waited for images whose sidecar has left
        the inbox: taken back by its owner, or rewritten (a new drop, so a job of its own), also
        while no daemon ran. Each would otherwise stay queued, waiting, for ever. The folder is
        the truth: a job lives while a sidecar with its key is in the inbox."""
        for job in waiting:
            if (utcnow() - job.submitted_at).total_seconds() < ORPHAN_GRACE_S:
                continue
            try:
                if dropped.sidecar_of(job) is not None:
                    continue
            except OSError:
                continue  # the inbox or the sidecar is away for now (a share reconnecting): look again later
            if self._archived_sidecar(job.id):
                continue  # after the inbox: staging renames the sidecar from there into the archive, last
            if self.store.end_waiting(job.id, SIDECAR_LEFT):
                log.info("job %d %r cancelled: %s", job.id, job.name, SIDECAR_LEFT)

    def _take_back_cancelled(self, job: Job, dropped: "_Dropped") -> None:
        """A job cancelled (`nst cancel`, the page) while it waited for its images: its sidecar and
        files leave the inbox for its folder, as a queued job's do, rather than stay for ever."""
        try:
            sidecar_path = dropped.sidecar_of(job)
        except OSError:
            return
        if sidecar_path is None:
            return
        own = [_Input("sidecar", sidecar_path, True)]
        own += [_Input("file", p, True) for p in self._own_files(job_name(sidecar_path), sidecar_path)]
        self._stage(job.id, own)
        self.store.mark_staged(job.id, _describe_archive(self.config, job.id))

    def _archived_sidecar(self, job_id: int) -> bool:
        """Is the job's sidecar in its archive (staged, or staging cut short)?"""
        inputs_dir = self.config.inputs(job_id)
        return inputs_dir.is_dir() and any(p.suffix.lower() in SIDECAR_EXTS for p in inputs_dir.iterdir())

    def _try(self, publish: Callable[..., None], *args) -> None:
        try:
            publish(*args)
        except OSError as e:
            log.warning("job %d: its outbox folder cannot be written yet (%s); trying again shortly", args[0], e)


class _Dropped:
    """The sidecars in the inbox by key, listed once a sweep and only if asked: which job's
    sidecar is still there (as the scan identifies drops, `_identify`)."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self._by_name: dict[str, list[Path]] | None = None

    def sidecar_of(self, job: Job) -> Path | None:
        """The job's sidecar in the inbox, or None. OSError: the inbox cannot be listed, or the
        sidecar read, now."""
        if self._by_name is None:
            by_name: dict[str, list[Path]] = {}
            with os.scandir(self.inbox) as entries:
                for e in entries:
                    if e.name.lower().endswith(SIDECAR_EXTS):
                        by_name.setdefault(shown(e.name), []).append(Path(e.path))
            self._by_name = by_name
        for path in self._by_name.get(job.key.rsplit("|", 2)[0], []):
            if _identify(path, self.inbox)[0] == job.key:
                return path
        return None


def _identify(sidecar_path: Path, inbox: Path,
              st: os.stat_result | None = None) -> tuple[str, bytes, RefusedFile | None]:
    """A sidecar's key (`job_key`), its bytes, and why it is refused (then no bytes are read);
    `st`: its `lstat`, where the caller has it."""
    st = st or sidecar_path.lstat()
    refused: RefusedFile | None = None
    try:
        data = read_sidecar(sidecar_path, inbox)
        digest = sha256_bytes(data)
    except RefusedFile as e:
        data, refused = b"", e
        digest = f"refused-{kind_of(st.st_mode)}-{st.st_size}"
    # The drop is identified by its arrival (ctime: set by every create, copy or rename into the
    # inbox, and kept by `cp -p` or rsync only for mtime), not by its mtime.
    return job_key(shown(sidecar_path.name), digest, st.st_ctime_ns), data, refused


def _seen(st: os.stat_result) -> tuple[int, ...]:
    """Which file a sidecar is, as it is now: any write, rename or replacement changes its
    ctime (which no program can set), and a link or another file swapped in its inode."""
    return st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _describe_archive(config: Config, job_id: int) -> list[dict]:
    """The input records of files already moved into a job's archive (recovery, failures),
    with the records of any refused files."""
    inputs_dir = config.inputs(job_id)
    described = [{"role": _role_guess(p.name), "name": p.name, "source": p.name, "moved": True,
                  "sha256": sha256_regular(p)} for p in sorted(inputs_dir.glob("*")) if not p.name.startswith(".")]
    try:
        described += json.loads(config.refused_files(job_id).read_text())
    except (OSError, ValueError):
        pass
    return described


def _role_guess(name: str) -> str:
    lower = name.lower()
    if lower.endswith(SIDECAR_EXTS):
        return "sidecar"
    if ".content." in lower:
        return "content"
    if ".style." in lower:
        return "style"
    return "file"


def _move(source: Path, dest: Path, root: Path) -> None:
    try:
        source.rename(dest)
    except OSError:
        # Another file system (the state folder elsewhere): copy the bytes, then remove.
        copy_regular(source, root, dest)
        source.unlink()


def _decode_check(max_pixels: int, inbox: Path) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        from nst_engine.images import load_image

        with open_regular(path, inbox) as f:
            load_image(f, max_pixels=max_pixels, name=shown(path.name), max_edge=CHECK_EDGE)

    return check
