"""A job's outputs optimized as one batch against one after another (#29 part 3), side by
side in one process: seconds, pictures a minute, the ratio, and every output's quality
figures (`quality.Evaluator`) both ways, so a speed gain that gives pictures back shows.
`--jobs`: several jobs instead (one photograph, each painting of the grid its own job, one
output each, as a folder of frames or one photograph in several manners is), one after
another against one batch (`stylize_many`).

    python bench/batch.py                       # 512 px defaults, 4 outputs, Tübingen x The Starry Night
    python bench/batch.py --sizes 128 256 --iterations 20 --no-figures
    python bench/batch.py --force               # batch even where planning.batch_pays says it does not pay
    python bench/batch.py --jobs --pair astronaut -   # the astronaut with every painting (a portrait's among them)

Runs alternate (one after another, then batched, `--repeat` times) so that a busy host's
drift falls on both. On the CPU the engine batches where `planning.batch_pays` says a batch
is faster; `--force` measures the rule itself. The CPU's flags head the output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import quality  # noqa: E402  (the grid's pairs and figures)


def run(size: int, outputs: int, iterations: int | None, pair: tuple[str, str], repeat: int, figures: bool,
        work: Path) -> dict:
    from nst_engine import Params, load_image, stylize

    content, style = pair
    photo, painting = load_image(quality._content_file(content, work)), load_image(quality._style_file(style))
    params = Params(size=size, outputs=outputs, **({"iterations": iterations} if iterations else {}))
    stylize(photo, [painting], params=Params(size=128, iterations=2, scales=(1.0,)))  # warm, as the service is
    seconds: dict[str, list[float]] = {"alone": [], "batched": []}
    results = {}
    for _ in range(repeat):
        for way, cap in (("alone", 1), ("batched", None)):
            started = time.perf_counter()
            results[way] = stylize(photo, [painting], params=params, batch=cap)
            seconds[way].append(time.perf_counter() - started)
    row = {"size": size, "outputs": outputs, "iterations": params.iterations, "pair": f"{content}-{style}",
           "batch": results["batched"].record["memory"]["batch"],
           "alone_s": [round(s, 2) for s in seconds["alone"]], "batched_s": [round(s, 2) for s in seconds["batched"]],
           "precision": results["batched"].record["precision"]}
    best = {way: min(s) for way, s in seconds.items()}
    row["ratio"] = round(best["alone"] / best["batched"], 3)
    row["pictures_per_minute"] = {way: round(60 * outputs / s, 2) for way, s in best.items()}
    print(f"{size:>5} px  {outputs} outputs x {params.iterations} it  batch {row['batch']}  "
          f"one after another {best['alone']:7.2f} s  batched {best['batched']:7.2f} s  "
          f"{row['ratio']:.2f}x  ({row['pictures_per_minute']['alone']:.2f} -> "
          f"{row['pictures_per_minute']['batched']:.2f} pictures a minute)", flush=True)
    if figures:
        evaluator = quality.Evaluator()
        row["figures"] = []
        for k, (a, b) in enumerate(zip(results["alone"].outputs, results["batched"].outputs), start=1):
            fa = evaluator.figures(a.stylized, photo, painting, style)
            fb = evaluator.figures(b.stylized, photo, painting, style)
            row["figures"].append({"output": k, "alone": fa, "batched": fb})
            print(f"      output {k} ({a.variant}): SSIM {fa['ssim']:.3f} / {fb['ssim']:.3f}  "
                  f"style {fa['style_relative']:.3f} / {fb['style_relative']:.3f}  "
                  f"faces {fa['face_copied']:.2f} / {fb['face_copied']:.2f} %  (alone / batched)", flush=True)
            a.stylized.save(work / f"batch-{size}-{k}-alone.png")
            b.stylized.save(work / f"batch-{size}-{k}-batched.png")
    return row


def run_jobs(size: int, iterations: int | None, photo_name: str, repeat: int, figures: bool, work: Path) -> dict:
    """Each of the grid's paintings its own job on one photograph: one after another, then as
    one batch of jobs."""
    from nst_engine import Params, Request, load_image, stylize, stylize_many

    photo = load_image(quality._content_file(photo_name, work))
    paintings = {name: load_image(quality._style_file(name)) for name in quality.STYLES
                 if quality._style_file(name).exists()}
    params = Params(size=size, **({"iterations": iterations} if iterations else {}))
    requests = [Request(photo, [painting], params) for painting in paintings.values()]
    stylize(photo, list(paintings.values())[:1], params=Params(size=128, iterations=2, scales=(1.0,)))  # warm
    seconds: dict[str, list[float]] = {"alone": [], "batched": []}
    results: dict[str, list] = {}
    for _ in range(repeat):
        started = time.perf_counter()
        results["alone"] = [stylize(photo, r.styles, params=params) for r in requests]
        seconds["alone"].append(time.perf_counter() - started)
        started = time.perf_counter()
        results["batched"] = stylize_many(requests)
        seconds["batched"].append(time.perf_counter() - started)
    jobs = len(requests)
    row = {"size": size, "jobs": jobs, "iterations": params.iterations, "photo": photo_name,
           "paintings": list(paintings), "batched_jobs": [r.record["memory"]["jobs"] for r in results["batched"]],
           "alone_s": [round(s, 2) for s in seconds["alone"]], "batched_s": [round(s, 2) for s in seconds["batched"]],
           "precision": results["batched"][0].record["precision"]}
    best = {way: min(s) for way, s in seconds.items()}
    row["ratio"] = round(best["alone"] / best["batched"], 3)
    print(f"{size:>5} px  {jobs} jobs x {params.iterations} it  in batches of {row['batched_jobs']}  "
          f"one after another {best['alone']:7.2f} s  batched {best['batched']:7.2f} s  {row['ratio']:.2f}x", flush=True)
    if figures:
        evaluator = quality.Evaluator()
        row["figures"] = []
        for name, a, b in zip(paintings, results["alone"], results["batched"]):
            fa = evaluator.figures(a.outputs[0].stylized, photo, paintings[name], name)
            fb = evaluator.figures(b.outputs[0].stylized, photo, paintings[name], name)
            row["figures"].append({"painting": name, "alone": fa, "batched": fb})
            print(f"      {photo_name} x {name}: SSIM {fa['ssim']:.3f} / {fb['ssim']:.3f}  "
                  f"style {fa['style_relative']:.3f} / {fb['style_relative']:.3f}  "
                  f"faces {fa['face_copied']:.2f} / {fb['face_copied']:.2f} %  (alone / batched)", flush=True)
            a.outputs[0].stylized.save(work / f"jobs-{size}-{name}-alone.png")
            b.outputs[0].stylized.save(work / f"jobs-{size}-{name}-batched.png")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512])
    ap.add_argument("--outputs", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=None, help="default: the job default")
    ap.add_argument("--pair", nargs=2, default=["tubingen", "starry_night"], metavar=("PHOTO", "PAINTING"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-figures", action="store_true", help="times only")
    ap.add_argument("--force", action="store_true", help="batch where planning.batch_pays says it does not pay")
    ap.add_argument("--jobs", action="store_true",
                    help="each painting its own job on the photograph of --pair (its painting unused)")
    ap.add_argument("--out", type=Path, default=quality.RESULTS / "batch", help="pictures and batch.json")
    args = ap.parse_args()

    import torch

    from nst_engine import planning

    if args.force:
        planning.batch_pays = lambda *_a, **_k: True
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# batch against one after another: torch {torch.__version__}, cpu flags: {quality._cpu_flags()}",
          flush=True)
    if args.jobs:
        rows = [run_jobs(size, args.iterations, args.pair[0], args.repeat, not args.no_figures, args.out)
                for size in args.sizes]
    else:
        rows = [run(size, args.outputs, args.iterations, tuple(args.pair), args.repeat, not args.no_figures, args.out)
                for size in args.sizes]
    (args.out / ("jobs.json" if args.jobs else "batch.json")).write_text(json.dumps(
        {"cpu_flags": quality._cpu_flags(), "force": args.force, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
