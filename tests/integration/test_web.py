"""Every route of the web page through Flask's test client, on a real store and inbox."""

import io
import json
import os
import re
import zipfile

import pytest

from service.config import load_config
from service.status import JobStatus
from service.store import Store
from service.web import create_app


@pytest.fixture
def site(tmp_path):
    (tmp_path / "config.toml").write_text("[web]\nmax_upload_mb = 1.0\n[defaults]\nsize = 64\n")
    for sub in ("inbox", "outbox", "state"):
        (tmp_path / sub).mkdir()
    config = load_config(tmp_path / "config.toml")
    store = Store(config.database)
    app = create_app(config, store=store)
    client = app.test_client()
    yield config, store, client
    store.dispose()


def token(client, path="/"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def png(img) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    buf.seek(0)
    return buf


def upload(client, content, styles, **fields):
    data = {"csrf_token": token(client), "content": (content, "my photo.png"),
            "style": [(s, f"style{i}.png") for i, s in enumerate(styles)], "size": "80", "iterations": "5",
            "style_weight": "50", "content_weight": "1", "optimizer": "lbfgs", "outputs": "2",
            "color_correction": "on", **fields}
    return client.post("/submit", data=data, content_type="multipart/form-data")


def finished_job(config, store, content_image):
    job, _ = store.enqueue(key="k", name="done-job", params={"size": 64})
    folder = config.outbox / "done-job"
    (folder / "inputs").mkdir(parents=True)
    content_image.save(folder / "done-job.stylized.png")
    content_image.save(folder / "preview.png")
    (folder / "job.log").write_text("hello log\n")
    (folder / "job.json").write_text(json.dumps({"id": job.id}))
    store.mark_staged(job.id, [])
    store.claim_next(run_id="r")
    store.reserve_outbox_dir(job.id, "r", "done-job")
    store.transition(job.id, JobStatus.DONE, run_id="r", outputs=["done-job.stylized.png"])
    return store.get(job.id)


def test_index_shows_form_with_config_defaults_and_local_bootstrap(site):
    _, _, client = site
    page = client.get("/").get_data(as_text=True)
    assert 'name="size"' in page and 'value="64"' in page and 'type="range"' in page
    assert "cdn" not in page.lower() and "/bootstrap/static/" in page
    assert client.get(re.search(r'href="(/bootstrap/static/[^"]+\.css)"', page).group(1)).status_code == 200


def test_upload_writes_into_the_inbox_like_submit(site, content_image, style_image):
    config, _, client = site
    r = upload(client, png(content_image), [png(style_image), png(style_image)])
    assert r.status_code == 302
    sidecar = json.loads((config.inbox / "my photo.json").read_text())
    assert sidecar["size"] == 80 and sidecar["outputs"] == 2 and sidecar["preserve_color"] is False
    assert sidecar["style"] == ["my photo.style-1.png", "my photo.style-2.png"]
    assert all((config.inbox / n).exists() for n in [sidecar["content"], *sidecar["style"]])
    assert "queued as" in client.get("/").get_data(as_text=True)


def test_strength_is_a_slider_and_reaches_the_sidecar(site, content_image, style_image):
    config, _, client = site
    page = client.get("/").get_data(as_text=True)
    slider = re.search(r'<input[^>]*id="strength"[^>]*>', page, re.S).group(0)
    assert 'type="range"' in slider and 'min="0.0"' in slider and 'max="1.0"' in slider and 'step="0.05"' in slider
    assert upload(client, png(content_image), [png(style_image)], strength="0.8").status_code == 302
    assert json.loads((config.inbox / "my photo.json").read_text())["strength"] == 0.8


def test_the_job_page_names_what_each_output_changes(site, content_image):
    config, store, client = site
    job, _ = store.enqueue(key="v", name="two", params={"outputs": 2})
    folder = config.outbox / "two"
    folder.mkdir(parents=True)
    names = ["two.stylized-1.png", "two.stylized-2.png"]
    for name in names:
        content_image.save(folder / name)
    store.mark_staged(job.id, [])
    store.claim_next(run_id="r")
    store.reserve_outbox_dir(job.id, "r", "two")
    store.transition(job.id, JobStatus.DONE, run_id="r", outputs=names,
                     record={"output_variants": dict(zip(names, ["as given", "larger brushwork"]))})
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert re.search(r'class="variant">larger brushwork</strong><br>two.stylized-2.png', page)


def test_a_queued_job_shows_its_estimate(site):
    _, store, client = site
    job, _ = store.enqueue(key="e", name="print", params={"size": 4096})
    store.note_estimate(job.id, {"device": "cpu", "budget_mib": 6144, "peak_mib": 5900, "work_mpix_iterations": 250.0,
                                 "scales": [{"size": [512, 384], "tile": None, "tiles": 1},
                                            {"size": [4096, 3072], "tile": 976, "tiles": 20}]})
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert re.search(r'id="estimate">Estimate: peak about 5\.8 GiB of 6\.0; 2 scales, 4096x3072 in 20 tiles<', page)


@pytest.mark.parametrize("case,message", [
    ("not-image", "not an image"), ("params", "size"), ("missing", "choose a content image"),
])
def test_bad_uploads_get_clear_messages(site, content_image, style_image, case, message):
    config, _, client = site
    content = io.BytesIO(b"this is text") if case == "not-image" else png(content_image)
    if case == "missing":
        r = client.post("/submit", data={"csrf_token": token(client)}, content_type="multipart/form-data")
    else:
        r = upload(client, content, [png(style_image)], **({"size": "999999"} if case == "params" else {}))
    assert r.status_code == 400
    assert message in r.get_data(as_text=True)
    assert list(config.inbox.iterdir()) == []


def test_an_upload_the_inbox_would_refuse_is_refused_by_the_form(site, content_image, style_image):
    config, _, client = site
    r = upload(client, png(content_image), [png(style_image) for _ in range(17)])
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    assert "not submitted: at most 16 style images" in page and "drop it again" not in page
    assert list(config.inbox.iterdir()) == []


def test_too_large_upload(site):
    _, _, client = site
    big = io.BytesIO(b"\0" * (2 * 1024 * 1024))
    r = client.post("/submit", data={"csrf_token": token(client), "content": (big, "x.png")},
                    content_type="multipart/form-data")
    assert r.status_code == 413 and "upload too large" in r.get_data(as_text=True)


def test_csrf_is_required(site, content_image, style_image):
    _, _, client = site
    r = client.post("/submit", data={"content": (png(content_image), "a.png")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)


def test_job_page_files_zip_and_api(site, content_image):
    config, store, client = site
    job = finished_job(config, store, content_image)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "done-job.stylized.png" in page and "preview.png" in page and "Download all" in page
    assert client.get(f"/jobs/{job.id}/files/done-job.stylized.png").data == \
        (config.outbox / "done-job" / "done-job.stylized.png").read_bytes()
    dl = client.get(f"/jobs/{job.id}/files/done-job.stylized.png?download=1")
    assert "attachment" in dl.headers["Content-Disposition"]
    for bad in ("../../config.toml", "..%2F..%2Fconfig.toml", "/etc/passwd", "inputs/../../x"):
        assert client.get(f"/jobs/{job.id}/files/{bad}", follow_redirects=True).status_code == 404
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job.id}/zip").data))
    assert "done-job/job.log" in z.namelist()
    jobs = client.get("/api/jobs").get_json()
    assert jobs[0]["id"] == job.id and jobs[0]["progress"]["fraction"] == 1.0
    detail = client.get(f"/api/jobs/{job.id}").get_json()
    assert "done-job.stylized.png" in detail["files"] and detail["status"] == "done"
    log = client.get(f"/api/jobs/{job.id}/log").get_json()
    assert log == {"text": "hello log\n", "offset": 10, "finished": True}
    assert client.get(f"/api/jobs/{job.id}/log?offset=6").get_json()["text"] == "log\n"
    assert client.get("/api/jobs?status=nope").status_code == 400
    assert client.get("/api/jobs/999").status_code == 404
    assert client.get("/jobs/999").status_code == 404


def test_the_zip_download_is_streamed_not_built_in_memory(site, content_image, tmp_path):
    import tracemalloc

    config, store, client = site
    job = finished_job(config, store, content_image)
    big = config.outbox / "done-job" / "inputs" / "done-job.scan.tif"
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(2**20))  # 64 MiB that do not compress
    tracemalloc.start()
    try:
        response = client.get(f"/jobs/{job.id}/zip", buffered=False)
        assert response.is_streamed and "attachment" in response.headers["Content-Disposition"]
        with open(tmp_path / "dl.zip", "wb") as out:
            for chunk in response.response:
                out.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"the download held {peak / 2**20:.0f} MiB at once"
    with zipfile.ZipFile(tmp_path / "dl.zip") as z:
        assert z.testzip() is None
        assert z.read("done-job/inputs/done-job.scan.tif") == big.read_bytes()
        assert z.read("done-job/job.log") == b"hello log\n"


def test_cancel_and_retry_buttons(site, content_image, style_image):
    config, store, client = site
    job, _ = store.enqueue(key="q", name="queued-job", params={})
    store.mark_staged(job.id, [])
    r = client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": token(client)})
    assert r.status_code == 302 and store.get(job.id).status == "cancelled"
    # Retry needs archived inputs in the outbox folder.
    folder = config.outbox / "queued-job" / "inputs"
    folder.mkdir(parents=True)
    content_image.save(folder / "c.png")
    style_image.save(folder / "s.png")
    with store._write() as s:  # give the cancelled job its outbox folder and inputs
        from service.models import Job

        row = s.get(Job, job.id)
        row.outbox_dir = "queued-job"
        row.inputs_json = json.dumps([{"role": "content", "name": "c.png"}, {"role": "style", "name": "s.png"}])
    r = client.post(f"/jobs/{job.id}/retry", data={"csrf_token": token(client)})
    assert r.status_code == 302
    assert (config.inbox / "queued-job.json").exists()


def test_optional_password(tmp_path):
    (tmp_path / "config.toml").write_text('[web]\npassword = "s3cret"\n')
    config = load_config(tmp_path / "config.toml")
    client = create_app(config).test_client()
    assert client.get("/").status_code == 302
    assert client.get("/api/jobs").status_code == 401
    login_token = token(client, "/login")
    assert "wrong password" in client.post("/login", data={"csrf_token": login_token, "password": "no"},
                                           follow_redirects=True).get_data(as_text=True)
    r = client.post("/login?next=//evil.example", data={"csrf_token": login_token, "password": "s3cret"})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert client.get("/api/jobs").status_code == 200


def test_every_response_carries_the_security_headers(site):
    _, _, client = site
    for path in ("/", "/api/jobs", "/jobs/1", "/static/nst.js", "/nowhere"):
        r = client.get(path)
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert "script-src 'self'" in r.headers["Content-Security-Policy"], path
        assert r.headers["X-Frame-Options"] == "DENY"
    page = client.get("/").get_data(as_text=True)
    assert not re.search(r"<script>(?!</script>)", page) and "<style>" not in page  # nothing inline to allow


def test_archived_files_other_than_our_images_are_downloads_never_pages(site, content_image):
    config, store, client = site
    job = finished_job(config, store, content_image)
    inputs = config.outbox / "done-job" / "inputs"
    (inputs / "evil.html").write_text("<script>alert(document.cookie)</script>")
    (inputs / "evil.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    (inputs / "gif-named.html").write_bytes(b"GIF89a<script>alert(1)</script>")
    for name in ("evil.html", "evil.svg", "gif-named.html", "job.log", "job.json"):
        path = name if name.startswith("job") else f"inputs/{name}"
        r = client.get(f"/jobs/{job.id}/files/{path}")
        assert r.status_code == 200 and r.mimetype == "application/octet-stream", name
        assert r.headers["Content-Disposition"].startswith("attachment"), name
    r = client.get(f"/jobs/{job.id}/files/done-job.stylized.png")
    assert r.mimetype == "image/png" and "attachment" not in r.headers.get("Content-Disposition", "")


def test_api_errors_are_json_and_huge_numbers_are_not_errors(site, content_image):
    config, store, client = site
    job = finished_job(config, store, content_image)
    for path in ("/api/jobs/99999999999999999999999999", "/api/jobs/0", "/api/nothing"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.get_json(), path
    assert client.get("/jobs/99999999999999999999999999").status_code == 404
    r = client.get(f"/api/jobs/{job.id}/log?offset=100000000000000000000000")
    assert r.status_code == 200 and r.get_json()["text"] == ""
    r = client.get(f"/api/jobs/{job.id}/log?offset=1e23")
    assert r.status_code == 400 and "whole number" in r.get_json()["error"]
    assert client.post("/api/jobs").get_json()["error"]  # 405, as JSON


def _login(client, password, next_path="/"):
    return client.post(f"/login?next={next_path}", data={"csrf_token": token(client, "/login"),
                                                         "password": password})


def test_login_is_rate_limited_per_client(tmp_path):
    (tmp_path / "config.toml").write_text('[web]\npassword = "s3cret"\n')
    client = create_app(load_config(tmp_path / "config.toml")).test_client()
    codes = [_login(client, f"guess{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    r = _login(client, "s3cret")  # right, but too soon after five wrong ones
    assert r.status_code == 429 and "try again in" in r.get_data(as_text=True)
    assert client.get("/api/jobs").status_code == 401
    other = create_app(load_config(tmp_path / "config.toml")).test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.2"  # another client is not held up
    assert _login(other, "s3cret").status_code == 302


def test_sessions_end_with_logout_and_with_a_password_change(tmp_path):
    (tmp_path / "config.toml").write_text('[web]\npassword = "s3cret"\n')
    client = create_app(load_config(tmp_path / "config.toml")).test_client()
    assert _login(client, "s3cret").status_code == 302
    assert client.get("/api/jobs").status_code == 200
    assert "Log out" in client.get("/").get_data(as_text=True)
    saved = client.get_cookie("session").value
    client.post("/logout", data={"csrf_token": token(client)})
    assert client.get("/api/jobs").status_code == 401
    client.set_cookie("session", saved)  # a cookie kept from before the logout opens nothing
    assert client.get("/api/jobs").status_code == 401
    assert _login(client, "s3cret").status_code == 302
    cookie = client.get_cookie("session").value
    (tmp_path / "config.toml").write_text('[web]\npassword = "changed"\n')
    changed = create_app(load_config(tmp_path / "config.toml")).test_client()  # same state/web-secret
    changed.set_cookie("session", cookie)
    assert changed.get("/api/jobs").status_code == 401


def _clocked_app(tmp_path, extra=""):
    (tmp_path / "config.toml").write_text(f'[web]\npassword = "s3cret"\n{extra}')
    app = create_app(load_config(tmp_path / "config.toml"))
    now = [1000.0]
    app.extensions["nst"]["gate"].clock = lambda: now[0]
    return app, now


def test_the_right_password_gets_through_at_its_turn_while_guesses_are_slowed(tmp_path):
    app, now = _clocked_app(tmp_path)
    client = app.test_client()
    assert [_login(client, f"guess{i}").status_code for i in range(5)] == [401] * 5
    assert _login(client, "s3cret").status_code == 429  # its turn is 1 s after the last wrong one
    now[0] += 1.0
    assert _login(client, "guess5").status_code == 401  # a guess at its turn is checked...
    assert _login(client, "s3cret").status_code == 429  # ...and the next turn is 2 s away
    now[0] += 2.0
    assert _login(client, "s3cret").status_code == 302  # no lockout: the password opens at its turn


def test_metrics_share_the_login_limiter(tmp_path):
    import base64

    app, now = _clocked_app(tmp_path)
    client = app.test_client()
    basic = lambda pw: {"Authorization": "Basic " + base64.b64encode(f"p:{pw}".encode()).decode()}  # noqa: E731
    codes = [client.get("/metrics", headers=basic(f"guess{i}")).status_code for i in range(8)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes  # not 150 guesses a second
    assert _login(client, "guess").status_code == 429  # the login form is the same door
    assert client.get("/metrics", headers=basic("s3cret")).status_code == 429  # not an oracle either
    now[0] += 60
    assert client.get("/metrics", headers=basic("s3cret")).status_code == 200


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limiter(tmp_path):
    import threading
    import urllib.error
    import urllib.parse
    import urllib.request

    from service.web import WebServer

    def post_login(port, password, forwarded=None):
        jar = urllib.request.HTTPCookieProcessor()
        opener = urllib.request.build_opener(jar, _NoRedirect())
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        page = opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/login", headers=headers)).read()
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        body = urllib.parse.urlencode({"csrf_token": csrf, "password": password}).encode()
        try:
            return opener.open(urllib.request.Request(f"http://127.0.0.1:{port}/login", data=body,
                                                      headers=headers)).status
        except urllib.error.HTTPError as e:
            return e.code

    for proxy, separate in (("127.0.0.1", True), ("", False)):
        (tmp_path / "config.toml").write_text(f'[web]\npassword = "s3cret"\ntrusted_proxy = "{proxy}"\n')
        app = create_app(load_config(tmp_path / "config.toml"))
        app.extensions["nst"]["gate"].clock = lambda: 1000.0  # still: a slow machine never reaches a turn
        server = WebServer(app, "127.0.0.1", 0, threads=2, trusted_proxy=proxy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert [post_login(server.port, f"g{i}", "203.0.113.9") for i in range(5)] == [401] * 5
            assert post_login(server.port, "s3cret", "203.0.113.9") == 429
            # A forwarded address counts only from the proxy named in the config: otherwise
            # anyone could send a new X-Forwarded-For with every guess.
            assert post_login(server.port, "s3cret", "198.51.100.7") == (302 if separate else 429)
        finally:
            server.shutdown()


class _NoRedirect(__import__("urllib.request").request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.parametrize("target", ["/%09/evil.example", "//evil.example", "/\\evil.example", "https://evil.example",
                                    "/%0d%0aSet-Cookie:x", "javascript:alert(1)"])
def test_login_redirects_only_to_our_own_paths(tmp_path, target):
    (tmp_path / "config.toml").write_text('[web]\npassword = "s3cret"\n')
    client = create_app(load_config(tmp_path / "config.toml")).test_client()
    r = _login(client, "s3cret", target)
    assert r.status_code == 302 and r.headers["Location"] == "/", target
    r = _login(client, "s3cret", "/jobs/3")
    assert r.headers["Location"] == "/jobs/3"


def test_metrics_in_the_prometheus_format(site, content_image):
    from prometheus_client.parser import text_string_to_metric_families

    config, store, client = site
    finished_job(config, store, content_image)
    queued, _ = store.enqueue(key="q2", name="waiting", params={})
    store.register_daemon("run-1", device="cpu")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(r.get_data(as_text=True)) for s in family.samples}
    assert samples[("nst_jobs", (("status", "done"),))] == 1
    assert samples[("nst_jobs", (("status", "queued"),))] == 1
    assert samples[("nst_queue_depth", ())] == 1
    assert samples[("nst_job_duration_seconds_count", ())] == 1
    ages = [v for (name, _), v in samples.items() if name == "nst_worker_heartbeat_age_seconds"]
    assert len(ages) == 1 and 0 <= ages[0] < 60


def test_metrics_need_the_password_when_one_is_set(tmp_path):
    import base64

    (tmp_path / "config.toml").write_text('[web]\npassword = "s3cret"\n')
    client = create_app(load_config(tmp_path / "config.toml")).test_client()
    r = client.get("/metrics")
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    wrong = base64.b64encode(b"prometheus:nope").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    right = base64.b64encode(b"prometheus:s3cret").decode()
    assert client.get("/metrics", headers={"Authorization": f"Basic {right}"}).status_code == 200


def test_a_job_refused_before_its_images_were_kept_offers_no_retry_and_shows_what_is_known(site):
    config, store, client = site
    job, _ = store.enqueue(key="bad", name="bad", params={}, error="bad.toml: not valid TOML: ...")
    folder = config.outbox / "bad"
    (folder / "inputs").mkdir(parents=True)
    (folder / "inputs" / "bad.toml").write_text("size = = 3")
    (folder / "error.txt").write_text("What went wrong ...")
    (folder / "job.json").write_text(json.dumps({"id": job.id}))
    store.reserve_outbox_dir(job.id, None, "bad")
    store.transition(job.id, JobStatus.FAILED, error="bad.toml: not valid TOML: ...")
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert 'id="retry"' not in page and 'id="params"' not in page and 'id="log"' not in page
    assert page.count("not valid TOML") == 1 and 'id="cancel"' not in page
    r = client.post(f"/jobs/{job.id}/retry", data={"csrf_token": token(client)}, follow_redirects=True)
    assert "cannot be retried" in r.get_data(as_text=True)


def test_a_failed_jobs_page_and_nst_show_give_its_advice(site):
    """The error alone says what went wrong; error.txt also says how to fix it, and both doors
    show that too."""
    from click.testing import CliRunner

    from service.cli import main
    from service.pipeline.outbox import error_text

    config, store, client = site
    job, _ = store.enqueue(key="big", name="big", params={"size": 64}, error="size 9000 is over the limit")
    folder = config.outbox / "big"
    folder.mkdir(parents=True)
    (folder / "error.txt").write_text(error_text("big", "size 9000 is over the limit", "choose size <= 4096 & retry"))
    store.reserve_outbox_dir(job.id, None, "big")
    store.transition(job.id, JobStatus.FAILED, error="size 9000 is over the limit")
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert 'id="advice"' in page and "choose size &lt;= 4096 &amp; retry" in page  # escaped, as all text
    r = CliRunner().invoke(main, ["--config", str(config.outbox.parent / "config.toml"), "show", str(job.id)])
    assert r.exit_code == 0 and "to fix it   choose size <= 4096 & retry" in r.output, r.output
