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
    """TiledObjective with one pass an iteration after the first (the experiment; not shipped)."""
    import torch

    from nst_engine.losses import LossTerms, tv_loss_and_grad_
    from nst_engine.tiling import TiledObjective, _add_grams, _cut
    from nst_engine.vgg import LAYER_NAMES

    class OnePass(TiledObjective):
        upstream = None

        def __call__(self, image):
            loss = self.loss
            if self.upstream is None:  # the first call: the exact two passes, for its Gram matrices
                self.upstream = {}
                terms, grad = super().__call__(image)
                self._grams_at(image)
                return terms, grad
            style_layers = frozenset(loss.style_targets)
            grams: dict = {}
            content = image.new_zeros((), dtype=torch.float32)
            grad = torch.zeros_like(image)
            deepest = max(loss.layers, key=LAYER_NAMES.index)
            for tile in self.tiles:
                piece = _cut(image, tile).detach().requires_grad_(True)
                f = self.features(piece, loss.layers, tap=self._tap(tile, image, self.upstream))
                with torch.no_grad():
                    seen = {k: v.detach() for k, v in f.items()}
                    _add_grams(grams, seen, tile, image, style_layers)
                    content = content + self._content(seen, tile, image)
                f[deepest].backward(torch.zeros_like(f[deepest]))
                grad[:, :, tile.pad_y[0]:tile.pad_y[1], tile.pad_x[0]:tile.pad_x[1]] += piece.grad
            style = self._upstream_from(grams)
            tv = (tv_loss_and_grad_(image.detach(), grad, loss.gamma) if loss.gamma
                  else image.new_zeros((), dtype=torch.float32))
            total = loss.alpha * content + loss.beta * style + loss.gamma * tv.detach()
            return LossTerms(content.detach(), style.detach(), tv.detach(), total.detach()), grad

        def _grams_at(self, image):
            grams: dict = {}
            with torch.no_grad():
                for tile in self.tiles:
                    _add_grams(grams, self.features(_cut(image, tile), self.loss.layers), tile, image,
                               frozenset(self.loss.style_targets))
            self._upstream_from(grams)

        def _upstream_from(self, grams):
            """This iteration's style term; dL/dG from these Gram matrices for the next one."""
            loss = self.loss
            self.upstream = {k: loss.beta * loss.style_scale[k] * 0.5 * (grams[k] - t)
                             for k, t in loss.style_targets.items()}
            return sum((loss.style_scale[k] * 0.25 * (grams[k] - t).pow(2).sum()
                        for k, t in loss.style_targets.items()), torch.zeros((), dtype=torch.float32))

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
