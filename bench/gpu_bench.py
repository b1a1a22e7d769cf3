"""The benchmark's GPU sections, in one run that fits a short lease (`bench/gpu.sh` calls it).

Figures, each against pastiche on the same GPU in the same run where there is a
reference: seconds per iteration at 512, 1024 and 2048 px and each side's peak
GPU memory; our throughput against the measured bf16 convolution peak at 2048 px;
time to pastiche's 300-step quality at 512 px; the default 512 px job's time;
the largest size that runs, on the whole card and within 8 GiB; the whole default
8192 px job within 8 GiB beside the same job on the whole card, with 100% crops.

`--smoke` runs every section at toy sizes on whatever device there is, so the
script itself is tested on a CPU before any GPU time is spent on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench  # noqa: E402  (the CPU benchmark's helpers: same pair, same pastiche command line)


class Budget:
    """Sections start only while time is left, so the whole run ends inside the lease."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu.json and comparison.png")
    ap.add_argument("--budget-s", type=float, default=300.0, help="stop starting sections after this long")
    ap.add_argument("--sections", default="", help="comma-separated names of the sections to run (default: all)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on any device (tests this script)")
    args = ap.parse_args()

    import torch

    from nst_engine.device import describe, pick_device

    device = pick_device("auto")
    if device.type != "cuda" and not args.smoke:
        print("no CUDA GPU here: nothing to measure (use --smoke to test this script on the CPU)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    results: dict = {"device": describe(device), "torch": torch.__version__, "smoke": args.smoke,
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        results["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                          "multiprocessors": props.multi_processor_count}
    print(f"# nst GPU benchmark: {results['device']}, torch {torch.__version__}\n", flush=True)

    sizes = [128, 192] if args.smoke else [512, 1024, 2048]
    sections = [
        ("speed", lambda: speed(device, sizes, args.smoke)),
        ("throughput", lambda: throughput(device, results.get("speed", {}), sizes[-1])),
        ("default_job", lambda: default_job(device, args.smoke)),
        ("batch", lambda: batch(results.get("speed", {}), args.smoke)),
        ("pipeline", lambda: pipeline_queue(args.smoke)),
        ("time_to_quality", lambda: quality(device, args.out, args.smoke)),
        ("largest", lambda: largest(device, args.smoke, budget)),
        ("largest_tiled", lambda: largest_tiled(device, args.smoke, budget)),
        ("print_job", lambda: print_job(device, args.out, args.smoke)),
        ("profile", lambda: profile(device, args.out, args.smoke)),
    ]
    if args.sections:
        sections = [s for s in sections if s[0] in args.sections.split(",")]
    for name, run in sections:
        if budget.left() < 20:
            results[name] = {"skipped": "out of time in this lease"}
            print(f"\n## {name}: skipped, out of time", flush=True)
            continue
        try:
            results[name] = run()
        except Exception as e:  # one broken section must not cost the others' figures
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"\n## {name}: FAILED {type(e).__name__}: {e}", flush=True)
        (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    results["goals"] = goals(results)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n## goals (H100 class)")
    for row in results["goals"]:
        print(f"{row['goal']:<48} {row['verdict']:<8} {row['figure']}")
    return 0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_pastiche(size: int, steps: int, device) -> tuple[float, float]:
    """Seconds per L-BFGS step of pastiche, in this process, and its peak GPU memory in MiB.

    In-process, timed between synchronizations after two warm-up steps: a subprocess per run
    spent most of the lease on Python, torch and CUDA start-up, and differences of whole runs
    were noise at 512 px (one came out negative).
    """
    import torch
    from pastiche import pastiche as ref

    args = ref._parse_args(["pastiche", "--content", str(bench.CONTENT), "--styles", str(bench.STYLE),
                            "--output", "unused.png", "--size", str(size), "--device", device.type, "--seed", "0"])
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    artist = ref.PasticheArtist(
        args.content, args.styles, pooling=args.pooling, optimizer=args.optimizer, device=args.device,
        random_init=args.random_init, init=args.init, preserve_color=args.preserve_color,
        content_layers=args.content_layers, style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        content_weight=args.content_weight, style_weights=args.style_weights, tv_weight=args.tv_weight,
        size_pixels=args.size_pixels, size=args.size, style_size_pixels=args.style_size_pixels,
        style_size=args.style_size)
    for _ in range(2):
        artist.draw()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        artist.draw()
    _sync(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    del artist
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return seconds, peak


def ours(size: int, steps: int, device, memory_budget: int | None = None, **overrides) -> tuple[float, dict]:
    from nst_engine import Params, load_image, stylize

    params = Params(size=size, iterations=steps, scales=(1.0,), **overrides)
    content, style = load_image(bench.CONTENT), load_image(bench.STYLE)
    _sync(device)
    started = time.perf_counter()
    result = stylize(content, [style], params=params, memory_budget=memory_budget)
    _sync(device)
    return time.perf_counter() - started, result.record


def speed(device, sizes, smoke: bool) -> dict:
    """Per-iteration seconds as the difference of a long and a short run (start-up cancels out)."""
    print("## 1. seconds per L-BFGS iteration (pastiche: 20 timed steps after 2; ours: difference of a 5- and a 25-step run)", flush=True)
    print(f"{'size':>6} {'pastiche':>10} {'ours fp32':>10} {'ours bf16':>10} {'ratio bf16':>11} "
          f"{'peak MiB: pastiche':>19} {'ours':>7}", flush=True)
    short, long_ = (2, 4) if smoke else (5, 25)
    ours(128, 2, device)  # warm: the service keeps the network loaded too
    table = {}
    for size in sizes:
        ref, fp32, auto, ref_peak, our_peak = [], [], [], [], []
        for _ in range(1 if smoke or size > 512 else 2):
            per_step, peak = run_pastiche(size, long_ - short, device)
            ref.append(per_step)
            ref_peak.append(peak)
            fp32.append((ours(size, long_, device, precision="fp32")[0]
                         - ours(size, short, device, precision="fp32")[0]) / (long_ - short))
            ta, record = ours(size, long_, device)
            auto.append((ta - ours(size, short, device)[0]) / (long_ - short))
            our_peak.append(record.get("gpu_peak_memory_mib", float("nan")))
        row = {"pastiche": statistics.median(ref), "ours_fp32": statistics.median(fp32),
               "ours_auto": statistics.median(auto), "pastiche_peak_mib": max(ref_peak),
               "ours_peak_mib": max(our_peak)}
        row["ratio_auto"] = row["pastiche"] / row["ours_auto"]
        row["ratio_fp32"] = row["pastiche"] / row["ours_fp32"]
        table[str(size)] = row
        print(f"{size:>6} {row['pastiche']:>10.4f} {row['ours_fp32']:>10.4f} {row['ours_auto']:>10.4f} "
              f"{row['ratio_auto']:>10.2f}x {row['pastiche_peak_mib']:>19.0f} {row['ours_peak_mib']:>7.0f}",
              flush=True)
    return table


def throughput(device, speed_table: dict, size: int) -> dict:
    from nst_engine.device import use_bf16

    print(f"\n## 2. throughput at {size} px against the measured convolution peak", flush=True)
    row = speed_table.get(str(size))
    if not row:
        return {"skipped": "no speed figure at this size"}
    peak = statistics.median(bench.conv_peak(device, use_bf16("auto", device)) for _ in range(3))
    w, h = size, round(size * 768 / 1024)
    flops = 2 * bench.vgg_flops(w, h)  # forward + input gradient
    achieved = flops / row["ours_auto"]
    out = {"size": size, "gflop_per_iteration": flops / 1e9, "achieved_gflops": achieved / 1e9,
           "peak_gflops": peak / 1e9, "percent_of_peak": 100 * achieved / peak}
    print(f"{flops / 1e9:.0f} GFLOP per iteration, {achieved / 1e12:.1f} TFLOP/s = "
          f"{out['percent_of_peak']:.0f}% of the {peak / 1e12:.1f} TFLOP/s convolution peak", flush=True)
    return out


def default_job(device, smoke: bool) -> dict:
    """The job a user gets with no parameters: 512 px, the default scales and iterations, warm."""
    from nst_engine import Params, load_image, stylize

    print("\n## 3. the default job (warm network, as in the service)", flush=True)
    params = Params(size=128, iterations=5) if smoke else Params()
    content, style = load_image(bench.CONTENT), load_image(bench.STYLE)
    stylize(content, [style], params=Params(size=128, iterations=2, scales=(1.0,)))
    times = []
    for _ in range(1 if smoke else 3):
        _sync(device)
        started = time.perf_counter()
        stylize(content, [style], params=params)
        _sync(device)
        times.append(time.perf_counter() - started)
    out = {"params": {"size": params.size, "iterations": params.iterations, "scales": list(params.scales)},
           "seconds": statistics.median(times), "all_seconds": times}
    print(f"size {params.size}, {params.iterations} iterations x {len(params.scales)} scales: "
          f"{out['seconds']:.2f} s (median of {len(times)})", flush=True)
    return out


def batch(speed_table: dict, smoke: bool) -> dict:
    """A default job with four outputs, one after another and as one batch (bench/batch.py,
    without its figures): pictures a second, and per picture-iteration against pastiche's
    iteration (the speed section's) where it measured the size."""
    import batch as batch_bench

    print("\n## 4. a job's four outputs as one batch against one after another", flush=True)
    out = {}
    # Four outputs at 512 and 1024 px; and sixteen at 512 px, as a GPU's batch of queued jobs of
    # one shape is (the engine's path is the same: each picture its own targets and L-BFGS state).
    runs = [(128, 4)] if smoke else [(512, 4), (1024, 4), (512, 16)]
    with tempfile.TemporaryDirectory() as tmp:
        for size, pictures in runs:
            row = batch_bench.run(size, pictures, 5 if smoke else None, ("tubingen", "starry_night"), 1, False,
                                  Path(tmp))
            batched = row["batched_s"][0]
            row["pictures_per_second"] = pictures / batched
            pastiche = speed_table.get(str(size), {}).get("pastiche")
            # The default schedule at these sizes is one scale.
            row["vs_pastiche_iteration"] = (pastiche / (batched / (pictures * row["iterations"]))
                                            if pastiche else None)
            out[str(size) if pictures == 4 else f"{size}x{pictures}"] = row
    return out


def pipeline_queue(smoke: bool) -> dict:
    """A queue of default jobs through a running daemon on this GPU (bench/pipeline.py): jobs
    an hour, and the worker's run against its optimizing (the device's busy share's stand-in)."""
    import pipeline

    print("\n## the service's pipeline: a queue dropped at once into a warm daemon", flush=True)
    # Every picture alone (`[worker] batch = 1`, the service before batching) and then as the
    # service runs by default (a job's outputs, and queued jobs of one shape, as one batch).
    results = {}
    for batch in (1, 0):
        if smoke:
            result = pipeline.bench_pipeline(jobs=4, size=128, iterations=5, large=1, large_size=192,
                                             outputs_every=3, batch=batch)
        else:  # 512 px default jobs (80 iterations), two at 1024 px, every tenth with four outputs:
            # about a minute each way on an H200 (a default job 1.04 s), within the lease's budget
            result = pipeline.bench_pipeline(jobs=20, size=512, iterations=None, large=2, large_size=1024,
                                             batch=batch)
        print(f"[worker] batch = {batch}:")
        pipeline.print_pipeline(result)
        results[batch] = result
    ratio = results[0]["jobs_per_hour"] / results[1]["jobs_per_hour"]
    print(f"jobs an hour batched / every picture alone: {ratio:.2f}x")
    return {**results[0], "alone": results[1], "batched_vs_alone": round(ratio, 3)}


def quality(device, out_dir: Path, smoke: bool) -> dict:
    """The CPU benchmark's time-to-quality section, on this GPU; only the contact sheet is kept."""
    with tempfile.TemporaryDirectory() as tmp:
        table = bench.bench_quality(Path(tmp), device, quick=smoke)
        if (Path(tmp) / "comparison.png").exists():
            shutil.copy(Path(tmp) / "comparison.png", out_dir / "comparison.png")
    return table


def largest(device, smoke: bool, budget: Budget) -> dict:
    """Sizes up to 8192 px, a few iterations each, on the whole card and within 8 GiB."""
    import torch

    print("\n## 5. the largest size that runs (5 iterations, one scale; L-BFGS's history is not full)",
          flush=True)
    sizes = [256, 384] if smoke else [2048, 3072, 4096, 6144, 8192]
    out: dict = {}
    caps = [("whole card", None)] + ([("8 GiB", 8 * 2**30)] if device.type == "cuda" else [])
    if os.environ.get("LARGEST_CAPS"):  # e.g. "8 GiB": only the capped run, when the card's was measured
        caps = [c for c in caps if c[0] in os.environ["LARGEST_CAPS"].split(",")]
    for label, cap in caps:
        rows = {}
        with _memory_cap(device, cap):
            for size in sizes:
                if budget.left() < 15:
                    rows[str(size)] = {"skipped": "out of time"}
                    break
                try:
                    seconds, record = ours(size, 5, device)
                except torch.OutOfMemoryError:
                    rows[str(size)] = {"fits": False}
                    print(f"{label:>10} {size:>6}: out of memory", flush=True)
                    torch.cuda.empty_cache()
                    break
                rows[str(size)] = {"fits": True, "seconds": seconds,
                                   "peak_mib": record.get("gpu_peak_memory_mib"),
                                   "seconds_per_iteration": record["timings"]["seconds_per_iteration"]}
                print(f"{label:>10} {size:>6}: {seconds:6.1f} s, peak {record.get('gpu_peak_memory_mib', 0):.0f} MiB",
                      flush=True)
        fitting = [int(s) for s, r in rows.items() if r.get("fits")]
        out[label] = {"sizes": rows, "largest": max(fitting) if fitting else None}
    return out


def largest_tiled(device, smoke: bool, budget: Budget) -> dict:
    """Sizes up to 8192 px within 8 GiB of GPU memory, with the memory planner's tiles
    (the print issue's GPU figure): the default coarse-to-fine schedule at 3 iterations a
    scale, and the final scale's seconds per iteration."""
    import torch

    from nst_engine.memory import BudgetError

    print("\n## 6. the largest size in 8 GiB with tiles (3 iterations a scale)", flush=True)
    sizes = [256, 384] if smoke else [3072, 4096, 6144, 8192]
    cap = 8 * 2**30
    rows: dict = {}
    # The planner's budget: the cap less room for the allocator's own slack and CUDA's workspaces.
    memory_budget = int(cap * 0.85) if not smoke else 1000 * 2**20  # smoke: the script, not the figure
    with _memory_cap(device, cap if device.type == "cuda" else None):
        for size in sizes:
            if budget.left() < 15:
                rows[str(size)] = {"skipped": "out of time"}
                break
            try:
                seconds, record = ours(size, 3, device, memory_budget=memory_budget)
            except BudgetError as e:
                rows[str(size)] = {"fits": False, "planner": str(e)}
                print(f"{size:>6}: the planner refuses it: {e}", flush=True)
                break
            except torch.OutOfMemoryError as e:
                rows[str(size)] = {"fits": False, "error": str(e).splitlines()[0]}
                print(f"{size:>6}: out of memory", flush=True)
                break
            plan = record["memory"]["scales"][-1]
            rows[str(size)] = {"fits": True, "seconds": seconds, "peak_mib": record.get("gpu_peak_memory_mib"),
                               "seconds_per_iteration": record["timings"]["seconds_per_iteration"], "plan": plan}
            print(f"{size:>6}: {seconds:6.1f} s, peak {record.get('gpu_peak_memory_mib', 0):.0f} MiB, "
                  f"per iteration {record['timings']['seconds_per_iteration']}, plan {plan}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    fitting = [int(s) for s, r in rows.items() if r.get("fits")]
    return {"cap_gib": 8, "budget_mib": memory_budget // 2**20, "sizes": rows,
            "largest": max(fitting) if fitting else None}


def print_job(device, out_dir: Path, smoke: bool) -> dict:
    """The whole default job at 8192 px (coarse to fine, the iterations a user gets) within
    8 GiB, beside the same job on the whole card and a 1024 px run of the pair: time, peak,
    the final scale's plan, the two prints' mean difference, and 100% crops (print-crop-*.png)."""
    import numpy as np
    import torch
    from PIL import Image

    import print_bench
    from nst_engine import Params, load_image, stylize
    from service.files import image_bytes

    size = 384 if smoke else 8192
    cap = 8 * 2**30
    budget = int(cap * 0.85) if not smoke else 1000 * 2**20
    print(f"\n## 7. the default job at {size} px in 8 GiB, on the whole card, and at 1024 px", flush=True)
    content, style = load_image(bench.CONTENT), load_image(bench.STYLE)
    runs = [("8gib", cap, budget, size), ("card", None, None, size), ("1024", None, None, 128 if smoke else 1024)]
    if os.environ.get("PRINT_RUNS"):  # e.g. "8gib": the timing alone, when the pictures were compared
        runs = [r for r in runs if r[0] in os.environ["PRINT_RUNS"].split(",")]
    out: dict = {"size": size, "budget_mib": budget // 2**20}
    pictures = {}
    for label, limit, memory_budget, edge in runs:
        with _memory_cap(device, limit if device.type == "cuda" else None):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            started = time.perf_counter()
            result = stylize(content, [style], params=Params(size=edge), memory_budget=memory_budget)
            _sync(device)
            seconds = time.perf_counter() - started
        pictures[label] = result.outputs[0].stylized
        record = result.record
        started = time.perf_counter()  # the two PNGs the service writes, as it encodes them
        for img in (result.outputs[0].stylized, result.outputs[0].corrected):
            if img is not None:
                image_bytes(img, ".png")
        out[label] = {"seconds": seconds, "peak_mib": record.get("gpu_peak_memory_mib"),
                      "seconds_per_iteration": record["timings"]["seconds_per_iteration"],
                      "timings": {k: v for k, v in record["timings"].items() if k != "seconds_per_iteration"},
                      "png_seconds": time.perf_counter() - started, "plan": record["memory"]["scales"][-1]}
        print(f"{label:>6} {edge:>5} px: {seconds:6.1f} s ({out[label]['timings']}), PNGs "
              f"{out[label]['png_seconds']:.1f} s, peak {record.get('gpu_peak_memory_mib') or 0:.0f} MiB, "
              f"final scale {out[label]['plan']}", flush=True)
    if len(pictures) < 3:
        return out
    a, b = (np.asarray(pictures[k], dtype=np.float32) for k in ("8gib", "card"))
    out["mean_abs_difference_8gib_card"] = float(np.abs(a - b).mean())
    print(f"mean |8 GiB - whole card| = {out['mean_abs_difference_8gib_card']:.2f}/255", flush=True)
    tower = (0.62, 0.22)  # the church tower: 768x576 px of an 8192 px print is a small detail
    print_bench.crop(pictures["8gib"], pictures["1024"], out_dir / "print-crop-8gib.png", (" in 8 GiB", ""), tower)
    print_bench.crop(pictures["8gib"], pictures["card"], out_dir / "print-crop-8gib-card.png",
                     (" in 8 GiB (tiled)", " on the whole card"), tower)
    small = pictures["8gib"].copy()
    small.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
    small.save(out_dir / "print-8gib-2048.jpg", quality=90)
    return out


@contextlib.contextmanager
def _memory_cap(device, cap: int | None):
    """The process limited to `cap` bytes of the GPU's memory (None: no limit), then freed."""
    import torch

    if cap is None:
        yield
        return
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), _index(device))
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, _index(device))
        torch.cuda.empty_cache()


def _index(device) -> int:
    """The CUDA device's index (set_per_process_memory_fraction refuses a bare "cuda")."""
    import torch

    return device.index if device.index is not None else torch.cuda.current_device()


def profile(device, out_dir: Path, smoke: bool) -> dict:
    """Where an iteration's time goes at 1024 px: cuDNN's autotuner on and off, and the top kernels."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    size = 192 if smoke else 1024
    short, long_ = (2, 4) if smoke else (5, 25)
    print(f"\n## 6. where the time goes at {size} px", flush=True)
    out = {}
    for tuned in (False, True):
        torch.backends.cudnn.benchmark = tuned
        ours(size, short, device)  # the autotuner's first pass is not an iteration's cost
        per = (ours(size, long_, device)[0] - ours(size, short, device)[0]) / (long_ - short)
        out[f"cudnn_benchmark_{tuned}"] = per
        print(f"cudnn.benchmark={tuned}: {per:.4f} s per iteration", flush=True)
    torch.backends.cudnn.benchmark = False
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        ours(size, 10, device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=30)
    (out_dir / "profile.txt").write_text(table + "\n")
    print(table[:6000], flush=True)
    return out


def goals(results: dict) -> list[dict]:
    """The issue's goals on an H100-class GPU."""
    rows = []
    row = results.get("speed", {}).get("1024")
    rows.append(_goal(">= 3x pastiche per iteration at 1024 px", row and row["ratio_auto"], 3.0, "{:.2f}x"))
    tp = results.get("throughput", {})
    rows.append(_goal(">= 60% of the bf16 conv peak at 2048 px", tp.get("percent_of_peak"), 60.0, "{:.0f}%"))
    for size, label in (("512", "512 px, batch of 4"), ("1024", "1024 px, batch of 4"),
                        ("512x16", "512 px, batch of 16")):
        rate = results.get("batch", {}).get(size, {}).get("vs_pastiche_iteration")
        rows.append(_goal(f">= 3x pastiche per picture, {label}", rate, 3.0, "{:.2f}x"))
    dj = results.get("default_job", {})
    seconds = dj.get("seconds")
    rows.append({"goal": "the default 512 px job under 5 s", "figure": f"{seconds:.2f} s" if seconds else "-",
                 "verdict": "-" if seconds is None else ("met" if seconds < 5.0 else "missed")})
    ratio = results.get("pipeline", {}).get("batched_vs_alone")
    rows.append({"goal": "a queue: jobs/h batched vs every picture alone",
                 "figure": f"{ratio:.2f}x" if ratio else "-", "verdict": "-"})
    share = results.get("pipeline", {}).get("run_per_optimizing")
    rows.append({"goal": "a queue: the device optimizing >= 85% of the run",
                 "figure": f"{1 / share:.0%}" if share else "-",
                 "verdict": "-" if share is None else ("met" if 1 / share >= 0.85 else "missed")})
    return rows


def _goal(goal: str, value, target: float, fmt: str) -> dict:
    if value is None:
        return {"goal": goal, "figure": "-", "verdict": "-"}
    return {"goal": goal, "figure": fmt.format(value), "verdict": "met" if value >= target else "missed"}


if __name__ == "__main__":
    sys.exit(main())
