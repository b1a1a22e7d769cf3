"""The `nst` command line.

Commands that only read the job history never import torch, so they answer at
once; torch is imported inside the commands that compute.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from nst_engine.params import ParamError, Params, parse_assignment

from . import __version__
from .config import Config, ConfigError, load_config, redact_password, redact_url
from .pipeline.inbox import PRIORITIES
from .status import NAMES as STATUS_NAMES

# `nst status`'s exit status when no daemon is running: LSB's "program is not running", as
# `systemctl status` and `service ... status` answer.
NOT_RUNNING = 3


class CommandError(click.ClickException):
    """A failure the user can act on: one clear line on stderr, exit status 1."""

    def show(self, file=None) -> None:  # noqa: D102 - click's hook
        click.echo(f"nst: {self.format_message()}", err=True)


def _config(ctx: click.Context) -> Config:
    if ctx.obj is None:
        ctx.obj = {}
    if "config" not in ctx.obj:
        try:
            ctx.obj["config"] = load_config(ctx.obj.get("config_path"))
        except ConfigError as e:
            raise CommandError(str(e)) from None
    return ctx.obj["config"]


def overrides_from(assignments: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for text in assignments:
        try:
            key, value = parse_assignment(text)
        except ParamError as e:
            raise CommandError(str(e)) from None
        values[key] = value
    return values


def build_params(config: Config, values: dict[str, Any]) -> Params:
    try:
        return Params.from_mapping(values, base=config.defaults, limits=config.limits)
    except ParamError as e:
        raise CommandError(str(e)) from None


class _Commands(click.Group):
    """Every command: a store that cannot be used (damaged, a folder, refused) is one line."""

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import StoreError

        try:
            return super().invoke(ctx)
        except StoreError as e:
            raise CommandError(str(e)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), envvar="NST_CONFIG",
    help="config.toml to use (default: $NST_CONFIG, else ./config.toml, else built-in defaults).",
)
@click.version_option(__version__, prog_name="nst")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Neural style transfer: a watch-folder service and its tools.

    \b
    Example:
      nst stylize photo.jpg painting.jpg -o out.png --size 512
    """
    ctx.obj = {"config_path": config_path}


@main.command()
@click.argument("content", type=click.Path(exists=True, dir_okay=False))
@click.argument("styles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output image (.png, .jpg).")
@click.option("--size", type=int, help="Long edge of the output in pixels.")
@click.option("--iterations", type=int, help="Iterations at each scale.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Any parameter, e.g. --set optimizer=adam.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def stylize(
    ctx: click.Context, content: str, styles: tuple[str, ...], output: str,
    size: int | None, iterations: int | None, assignments: tuple[str, ...], quiet: bool,
) -> None:
    """Stylize CONTENT with one or more STYLE images, without the service.

    Writes OUTPUT and, with colour correction on, OUTPUT's name plus
    `.corrected` (e.g. out.corrected.png); several outputs are numbered.

    \b
    Example:
      nst stylize photo.jpg starry.jpg -o out.png --size 512 --set style_weight=100
    """
    config = _config(ctx)
    values = overrides_from(assignments)
    if size is not None:
        values["size"] = size
    if iterations is not None:
        values["iterations"] = iterations
    params = build_params(config, values)
    _check_output(Path(output))  # before the run, not after minutes of it

    from nst_engine import load_image
    from nst_engine import stylize as run_stylize
    from nst_engine.errors import advice

    from .display import colour_lines, face_guard_lines
    from .files import write_image_atomic

    try:
        limit, (content_edge, style_edge) = config.limits.max_image_pixels, params.image_edges()
        content_img = load_image(content, max_pixels=limit, max_edge=content_edge)
        style_imgs = [load_image(s, max_pixels=limit, max_edge=style_edge) for s in styles]
        init_img = None
        if params.init_is_image:
            init_img = load_image(params.init, max_pixels=limit, max_edge=content_edge)
        if not quiet:
            for line in colour_lines(content_img, style_imgs, init_img):
                click.echo(line, err=True)
        reporter = None if quiet else _TerminalProgress()
        result = run_stylize(content_img, style_imgs, params=params, init_image=init_img, progress=reporter,
                             memory_budget=config.worker.memory_budget(), batch=config.worker.batch_cap())
        if reporter:
            reporter.close()
        if not quiet:
            for line in face_guard_lines(result.record):
                click.echo(line, err=True)
    except ValueError as e:  # every UserError, with its advice; the engine's other refusals
        raise CommandError(f"{e}; {advice(e)}") from None
    except KeyboardInterrupt:
        raise CommandError("interrupted") from None

    for path, img in output_paths(Path(output), result.outputs):
        try:
            write_image_atomic(path, img)
        except OSError as e:  # the folder went away or filled up during the run
            raise CommandError(f"cannot write {path}: {e.strerror or e}; free space or name another -o") from None
        click.echo(str(path))


def _check_output(output: Path) -> None:
    """Refuse an output that cannot be written: a missing or read-only folder, a format by name
    that is not one of ours (its suffix; none is PNG)."""
    from .files import IMAGE_FORMATS

    if output.suffix and output.suffix.lower() not in IMAGE_FORMATS:
        raise CommandError(f"-o {output}: nst writes {' '.join(IMAGE_FORMATS)} files, not {output.suffix}; "
                           "name the output with one of them")
    folder = output.parent
    if not folder.is_dir():
        raise CommandError(f"-o {output}: the folder {folder} does not exist; create it, or name another")
    if not os.access(folder, os.W_OK):
        raise CommandError(f"-o {output}: the folder {folder} is not writable; name another")


def _store(ctx: click.Context, *, create: bool = False):
    from .store import Store

    config = _config(ctx)
    url = config.database
    if url.startswith("sqlite:///") and not create and not Path(url[len("sqlite:///"):]).exists():
        # No history yet is an empty history, not an error: answer from an empty store
        # (a throwaway file) rather than create the service's database from a read.
        import atexit
        import shutil
        import tempfile

        empty = tempfile.mkdtemp(prefix="nst-empty-")
        atexit.register(shutil.rmtree, empty, True)
        store = Store(f"sqlite:///{empty}/jobs.sqlite3", outage_s=5.0)
        store.create_empty()
        return store
    store = Store(url, outage_s=5.0)  # a person waits a little, not a minute
    if create:
        store.migrate()
    return store


def _job(store, ref: str):
    job = store.find(ref)
    if job is None:
        raise CommandError(f"no job {ref!r} (nst jobs lists them)")
    if not (ref.isdigit() and job.id == int(ref)):
        same = store.count_named(job.name)
        if same > 1:
            click.echo(f"nst: {same} jobs are named {job.name!r}; this is the newest, job {job.id} "
                       f"(nst jobs --name {job.name!r} lists them; give an id to choose)", err=True)
    return job


def _parse_when(text: str | None, *, end: bool = False):
    import datetime as dt

    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    if len(text) <= 10 and end:
        value = value + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    if value.tzinfo is None:
        value = value.astimezone()  # a date people type is local time
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Create config.toml (commented defaults), inbox/, outbox/ and state/ in DIRECTORY.

    \b
    Example:
      nst init /srv/nst && nst --config /srv/nst/config.toml serve
    """
    from importlib.resources import files

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    target = root / "config.toml"
    if target.exists():
        raise CommandError(f"{target} exists; not overwriting it")
    template = files("service").joinpath("config.default.toml").read_text(encoding="utf-8")
    from .files import write_text_atomic

    write_text_atomic(target, template)
    for sub in ("inbox", "outbox", "state"):
        (root / sub).mkdir(exist_ok=True)
    click.echo(f"created {target}, {root / 'inbox'}, {root / 'outbox'}, {root / 'state'}")


@main.command()
@click.option("--worker-slot", type=int, hidden=True)  # a worker process of a daemon (`[worker] devices`)
@click.option("--worker-device", hidden=True)
@click.pass_context
def serve(ctx: click.Context, worker_slot: int | None, worker_device: str | None) -> None:
    """Run the watch-folder daemon in the foreground (systemd runs exactly this).

    Stops cleanly on SIGTERM or Ctrl-C: the running job is checkpointed and
    resumes at the next start.

    \b
    Example:
      nst --config /srv/nst/config.toml serve
    """
    import logging
    import os

    from .daemon import AlreadyRunning, Daemon, setup_logging

    config = _config(ctx)
    setup_logging(tag=f"worker {worker_slot} ({worker_device}) " if worker_slot is not None else "")
    try:
        code = Daemon(config, slot=worker_slot, device=worker_device).run()
    except AlreadyRunning as e:
        raise CommandError(str(e)) from None
    # Stopped cleanly: the store is closed, the job checkpointed, the log written. Exit now
    # rather than through Python's teardown of torch's modules (0.4-0.6 s here), which every
    # restart, `systemctl stop` and test waited for.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@main.command()
@click.argument("content", type=click.Path(exists=True, dir_okay=False))
@click.argument("styles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="Job name (default: the content file's name).")
@click.option("--priority", type=click.IntRange(*PRIORITIES), default=0, show_default=True,
              help="Higher runs first (-1000 to 1000).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Any parameter, e.g. --set size=768.")
@click.pass_context
def submit(ctx: click.Context, content: str, styles: tuple[str, ...], name: str | None, priority: int,
           assignments: tuple[str, ...]) -> None:
    """Queue a job: copy CONTENT and STYLE(s) into the inbox, then write its sidecar.

    The sidecar is written last, under a temporary name and renamed, so the
    service never sees half a job. Prints the job's name.

    \b
    Example:
      nst submit photo.jpg starry.jpg --name harbour --set size=768 --set outputs=3
    """
    from .submit import SubmitError, submit_job

    config = _config(ctx)
    values = overrides_from(assignments)
    build_params(config, values)  # validate before touching the inbox
    try:
        job_name = submit_job(config, Path(content), [Path(s) for s in styles], name=name, values=values,
                              priority=priority)
    except SubmitError as e:
        raise CommandError(str(e)) from None
    click.echo(job_name)


@main.command()
@click.option("--status", type=click.Choice(STATUS_NAMES))
@click.option("--since", metavar="DATE", help="Submitted on or after (local time), e.g. 2026-11-01.")
@click.option("--until", metavar="DATE", help="Submitted on or before (local time).")
@click.option("--name", "name_glob", metavar="GLOB", help="Job names matching, e.g. 'portrait*'.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of objects, for scripts.")
@click.pass_context
def jobs(ctx: click.Context, status, since, until, name_glob, limit, as_json) -> None:
    """The job history, newest first.

    \b
    Example:
      nst jobs --status failed --since 2026-11-01
      nst jobs --json | jq '.[].name'
    """
    import json

    from .display import duration, local_time, table
    from .store import JobFilter

    store = _store(ctx)
    rows = store.list_jobs(JobFilter(status=status, since=_parse_when(since), until=_parse_when(until, end=True),
                                     name_glob=name_glob, limit=limit))
    if as_json:
        click.echo(json.dumps([j.to_dict(brief=True) for j in rows], indent=2))
        return
    if not rows:
        click.echo("No jobs yet" if status is None and not (since or until or name_glob) else "No jobs match",
                   err=True)
        return
    click.echo(table(
        ["ID", "NAME", "STATUS", "SUBMITTED", "DURATION", "SIZE", "ITERS", "OUTPUTS"],
        [[j.id, _clip(j.name), _status(j), local_time(j.submitted_at), duration(j.duration_s), j.size,
          j.iterations, _pictures(j)] for j in rows],
    ))


def _status(job) -> str:
    """The status, and for a queued job what it waits for: its images (README's inbox
    contract), or a worker that no host here is."""
    from .models import WAITING

    if job.status != "queued":
        return job.status
    if job.error and job.error.startswith(WAITING):
        return _clip(job.error, 60)
    needs = (job.record.get("estimate") or {}).get("waits_for")
    return f"queued (needs {_clip(needs.removeprefix('a worker with '), 40)})" if needs else job.status


def _pictures(job) -> str:
    """How many stylized pictures a job made (each also has a colour-corrected copy)."""
    if not job.state.finished:
        return "-"
    return str(sum(".stylized" in name for name in job.outputs))


def _clip(text: str, width: int = 32) -> str:
    from .display import printable

    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, job: str, as_json: bool) -> None:
    """Everything recorded about JOB (an id or a name).

    \b
    Example:
      nst show 42
      nst show harbour --json
    """
    import json

    from .display import duration, estimate_text, local_time, printable
    from .pipeline.outbox import advice

    config = _config(ctx)
    store = _store(ctx)
    j = _job(store, job)
    d = j.to_dict()
    folder = config.job_folder(j.outbox_dir)
    if folder:
        d["outbox_path"] = str(folder)
        d["output_paths"] = [str(folder / o) for o in j.outputs]
    if as_json:
        click.echo(json.dumps(d, indent=2, sort_keys=True))
        return
    lines = [
        f"job {j.id}: {printable(j.name)}",
        f"  status      {j.status}" + (f" (attempt {j.attempts})" if j.attempts > 1 else ""),
        f"  submitted   {local_time(j.submitted_at)}",
        f"  started     {local_time(j.started_at)}",
        f"  finished    {local_time(j.finished_at)}",
        f"  duration    {duration(j.duration_s)}",
        f"  host        {j.host or '-'}" + (f" (pid {j.pid})" if j.pid else ""),
    ]
    if j.error:
        lines.append(f"  error       {printable(j.error)}")
        hint = advice(folder) if j.status == "failed" else None
        if hint:
            lines.append(f"  to fix it   {printable(hint)}")
    progress = j.progress
    if j.status == "running" and progress.total:
        lines.append(f"  progress    step {progress.step}/{progress.total} ({progress.fraction:.0%}), "
                     f"ETA {duration(progress.eta)}")
        if config.live_image(j.id).exists():
            lines.append(f"  live image  {config.live_image(j.id)} (the picture being made, every few seconds)")
    record = j.record
    if record.get("estimate"):
        est = record["estimate"]
        text = estimate_text(est, store.device_rate(est["device"]) if est.get("device") else None)
        lines.append(f"  estimate    {text or est.get('unknown', '-')}")
    if record.get("final_losses"):
        lines.append("  losses      " + ", ".join(f"{k} {v:.4g}" for k, v in record["final_losses"].items()))
    if record.get("timings"):
        t = record["timings"]
        parts = [f"total {t.get('total_s')} s", f"optimizing {t.get('optimize_s')} s"]
        parts += [f"{what} {t[key]} s" for key, what in (("targets_s", "targets"), ("outputs_s", "outputs"))
                  if key in t]  # jobs recorded before these were measured lack them
        lines.append("  timings     " + ", ".join(parts))
    if record.get("device"):
        lines.append(f"  device      {record['device']}, {record.get('precision')}")
    if record.get("weights"):
        lines.append(f"  weights     {record['weights'].get('source')} sha256 {record['weights'].get('sha256')}")
    lines.append("  parameters")
    lines += [f"    {k} = {json.dumps(v)}" for k, v in sorted(j.params.items())]
    lines.append("  inputs")
    lines += [f"    {i.get('role'):8} {printable(str(i.get('name')))}  sha256 {i.get('sha256')}" for i in j.inputs]
    if folder:
        lines.append(f"  outbox      {printable(str(folder))}")
        lines += [f"    {printable(o)}" for o in j.outputs]
    click.echo("\n".join(lines))


@main.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.pass_context
def logs(ctx: click.Context, job: str, follow: bool) -> None:
    """Print JOB's log (an id or a name).

    \b
    Example:
      nst logs harbour --follow
    """
    import time

    config = _config(ctx)
    store = _store(ctx)
    j = _job(store, job)
    position = 0
    while True:
        j = store.get(j.id)
        live, done = config.live_log(j.id), config.published_log(j.outbox_dir)
        path = live if live.exists() else done
        if path is not None and path.exists():
            with open(path, "rb") as f:
                f.seek(position if path == live else 0)
                chunk = f.read()
            if path == live:
                position += len(chunk)
            else:
                chunk = chunk[position:]
                position += len(chunk)
            if chunk:
                click.echo(chunk.decode("utf-8", "replace"), nl=False)
        finished = j.state.finished
        if not follow or (finished and (path is None or path == done)):
            if path is None and not follow:
                raise CommandError(f"job {j.id} has no log yet ({j.status})")
            return
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return


@main.command()
@click.option("--once", is_flag=True, help="Print once and exit instead of following the running job.")
@click.pass_context
def status(ctx: click.Context, once: bool) -> None:
    """Is the service alive, what is it doing, what is queued.

    Follows the running job with a live progress bar until it ends (or Ctrl-C). Exits 3
    when no daemon is running (as a service manager's status does), so scripts can check.

    \b
    Example:
      nst status
    """
    import time

    from .display import duration, local_time, progress_line
    from .models import utcnow

    store = _store(ctx)
    within = _config(ctx).cluster.alive_within_s
    daemons = store.live_daemons(within_s=within)
    if not daemons:
        click.echo(f"service: not running (no heartbeat in the last {within:g} s)")
    for d in daemons:
        uptime = (utcnow() - d.started_at).total_seconds()
        doing = f", running job {d.current_job}" if d.current_job else ""
        click.echo(f"service: running on {d.host}, pid {d.pid}, up {duration(uptime)}, device {d.device}, "
                   f"roles {d.roles.replace(',', '+')}{doing}")
    queue = store.queue()
    click.echo(f"queue: {len(queue)} job(s)" + (": " + ", ".join(f"{j.id} {_clip(j.name, 20)}" for j in queue[:10])
                                               if queue else ""))
    running = store.running()
    if not running:
        click.echo("running: nothing")
        ctx.exit(0 if daemons else NOT_RUNNING)
    # Several workers (a cluster, a worker per device): each running job once, the first followed.
    devices = {d.run_id: d.device for d in daemons}
    def line_of(p) -> str:
        return progress_line(fraction=p.fraction, step=p.step, total=p.total, scale=p.scale, scales=p.scales,
                             loss=p.losses.get("total"), eta=p.eta)

    for other in running[1:]:
        click.echo(f"running: job {other.id} {_clip(other.name, 80)} on {devices.get(other.run_id, other.host)}: "
                   + line_of(other.progress))
    job = running[0]
    click.echo(f"running: job {job.id} {_clip(job.name, 80)} on {devices.get(job.run_id, job.host)} "
               f"(since {local_time(job.started_at)})")
    # Without a daemon the job will not move: say where it stands once, never wait on it.
    interactive = not once and sys.stdout.isatty() and bool(daemons)
    try:
        while True:
            job = store.get(job.id)
            line = line_of(job.progress)
            if job.status != "running":
                click.echo(("\r" if interactive else "") + f"{line}  -> {job.status}")
                break
            if not interactive:
                click.echo(line)
                break
            click.echo("\r" + line, nl=False)
            time.sleep(1.0)
    except KeyboardInterrupt:
        click.echo("")
    ctx.exit(0 if daemons else NOT_RUNNING)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """The daemons sharing this job store: host, pid, device, roles, current job, last heartbeat.

    A daemon is listed while it heartbeats (every [cluster] heartbeat_seconds);
    one silent for longer than three heartbeats is shown as lost.

    \b
    Example:
      nst workers
    """
    import json

    from .display import duration, local_time, table
    from .models import utcnow

    config = _config(ctx)
    store = _store(ctx)
    limit = config.cluster.alive_within_s
    rows = []
    for d in store.all_daemons():
        silent = (utcnow() - d.heartbeat_at).total_seconds()
        rows.append({"host": d.host, "pid": d.pid, "device": d.device, "roles": d.roles.split(","),
                     "current_job": d.current_job, "started": local_time(d.started_at),
                     "last_heartbeat_s": round(silent, 1), "alive": silent <= limit, "run_id": d.run_id})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no workers", err=True)
        return
    click.echo(table(["HOST", "PID", "DEVICE", "ROLES", "JOB", "HEARTBEAT", "STATE"],
                     [[r["host"], r["pid"], r["device"], "+".join(r["roles"]), r["current_job"],
                       f"{duration(r['last_heartbeat_s'])} ago", "alive" if r["alive"] else "lost"] for r in rows]))


@main.group()
def db() -> None:
    """The job store: migrations and moving a history between databases."""


@db.command("migrate")
@click.pass_context
def db_migrate(ctx: click.Context) -> None:
    """Create or upgrade the schema of the configured database (nst serve does this too).

    \b
    Example:
      nst --config cluster.toml db migrate
    """
    from .migrations import head

    store = _store(ctx, create=True)
    click.echo(f"{redact_url(store.url)}: schema version {store.schema_version()} (this release: {head()})")


@db.command("copy")
@click.option("--from", "source", required=True, metavar="URL",
              help="The database to copy from, e.g. sqlite:////srv/nst/state/jobs.sqlite3")
@click.pass_context
def db_copy(ctx: click.Context, source: str) -> None:
    """Copy the job history from another database into the configured one (keeping job ids).

    Stop the daemons first. Jobs already present (same job file) are skipped,
    so running it twice is harmless.

    \b
    Example:
      nst --config cluster.toml db copy --from sqlite:////srv/nst/state/jobs.sqlite3
    """
    from .store import Store

    target = _store(ctx, create=True)
    try:
        origin = Store(source, outage_s=5.0)
        origin.migrate()
        copied = target.copy_from(origin)
    except Exception as e:
        raise CommandError(f"cannot copy from {redact_url(source)}: {redact_password(str(e), source)}") from None
    click.echo(f"copied {copied} job(s) into {redact_url(target.url)}")


@main.command()
@click.argument("job")
@click.pass_context
def cancel(ctx: click.Context, job: str) -> None:
    """Cancel JOB: a queued job at once, a running one at its next iteration
    (its latest image is kept as a partial result).

    \b
    Example:
      nst cancel 42
    """
    from .status import JobStatus
    from .store import StoreError

    store = _store(ctx)
    j = _job(store, job)
    try:
        after = store.request_cancel(j.id)
    except StoreError as e:
        raise CommandError(str(e)) from None
    click.echo(f"job {j.id} cancelled; the service moves its inputs to the outbox (nst retry can queue it again)"
               if after == JobStatus.CANCELLED else f"job {j.id} will stop at its next iteration")


@main.command()
@click.argument("job")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Change parameters for the retry.")
@click.pass_context
def retry(ctx: click.Context, job: str, assignments: tuple[str, ...]) -> None:
    """Queue a failed or cancelled JOB again from its archived inputs, as a new job.

    It keeps the job's settings (every valid one of its sidecar, even when the sidecar was
    refused for another); --set changes or mends them.

    \b
    Example:
      nst retry 42 --set size=384
    """
    from .submit import SubmitError, resubmit_job

    config = _config(ctx)
    j = _job(_store(ctx), job)
    values = overrides_from(assignments)
    try:  # checked by the inbox's own rules before anything is written
        name = resubmit_job(config, j, values)
    except SubmitError as e:
        raise CommandError(str(e)) from None
    click.echo(name)
    click.echo(f"dropped into the inbox as {name!r}; the service gives it a job id as it takes it "
               f"(nst show {name})", err=True)


@main.command()
@click.option("--host", help="Address to listen on (default [web] host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default [web] port, 8750).")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the web page: upload, live progress, logs, previews, downloads.

    It writes uploads into the inbox like nst submit; the daemon runs the jobs.

    \b
    Example:
      nst web --port 8750     # then open http://127.0.0.1:8750/
    """
    from .web import serve as make_server

    config = _config(ctx)
    try:
        server = make_server(config, host=host, port=port)
    except OSError as e:
        raise CommandError(f"cannot listen on {host or config.web.host}:{port or config.web.port}: {e}") from None
    click.echo(f"serving http://{server.host}:{server.port}/ (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@main.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check the configuration, folders, database, weights, device and observer.

    \b
    Example:
      nst doctor
    """
    from .doctor import run_checks

    try:
        config = load_config(ctx.obj.get("config_path") if ctx.obj else None)
    except ConfigError as e:
        click.echo(f"[FAIL] config: {e}")
        raise CommandError("1 problem(s) found: the service would refuse to start with this config") from None
    problems = 0
    for ok, what, detail in run_checks(config):
        mark = "ok  " if ok else "FAIL"
        problems += 0 if ok else 1
        click.echo(f"[{mark}] {what}: {detail}")
    if problems:
        raise CommandError(f"{problems} problem(s) found")


@main.group()
def service() -> None:
    """Run nst as a systemd service."""


@service.command("install")
@click.option("--user", is_flag=True, help="A user unit (~/.config/systemd/user) instead of a system one.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.option("--run-as", metavar="ACCOUNT",
              help="System units: the account the daemon runs as (default: the service folder's owner).")
@click.pass_context
def service_install(ctx: click.Context, user: bool, print_only: bool, run_as: str | None) -> None:
    """Write the systemd unit for this config (or print it).

    \b
    Example:
      nst --config /srv/nst/config.toml service install
      systemctl daemon-reload && systemctl enable --now nst
    """
    import shutil as _shutil

    import pwd

    from .systemd import under_tmp, default_account, unit_path, unit_text, unwritable_for

    config = _config(ctx)
    if config.path is None:
        raise CommandError("give --config PATH (or run in a folder with config.toml): the unit needs a config file")
    if user and run_as:
        raise CommandError("--run-as is for system units; a --user unit runs as you")
    if run_as:
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise CommandError(f"--run-as: no account named {run_as!r} on this machine") from None
    account = None if user else (run_as or default_account(config))
    if account:
        blocked = unwritable_for(config, account)
        if blocked:
            raise CommandError(f"the account {account!r} cannot write {', '.join(map(str, blocked))}: "
                            f"give it the folders (chown -R {account}: FOLDER) or choose another with --run-as")
    elif not user:
        click.echo("nst: the service folder is owned by root, so the unit runs as root; a dedicated account "
                   "is safer: useradd --system nst && chown -R nst: FOLDER, then --run-as nst", err=True)
    if under_tmp(config):
        click.echo("nst: a folder of the service is under /tmp: the unit leaves PrivateTmp off so that the "
                   "service sees it (and /tmp may be emptied at boot: /srv or /var/lib suit a service better)",
                   err=True)
    exe = _shutil.which("nst") or sys.argv[0]
    text = unit_text(config, user=user, executable=str(Path(exe).resolve()), run_as=account)
    if print_only:
        click.echo(text, nl=False)
        return
    target = unit_path(user=user)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        from .files import write_text_atomic

        write_text_atomic(target, text)
    except PermissionError:
        raise CommandError(f"cannot write {target}: run as root, or use --user") from None
    scope = "--user " if user else ""
    click.echo(f"wrote {target}\nnext: systemctl {scope}daemon-reload && systemctl {scope}enable --now nst")


def output_paths(output: Path, outputs: Sequence[Any]) -> list[tuple[Path, Any]]:
    """out.png -> out.png, out.corrected.png; with several outputs out-1.png, out-1.corrected.png, ..."""
    stem, suffix = output.stem, output.suffix or ".png"
    pairs = []
    for index, out in enumerate(outputs, start=1):
        base = stem if len(outputs) == 1 else f"{stem}-{index}"
        pairs.append((output.with_name(base + suffix), out.stylized))
        if out.corrected is not None:
            pairs.append((output.with_name(f"{base}.corrected{suffix}"), out.corrected))
    return pairs


class _TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self) -> None:
        import time

        self._time = time.monotonic
        self._last = 0.0
        self._shown = False

    def __call__(self, p: Any) -> None:
        now = self._time()
        if now - self._last < 0.1 and p.step != p.total_steps:
            return
        self._last = now
        from .display import progress_line

        line = progress_line(
            fraction=p.fraction, step=p.step, total=p.total_steps, scale=p.scale + 1, scales=p.scales,
            loss=p.losses.get("total"), eta=p.eta,
        )
        if p.outputs > 1:
            line += f"  output {p.outputs_label}"
        click.echo("\r" + line, nl=False, err=True)
        self._shown = True

    def close(self) -> None:
        if self._shown:
            click.echo("", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
