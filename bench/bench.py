"""`make bench`: our engine and service against the reference, pastiche, side by side.

Every comparison runs both sides in this one run, alternating, several times,
and reports medians, on the same image pair, size, iteration count and device.
pastiche is driven through its own command line (`python -m pastiche`).

Writes bench/results/<date>-<host>.json and the comparison images beside it,
and appends a summary to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CONTENT = ROOT / "samples" / "tubingen.jpg"
STYLE = ROOT / "samples" / "starry_night.jpg"
PY = sys.executable


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and sizes (a smoke run)")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="sections to skip: speed quality memory flops service cluster pipeline")
    args = ap.parse_args()

    import torch

    from nst_engine.device import describe, pick_device

    device = pick_device("auto")
    reps = 1 if args.quick else 3
    sizes = [256, 512] if args.quick else [256, 512, 1024]
    stamp = dt.datetime.now().strftime("%Y-%m-%d")
    host = socket.gethostname()
    out_dir = ROOT / "bench" / "results" / f"{stamp}-{host}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = ROOT / "bench" / "results" / f"{stamp}-{host}.json"
    # Sections run separately on one day add up in one file.
    results: dict = json.loads(path.read_text()) if path.exists() else {}
    results |= {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "host": host, "device": describe(device),
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
        "repetitions": reps,
    }
    print(f"# nst benchmark on {host}: {describe(device)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {reps} repetition(s)\n")

    if "speed" not in args.skip:
        results["seconds_per_iteration"] = bench_speed(sizes, reps, device)
    if "flops" not in args.skip:
        results["throughput"] = bench_flops(results.get("seconds_per_iteration", {}), device)
    if "memory" not in args.skip:
        results["memory"] = bench_memory(sizes, device)
    if "quality" not in args.skip:
        results["time_to_quality"] = bench_quality(out_dir, device, quick=args.quick)
    if "service" not in args.skip:
        results["service"] = bench_service(reps)
    if "cluster" not in args.skip:
        results["cluster"] = bench_cluster(quick=args.quick)
    if "pipeline" not in args.skip:
        import pipeline

        print("\n## 7. the whole service: a queue dropped at once (bench/pipeline.py)")
        results["pipeline"] = pipeline.bench_pipeline(jobs=8 if args.quick else 20, large=0 if args.quick else 4)
        pipeline.print_pipeline(results["pipeline"])

    results["targets"] = targets(results)
    print_targets(results["targets"])
    path.write_text(json.dumps(results, indent=2) + "\n")
    append_summary(results, path)
    print(f"\nwrote {path.relative_to(ROOT)} and appended docs/benchmarks.md")
    return 0


# -- 1. seconds per iteration -----------------------------------------------------------

def pastiche_cmd(content: Path, style: Path, output: Path, size: int, steps: int, device: str = "cpu") -> list[str]:
    """pastiche's command line, as every benchmark runs it (seed 0, quiet)."""
    return [PY, "-m", "pastiche", "--content", str(content), "--styles", str(style), "--output", str(output),
            "--size", str(size), "--num-steps", str(steps), "--device", device, "--seed", "0", "--no-verbose"]


def run_pastiche(size: int, steps: int, output: Path, device) -> float:
    cmd = pastiche_cmd(CONTENT, STYLE, output, size, steps, device.type)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def run_ours(size: int, steps: int, device, **overrides) -> tuple[float, object]:
    from nst_engine import Params, load_image, stylize

    params = Params(size=size, iterations=steps, scales=(1.0,), **overrides)
    content, style = load_image(CONTENT), load_image(STYLE)
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    started = time.perf_counter()
    result = stylize(content, [style], params=params)
    return time.perf_counter() - started, result


def bench_speed(sizes, reps, device) -> dict:
    """Per-iteration time as the difference of a long and a short run, so start-up cancels out."""
    from nst_engine.device import use_bf16

    print("## 1. seconds per L-BFGS iteration (difference of a 4- and a 14-step run, 2 and 7 at 1024; median)")
    print(f"{'size':>6} {'pastiche':>10} {'ours fp32':>10} {'ours auto':>10} {'ratio auto':>11} {'ratio fp32':>11}")
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.png"
        run_ours(128, 2, device)  # warm the network once: the service keeps it warm too
        for size in sizes:
            short, long_ = (4, 14) if size <= 512 else (2, 7)
            ref, fp32, auto, peak_auto, peak_fp32 = [], [], [], [], []
            for _ in range(reps if size <= 512 else min(reps, 2)):  # alternating: pastiche, ours fp32, ours auto
                ref.append((run_pastiche(size, long_, out, device) - run_pastiche(size, short, out, device))
                           / (long_ - short))
                fp32.append((run_ours(size, long_, device, precision="fp32")[0] -
                             run_ours(size, short, device, precision="fp32")[0]) / (long_ - short))
                auto.append((run_ours(size, long_, device)[0] - run_ours(size, short, device)[0]) / (long_ - short))
                # The convolution peak is measured between the runs it is compared with (section 4):
                # this VM's speed drifts by several percent over minutes.
                peak_auto.append(conv_peak(device, use_bf16("auto", device)))
                peak_fp32.append(conv_peak(device, False))
            row = {"pastiche": statistics.median(ref), "ours_fp32": statistics.median(fp32),
                   "ours_auto": statistics.median(auto), "conv_peak_auto": statistics.median(peak_auto),
                   "conv_peak_fp32": statistics.median(peak_fp32)}
            row["ratio_auto"] = row["pastiche"] / row["ours_auto"]
            row["ratio_fp32"] = row["pastiche"] / row["ours_fp32"]
            table[str(size)] = row
            print(f"{size:>6} {row['pastiche']:>10.3f} {row['ours_fp32']:>10.3f} {row['ours_auto']:>10.3f} "
                  f"{row['ratio_auto']:>10.2f}x {row['ratio_fp32']:>10.2f}x", flush=True)
    return table


# -- 4. throughput ------------------------------------------------------------------------

def vgg_flops(width: int, height: int, last: str = "relu5_1") -> float:
    """Forward FLOPs of the convolutions up to `last` (2 per multiply-add)."""
    from nst_engine.topology import CONV_NAMES, block_of, conv_channels

    total, w, h, block = 0.0, width, height, 1
    for name in CONV_NAMES:
        b = block_of(name)
        if b != block:
            w, h, block = w // 2, h // 2, b
        cin, cout = conv_channels(name)
        total += 2.0 * cin * cout * 9 * w * h
        if name == last.replace("relu", "conv"):
            break
    return total


def conv_peak(device, bf16: bool) -> float:
    """FLOP/s of a large 3x3 convolution (256 channels, 128x128), forward and input gradient,
    in the precision and layout our network runs in. The output gradient is made once, outside
    the timing, so nothing but the convolution is measured."""
    import torch

    dtype = torch.bfloat16 if bf16 else torch.float32
    # On a GPU a 128 px pass takes a tenth of a millisecond, so launches and the clock dominate:
    # two H200 runs gave 90 and 201 TFLOP/s. 512 px and ten passes per reading fix that.
    side, passes = (512, 10) if device.type == "cuda" else (128, 1)
    x = torch.randn(1, 256, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    conv.requires_grad_(False)
    grad = torch.randn_like(conv(x.detach()))
    flops = passes * 2 * 2.0 * 256 * 256 * 9 * side * side  # forward + input gradient
    times = []
    for i in range(12):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(passes):
            conv(x).backward(grad)
            x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return flops / statistics.median(times)


def bench_flops(speed: dict, device) -> dict:
    from nst_engine.device import use_bf16

    print("\n## 4. achieved throughput (network FLOPs per iteration / time per iteration)")
    bf16 = use_bf16("auto", device)
    peak = conv_peak(device, bf16)
    peak32 = conv_peak(device, False)
    table = {"peak_gflops_auto": peak / 1e9, "peak_gflops_fp32": peak32 / 1e9, "sizes": {}}
    print(f"peak of a large conv, same precision: auto {peak / 1e9:.1f} GFLOP/s, fp32 {peak32 / 1e9:.1f} GFLOP/s "
          "(now; each size is judged against the peak measured between its own runs)")
    for size, row in speed.items():
        peak, peak32 = row.get("conv_peak_auto", peak), row.get("conv_peak_fp32", peak32)
        w, h = int(size), round(int(size) * 768 / 1024)
        flops = 2 * vgg_flops(w, h)  # forward + input gradient; no weight gradients
        achieved = flops / row["ours_auto"]
        achieved32 = flops / row["ours_fp32"]
        table["sizes"][size] = {"gflop_per_iteration": flops / 1e9, "achieved_gflops_auto": achieved / 1e9,
                                "peak_gflops_auto": peak / 1e9, "peak_gflops_fp32": peak32 / 1e9,
                                "percent_of_peak_auto": 100 * achieved / peak,
                                "percent_of_peak_fp32": 100 * achieved32 / peak32}
        print(f"{size:>6}: {flops / 1e9:.1f} GFLOP/iteration, {achieved / 1e9:.1f} GFLOP/s = "
              f"{100 * achieved / peak:.0f}% of {peak / 1e9:.0f} (fp32: {100 * achieved32 / peak32:.0f}% "
              f"of {peak32 / 1e9:.0f})")
    return table


# -- 3. memory --------------------------------------------------------------------------

def peak_rss_mib(cmd: list[str]) -> float:
    """The child's own high-water mark (VmHWM), read until it exits. Not ru_maxrss: Linux
    carries the parent's peak across fork and exec, and this process is large by now."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    peak = watch_peak_mib(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode})")
    return peak


def watch_peak_mib(proc: subprocess.Popen, every: float = 0.02) -> float:
    """A running child's high-water mark (VmHWM) in MiB, read until it exits."""
    peak_kib = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(every)
    return peak_kib / 1024


def bench_memory(sizes, device) -> dict:
    print("\n## 3. peak memory (RSS of a whole process on the CPU; 3 iterations)")
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            ours = peak_rss_mib([PY, "-m", "service.cli", "stylize", str(CONTENT), str(STYLE), "-o",
                                 f"{tmp}/o.png", "--size", str(size), "--iterations", "3", "--set", "scales=[1.0]",
                                 "--quiet"])
            ref = peak_rss_mib(pastiche_cmd(CONTENT, STYLE, Path(tmp) / "p.png", size, 3))
            table[str(size)] = {"ours_mib": ours, "pastiche_mib": ref, "pixels": size * round(size * 0.75)}
            print(f"{size:>6}: ours {ours:7.0f} MiB   pastiche {ref:7.0f} MiB", flush=True)
    sizes_sorted = sorted(table.items(), key=lambda kv: kv[1]["pixels"])
    if len(sizes_sorted) >= 2:
        (_, a), (_, b) = sizes_sorted[-2], sizes_sorted[-1]
        per_pixel = (b["ours_mib"] - a["ours_mib"]) / (b["pixels"] - a["pixels"])  # MiB per pixel
        per_pixel_small = None
        if len(sizes_sorted) >= 3:
            (_, z) = sizes_sorted[0]
            per_pixel_small = (a["ours_mib"] - z["ours_mib"]) / (a["pixels"] - z["pixels"])
        # On a GPU only the activations grow; the weights (80 MB in fp32) and the CUDA context (~500 MB) do not.
        budget = 8 * 1024 - 600
        max_pixels = budget / per_pixel if per_pixel > 0 else 0.0
        long_edge = int((max_pixels / 0.75) ** 0.5)
        table["growth_mib_per_megapixel"] = per_pixel * 1e6
        table["growth_small_mib_per_megapixel"] = per_pixel_small * 1e6 if per_pixel_small else None
        table["largest_long_edge_in_8_gib"] = long_edge
        linear = per_pixel_small is None or per_pixel <= per_pixel_small * 1.25
        table["grows_at_most_linearly"] = linear
        print(f"growth {per_pixel * 1e6:.0f} MiB per megapixel"
              + (f" (between the smaller sizes {per_pixel_small * 1e6:.0f})" if per_pixel_small else "")
              + f"; largest 4:3 image in 8 GiB of GPU memory ~ {long_edge} px long edge (estimated)")
    return table


# -- 2. time to quality ------------------------------------------------------------------

def evaluator():
    """One fixed score for any image: Gram style distance over relu1_1..relu5_1 plus content
    distance at relu4_2, float32, same weights for both sides, at the output size. Relative
    (each layer divided by its target's energy) and weighted 1 : 50 content : style, plus
    total variation weighted 30 (so that pixel noise does not pass for style)."""
    import torch

    from nst_engine import Params, load_image
    from nst_engine.images import fit_long_edge, to_tensor
    from nst_engine.losses import StyleTransferLoss, gram
    from nst_engine.vgg import VGG19
    from nst_engine.weights import load_weights

    net = VGG19(load_weights("caffe"), last_layer="relu5_1")
    layers = Params().style_layers
    content_img, style_img = load_image(CONTENT), load_image(STYLE)

    def score(img) -> dict:
        c = to_tensor(fit_long_edge(content_img, max(img.size)).resize(img.size))
        s = to_tensor(fit_long_edge(style_img, max(img.size)))
        with torch.no_grad():
            fc = net(c, {"relu4_2"})
            fs = net(s, set(layers))
            fo = net(to_tensor(img), set(layers) | {"relu4_2"})
            loss = StyleTransferLoss(content_targets={"relu4_2": fc["relu4_2"]},
                                     style_targets={k: gram(fs[k]) for k in layers},
                                     style_layer_weights=[1.0] * len(layers), content_weight=1.0,
                                     style_weight=50.0, tv_weight=30.0)
            terms = loss(fo, to_tensor(img))
        return {"score": float(terms.total), "content": float(terms.content), "style": float(terms.style),
                "tv": float(terms.tv)}

    return score


def bench_quality(out_dir: Path, device, *, quick: bool) -> dict:
    from PIL import Image

    from nst_engine import Params, load_image, stylize

    print("\n## 2. time to quality at 512 px (fixed evaluator; lower is better)")
    score = evaluator()
    steps = 60 if quick else 300
    ref_png = out_dir / f"pastiche-{steps}.png"
    ref_time = run_pastiche(512, steps, ref_png, device)
    ref = score(Image.open(ref_png).convert("RGB"))
    print(f"pastiche, {steps} L-BFGS steps: {ref_time:6.1f} s, score {ref['score']:.4f} "
          f"(content {ref['content']:.3f}, style {ref['style']:.4f})", flush=True)
    content, style = load_image(CONTENT), load_image(STYLE)
    tried = []
    reached = None
    for iterations in ([10, 20, 40] if quick else [10, 20, 30, 40, 60]):
        params = Params(size=512, iterations=iterations)
        started = time.perf_counter()
        result = stylize(content, [style], params=params)
        seconds = time.perf_counter() - started
        img = result.outputs[0].stylized
        s = score(img)
        img.save(out_dir / f"ours-{iterations}.png")
        tried.append({"iterations_per_scale": iterations, "seconds": seconds, **s})
        print(f"ours, defaults with {iterations:3d} iterations per scale: {seconds:6.1f} s, score {s['score']:.4f} "
              f"(content {s['content']:.3f}, style {s['style']:.4f})", flush=True)
        if reached is None and s["score"] <= ref["score"]:
            reached = tried[-1]
    table = {"pastiche": {"steps": steps, "seconds": ref_time, **ref}, "ours": tried}
    # Every image is kept: look at them (comparison.png) before believing the ratio.
    comparison(out_dir, ref_png, [out_dir / f"ours-{t['iterations_per_scale']}.png" for t in tried])
    if reached:
        table["ratio"] = ref_time / reached["seconds"]
        table["reached_at_iterations_per_scale"] = reached["iterations_per_scale"]
        print(f"ours reaches pastiche's score in {reached['seconds']:.1f} s: {table['ratio']:.1f}x faster "
              f"(images: {out_dir / 'comparison.png'})")
    else:
        table["ratio"] = None
        print("ours did not reach pastiche's score in the iterations tried")
    return table


def comparison(out_dir: Path, ref: Path, ours: list[Path]) -> None:
    """pastiche's image and each of ours in a grid of three columns, labelled."""
    from PIL import Image, ImageDraw

    images = [(f"pastiche ({ref.stem})", Image.open(ref).convert("RGB"))]
    images += [(f"ours ({p.stem}: iterations per scale)", Image.open(p).convert("RGB")) for p in ours]
    w, h = images[0][1].size
    cols = 3
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * (w + 10) + 10, rows * (h + 24) + 10), "white")
    d = ImageDraw.Draw(canvas)
    for i, (label, img) in enumerate(images):
        x, y = 10 + (i % cols) * (w + 10), 10 + (i // cols) * (h + 24)
        canvas.paste(img.resize((w, h)), (x, y + 16))
        d.text((x, y), label, fill="black")
    canvas.save(out_dir / "comparison.png")


# -- 5. service ----------------------------------------------------------------------------

def bench_service(reps: int) -> dict:
    print("\n## 5. service")
    table = {}
    table["nst_help_s"] = median_cmd([PY, "-m", "service.cli", "--help"], reps=5)
    with tempfile.TemporaryDirectory() as tmp:
        site = _small_site(Path(tmp))
        fill_store(site.config.state / "jobs.sqlite3", 10_000)
        cfg = str(site.config_path)
        table["nst_jobs_10000_rows_s"] = median_cmd([PY, "-m", "service.cli", "--config", cfg, "jobs"], reps=5)
        table["nst_jobs_json_10000_rows_s"] = median_cmd(
            [PY, "-m", "service.cli", "--config", cfg, "jobs", "--json", "--limit", "1000"], reps=5)
    print(f"nst --help: {table['nst_help_s']:.2f} s; nst jobs on 10,000 rows: {table['nst_jobs_10000_rows_s']:.2f} s "
          f"(--json --limit 1000: {table['nst_jobs_json_10000_rows_s']:.2f} s)")
    table.update(bench_daemon_throughput())
    return table


def _service_dir(root: Path, **kw):
    """The tests' harness (tests/servicekit.py): a config, the folders, the daemon as a subprocess."""
    sys.path.insert(0, str(ROOT / "tests"))
    from servicekit import ServiceDir

    return ServiceDir(root, **kw)


def _small_site(root: Path):
    """A site for small, quick jobs in `root`."""
    return _service_dir(root, defaults={"size": 128, "iterations": 10, "scales": [1.0]},
                        watch={"settle_seconds": 0.5, "rescan_seconds": 5.0})


def _drop(inbox: Path, name: str, content, sidecar: str = 'style = "styles/s.png"\n') -> None:
    """The content image, then the sidecar, each renamed into place."""
    content.save(inbox / f".{name}.png")
    os.rename(inbox / f".{name}.png", inbox / f"{name}.content.png")
    (inbox / f".{name}.toml").write_text(sidecar)
    os.rename(inbox / f".{name}.toml", inbox / f"{name}.toml")


def median_cmd(cmd, *, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fill_store(path: Path, n: int) -> None:
    from service.status import JobStatus
    from service.models import Job
    from service.store import Store

    store = Store(f"sqlite:///{path}")
    store.migrate()
    with store._write() as s:  # one bulk transaction through the real models
        now = dt.datetime.utcnow()
        for i in range(n):
            s.add(Job(key=f"bench-{i}", name=f"job-{i:05d}", status=JobStatus.DONE.value, staged=True,
                      submitted_at=now - dt.timedelta(minutes=i), started_at=now, finished_at=now,
                      duration_s=12.5, size=512, iterations=150, outputs_json='["a.png", "b.png"]'))
    store.dispose()


def _thumb(path: Path, edge: int):
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.thumbnail((edge, edge))
    return img


def bench_daemon_throughput(n: int = 20) -> dict:
    """20 small jobs through one warm daemon against 20 separate `nst stylize` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site = _small_site(root)
        cfg, inbox = str(site.config_path), site.inbox
        content, style = _thumb(CONTENT, 256), _thumb(STYLE, 256)
        content.save(root / "c.png")
        style.save(root / "s.png")
        (inbox / "styles").mkdir()
        style.save(inbox / "styles" / "s.png")

        # Separate processes, as a user without the service would run them.
        started = time.perf_counter()
        for i in range(n):
            subprocess.run([PY, "-m", "service.cli", "--config", cfg, "stylize", str(root / "c.png"),
                            str(root / "s.png"), "-o", str(root / f"cli-{i}.png"), "--quiet"], check=True,
                           capture_output=True, cwd=ROOT)
        cli_seconds = time.perf_counter() - started

        site.start()
        try:
            # Latency: one sidecar, from its rename into the inbox to the job's start.
            dropped = time.time()
            _drop(inbox, "first", content)
            site.wait_for(lambda: (j := site.job("first")) is not None and j.started_at is not None, timeout=60)
            latency = site.job("first").started_at.replace(tzinfo=dt.timezone.utc).timestamp() - dropped
            site.wait_job("first", "done", timeout=60)

            # One ordinary job (256 px, 30 iterations) from drop to done, against `nst stylize` on it.
            dropped_same = time.perf_counter()
            _drop(inbox, "same", content, 'style = "styles/s.png"\nsize = 256\niterations = 30\n')
            site.wait_job("same", "done", timeout=300)
            same_daemon = time.perf_counter() - dropped_same
            started = time.perf_counter()
            subprocess.run([PY, "-m", "service.cli", "--config", cfg, "stylize", str(root / "c.png"),
                            str(root / "s.png"), "-o", str(root / "same.png"), "--size", "256", "--iterations",
                            "30", "--quiet"], check=True, capture_output=True, cwd=ROOT)
            same_cli = time.perf_counter() - started

            started = time.perf_counter()
            for i in range(n):
                _drop(inbox, f"j{i}", content)
            site.wait_for(lambda: sum(j.status == "done" for j in site.jobs()) == n + 2, timeout=600)
            daemon_seconds = time.perf_counter() - started
        finally:
            site.stop()
            site.close()
    result = {"arrival_to_start_s": latency, "arrival_to_start_settle_s": 0.5,
              "same_job_daemon_s": same_daemon, "same_job_cli_s": same_cli,
              "daemon_jobs_per_minute": 60 * n / daemon_seconds, "cli_jobs_per_minute": 60 * n / cli_seconds}
    result["throughput_ratio"] = result["daemon_jobs_per_minute"] / result["cli_jobs_per_minute"]
    print(f"sidecar arrival to job start: {latency:.2f} s (settle time 0.5 s)")
    print(f"one 256 px, 30-iteration job: drop to done through the warm daemon {same_daemon:.1f} s "
          f"(outbox folder with preview and loss plot included), nst stylize {same_cli:.1f} s")
    print(f"20 small jobs (128 px, 10 iterations): daemon {result['daemon_jobs_per_minute']:.1f} jobs/min, "
          f"separate nst stylize {result['cli_jobs_per_minute']:.1f} jobs/min: "
          f"{result['throughput_ratio']:.1f}x")
    return result


# -- 6. several workers on PostgreSQL ---------------------------------------------------------

def bench_cluster(*, quick: bool) -> dict:
    """Tiny jobs through 1, 2 and 3 daemons on one PostgreSQL store; claim latency; takeover wait."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PostgresServer

    from service.store import Store

    print("\n## 6. several workers on one PostgreSQL store (tiny jobs: 64 px, 5 iterations)")
    server = PostgresServer().start()
    table: dict = {"jobs_per_minute": {}}
    n = 12 if quick else 30
    try:
        for workers in (1, 2, 3):
            url = server.new_database()
            seconds = _cluster_run(url, workers, n)
            table["jobs_per_minute"][str(workers)] = 60 * n / seconds
            print(f"{workers} worker(s): {n} jobs in {seconds:.1f} s = {60 * n / seconds:.1f} jobs/min", flush=True)
        # Claim latency: one claim on a store holding n queued jobs.
        store = Store(server.new_database())
        store.migrate()
        for i in range(200):
            job, _ = store.enqueue(key=f"c{i}", name=f"c{i}", params={"size": 64})
            store.mark_staged(job.id, [])
        times = []
        for i in range(100):
            started = time.perf_counter()
            store.claim_next(run_id="bench", takeover_s=30)
            times.append(time.perf_counter() - started)
        store.dispose()
        table["claim_latency_ms"] = 1000 * statistics.median(times)
        print(f"claim latency: {table['claim_latency_ms']:.1f} ms (median of 100, 200 queued)")
        table["takeover_wait_s"] = _takeover_wait(server.new_database())
        print(f"a killed worker's job taken over after {table['takeover_wait_s']:.1f} s "
              f"(heartbeat 1 s, takeover 5 s)")
    finally:
        server.stop()
    return table


def _nodes(root: Path, url: str, count: int, defaults: dict, cluster: dict | None = None) -> list:
    """`count` daemons sharing one inbox, outbox and PostgreSQL store, started."""
    return [_service_dir(root, node=f"n{i}", defaults=defaults,
                         watch={"polling": True, "settle_seconds": 0.3, "rescan_seconds": 2.0},
                         paths={"inbox": "inbox", "outbox": "outbox", "state": f"state-{i}", "shared": "shared",
                                "database": url},
                         cluster=cluster).start() for i in range(count)]


def _cluster_run(url: str, workers: int, n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = _nodes(Path(tmp), url, workers, {"size": 64, "iterations": 5, "scales": [1.0]})
        try:
            inbox = nodes[0].inbox
            content = _thumb(CONTENT, 64)
            (inbox / "styles").mkdir()
            _thumb(STYLE, 64).save(inbox / "styles" / "s.png")
            started = time.perf_counter()
            for i in range(n):
                _drop(inbox, f"j{i}", content)
            nodes[0].wait_for(lambda: sum(j.status == "done" for j in nodes[0].jobs()) == n, timeout=600)
            return time.perf_counter() - started
        finally:
            for node in nodes:
                node.stop()
                node.close()


def _takeover_wait(url: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        nodes = _nodes(Path(tmp), url, 2, {"size": 128, "iterations": 400, "scales": [1.0]},
                       {"heartbeat_seconds": 1.0, "takeover_seconds": 5.0})
        try:
            inbox = nodes[0].inbox
            _thumb(CONTENT, 128).save(inbox / "big.content.png")
            _thumb(STYLE, 128).save(inbox / "big.style.png")
            (inbox / "big.toml").write_text("")
            nodes[0].wait_for(lambda: (j := nodes[0].job("big")) is not None and j.status == "running"
                              and j.progress.step > 5, timeout=120)
            job = nodes[0].job("big")
            victim = next(node for node in nodes if node.proc.pid == job.pid)
            victim.kill()
            killed = time.perf_counter()
            nodes[0].wait_for(lambda: nodes[0].job("big").attempts == 2, timeout=120)
            return time.perf_counter() - killed
        finally:
            for node in nodes:
                if node.proc is not None:
                    node.stop()
                node.close()


# -- summary --------------------------------------------------------------------------------

# -- the targets (issue 5), judged at 512 px like the issue's -----------------------------

def targets(results: dict) -> list[dict]:
    rows = []
    speed = results.get("seconds_per_iteration", {}).get("512")
    if speed:
        rows.append({"target": "speed per iteration at 512 px >= 2.2x pastiche",
                     "measured": f"{speed['ratio_auto']:.2f}x", "met": speed["ratio_auto"] >= 2.2})
    sizes = results.get("throughput", {}).get("sizes", {})
    if "512" in sizes:
        rows.append({"target": "throughput at 512 px >= 80% of the conv peak",
                     "measured": f"{sizes['512']['percent_of_peak_auto']:.0f}% ({_per_size(sizes)})",
                     "met": sizes["512"]["percent_of_peak_auto"] >= 80})
    q = results.get("time_to_quality")
    if q:
        rows.append({"target": "time to quality at 512 px >= 6x pastiche",
                     "measured": f"{q['ratio']:.1f}x" if q.get("ratio") else "not reached",
                     "met": bool(q.get("ratio")) and q["ratio"] >= 6})
    m = results.get("memory", {})
    if "grows_at_most_linearly" in m:
        small = m.get("growth_small_mib_per_megapixel")
        rows.append({"target": "peak memory grows at most linearly",
                     "measured": f"{m['growth_mib_per_megapixel']:.0f} MiB/MP"
                                 + (f" (smaller sizes {small:.0f})" if small else ""),
                     "met": m["grows_at_most_linearly"]})
    return rows


def _per_size(sizes: dict, *, with_peak: bool = False) -> str:
    return ", ".join(f"{k} px {v['percent_of_peak_auto']:.0f}%"
                     + (f" (of {v['peak_gflops_auto']:.0f} GFLOP/s)" if with_peak else "") for k, v in sizes.items())


def print_targets(rows: list[dict]) -> None:
    if not rows:
        return
    width = max(len(r["target"]) for r in rows)
    print("\n## targets")
    for r in rows:
        print(f"{r['target']:<{width}}  {'met' if r['met'] else 'NOT MET':<7}  {r['measured']}")


def append_summary(results: dict, path: Path) -> None:
    lines = [f"\n## {results['date']} on {results['host']} ({results['device']}, torch {results['torch']})\n"]
    speed = results.get("seconds_per_iteration")
    if speed:
        lines.append("| size | pastiche s/it | ours fp32 s/it | ours auto s/it | speed-up (auto) |")
        lines.append("| --- | --- | --- | --- | --- |")
        for size, row in speed.items():
            lines.append(f"| {size} | {row['pastiche']:.3f} | {row['ours_fp32']:.3f} | {row['ours_auto']:.3f} | "
                         f"{row['ratio_auto']:.2f}x |")
    q = results.get("time_to_quality")
    if q:
        lines.append(f"\nTime to pastiche's {q['pastiche']['steps']}-step quality at 512 px: pastiche "
                     f"{q['pastiche']['seconds']:.1f} s; ours "
                     + (f"{q['ratio']:.1f}x faster" if q.get("ratio") else "did not reach it") + ".")
    t = results.get("throughput")
    if t and t.get("sizes"):
        lines.append("Throughput against the conv peak measured between the same runs: "
                     f"{_per_size(t['sizes'], with_peak=True)}.")
    m = results.get("memory")
    if m and m.get("largest_long_edge_in_8_gib"):
        lines.append(f"Memory growth {m['growth_mib_per_megapixel']:.0f} MiB/megapixel; largest image in 8 GiB "
                     f"~{m['largest_long_edge_in_8_gib']} px.")
    s = results.get("service")
    if s:
        lines.append(f"Service: arrival to start {s['arrival_to_start_s']:.2f} s; {s['daemon_jobs_per_minute']:.1f} "
                     f"jobs/min through the daemon vs {s['cli_jobs_per_minute']:.1f} with separate processes; "
                     f"`nst jobs` on 10,000 rows {s['nst_jobs_10000_rows_s']:.2f} s; `nst --help` "
                     f"{s['nst_help_s']:.2f} s.")
    c = results.get("cluster")
    if c:
        per = ", ".join(f"{k} worker(s) {v:.1f}" for k, v in c["jobs_per_minute"].items())
        lines.append(f"PostgreSQL, tiny jobs per minute: {per}; claim latency {c['claim_latency_ms']:.1f} ms; "
                     f"a dead worker's job taken over after {c['takeover_wait_s']:.1f} s.")
    if results.get("targets"):
        lines.append("\n| target | measured | met |\n| --- | --- | --- |")
        lines += [f"| {r['target']} | {r['measured']} | {'yes' if r['met'] else 'no'} |" for r in results["targets"]]
    lines.append(f"\nFull figures: `{path.relative_to(ROOT)}`.\n")
    doc = ROOT / "docs" / "benchmarks.md"
    if not doc.exists():
        doc.write_text("# Benchmarks\n\nAppended by `make bench` (bench/bench.py); newest last.\n")
    with open(doc, "a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
