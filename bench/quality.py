"""`make bench-quality`: our defaults against the reference on a grid of real pairs.

Six photographs (Tübingen, and scikit-image's astronaut, chelsea, coffee, rocket and
motorcycle) times three paintings (The Starry Night; The Scream, a figure with a face:
the test for objects copied from a painting; The Shipwreck), at 512 px.

For each pair: our defaults (and their colour-corrected copy) and the reference,
pastiche with 300 L-BFGS steps at the same size. The reference does not change with
our code: `--reference` computes it, pair by pair (each is kept as soon as it is made,
so an interrupted run goes on where it stopped), into bench/results/quality/reference/.

Figures per pair, all measured by one evaluator (our VGG-19 in float32, at the output's
size): seconds; structure: SSIM of luminance against the photograph and the relu4_2
feature distance (relative); style: the Gram distance over relu1_1..relu5_1 to the
painting, relative to the photograph's own distance (1.0: no style at all; lower: more
of the painting's statistics). Writes bench/results/quality/figures.json, the contact
sheet docs/quality-sheet-LABEL.jpg (photograph, painting, reference, ours, ours corrected)
and the tables in docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench  # noqa: E402  (pastiche's command line, as every benchmark runs it)
import copying  # noqa: E402  (the measure of a painting's face copied into the picture)
SAMPLES = ROOT / "samples"
RESULTS = ROOT / "bench" / "results" / "quality"
DOCS = ROOT / "docs"
SIZE = 512
REFERENCE_STEPS = 300
CONTENTS = ("tubingen", "astronaut", "chelsea", "coffee", "rocket", "motorcycle")
STYLES = ("starry_night", "the_scream", "shipwreck", "picasso_selfport1907")
# The portrait's licence keeps it out of the repository: it is used from the sample folder
# beside the repo, and its pairs are left out (with a word) where that folder is missing.
SHARED_IMAGES = ROOT.parent / "shared" / "images"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", action="store_true", help="compute the missing reference images first")
    ap.add_argument("--reference-only", action="store_true", help="compute the missing reference images, nothing else")
    ap.add_argument("--device", default="cpu", help="the reference's device (cuda: plain float32, TF32 off)")
    ap.add_argument("--jobs", type=int, default=1, help="reference runs at once (on a GPU)")
    ap.add_argument("--reference-dir", type=Path, default=RESULTS / "reference",
                    help="where the reference images and records are kept")
    ap.add_argument("--time-reference", action="store_true",
                    help="give references made on another device their time on this CPU (pastiche's "
                         "seconds per step here, measured once per photograph, times 300)")
    ap.add_argument("--pairs", nargs="*", help="only these pairs (content-style), e.g. astronaut-the_scream")
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--set", dest="overrides", nargs="*", default=[],
                    help="parameters for our side (key=value, TOML values), to try other defaults")
    ap.add_argument("--label", default="defaults", help="a name for this run of our side")
    ap.add_argument("--sweep", metavar="KEY=V1,V2,...",
                    help="one parameter over several values (e.g. strength=0,0.5,1): a sheet with a column "
                         "per value, docs/quality-sweep-KEY.png, and a table")
    ap.add_argument("--variants", type=int, metavar="N",
                    help="N outputs of each pair side by side (what each output changes), "
                         "docs/quality-variants.png, with each one's mean difference from the first")
    ap.add_argument("--recorrect", metavar="LABEL",
                    help="after a change to the colour correction: a run's corrected copies made again from "
                         "its renders (no rendering), and its contact sheet redrawn")
    ap.add_argument("--faces", metavar="LABEL", nargs="+",
                    help="runs side by side with the painting's face found in each (copying.py; no rendering): "
                         "docs/quality-faces.jpg, for a painting with a face")
    ap.add_argument("--colours", metavar="LABEL",
                    help="colour-correction methods side by side on a run's renders (no rendering): "
                         "docs/quality-colours.jpg")
    args = ap.parse_args()

    styles = [s for s in STYLES if _style_file(s).exists()]
    if len(styles) < len(STYLES):
        print(f"left out (not in samples/ or {SHARED_IMAGES}): {sorted(set(STYLES) - set(styles))}", flush=True)
    pairs = everything = [(c, s) for c in CONTENTS for s in styles]
    if args.pairs:
        pairs = [p for p in pairs if f"{p[0]}-{p[1]}" in args.pairs]
    work = Path(tempfile.mkdtemp(prefix="nst-quality-"))
    for content, _ in pairs:
        _content_file(content, work)
    if args.colours:
        colours(pairs, args.colours, work)
        return 0
    if args.faces:
        faces_sheet([p for p in pairs if p[1] in copying.FACES], args.faces, work)
        return 0
    if args.recorrect:
        recorrect(pairs, args.recorrect, work)
        return 0
    if args.sweep:
        key, _, values = args.sweep.partition("=")
        sweep(pairs, args.size, work, args.overrides, key, [v for v in values.split(",") if v])
        return 0
    if args.variants:
        variants(pairs, args.size, work, args.overrides, args.variants)
        return 0
    if args.reference or args.reference_only:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(lambda pair: reference(*pair, args.size, work, args.device, args.reference_dir), pairs))
        if args.reference_only:
            return 0
    if args.time_reference:
        time_reference(pairs, args.size, work, args.reference_dir)
        return 0
    figures = run_ours(pairs, args.size, work, args.overrides, args.label)
    # A resumed run's sheet shows every pair the run holds, not only this call's.
    sheet([p for p in everything if _pair(*p) in figures], figures, args.label)
    report(figures, args.label, args.size, args.overrides)
    return 0


# -- inputs ----------------------------------------------------------------------------------

def _content_file(name: str, work: Path) -> Path:
    """The photograph as a file (scikit-image's ship as arrays)."""
    if name == "tubingen":
        return SAMPLES / "tubingen.jpg"
    path = work / f"{name}.png"
    if not path.exists():
        import skimage.data
        from PIL import Image

        array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
        Image.fromarray(array).convert("RGB").save(path)
    return path


def _style_file(name: str) -> Path:
    own = SAMPLES / f"{name}.jpg"
    return own if own.exists() else SHARED_IMAGES / f"{name}.jpg"


def _shown_painting(name: str):
    """The painting for a sheet, or None for one used from ../shared: its licence keeps it
    out of the repository, and the sheets are committed."""
    from nst_engine import load_image

    path = _style_file(name)
    return load_image(path) if path.parent == SAMPLES else None


def _pair(content: str, style: str) -> str:
    return f"{content}-{style}"


# -- the reference -----------------------------------------------------------------------------

def reference(content: str, style: str, size: int, work: Path, device: str = "cpu",
              folder: Path = RESULTS / "reference") -> None:
    """pastiche, 300 L-BFGS steps, kept as soon as it is made (resumable pair by pair).

    On a GPU the reference is the same float32 computation with TF32 turned off (cuDNN and
    cuBLAS would otherwise round the convolutions' inputs to 10 bits); its seconds there
    are the GPU's, so `--time-reference` adds what 300 steps take on this CPU."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    name = _pair(content, style)
    image, record = folder / f"{name}.png", folder / f"{name}.json"
    if image.exists() and record.exists():
        return
    out = work / f"ref-{name}.png"
    cmd = bench.pastiche_cmd(_content_file(content, work), _style_file(style), out, size, REFERENCE_STEPS, device)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "NVIDIA_TF32_OVERRIDE": "0"})
    seconds = time.perf_counter() - started
    out.replace(image)
    made = {"steps": REFERENCE_STEPS, "size": size, "seconds": seconds, "device": device}
    if device == "cpu":
        made |= {"cpu_seconds": seconds, "cpu_flags": _cpu_flags()}
    else:
        made["gpu"] = _gpu_name()
    record.write_text(json.dumps(made, indent=2) + "\n")
    print(f"reference {name} on {device}: {seconds:.0f} s", flush=True)


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def time_reference(pairs, size: int, work: Path, folder: Path) -> None:
    """What the references made elsewhere would take on this CPU: pastiche's seconds per
    step at this photograph's size (a 25-step run less a 5-step one, over 20), times 300,
    plus the 5-step run's start-up. Once per photograph: a step's cost is the photograph's
    size; the painting's Gram matrices are computed once, in the start-up."""
    per_content: dict[str, dict] = {}
    for content, style in pairs:
        record_path = folder / f"{_pair(content, style)}.json"
        if not record_path.exists():
            continue
        record = json.loads(record_path.read_text())
        if "cpu_seconds" in record:
            continue
        if content not in per_content:
            runs = {}
            for steps in (5, 25):
                cmd = bench.pastiche_cmd(_content_file(content, work), _style_file(style), work / "timing.png",
                                         size, steps)
                started = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                runs[steps] = time.perf_counter() - started
            per_step = (runs[25] - runs[5]) / 20
            per_content[content] = {"per_step": per_step, "start": runs[5] - 5 * per_step}
            print(f"pastiche on this CPU, {content}: {per_step:.2f} s a step, start-up "
                  f"{per_content[content]['start']:.1f} s", flush=True)
        t = per_content[content]
        record |= {"cpu_seconds": round(t["start"] + REFERENCE_STEPS * t["per_step"], 1),
                   "cpu_seconds_from": f"pastiche's 5- and 25-step runs on this CPU: {t['per_step']:.3f} s a step "
                                       f"x {REFERENCE_STEPS} + {t['start']:.1f} s start-up",
                   "cpu_flags": _cpu_flags()}
        record_path.write_text(json.dumps(record, indent=2) + "\n")


def _cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags)


# -- our side and the evaluator -----------------------------------------------------------------

class Evaluator:
    """Structure and style figures of any image, by one fixed float32 VGG-19."""

    def __init__(self) -> None:
        from nst_engine.optimize import _network
        import torch

        self.net = _network("caffe", "max", torch.device("cpu"), "relu5_1", False)

    def features(self, image, layer: str):
        import torch

        from nst_engine.images import to_tensor

        with torch.no_grad():
            return self.net(to_tensor(image), {layer})[layer]

    def faces(self, output, photo, painting, style: str):
        """(percent of the picture holding parts of the painting's face, their mask): copying.py."""
        import copying

        return copying.face_copied(lambda image: self.features(image, copying.LAYER), output, photo, painting, style)

    def figures(self, output, photo, painting, style_name: str | None = None, face_map: Path | None = None) -> dict:
        """The figures of one picture; with `style_name`, the share of it holding the painting's
        face too, and where that painting has a marked face, the map of it written to `face_map`."""
        import numpy as np
        import torch
        from skimage.metrics import structural_similarity

        from nst_engine.images import fit_long_edge, to_tensor
        from nst_engine.losses import gram

        photo = photo.resize(output.size)
        paint = fit_long_edge(painting, max(output.size))

        def luminance(img):
            return np.asarray(img.convert("YCbCr"), dtype=np.float64)[..., 0] / 255.0

        ssim = structural_similarity(luminance(output), luminance(photo), data_range=1.0)
        with torch.no_grad():
            layers = set(STYLE_LAYERS) | {"relu4_2"}
            fo, fp, fs = (self.net(to_tensor(i), layers) for i in (output, photo, paint))

            def style_distance(f):
                return statistics.mean(float((gram(f[k]) - gram(fs[k])).pow(2).sum() / gram(fs[k]).pow(2).sum())
                                       for k in STYLE_LAYERS)

            content = float((fo["relu4_2"] - fp["relu4_2"]).pow(2).mean() / fp["relu4_2"].pow(2).mean())
            style = style_distance(fo) / style_distance(fp)
        figures = {"ssim": round(ssim, 4), "content_distance": round(content, 4), "style_relative": round(style, 4)}
        if style_name is not None:
            figures["face_copied"], mask = self.faces(output, photo, painting, style_name)
            if face_map is not None and style_name in copying.FACES:  # for the eye to check the measure
                copying.face_map(output, mask).save(face_map)
        return figures


def run_ours(pairs, size: int, work: Path, overrides: list[str], label: str) -> dict:
    """Our side on each pair, with its figures. Resumable: a run of the same label and
    parameters keeps the pairs it already made (on a CPU the grid takes an hour or more) and
    adds the reference's figures where a reference has been made since."""
    from nst_engine import Params, load_image, stylize
    from nst_engine.params import parse_assignment

    values = dict(parse_assignment(a) for a in overrides)
    params = Params.from_mapping({"size": size, **values})
    evaluator = Evaluator()
    out_dir = RESULTS / label
    out_dir.mkdir(parents=True, exist_ok=True)
    record = RESULTS / f"figures-{label}.json"
    figures: dict = {}
    if record.exists():
        kept = json.loads(record.read_text())
        if kept.get("params") == params.to_dict():
            figures = {name: row for name, row in kept["pairs"].items() if (out_dir / f"{name}.png").exists()}
    stylize(load_image(SAMPLES / "tubingen.jpg"), [load_image(_style_file("starry_night"))],
            params=Params(size=128, iterations=2, scales=(1.0,)))  # warm, as the service is
    for content, style in pairs:
        name = _pair(content, style)
        photo, painting = load_image(_content_file(content, work)), load_image(_style_file(style))
        row = figures.get(name)
        if row is None:
            started = time.perf_counter()
            result = stylize(photo, [painting], params=params)
            seconds = time.perf_counter() - started
            ours = result.outputs[0]
            ours.stylized.save(out_dir / f"{name}.png")
            if ours.corrected is not None:
                ours.corrected.save(out_dir / f"{name}.corrected.png")
            row = {"seconds": round(seconds, 2),
                   **evaluator.figures(ours.stylized, photo, painting, style, face_map=out_dir / f"{name}.faces.png")}
        ref_png = RESULTS / "reference" / f"{name}.png"
        if ref_png.exists() and "reference" not in row:
            ref = json.loads((RESULTS / "reference" / f"{name}.json").read_text())
            # The reference's time on this CPU (where it was made elsewhere: estimated here).
            row["reference"] = {"seconds": round(ref.get("cpu_seconds", ref["seconds"]), 1),
                                **evaluator.figures(load_image(ref_png), photo, painting, style,
                                                    face_map=out_dir / f"{name}.reference-faces.png")}
        figures[name] = row
        print(f"{name:<36} {row['seconds']:6.1f} s  SSIM {row['ssim']:.3f}  content {row['content_distance']:.3f}  "
              f"style {row['style_relative']:.3f}  faces {row['face_copied']:.2f}%"
              + (f"   reference: SSIM {row['reference']['ssim']:.3f} style {row['reference']['style_relative']:.3f}"
                 f" faces {row['reference']['face_copied']:.2f}%" if "reference" in row else ""), flush=True)
        record.write_text(json.dumps({"size": size, "params": params.to_dict(), "cpu_flags": _cpu_flags(),
                                      "pairs": figures}, indent=2) + "\n")
    return figures


def _verdict(f: dict) -> str:
    """The targets against the reference: structure within 0.05, style no worse, none of the
    painting's face copied (copying.LIMIT), and at least 6 times sooner (the seconds are wall
    time on a machine that may be busy: the speed itself is measured by `make bench`)."""
    ref = f.get("reference")
    if not ref:
        return "-"
    ssim = "yes" if f["ssim"] >= ref["ssim"] - 0.05 else "no"
    style = "yes" if f["style_relative"] <= ref["style_relative"] else "no"
    face = "yes" if f.get("face_copied", 0.0) <= copying.LIMIT else "no"
    sooner = ref["seconds"] / f["seconds"] if f["seconds"] else 0.0
    return f"{ssim}, {style}, {face}, {'yes' if sooner >= 6 else 'no'} ({sooner:.0f}x)"


# -- one parameter swept, and variants ----------------------------------------------------------

def sweep(pairs, size: int, work: Path, overrides: list[str], key: str, values: list[str]) -> None:
    """Each pair at each value of `key`: figures, and a sheet with one column per value."""
    from nst_engine import Params, load_image, stylize
    from nst_engine.params import parse_assignment

    base = dict(parse_assignment(a) for a in overrides)
    evaluator = Evaluator()
    rows, table = [], []
    for content, style in pairs:
        photo, painting = load_image(_content_file(content, work)), load_image(_style_file(style))
        cells, captions = [photo, painting], ["photograph", "painting"]
        for raw in values:
            params = Params.from_mapping({"size": size, **base, **dict([parse_assignment(f"{key}={raw}")])})
            started = time.perf_counter()
            out = stylize(photo, [painting], params=params).outputs[0].stylized
            f = evaluator.figures(out, photo, painting, style)
            table.append((_pair(content, style), raw, round(time.perf_counter() - started, 1), f))
            cells.append(out)
            captions.append(f"{key}={raw}: SSIM {f['ssim']:.2f} st. {f['style_relative']:.2f} fc {f['face_copied']:.1f}")
            print(f"{_pair(content, style):<36} {key}={raw:<6} SSIM {f['ssim']:.3f}  style {f['style_relative']:.3f}"
                  f"  faces {f['face_copied']:.2f}%", flush=True)
        rows.append((_pair(content, style), cells, captions))
    path = DOCS / f"quality-sweep-{key}.png"
    _grid(rows, path)
    lines = [f"\n## {key} swept at {size} px ({time.strftime('%Y-%m-%d')}, CPU flags: {_cpu_flags()})\n",
             f"Parameters: the defaults{' with ' + ', '.join(overrides) if overrides else ''}; sheet `{path.relative_to(ROOT)}`.\n",
             f"| pair | {key} | seconds | SSIM | content dist. | style (rel.) | faces % |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {raw} | {sec} | {f['ssim']:.3f} | {f['content_distance']:.3f} | {f['style_relative']:.3f} "
              f"| {f['face_copied']:.2f} |" for name, raw, sec, f in table]
    with (DOCS / "quality.md").open("a") as fh:
        fh.write("\n".join(lines) + "\n")


def variants(pairs, size: int, work: Path, overrides: list[str], n: int) -> None:
    """`outputs = n` on each pair: the outputs side by side, each with its mean difference from the first."""
    import numpy as np

    from nst_engine import Params, load_image, stylize
    from nst_engine.params import parse_assignment

    params = Params.from_mapping({"size": size, **dict(parse_assignment(a) for a in overrides), "outputs": n})
    rows, lines = [], []
    for content, style in pairs:
        photo, painting = load_image(_content_file(content, work)), load_image(_style_file(style))
        outs = stylize(photo, [painting], params=params).outputs
        first = np.asarray(outs[0].stylized, dtype=np.float64)
        cells, captions = [photo, painting], ["photograph", "painting"]
        for i, o in enumerate(outs):
            diff = float(np.abs(np.asarray(o.stylized, dtype=np.float64) - first).mean())
            cells.append(o.stylized)
            captions.append(f"{i + 1}: {o.variant}" + (f" (mean diff. {diff:.0f}/255)" if i else ""))
            lines.append(f"| {_pair(content, style)} | {i + 1} | {o.variant} | {diff:.1f} |")
            print(f"{_pair(content, style):<26} output {i + 1} {o.variant:<20} mean difference {diff:5.1f}/255",
                  flush=True)
        rows.append((_pair(content, style), cells, captions))
    path = DOCS / "quality-variants.png"
    _grid(rows, path)
    head = [f"\n## {n} outputs per job at {size} px ({time.strftime('%Y-%m-%d')})\n",
            f"Sheet `{path.relative_to(ROOT)}`. Mean absolute difference from output 1, per channel, of 255.\n",
            "| pair | output | variant | mean difference |", "| --- | --- | --- | --- |"]
    with (DOCS / "quality.md").open("a") as fh:
        fh.write("\n".join(head + lines) + "\n")


def colours(pairs, label: str, work: Path) -> None:
    """The candidates for the colour-corrected copy, on the renders of run `label`: matching
    each RGB channel's histogram (the first method), CIELAB's lightness histogram with a* and
    b* moved one at a time by mean and spread (the second), and the chosen one (lightness
    histogram, a* and b* moved together by the least-change linear map: `match_colors`)."""
    import numpy as np
    from PIL import Image
    from skimage import color, exposure

    from nst_engine import load_image
    from nst_engine.color import match_colors

    def rgb_histograms(img, ref):
        out = exposure.match_histograms(np.asarray(img), np.asarray(ref), channel_axis=-1)
        return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))

    def lab_one_at_a_time(img, ref):
        a, r = color.rgb2lab(np.asarray(img)), color.rgb2lab(np.asarray(ref))
        levels = np.linspace(0.0, 1.0, 1025)
        a[..., 0] = np.interp(a[..., 0], np.quantile(a[..., 0], levels), np.quantile(r[..., 0], levels))
        for c in (1, 2):
            gain = min(r[..., c].std() / max(a[..., c].std(), 1e-6), 4.0)
            a[..., c] = (a[..., c] - a[..., c].mean()) * gain + r[..., c].mean()
        return Image.fromarray((np.clip(color.lab2rgb(a), 0, 1) * 255 + 0.5).astype(np.uint8))

    rows = []
    for content, style in pairs:
        path = RESULTS / label / f"{_pair(content, style)}.png"
        if not path.exists():
            continue
        ours = load_image(path)
        photo = load_image(_content_file(content, work)).resize(ours.size)
        cells = [photo, ours, rgb_histograms(ours, photo), lab_one_at_a_time(ours, photo), match_colors(ours, photo)]
        rows.append((_pair(content, style), cells, ["photograph", "ours", "RGB histograms (first)",
                                                    "L + a*, b* one at a time (second)",
                                                    "L + a*b* together (chosen)"]))
    _grid(rows, DOCS / "quality-colours.jpg")


def faces_sheet(pairs, labels: list[str], work: Path) -> None:
    """Each run's pictures with the painting's face parts the measure found outlined in red
    (the `.faces.png` each run writes), and the reference's, one row per pair."""
    from nst_engine import load_image

    rows = []
    for content, style in pairs:
        name = _pair(content, style)
        painting = _shown_painting(style)
        cells, captions = [load_image(_content_file(content, work)), painting], \
            ["photograph", "painting" if painting else "(painting: not reproduced)"]
        runs = []
        for label in labels:
            record = RESULTS / f"figures-{label}.json"
            figures = json.loads(record.read_text())["pairs"] if record.exists() else {}
            if not runs and "reference" in figures.get(name, {}):  # the reference once, from the first run
                runs.append(("reference", RESULTS / label / f"{name}.reference-faces.png", figures[name]["reference"]))
            runs.append((label, RESULTS / label / f"{name}.faces.png", figures.get(name)))
        for kind, path, f in runs:
            if path.exists() and f:
                cells.append(load_image(path))
                captions.append(f"{kind}: faces {f['face_copied']:.2f}%, style {f['style_relative']:.3f}")
        if len(cells) > 2:
            rows.append((name, cells, captions))
    _grid(rows, DOCS / "quality-faces.jpg", height=220)


def recorrect(pairs, label: str, work: Path) -> None:
    """The corrected copies of run `label` made again from its renders, as the engine makes
    them (`match_colors(stylized, photograph)`), and the run's sheet redrawn."""
    from nst_engine import load_image
    from nst_engine.color import match_colors

    for content, style in pairs:
        render = RESULTS / label / f"{_pair(content, style)}.png"
        if render.exists():
            match_colors(load_image(render), load_image(_content_file(content, work))).save(
                RESULTS / label / f"{_pair(content, style)}.corrected.png")
    figures = json.loads((RESULTS / f"figures-{label}.json").read_text())["pairs"]
    print(sheet(pairs, figures, label))


def _grid(rows, path: Path, height: int = 150) -> None:
    """Rows of (title, images, captions) as one sheet, each image fitted into its cell."""
    from PIL import Image, ImageDraw

    gap, caption, cell_w = 6, 16, int(height * 1.5)
    columns = max(len(cells) for _, cells, _ in rows)
    canvas = Image.new("RGB", (gap + columns * (cell_w + gap), len(rows) * (height + 2 * caption + gap) + gap),
                       "white")
    draw = ImageDraw.Draw(canvas)
    y = gap
    for title, cells, captions in rows:
        draw.text((gap, y), title, fill="black")
        for i, (cell, text) in enumerate(zip(cells, captions)):
            x = gap + i * (cell_w + gap)
            if cell is None:
                draw.text((x, y + caption + height + 2), text[:cell_w // 6], fill="black")
                continue
            scale = min(cell_w / cell.width, height / cell.height)
            img = cell.resize((max(1, round(cell.width * scale)), max(1, round(cell.height * scale))))
            canvas.paste(img, (x, y + caption))
            draw.text((x, y + caption + height + 2), text[:cell_w // 6], fill="black")  # 6 px a character
        y += height + 2 * caption + gap
    canvas.save(path, **({"quality": 90} if path.suffix == ".jpg" else {"optimize": True}))


# -- the sheet and the report -------------------------------------------------------------------

def sheet(pairs, figures: dict, label: str) -> Path:
    """One row per pair: photograph, painting, reference, ours, ours colour-corrected."""
    from PIL import Image, ImageDraw

    from nst_engine import load_image

    height, gap, caption = 150, 6, 16
    columns = ("photograph", "painting", "reference (pastiche 300)", f"ours ({label})", "ours, corrected")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for content, style in pairs:
            name = _pair(content, style)
            cells = [load_image(_content_file(content, Path(tmp))), _shown_painting(style)]
            for path in (RESULTS / "reference" / f"{name}.png", RESULTS / label / f"{name}.png",
                         RESULTS / label / f"{name}.corrected.png"):
                cells.append(load_image(path) if path.exists() else None)
            rows.append((name, cells))
    width = 5 * (int(height * 1.5) + gap) + gap
    canvas = Image.new("RGB", (width, caption + len(rows) * (height + caption + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for i, title in enumerate(columns):
        draw.text((gap + i * (int(height * 1.5) + gap), 2), title, fill="black")
    y = caption
    for name, cells in rows:
        fig = figures.get(name, {})
        faces = lambda f: f", faces {f['face_copied']:.1f}%" if "face_copied" in f else ""  # noqa: E731
        draw.text((gap, y), f"{name}: ours SSIM {fig.get('ssim', 0):.2f}, style {fig.get('style_relative', 0):.2f}"
                  + faces(fig)
                  + (f"; reference SSIM {fig['reference']['ssim']:.2f}, style {fig['reference']['style_relative']:.2f}"
                     + faces(fig["reference"]) if "reference" in fig else ""), fill="black")
        for i, cell in enumerate(cells):
            if cell is None:
                continue
            scale = min(int(height * 1.5) / cell.width, height / cell.height)  # fit the cell, up or down
            cell = cell.resize((max(1, round(cell.width * scale)), max(1, round(cell.height * scale))))
            canvas.paste(cell, (gap + i * (int(height * 1.5) + gap), y + caption))
        y += height + caption + gap
    # JPEG: eighteen rows of paintings are 5.7 MB as a PNG, 0.6 MB here, alike to the eye.
    path = DOCS / f"quality-sheet-{label}.jpg"
    canvas.save(path, quality=90)
    return path


def report(figures: dict, label: str, size: int, overrides: list[str]) -> None:
    lines = [f"\n## {label} at {size} px ({time.strftime('%Y-%m-%d')}, CPU flags: {_cpu_flags()})\n",
             f"Parameters: the defaults{' with ' + ', '.join(overrides) if overrides else ''}. "
             f"Contact sheet: `docs/quality-sheet-{label}.jpg`.\n",
             "| pair | seconds | SSIM | content dist. | style (rel.) | faces % | ref. seconds | ref. SSIM | ref. style "
             "| ref. faces % | targets: SSIM, style, no face, sooner |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, f in figures.items():
        ref = f.get("reference", {})
        lines.append(f"| {name} | {f['seconds']:.1f} | {f['ssim']:.3f} | {f['content_distance']:.3f} | "
                     f"{f['style_relative']:.3f} | {f.get('face_copied', '-')} | {ref.get('seconds', '-')} | "
                     f"{ref.get('ssim', '-')} | {ref.get('style_relative', '-')} | {ref.get('face_copied', '-')} | "
                     f"{_verdict(f)} |")
    judged = [(name, f) for name, f in figures.items() if "reference" in f]
    if judged:
        worst = min(judged, key=lambda nf: nf[1]["ssim"] - nf[1]["reference"]["ssim"])
        met = sum(_verdict(f).count("yes") == 4 for _, f in judged)
        lines.append(f"\nAll four targets met on {met} of {len(judged)} pairs with a reference. Worst structure "
                     f"against its reference: {worst[0]} (SSIM {worst[1]['ssim']:.3f} against "
                     f"{worst[1]['reference']['ssim']:.3f}).")
    doc = DOCS / "quality.md"
    if not doc.exists():
        doc.write_text("# Quality on a grid of pairs\n\nWritten by `make bench-quality` "
                       "(`bench/quality.py`; its docstring says what each figure means).\n")
    with doc.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
