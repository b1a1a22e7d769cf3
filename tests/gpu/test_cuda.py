"""The engine and the service on a CUDA GPU, against the CPU.

Skipped (with the reason) where there is no CUDA; `bench/gpu.sh` runs them on a GPU.

Tolerances. The CPU float32 run is the reference. CUDA float32 (TF32 off, as
`precision = "fp32"` sets) differs only by summation order and cuDNN's
algorithms (Winograd, FFT): relative errors of 1e-5 to 1e-4 per layer, so 2e-3
over the thirteen layers up to relu5_1 is a generous bound that still catches a
TF32 or bf16 slip (those are 1e-3 to 1e-2). bfloat16 keeps 8 significant bits:
on this project's CPU, bf16 against float32 gave 0.6% on features, 0.8% on Gram
matrices, 0.07% on the loss and a gradient at cosine 0.998 (6% relative) for
this pair; CUDA's bf16 kernels round the same way, so the bounds are about four
times those figures.
"""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
from click.testing import CliRunner

from precision import compare, measure

TOLERANCE = {
    "fp32": {"features": 2e-3, "grams": 2e-3, "loss": 1e-3, "grad": 1e-2, "grad_cosine": 0.9999},
    "bf16": {"features": 3e-2, "grams": 3e-2, "loss": 5e-3, "grad": 0.25, "grad_cosine": 0.99},
}


@pytest.fixture(scope="module")
def cpu_reference():
    torch.backends.cudnn.allow_tf32 = False
    return measure(torch.device("cpu"), bf16=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_features_grams_and_gradient_match_the_cpu(cpu_reference, precision):
    torch.backends.cudnn.allow_tf32 = False
    errors = compare(measure(torch.device("cuda"), bf16=precision == "bf16"), cpu_reference)
    bounds = TOLERANCE[precision]
    print(precision, json.dumps(errors))
    for kind in ("features", "grams", "loss", "grad"):
        assert errors[kind] < bounds[kind], (kind, errors)
    assert errors["grad_cosine"] > bounds["grad_cosine"], errors


def test_a_short_stylization_on_the_gpu_records_its_peak_memory():
    from nst_engine import Params, load_image, stylize
    from precision import SAMPLES

    content, style = load_image(SAMPLES / "tubingen.jpg"), load_image(SAMPLES / "starry_night.jpg")
    history = []
    result = stylize(content, [style], params=Params(size=256, iterations=20, scales=(1.0,), device="cuda"),
                     progress=lambda p: history.append(p.losses["style"]))
    record = result.record
    assert record["device"].startswith("cuda (") and record["precision"] == "bf16"
    assert 0 < record["gpu_peak_memory_mib"] < 4096
    assert all(math.isfinite(v) for v in record["final_losses"].values())
    assert history[-1] < history[0] / 5  # the style term falls as on the CPU
    assert result.outputs[0].stylized.size == (256, 192)


def test_a_gpu_index_this_process_cannot_see_is_refused_with_advice():
    from nst_engine.device import pick_device
    from nst_engine.params import ParamError

    count = torch.cuda.device_count()
    assert pick_device(f"cuda:{count - 1}").index == count - 1
    with pytest.raises(ParamError, match=f"sees {count} GPU") as e:
        pick_device(f"cuda:{count}")
    assert "auto" in e.value.hint


def test_doctor_names_the_gpu(tmp_path):
    from service.cli import main

    root = tmp_path / "site"
    assert CliRunner().invoke(main, ["init", str(root)]).exit_code == 0
    r = CliRunner().invoke(main, ["--config", str(root / "config.toml"), "doctor"])
    assert torch.cuda.get_device_name(0) in r.output, r.output


def test_a_daemon_job_end_to_end_on_the_gpu(service_dir):
    svc = service_dir(defaults={"size": 256, "iterations": 20, "scales": [0.5, 1.0]}).start()
    assert "device cuda (" in svc.log_text()
    svc.drop("gpu", {"outputs": 2})
    job = svc.wait_job("gpu", timeout=120)
    assert job.status == "done", job.error
    record = json.loads((svc.outbox / "gpu" / "job.json").read_text())["record"]
    assert record["device"].startswith("cuda (") and record["gpu_peak_memory_mib"] > 0


def test_a_job_cancelled_and_resumed_on_the_gpu(service_dir):
    svc = service_dir(defaults={"size": 512, "iterations": 3000, "scales": [1.0]},
                      worker={"checkpoint_seconds": 0.5}).start()
    svc.drop("long", {})
    svc.wait_for(lambda: (j := svc.job("long")) is not None and j.progress.step >= 100,
                 what="the job to make progress", timeout=120)
    assert svc.stop(signal.SIGTERM) < 10
    job = svc.job("long")
    assert job.status == "queued" and (svc.config.checkpoints / f"{job.id}.pt").exists()
    svc.start()
    svc.wait_for(lambda: svc.job("long").status == "running" and svc.job("long").progress.step > 150,
                 what="the job to resume", timeout=120)
    svc.store().request_cancel(job.id)
    assert svc.wait_job("long", timeout=60).status == "cancelled"
    folder = svc.outbox / "long"
    assert "resuming from checkpoint" in (folder / "job.log").read_text()
    assert (folder / "long.stylized-partial.png").is_file()


def test_a_batch_of_outputs_on_the_gpu_makes_the_pictures_made_alone():
    """The CPU's batch test (tests/integration/test_stylize.py) on CUDA: each picture's first
    evaluations as alone, the pictures close (L-BFGS's round-off grows as between any two runs)."""
    import numpy as np

    from nst_engine import Params, load_image, stylize
    from precision import SAMPLES

    content, style = load_image(SAMPLES / "tubingen.jpg"), load_image(SAMPLES / "starry_night.jpg")
    params = Params(size=256, iterations=8, scales=(1.0,), outputs=3, device="cuda")
    alone = stylize(content, [style], params=params, batch=1)
    batched = stylize(content, [style], params=params)
    assert batched.record["memory"]["batch"] == 3
    early = [[h["total"] for h in run.history if h["step"] % 8 in (1, 2, 3)] for run in (alone, batched)]
    assert early[1] == pytest.approx(early[0], rel=5e-3)
    for a, b in zip(alone.outputs, batched.outputs):
        diff = np.abs(np.asarray(a.stylized, np.int16) - np.asarray(b.stylized, np.int16))
        print(json.dumps({"variant": a.variant, "mean": float(diff.mean()), "max": int(diff.max())}))
        assert diff.mean() < 2.5


def test_jobs_batched_together_on_the_gpu_make_the_pictures_made_alone():
    """The CPU's test of several jobs in one batch (tests/integration/test_stylize_many.py) on
    CUDA: four jobs of one shape (their own paintings and weights) in one batch, each as alone."""
    import numpy as np
    from PIL import ImageOps

    from nst_engine import Params, Request, load_image, stylize, stylize_many
    from precision import SAMPLES

    photo = load_image(SAMPLES / "tubingen.jpg")
    requests = [Request(photo if k % 2 == 0 else ImageOps.mirror(photo), [load_image(SAMPLES / f"{name}.jpg")],
                        Params(size=256, iterations=8, scales=(1.0,), device="cuda", seed=k,
                               style_weight=1e4 * (k + 1)))
                for k, name in enumerate(("starry_night", "the_scream", "shipwreck", "starry_night"))]
    alone = [stylize(r.content, r.styles, params=r.params) for r in requests]
    together = stylize_many(requests)
    for a, t in zip(alone, together):
        assert (t.record["memory"]["batch"], t.record["memory"]["jobs"]) == (4, 4)
        early = [[h["total"] for h in run.history[:3]] for run in (a, t)]
        assert early[1] == pytest.approx(early[0], rel=5e-3)
        diff = np.abs(np.asarray(a.outputs[0].stylized, np.int16) - np.asarray(t.outputs[0].stylized, np.int16))
        print(json.dumps({"job": t.record["params"]["style_weight"], "mean": float(diff.mean()), "max": int(diff.max())}))
        assert diff.mean() < 2.5


def test_bf16_gram_products_on_cuda_keep_float32_accuracy():
    """The split products (a bf16 product plus its rounding error) run on CUDA once torch keeps
    bf16 reductions in float32, as `stylize` sets: a Gram matrix and its gradient to 1e-4 of the
    same bf16 features' float32 products, with no float32 copy of the features."""
    from nst_engine.losses import _split_products, gram

    flag = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    try:
        g = torch.Generator(device="cuda").manual_seed(0)
        f = torch.rand((1, 64, 384, 512), device="cuda", generator=g).to(torch.bfloat16)
        f = f.contiguous(memory_format=torch.channels_last)
        assert _split_products(f.permute(0, 2, 3, 1))
        weight = torch.randn((1, 64, 64), device="cuda", generator=g)
        x = f.detach().requires_grad_(True)
        (gram(x) * weight).sum().backward()
        x32 = f.detach().float().requires_grad_(True)
        (gram(x32) * weight).sum().backward()
        gram_error = float((gram(f) - gram(f.float())).norm() / gram(f.float()).norm())
        grad_error = float((x.grad.float() - x32.grad).norm() / x32.grad.norm())
        print(json.dumps({"gram": gram_error, "grad": grad_error}))
        assert gram_error < 1e-4
        assert grad_error < 1e-2  # the gradient itself is stored in bf16 (2^-9 relative)
    finally:
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = flag
