"""The web page in a real headless Chromium, against the real daemon: upload, watch, preview, download."""

import os
import socket
from pathlib import Path

import pace
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("NST_ARTIFACTS", ROOT / "test-artifacts")) / "web"
CHROMIUM = "/usr/bin/chromium"


def ms(seconds: float) -> float:
    """A page wait's ceiling in Playwright's milliseconds, written for the reference machine
    and scaled to this one's pace (a busy or slower machine waits longer, never fails sooner)."""
    return pace.ceiling(seconds) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: make test installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_upload_progress_preview_download(service_dir, browser, pair_files, tmp_path):
    port = free_port()
    svc = service_dir(defaults={"size": 96, "iterations": 80},
                      extra=f'[web]\nenabled = true\nport = {port}\n').start()
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    content, style = pair_files
    page = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True).new_page()

    page.goto(base + "/")
    page.screenshot(path=str(ARTIFACTS / "1-index.png"), full_page=True)
    page.set_input_files("#content", str(content))
    page.set_input_files("#style", str(style))
    page.fill("#size", "ninety")  # a wrong field: said at once, and the chosen files stay chosen
    page.click("#submit")
    page.wait_for_selector("#form-error:not(.d-none)")
    assert "size" in page.inner_text("#form-error")
    assert "is-invalid" in page.get_attribute("#size", "class") and "size" in page.inner_text("#field-error")
    assert page.evaluate("document.getElementById('content').files.length") == 1
    page.fill("#size", "96")
    page.fill("#iterations", "80")
    page.fill("#name", "my holiday")
    page.click("#submit")
    page.wait_for_selector("[data-flash=success]")
    row = page.wait_for_selector("tr[data-job] a", timeout=ms(30))  # the list reloads when the job appears
    row.click()
    page.wait_for_selector("#status")
    # See the bar move while the job runs.
    page.wait_for_function(
        "() => { const w = parseFloat(document.getElementById('bar').style.width); return w > 0 && w < 100; }",
        timeout=ms(60))
    page.wait_for_function("() => document.getElementById('log').textContent.includes('iteration')", timeout=ms(30))
    page.screenshot(path=str(ARTIFACTS / "2-running.png"), full_page=True)
    page.wait_for_selector("#preview", timeout=ms(120))  # the page reloads itself when the job ends
    assert page.inner_text("#status") == "done"
    page.screenshot(path=str(ARTIFACTS / "3-done.png"), full_page=True)
    assert page.evaluate("document.getElementById('preview').naturalWidth") > 0

    with page.expect_download() as info:
        page.click("a.download >> nth=0")
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    job = svc.job("my holiday")
    assert job.status == "done"
    assert saved.read_bytes() == (svc.outbox / job.outbox_dir / download.suggested_filename).read_bytes()
    assert "GET /api" not in svc.log_text()  # waitress: the page's polling stays out of the service log
    assert f"web page at http://127.0.0.1:{port}/" in svc.log_text()  # the address, logged once
    assert "Logging error" not in svc.log_text()

    page.goto(base + "/")
    assert page.input_value("#iterations") == "80"  # the next form starts from the last one
    page.goto(base + "/?status=done")
    page.screenshot(path=str(ARTIFACTS / "4-done-filter.png"), full_page=True)
    assert page.locator("tr[data-job]").count() == 1


def test_live_preview_honest_progress_and_a_phone_width(service_dir, browser, pair_files):
    """A job's page opened while it waits in the queue: once it runs, the image being made and
    the loss curve appear; the bar only moves forward and measures the work (a 128 px
    iteration costs a quarter of a 256 px one), and the page sets no Content-Security-Policy
    violation off. The job list fits a phone, and a wrong field is shown there, marked."""
    port = free_port()
    # Iterations at each of the two scales (128 px, then 256 px: a coarse scale keeps at least
    # 128 px, planning.MIN_SCALE_EDGE, so 256 is the smallest size with two).
    # 24, not 16: at 16 a fast AVX-512 host (a 64 px stylization in 0.11 s) finished the job
    # before the page showed its image being made (2026-12-08).
    n = 24
    svc = service_dir(defaults={"size": 256, "iterations": n, "scales": [0.5, 1.0]},
                      extra=f'[web]\nenabled = true\nport = {port}\n').start()
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    # A long job keeps the worker busy until the page is open, then is cancelled.
    svc.drop("first", {"size": 96, "iterations": 5000, "scales": [1.0]})
    svc.wait_for(lambda: (j := svc.job("first")) is not None and j.status == "running", what="the first job to start")
    svc.drop("live", {})
    svc.wait_for(lambda: svc.job("live") is not None, what="the job to be recorded")
    page.goto(f"{base}/jobs/{svc.job('live').id}")
    assert page.inner_text("#status") == "queued"  # the page opens on a job that has not started
    svc.store().request_cancel(svc.job("first").id)
    # The page follows the job: wait for it to start (as long as the daemon moves), then for the page.
    svc.wait_for(lambda: svc.job("live").status != "queued", what="the job to start")
    page.wait_for_function("() => { const i = document.getElementById('live'); return i && !i.hidden && "
                           "i.naturalWidth > 0; }", timeout=ms(30))
    page.wait_for_function("() => document.querySelectorAll('#live-loss polyline').length >= 2", timeout=ms(30))
    from playwright.sync_api import Error as PageError

    samples = []
    while True:
        job = svc.job("live")
        if job.status != "running" or len(samples) > 400:
            break
        try:
            width = page.evaluate("parseFloat(document.getElementById('bar').style.width)")
        except PageError:  # the page reloads itself as the job ends
            break
        samples.append((width, job.progress))
        if len(samples) == 30:
            page.screenshot(path=str(ARTIFACTS / "5-live.png"), full_page=True)
        page.wait_for_timeout(150)
    widths = [w for w, _ in samples]
    assert widths == sorted(widths), widths  # never backwards
    for _, p in samples:  # the recorded fraction is the share of pixels times iterations done
        if p.total:
            expected = (min(p.step, n) * 1 + max(0, p.step - n) * 4) / (n * 5)
            assert abs(p.fraction - expected) < 0.01, (p.step, p.fraction, expected)
    assert svc.wait_job("live").status == "done"
    assert not violations, violations

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    phone.goto(base + "/")
    phone.wait_for_selector("tr[data-job]")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    heading = phone.locator("h1").bounding_box()
    filters = phone.locator("[aria-label=filter]").bounding_box()
    assert heading["y"] + heading["height"] <= filters["y"] or heading["x"] + heading["width"] <= filters["x"]
    phone.screenshot(path=str(ARTIFACTS / "6-phone.png"), full_page=True)
    content, style = pair_files
    phone.set_input_files("#content", str(content))
    phone.set_input_files("#style", str(style))
    phone.fill("#iterations", "many")
    phone.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    phone.click("#submit")
    note = phone.wait_for_selector("#field-error")
    assert "iterations" in note.inner_text() and "is-invalid" in phone.get_attribute("#iterations", "class")
    box = note.bounding_box()
    assert box and 0 <= box["y"] and box["y"] + box["height"] <= 844, box  # on the screen, by its field
    phone.screenshot(path=str(ARTIFACTS / "6b-phone-form-error.png"))
    phone.goto(f"{base}/jobs/{svc.job('live').id}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(ARTIFACTS / "7-phone-job.png"), full_page=True)
