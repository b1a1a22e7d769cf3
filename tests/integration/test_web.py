"""Every route of the web page through Flask's test client, on a real store and inbox."""

import io
import json
import re
import zipfile

import pytest

from service.config import load_config
from service.store import JobStatus, Store
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
        from service.store import Job

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
