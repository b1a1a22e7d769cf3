"""The whole service's throughput (issue 29, part 1): a queue dropped at once into a warm
daemon, as a user with a folder of pictures does, and where each job's wall time goes.

For every job, from the store's record and the engine's timings:
- intake: from the sidecar's rename into the inbox to the job being recorded;
- waiting: recorded to started (the queue ahead of it);
- targets: the content features and the style Gram matrices (the engine's `targets_s`, and its
  `setup_s`: the network and the plan);
- optimizing: the iterations (`optimize_s`);
- outputs: the engine's pictures (`outputs_s`; the colour-corrected copy is made where the
  folder is written);
- outside the engine: the worker's run (the first job's start to the last one's end) less the
  engine's time of every job: claiming, decoding the archived images and writing each folder
  (colour correction, preview and loss plot, PNGs, the move). On a GPU the folder is written
  by the publisher's thread while the next job computes, and only the hand-over's wait for
  the job before and the last job's writing count; on the CPU the worker writes it in turn.
Jobs an hour and pictures an hour count from the first drop to the last job's end; the
pipeline's figure is the worker's run against the optimizing alone (1.00: the device never
waits for anything else).

Runs on the CPU at small sizes (`python bench/pipeline.py`, or the `pipeline` section of
bench/bench.py) so the pipeline is measured here too; on a GPU with the sizes of the issue.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
STYLES = ("starry_night", "the_scream", "shipwreck")
PHASES = ("intake", "waiting", "targets", "optimizing", "outputs")


def contents(edge: int) -> list:
    """Several photographs (the repo's and scikit-image's), each fitted to `edge`."""
    from PIL import Image
    from skimage import data

    pictures = [Image.open(SAMPLES / "tubingen.jpg").convert("RGB")]
    pictures += [Image.fromarray(getattr(data, name)()).convert("RGB") for name in ("astronaut", "chelsea", "coffee")]
    for picture in pictures:
        picture.thumbnail((edge, edge))
    return pictures


def bench_pipeline(*, jobs: int = 20, size: int = 128, iterations: int | None = 10, large: int = 0,
                   large_size: int = 256, outputs_every: int = 10, device: str = "auto", batch: int = 0) -> dict:
    """`jobs` jobs at `size` px and `large` at `large_size` px, every `outputs_every`-th with
    `outputs = 4`, over several pairs, dropped at once into one warm daemon. `iterations` at
    one scale; None: the service's default iterations and scales. `batch`: the worker's
    `[worker] batch` (0: a job's outputs, and queued jobs of one shape, as one batch where that
    pays; 1: every picture alone)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from PIL import Image

    from nst_engine import Params
    from servicekit import ServiceDir

    with tempfile.TemporaryDirectory() as tmp:
        # The test kit's daemon runs 4-iteration jobs unless told otherwise: the service's own
        # defaults (a config that names none: Params', as config.default.toml says) are named here.
        service = Params()
        schedule = ({"iterations": service.iterations, "scales": list(service.scales)} if iterations is None
                    else {"iterations": iterations, "scales": [1.0]})
        site = ServiceDir(Path(tmp), defaults={"size": size, "device": device, **schedule},
                          watch={"settle_seconds": 0.5, "rescan_seconds": 5.0},
                          # The service's own checkpoint interval, not the tests' 0.5 s: a
                          # checkpoint every half second was 1.4% of the worker's time here.
                          worker={"checkpoint_seconds": 30.0, "batch": batch})
        library = site.inbox / "styles"
        library.mkdir()
        for style in STYLES:
            Image.open(SAMPLES / f"{style}.jpg").convert("RGB").save(library / f"{style}.png")
        photos = contents(max(size, large_size if large else size))
        site.start()
        try:
            _drop(site, "warm-up", photos[0], STYLES[0], {})
            site.wait_job("warm-up", "done", timeout=600)
            dropped: dict[str, float] = {}
            plan = [(f"s{i}", size) for i in range(jobs)] + [(f"l{i}", large_size) for i in range(large)]
            for index, (name, edge) in enumerate(plan):
                extra = {"size": edge, **({"outputs": 4} if outputs_every and index % outputs_every == 0 else {})}
                dropped[name] = time.time()
                _drop(site, name, photos[index % len(photos)], STYLES[index % len(STYLES)], extra)
            site.wait_for(lambda: sum(j.status in ("done", "failed") for j in site.jobs()) == len(plan) + 1,
                          timeout=600, what=f"{len(plan)} jobs to end")
            ended = [j for j in site.jobs() if j.name in dropped]
        finally:
            site.stop()
            site.close()
    failed = [f"{j.name}: {j.error}" for j in ended if j.status != "done"]
    if failed:
        raise RuntimeError(f"jobs failed: {failed}")
    return _summary(ended, dropped)


def _drop(site, name: str, photo, style: str, extra: dict) -> None:
    import os

    photo.save(site.inbox / f".{name}.png")
    os.rename(site.inbox / f".{name}.png", site.inbox / f"{name}.content.png")
    sidecar = "\n".join([f'style = "styles/{style}.png"'] + [f"{k} = {json.dumps(v)}" for k, v in extra.items()])
    (site.inbox / f".{name}.toml").write_text(sidecar + "\n")
    os.rename(site.inbox / f".{name}.toml", site.inbox / f"{name}.toml")


def _seconds(moment) -> float:
    import datetime as dt

    return moment.replace(tzinfo=dt.timezone.utc).timestamp()


def _share(record: dict) -> float:
    """A job's share of its batch's optimizing: jobs optimized together in one batch each record
    the batch's time, so each counts for its pictures' share of it (1 alone). Their set-up,
    targets and outputs are each job's own."""
    memory = record.get("memory", {})
    if memory.get("jobs", 1) == 1:
        return 1.0
    return record["params"]["outputs"] / memory["batch"]


def _summary(jobs: list, dropped: dict[str, float]) -> dict:
    by_start = sorted(jobs, key=lambda j: j.started_at)
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for job in by_start:
        t, share = job.record["timings"], _share(job.record)
        started = _seconds(job.started_at)
        phases["intake"].append(_seconds(job.submitted_at) - dropped[job.name])
        phases["waiting"].append(started - _seconds(job.submitted_at))
        phases["targets"].append(t.get("setup_s", 0.0) + t.get("targets_s", 0.0))
        phases["optimizing"].append(t["optimize_s"] * share)
        phases["outputs"].append(t.get("outputs_s", 0.0))
    last_end = max(_seconds(j.finished_at) for j in jobs)
    span = last_end - min(dropped.values())
    run = last_end - _seconds(by_start[0].started_at)  # the worker's run, first start to last end
    engine = sum(phases["targets"]) + sum(phases["optimizing"]) + sum(phases["outputs"])
    batched = [j.record.get("memory", {}).get("jobs", 1) for j in jobs]
    pictures = sum(len([o for o in j.outputs if ".stylized" in o]) for j in jobs)
    totals = {k: round(sum(v), 2) for k, v in phases.items() if k not in ("intake", "waiting")}
    return {
        "jobs": len(jobs), "pictures": pictures, "span_s": round(span, 2), "run_s": round(run, 2),
        "jobs_per_hour": round(3600 * len(jobs) / span, 1), "pictures_per_hour": round(3600 * pictures / span, 1),
        "run_per_optimizing": round(run / sum(phases["optimizing"]), 3),
        # Per job: the median; over the queue: the sums, and the worker's run outside the engine.
        "phases_median_s": {k: round(statistics.median(v), 3) for k, v in phases.items()},
        "phases_total_s": totals | {"outside the engine": round(run - engine, 2)},
        "device": jobs[0].record.get("device"),
        # Jobs that shared a batch with others, and the largest such batch (jobs).
        "jobs_batched_together": sum(n > 1 for n in batched), "largest_batch_jobs": max(batched),
    }


def print_pipeline(result: dict) -> None:
    run = result["run_s"]
    print(f"{result['jobs']} jobs ({result['pictures']} pictures) dropped at once: {result['span_s']:.1f} s, "
          f"{result['jobs_per_hour']:.0f} jobs/h, {result['pictures_per_hour']:.0f} pictures/h ({result['device']}); "
          f"{result['jobs_batched_together']} jobs in batches of several jobs (up to {result['largest_batch_jobs']})")
    print(f"the worker's run {run:.1f} s = {result['run_per_optimizing']:.2f}x its optimizing: " + ", ".join(
        f"{k} {v:.1f} s ({v / run:.0%})" for k, v in result["phases_total_s"].items()))
    median = result["phases_median_s"]
    print("a job's median: " + ", ".join(f"{k} {median[k]:.2f} s" for k in PHASES))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--defaults", action="store_true",
                    help="the service's default iterations and scales (not --iterations at one scale)")
    ap.add_argument("--large", type=int, default=0, help="further jobs at --large-size")
    ap.add_argument("--large-size", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=0,
                    help="[worker] batch (0: the plan's choice; 1: every picture alone, no job shares a batch)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    result = bench_pipeline(jobs=args.jobs, size=args.size, iterations=None if args.defaults else args.iterations,
                            large=args.large,
                            large_size=args.large_size, device=args.device, batch=args.batch)
    print_pipeline(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
