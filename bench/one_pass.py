"""The print issue's one-pass variant of the tiled objective, measured before it is offered.

The exact tiled objective (`nst_engine.tiling.TiledObjective`) makes two passes over the
tiles an iteration: the Gram matrices first, without gradients, then each tile's gradient
with dL/dG fixed from them. The one-pass variant makes only the second pass, with dL/dG
from the previous iteration's Gram matrices, and accumulates this iteration's on the way:
about half the cost, but a gradient one step stale for the style term.

Measured where it would be used, the refinement of a print's scale: 10 iterations at 1024 px
from the 512 px default picture, in forced tiles of 512 px (4 tiles), on four pairs; each
variant's loss, structure (SSIM to the photograph) and style figures (bench/quality.py's
evaluator), and seconds per iteration. Writes bench/results/one-pass/figures.json and a
sheet (exact | one-pass) of each pair.

    .venv/bin/python bench/one_pass.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import quality  # noqa: E402  (inputs, the evaluator, the CPU flags)

PAIRS = [("astronaut", "the_scream"), ("tubingen", "shipwreck"), ("chelsea", "starry_night"),
         ("coffee", "the_scream")]
OUT = ROOT / "bench" / "results" / "one-pass"


def one_pass_objective():
    """TiledObjective with one pass an iteration (the experiment; not shipped): its gradient
    pass uses dL/dG from the Gram matrices the previous call accumulated; the first call
    computes them first, so its gradient is exact."""
    import torch

    from nst_engine.tiling import TiledObjective, _add_grams

    class OnePass(TiledObjective):
        upstream = None

        def __call__(self, image):
            if self.upstream is None:
                _, self.upstream = self._style(self._grams_and_content(image)[0], image)
            grams: dict = {}
            content = [image.new_zeros((), dtype=torch.float32)]

            def seen(tile, f):
                with torch.no_grad():
                    _add_grams(grams, f, tile, image, frozenset(self.loss.style_targets))
                    content[0] = content[0] + self._content(f, tile, image)

            grad = self._gradient(image, self.upstream, seen)
            style, self.upstream = self._style(grams, image)
            return self._terms(image, content[0], style, grad)

    return OnePass


def main() -> int:
    import nst_engine.optimize as optimize
    from PIL import Image, ImageDraw

    from nst_engine import Params, load_image, stylize

    OUT.mkdir(parents=True, exist_ok=True)
    exact_objective, one_pass = optimize.TiledObjective, one_pass_objective()
    evaluator = quality.Evaluator()
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_flags": quality._cpu_flags(),
                     "cores": os.cpu_count(), "size": 1024, "tile": 512, "iterations": 10, "pairs": {}}
    print(f"# one-pass tiles against exact, 1024 px from the 512 px default, tiles of 512 "
          f"({os.cpu_count()} cores; {results['cpu_flags']})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for content, style in PAIRS:
            name = f"{content}-{style}"
            photo, painting = load_image(quality._content_file(content, work)), load_image(quality._style_file(style))
            base = stylize(photo, [painting], params=Params(size=512)).outputs[0].stylized
            base_path = work / f"{name}-512.png"
            base.save(base_path)
            refine = Params(size=1024, iterations=10, schedule="scales", scales=(1.0,), init=str(base_path),
                            init_noise=0.0, color_correction=False)
            row = {}
            pictures = []
            for label, objective in (("exact", exact_objective), ("one-pass", one_pass)):
                optimize.TiledObjective = objective
                try:
                    result = stylize(photo, [painting], params=refine, init_image=base, tile=512)
                finally:
                    optimize.TiledObjective = exact_objective
                out = result.outputs[0].stylized
                pictures.append(out)
                row[label] = {"first": result.history[0]["total"], "last": result.history[-1]["total"],
                              "seconds_per_iteration": result.record["timings"]["seconds_per_iteration"],
                              "tiles": result.record["memory"]["scales"][0]["tiles"],
                              **evaluator.figures(out, photo, painting)}
                print(f"{name:<24} {label:<8} loss {row[label]['first']:.4f} -> {row[label]['last']:.4f}, "
                      f"SSIM {row[label]['ssim']}, style {row[label]['style_relative']}, "
                      f"{row[label]['seconds_per_iteration']}", flush=True)
            results["pairs"][name] = row
            rows.append((name, pictures))
    (OUT / "figures.json").write_text(json.dumps(results, indent=2) + "\n")
    w, h = 512, 384
    sheet = Image.new("RGB", (2 * w + 24, len(rows) * (h + 28) + 8), "white")
    d = ImageDraw.Draw(sheet)
    for i, (name, pictures) in enumerate(rows):
        y = 8 + i * (h + 28)
        for j, (label, img) in enumerate(zip(("exact", "one-pass"), pictures)):
            small = img.copy()
            small.thumbnail((w, h))
            sheet.paste(small, (8 + j * (w + 8), y + 20))
            d.text((8 + j * (w + 8), y + 4), f"{name}, {label}", fill="black")
    sheet.save(OUT / "sheet.jpg", quality=85)
    print(f"figures: {(OUT / 'figures.json').relative_to(ROOT)}, sheet: {(OUT / 'sheet.jpg').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
