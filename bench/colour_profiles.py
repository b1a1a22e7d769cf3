"""Photographs with embedded colour profiles through the engine (nst_engine.images.to_srgb).

Each photograph is stored in a wide-gamut space (Adobe RGB or Display P3, built by
tests/iccprofiles.py) and run three ways against The Scream: the sRGB original, the tagged file
(converted to sRGB on reading), and the tagged numbers read as sRGB (what the service did before
it read profiles); an Adobe RGB one also as a camera set to Adobe RGB stores it, without a
profile, its EXIF declaring the space (ColorSpace uncalibrated, interoperability index "R03").
Prints the colour-corrected output's mean saturation (HSV) of each and writes the first three
corrected outputs side by side, a row a photograph.

    python bench/colour_profiles.py [--out sheet.png] [--size 256] [--iterations 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

WAYS = ("sRGB original", "tagged, converted", "tagged numbers read as sRGB", "declared in EXIF only")


def main() -> int:
    import io

    import numpy as np
    from PIL import Image, ImageCms
    from skimage import data

    import iccprofiles
    from nst_engine import Params, load_image, stylize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("colour-profiles.png"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()

    adobe = ("Adobe RGB", iccprofiles.matrix_profile(iccprofiles.ADOBE_RGB, "Adobe RGB (1998) (test)"))
    p3 = ("Display P3", iccprofiles.matrix_profile(iccprofiles.DISPLAY_P3, "Display P3 (test)"))
    photos = [("tubingen", Image.open(ROOT / "samples" / "tubingen.jpg").convert("RGB"), adobe),
              ("astronaut", Image.fromarray(data.astronaut()), p3), ("coffee", Image.fromarray(data.coffee()), adobe)]
    painting = load_image(ROOT / "samples" / "the_scream.jpg")
    params = Params(size=args.size, iterations=args.iterations)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, photo, (space, icc) in photos:
            photo.thumbnail((2 * args.size, 2 * args.size))
            numbers = ImageCms.profileToProfile(photo, srgb, ImageCms.ImageCmsProfile(io.BytesIO(icc)), outputMode="RGB")
            tagged, untagged = Path(tmp) / "tagged.png", Path(tmp) / "untagged.png"
            numbers.save(tagged, icc_profile=icc)
            numbers.info.pop("icc_profile", None)  # ImageCms labels its output with the target profile
            numbers.save(untagged)
            inputs = [photo, load_image(tagged), load_image(untagged)]
            if space == "Adobe RGB":
                declared = Path(tmp) / "declared.png"
                exif = Image.Exif()
                exif[0x010F] = "Test camera"  # a Make: Pillow writes no EXIF of nested blocks only
                exif.get_ifd(0x8769)[0xA001] = 0xFFFF  # ColorSpace: uncalibrated
                exif.get_ifd(0x8769)[0xA005] = {1: "R03"}  # the DCF option file: Adobe RGB
                numbers.save(declared, exif=exif)
                inputs.append(load_image(declared))
            outputs = [stylize(img, [painting], params=params).outputs[0].corrected for img in inputs]
            saturation = [np.asarray(out.convert("HSV"), dtype=float)[..., 1].mean() for out in outputs]
            print(f"{name} ({space}) x The Scream: the corrected output's mean saturation: "
                  + ", ".join(f"{way} {s:.1f}" for way, s in zip(WAYS, saturation)))
            rows.append(outputs)
    rows = [row[:3] for row in rows]
    width = max(o.width for r in rows for o in r)
    sheet = Image.new("RGB", (3 * width + 20, sum(r[0].height + 10 for r in rows) - 10), "white")
    top = 0
    for row in rows:
        for i, out in enumerate(row):
            sheet.paste(out, (i * (width + 10), top))
        top += row[0].height + 10
    sheet.save(args.out)
    print(f"columns: {', '.join(WAYS[:3])} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
