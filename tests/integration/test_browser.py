"""The web page in a real headless Chromium, against the real daemon: upload, watch, preview, download."""

import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("NST_ARTIFACTS", ROOT / "test-artifacts")) / "web"
CHROMIUM = "/usr/bin/chromium"


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
    page.fill("#size", "96")
    page.fill("#iterations", "80")
    page.click("#submit")
    page.wait_for_selector("[data-flash=success]")
    row = page.wait_for_selector("tr[data-job] a", timeout=30_000)  # the list reloads when the job appears
    row.click()
    page.wait_for_selector("#status")
    # See the bar move while the job runs.
    page.wait_for_function(
        "() => { const w = parseFloat(document.getElementById('bar').style.width); return w > 0 && w < 100; }",
        timeout=60_000)
    page.wait_for_function("() => document.getElementById('log').textContent.includes('iteration')", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "2-running.png"), full_page=True)
    page.wait_for_selector("#preview", timeout=120_000)  # the page reloads itself when the job ends
    assert page.inner_text("#status") == "done"
    page.screenshot(path=str(ARTIFACTS / "3-done.png"), full_page=True)
    assert page.evaluate("document.getElementById('preview').naturalWidth") > 0

    with page.expect_download() as info:
        page.click("a.download >> nth=0")
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    job = svc.job("photo")
    assert job.status == "done"
    assert saved.read_bytes() == (svc.outbox / job.outbox_dir / download.suggested_filename).read_bytes()

    page.goto(base + "/?status=done")
    page.screenshot(path=str(ARTIFACTS / "4-done-filter.png"), full_page=True)
    assert page.locator("tr[data-job]").count() == 1
