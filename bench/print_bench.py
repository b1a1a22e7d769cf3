"""`make bench-print`: print sizes on this machine, in bounded memory (issue #16's targets).

Sections (each a fresh process, its peak RSS read from /proc while it runs):
1. tiled against whole at the same size and precision: seconds per iteration (the
   difference of a 6- and a 2-iteration run), and the tiled rate as a share of the whole;
2. the whole default job at 4096 px (coarse to fine) within a 5.2 GiB budget: time, peak RSS,
   its plan, and a 100% crop beside a 1024 px run of the same pair (docs/print-crop.png);
3. 8192x6144's final scale alone, 2 iterations within a 12 GB budget: peak RSS and seconds
   per iteration;
4. pastiche at 2048 and 4096 px, 3 steps, under a 20 GiB address-space limit: its peak or
   how it fails;
5. the compact L-BFGS (`nst_engine/lbfgs.py`), which the planner puts in torch's place where
   that does not fit (on a GPU with 8 GiB, 8192 px): 2048 px in a budget only it fits, and in
   one torch's L-BFGS fits with three pairs, 4 iterations each: peak RSS against the plan,
   seconds per iteration and the loss reached.

Prints the figures with the CPU's flags and writes them as JSON to bench/results/print/
(docs/benchmarks.md "print sizes" summarizes them). `--sections` runs some of them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench  # noqa: E402  (the same pair, interpreter and peak-RSS reader)
import quality  # noqa: E402  (the CPU flags line every figure carries)

PY = bench.PY
CONTENT, STYLE = bench.CONTENT, bench.STYLE

RUN = """
import json, sys, time
from nst_engine import Params, load_image, stylize
args = json.loads(sys.argv[1])
params = Params.from_mapping(args["params"])
started = time.perf_counter()
result = stylize(load_image(args["content"]), [load_image(args["style"])], params=params,
                 memory_budget=args.get("budget"), tile=args.get("tile"))
seconds = time.perf_counter() - started
if args.get("output"):
    result.outputs[0].stylized.save(args["output"])
print("RESULT " + json.dumps({"seconds": seconds, "timings": result.record["timings"],
                              "memory": result.record["memory"], "final_loss": result.history[-1]["total"]}))
"""


def measure(args: dict, *, limit_bytes: int | None = None) -> dict:
    """Run one stylization in a fresh process: its result line and its peak RSS."""
    cmd = [PY, "-c", RUN, json.dumps(args)]

    def limit() -> None:
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=limit)
        peak = _watch(proc)
        out.seek(0)
        text = out.read()
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"failed": True, "returncode": proc.returncode, "peak_rss_mib": peak, "tail": text[-600:]}
    return {**json.loads(lines[-1][7:]), "peak_rss_mib": peak}


def _watch(proc: subprocess.Popen) -> float:
    return bench.watch_peak_mib(proc, every=0.05)


def per_iteration(base: dict, short: int = 2, long_: int = 6, **extra) -> tuple[float, dict]:
    runs = []
    for n in (short, long_):
        args = {**base, **extra}
        args["params"] = {**base["params"], "iterations": n}
        runs.append(measure(args))
    if any(r.get("failed") for r in runs):
        return float("nan"), runs[-1]
    return (runs[1]["seconds"] - runs[0]["seconds"]) / (long_ - short), runs[1]


def section_throughput(size: int, tiles: list[int]) -> dict:
    print(f"\n## 1. tiled against whole at {size} px (seconds per iteration; one scale)", flush=True)
    base = {"content": str(CONTENT), "style": str(STYLE),
            "params": {"size": size, "scales": [1.0], "schedule": "scales", "color_correction": False}}
    whole, record = per_iteration(base)
    rows = {"whole": {"seconds_per_iteration": whole, "peak_rss_mib": record.get("peak_rss_mib")}}
    print(f"  whole        {whole:7.3f} s/it   peak {record.get('peak_rss_mib', 0):7.0f} MiB", flush=True)
    for tile in tiles:
        t, record = per_iteration(base, tile=tile)
        plan = record.get("memory", {}).get("scales", [{}])[0]
        rows[f"tile {tile}"] = {"seconds_per_iteration": t, "share_of_whole_rate": whole / t,
                                "tiles": plan.get("tiles"), "peak_rss_mib": record.get("peak_rss_mib")}
        print(f"  tile {tile:<6}  {t:7.3f} s/it   {plan.get('tiles')} tiles   "
              f"{100 * whole / t:5.1f}% of the whole rate   peak {record.get('peak_rss_mib', 0):7.0f} MiB",
              flush=True)
    return rows


def section_job(size: int, out_dir: Path, budget_gib: float) -> dict:
    print(f"\n## 2. the default job at {size} px (coarse to fine) in a {budget_gib} GiB budget, and a 1024 px "
          "run of the pair", flush=True)
    big, small = out_dir / f"print-{size}.png", out_dir / "print-1024.png"
    job = measure({"content": str(CONTENT), "style": str(STYLE), "params": {"size": size}, "output": str(big),
                   "budget": int(budget_gib * 2**30)})
    print(f"  {size} px: {job.get('seconds', float('nan')):7.1f} s, peak {job.get('peak_rss_mib', 0):7.0f} MiB, "
          f"plan {json.dumps(job.get('memory'))}", flush=True)
    ref = measure({"content": str(CONTENT), "style": str(STYLE), "params": {"size": 1024}, "output": str(small)})
    print(f"  1024 px: {ref.get('seconds', float('nan')):7.1f} s", flush=True)
    if big.exists() and small.exists():
        from PIL import Image

        crop(Image.open(big), Image.open(small), ROOT / "docs" / "print-crop.png")
    return {"print": job, "1024": ref}


def crop(a, b, path: Path, names: tuple[str, str] = ("", ""), at: tuple[float, float] = (0.55, 0.15)) -> None:
    """The same region of two PIL images: at 100% from the print `a`, and from the 1024 px run
    `b` enlarged to match (`names` say which run each side is, where the sizes alone do not;
    `at` is the region's top-left corner as fractions of the picture)."""
    from PIL import Image, ImageDraw

    w, h = 768, 576
    # The default: the towers and roofs of Tübingen at 4096 px, where brushwork and structure both show.
    x0, y0 = int(a.width * at[0]), int(a.height * at[1])
    left = a.crop((x0, y0, x0 + w, y0 + h))
    f = b.width / a.width
    right = b.crop((round(x0 * f), round(y0 * f), round((x0 + w) * f), round((y0 + h) * f))).resize(
        (w, h), Image.Resampling.LANCZOS)
    sheet = Image.new("RGB", (2 * w + 24, h + 40), "white")
    sheet.paste(left, (8, 32))
    sheet.paste(right, (w + 16, 32))
    d = ImageDraw.Draw(sheet)
    d.text((8, 8), f"{a.width} px job{names[0]}, 100% crop", fill="black")
    how = "same region enlarged" if b.width != a.width else "same region, 100%"
    d.text((w + 16, 8), f"{b.width} px job{names[1]}, {how}", fill="black")
    sheet.save(path, optimize=True)


def section_large(size: int, budget_gib: float) -> dict:
    print(f"\n## 3. {size} px, its final scale alone (2 iterations), budget {budget_gib} GiB", flush=True)
    job = measure({"content": str(CONTENT), "style": str(STYLE), "budget": int(budget_gib * 2**30),
                   "params": {"size": size, "iterations": 2, "schedule": "scales", "scales": [1.0],
                              "color_correction": False}})
    spi = job.get("timings", {}).get("seconds_per_iteration")
    print(f"  peak {job.get('peak_rss_mib', 0):7.0f} MiB, seconds per iteration {spi}, "
          f"plan {json.dumps(job.get('memory'))}" + (f"  FAILED: {job.get('tail')}" if job.get("failed") else ""),
          flush=True)
    return job


def section_pastiche(sizes: list[int], limit_gib: int) -> dict:
    print(f"\n## 4. pastiche, 3 steps, under a {limit_gib} GiB address-space limit", flush=True)
    rows = {}
    for size in sizes:
        cmd = bench.pastiche_cmd(CONTENT, STYLE, Path("/tmp/pastiche-print.png"), size, 3)

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_gib * 2**30, limit_gib * 2**30))

        started = time.perf_counter()
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=limit)
            peak = _watch(proc)
            out.seek(0)
            tail = out.read()[-300:]
        row = {"peak_rss_mib": peak, "seconds": time.perf_counter() - started, "returncode": proc.returncode}
        if proc.returncode:
            row["failure"] = tail.strip().splitlines()[-1] if tail.strip() else "killed"
        rows[str(size)] = row
        print(f"  {size} px: " + (f"ran, peak {peak:.0f} MiB, {row['seconds']:.0f} s" if not proc.returncode
                                  else f"failed after {row['seconds']:.0f} s at {peak:.0f} MiB: {row['failure']}"),
              flush=True)
    return rows


def section_compact(size: int) -> dict:
    print(f"\n## 5. the compact L-BFGS at {size} px, 4 iterations: peak against the plan", flush=True)
    rows = {}
    for budget_gib in (1.4, 1.75):  # compact L-BFGS in 208 px tiles; torch's in 304 px tiles
        budget = int(budget_gib * 2**30)
        args = {"content": str(CONTENT), "style": str(STYLE), "budget": budget,
                "params": {"size": size, "iterations": 4, "schedule": "scales", "scales": [1.0],
                           "color_correction": False}}
        job = measure(args)
        plan = (job.get("memory") or {}).get("scales", [{}])[-1]
        row = {"budget_gib": budget_gib, "plan": plan, "peak_rss_mib": job.get("peak_rss_mib"),
               "seconds_per_iteration": job.get("timings", {}).get("seconds_per_iteration"),
               "final_loss": job.get("final_loss")}
        rows[f"{budget_gib} GiB"] = row
        print(f"  budget {budget_gib} GiB: {plan.get('optimizer')} history {plan.get('history')}, "
              f"{plan.get('tiles')} tiles of {plan.get('tile')}, planned {plan.get('estimated_peak_mib')} MiB, "
              f"peak {job.get('peak_rss_mib', 0):.0f} MiB, {row['seconds_per_iteration']} s/it, "
              f"loss {row['final_loss']}" + (f"  FAILED: {job.get('tail')}" if job.get("failed") else ""), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="throughput,job,large,pastiche,compact")
    ap.add_argument("--job-size", type=int, default=4096)
    ap.add_argument("--large-size", type=int, default=8192)
    args = ap.parse_args()
    sections = args.sections.split(",")
    flags = quality._cpu_flags()
    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_flags": flags, "cores": os.cpu_count()}
    out_dir = ROOT / "bench" / "results" / "print"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"# print sizes, CPU ({os.cpu_count()} cores; {flags})", flush=True)
    if "throughput" in sections:
        results["throughput"] = section_throughput(2048, [1024, 512])
    if "job" in sections:
        results["job"] = section_job(args.job_size, out_dir, 5.2)  # GiB: 5.6 GB, under the 6 GB target with room
    if "large" in sections:
        results["large"] = section_large(args.large_size, 10.5)  # GiB: 11.3 GB, under the 12 GB target with room
    if "pastiche" in sections:
        results["pastiche"] = section_pastiche([2048, 4096], 20)
    if "compact" in sections:
        results["compact"] = section_compact(2048)
    path = out_dir / f"print-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
