"""How sparse a painting's deep channels are, and whether the sparse ones sit in its face (#26).

For each painting at 512 px and each of relu4_1 and relu5_1: every channel's share of its
energy in its 5 % strongest positions; how many channels (and how much of the layer's
energy) pass 0.3, 0.5 and 0.7; and for a painting with a marked face (copying.FACES), the
mean share of a channel's energy inside the face, for sparse (> 0.5) channels and the rest.
docs/quality.md ("A third way") holds the figures. Usage: .venv/bin/python bench/sparsity.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import copying  # noqa: E402
from quality import Evaluator, _style_file  # noqa: E402

from nst_engine.images import fit_long_edge, load_image, to_tensor  # noqa: E402

PAINTINGS = ("picasso_selfport1907", "starry_night", "the_scream", "shipwreck")
LAYERS = ("relu4_1", "relu5_1")


def main() -> None:
    evaluator = Evaluator()
    for name in PAINTINGS:
        try:
            painting = fit_long_edge(load_image(_style_file(name)), 512)
        except FileNotFoundError:
            print(f"{name}: not found (the portrait is read from ../shared/images)")
            continue
        with torch.no_grad():
            features = evaluator.net(to_tensor(painting), set(LAYERS))
        for layer in LAYERS:
            x = features[layer][0].float().flatten(1)  # channels x positions
            energy = x.pow(2).sum(1)
            top = max(1, int(0.05 * x.shape[1]))
            share = x.pow(2).topk(top, dim=1).values.sum(1) / energy.clamp_min(1e-12)
            live = energy > 0
            counts = " ".join(
                f">{t}: {int((share > t).sum())} ch, {float(energy[share > t].sum() / energy.sum()):.2f} of energy"
                for t in (0.3, 0.5, 0.7)
            )
            line = f"{name:22s} {layer} median {float(share[live].median()):.2f}  {counts}"
            box = copying.FACES.get(name)
            if box:
                inside = copying.face_positions(features[layer], box)
                in_face = x[:, inside].pow(2).sum(1) / energy.clamp_min(1e-12)
                sparse = share > 0.5
                line += (f"  | face {float(inside.float().mean()):.2f} of the area; energy inside it: "
                         f"sparse {float(in_face[sparse].mean()):.2f}, rest {float(in_face[~sparse & live].mean()):.2f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
