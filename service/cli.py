"""The `nst` command line.

Commands that only read the job history never import torch, so they answer at
once; torch is imported inside the commands that compute.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import click

from nst_engine.params import ParamError, Params, parse_assignment

from . import __version__
from .config import Config, ConfigError, load_config


class UserError(click.ClickException):
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
            raise UserError(str(e)) from None
    return ctx.obj["config"]


def overrides_from(assignments: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for text in assignments:
        try:
            key, value = parse_assignment(text)
        except ParamError as e:
            raise UserError(str(e)) from None
        values[key] = value
    return values


def build_params(config: Config, values: dict[str, Any]) -> Params:
    try:
        return Params.from_mapping(values, base=config.defaults, limits=config.limits)
    except ParamError as e:
        raise UserError(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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

    from nst_engine import ImageError, WeightsError, load_image
    from nst_engine import stylize as run_stylize

    from .files import write_image_atomic

    try:
        content_img = load_image(content, max_pixels=config.limits.max_image_pixels)
        style_imgs = [load_image(s, max_pixels=config.limits.max_image_pixels) for s in styles]
        init_img = None
        if params.init not in ("content", "noise"):
            init_img = load_image(params.init, max_pixels=config.limits.max_image_pixels)
        reporter = None if quiet else _TerminalProgress()
        result = run_stylize(content_img, style_imgs, params=params, init_image=init_img, progress=reporter)
        if reporter:
            reporter.close()
    except (ImageError, WeightsError, ValueError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        raise UserError("interrupted") from None

    for path, img in output_paths(Path(output), result.outputs):
        write_image_atomic(path, img)
        click.echo(str(path))


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
            step=p.step, total=p.total_steps, scale=p.scale + 1, scales=p.scales,
            loss=p.losses.get("total"), eta=p.eta,
        )
        if p.outputs > 1:
            line += f"  output {p.output + 1}/{p.outputs}"
        click.echo("\r" + line, nl=False, err=True)
        self._shown = True

    def close(self) -> None:
        if self._shown:
            click.echo("", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
