// Live updates for the job list and the job page: polls the JSON API about once a second.
const nst = (() => {
  const colours = {queued: "secondary", running: "primary", done: "success", failed: "danger", cancelled: "warning"};
  const fmt = (s) => {
    if (s === null || s === undefined) return "";
    s = Math.max(0, Math.round(s));
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? `${h}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
  };
  const paint = (badge, status) => { badge.textContent = status; badge.className = `badge status bg-${colours[status] || "secondary"}`; };
  // One line about a job. The list shows a failed job's error here; the job page shows it once, above.
  const describe = (job, inList) => {
    const p = job.progress;
    if (job.status === "running" && p.total) {
      return `${Math.floor(p.fraction * 100)}% · scale ${p.scale}/${p.scales} · loss ${p.loss ? p.loss.toExponential(2) : "-"} · ETA ${fmt(p.eta)}`;
    }
    if (job.status === "done") return `done in ${fmt(job.duration_s)}`;
    if (job.status === "queued" && job.error) return job.error;  // waiting for its images
    if (["failed", "cancelled"].includes(job.status)) return inList ? (job.error || job.status) : "";
    return job.status;
  };
  async function followList(status) {
    let known = new Set([...document.querySelectorAll("tr[data-job]")].map((r) => r.dataset.job));
    const tick = async () => {
      const jobs = await (await fetch(`/api/jobs?limit=100${status ? `&status=${status}` : ""}`)).json();
      if (jobs.some((j) => !known.has(String(j.id)))) { window.location.reload(); return; }
      for (const job of jobs) {
        const row = document.querySelector(`tr[data-job="${job.id}"]`);
        if (!row) continue;
        paint(row.querySelector(".status"), job.status);
        row.querySelector(".progress-bar").style.width = `${(job.progress.fraction * 100).toFixed(1)}%`;
        row.querySelector(".eta").textContent = describe(job, true);
      }
    };
    await tick();
    setInterval(tick, 1000);
  }
  // The loss curve so far, log scale, one polyline per term; a dashed line where a scale begins.
  const lossColours = {total: "#212529", style: "#dc3545", content: "#0d6efd", tv: "#198754"};
  function drawLosses(svg, points, job) {
    if (!points.length) return;
    const W = 600, H = 200, pad = 4, keys = Object.keys(lossColours).filter((k) => points.some((p) => p[k] > 0));
    const values = points.flatMap((p) => keys.map((k) => p[k])).filter((v) => v > 0).map(Math.log10);
    const lo = Math.min(...values), hi = Math.max(...values), steps = job.progress.total || points[points.length - 1].step;
    const x = (s) => pad + (W - 2 * pad) * (s / Math.max(steps, 1));
    const y = (v) => H - pad - (H - 2 * pad) * ((Math.log10(v) - lo) / Math.max(hi - lo, 1e-9));
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const perScale = job.progress.iterations || 0;
    for (let s = perScale; perScale && s < steps; s += perScale) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", x(s)); line.setAttribute("x2", x(s)); line.setAttribute("y1", 0); line.setAttribute("y2", H);
      line.setAttribute("class", "scale-mark");
      svg.appendChild(line);
    }
    for (const k of keys) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.filter((p) => p[k] > 0).map((p) => `${x(p.step).toFixed(1)},${y(p[k]).toFixed(1)}`).join(" "));
      line.setAttribute("stroke", lossColours[k]);
      line.setAttribute("class", `loss-${k}`);
      svg.appendChild(line);
    }
  }
  async function followJob(id, initial) {
    let offset = 0, last = initial, lastPicture = 0;
    const log = document.getElementById("log");
    const live = document.getElementById("live"), plot = document.getElementById("live-loss");
    const tick = async () => {
      const job = await (await fetch(`/api/jobs/${id}`)).json();
      paint(document.getElementById("status"), job.status);
      document.getElementById("bar").style.width = `${(job.progress.fraction * 100).toFixed(1)}%`;
      document.getElementById("eta").textContent = describe(job);
      if (log) {
        const chunk = await (await fetch(`/api/jobs/${id}/log?offset=${offset}`)).json();
        if (chunk.text) {
          const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          log.textContent += chunk.text;
          if (atBottom) log.scrollTop = log.scrollHeight;
        }
        offset = chunk.offset;
      }
      if (live && job.status === "running" && Date.now() - lastPicture > 2500) {
        lastPicture = Date.now();
        const next = new Image();
        next.onload = () => { live.src = next.src; live.hidden = false; document.getElementById("live-caption").textContent = `the image being made · step ${job.progress.step}/${job.progress.total}`; };
        next.src = `/jobs/${id}/live.jpg?t=${lastPicture}`;
        drawLosses(plot, await (await fetch(`/api/jobs/${id}/losses`)).json(), job);
      }
      // A job that just started (the page has no live view yet) or just ended (new files to
      // show): reload once, and the page has what the job now has.
      if (job.status !== last && (["done", "failed", "cancelled"].includes(job.status) || (job.status === "running" && !live))) {
        window.location.reload(); return false;
      }
      last = job.status;
      return !["done", "failed", "cancelled"].includes(job.status);
    };
    if (await tick()) { const timer = setInterval(async () => { if (!(await tick())) clearInterval(timer); }, 1000); }
  }
  return {followList, followJob};
})();
// Started from the script tag's data attributes: the Content-Security-Policy allows no inline script.
(() => {
  // The form's fields are checked before the files go: a wrong field keeps the chosen files.
  const form = document.getElementById("upload");
  if (form) {
    form.addEventListener("submit", async (event) => {
      if (form.dataset.checked === "yes") return;
      event.preventDefault();
      const fields = new FormData(form);
      fields.delete("content"); fields.delete("style");
      const answer = await (await fetch("/api/validate", {method: "POST", body: fields})).json();
      const box = document.getElementById("form-error");
      for (const marked of form.querySelectorAll(".is-invalid")) { marked.classList.remove("is-invalid"); marked.removeAttribute("aria-invalid"); }
      document.getElementById("field-error")?.remove();
      if (!answer.ok) {
        box.textContent = `not submitted: ${answer.error}`;
        box.classList.remove("d-none");
        // The field at fault marked and in view (on a phone the message above is off the screen).
        const field = answer.field && form.elements.namedItem(answer.field);
        if (field && field.classList) {
          field.classList.add("is-invalid"); field.setAttribute("aria-invalid", "true");
          const note = document.createElement("div");  // the message again, by the field
          note.id = "field-error"; note.className = "invalid-feedback d-block"; note.textContent = answer.error;
          field.insertAdjacentElement("afterend", note);
          field.setAttribute("aria-describedby", "field-error");
          field.scrollIntoView({block: "center"}); field.focus({preventScroll: true});
        } else {
          box.scrollIntoView({block: "center"});
        }
        return;
      }
      box.classList.add("d-none");
      form.dataset.checked = "yes";
      form.requestSubmit();
    });
  }
  // Sliders show their value (no inline handlers: the Content-Security-Policy forbids them).
  for (const input of document.querySelectorAll("input[data-shows]")) {
    input.addEventListener("input", () => { document.getElementById(input.dataset.shows).value = input.value; });
  }
  const me = document.currentScript;
  if (!me) return;
  if (me.dataset.followJob) nst.followJob(Number(me.dataset.followJob), me.dataset.status);
  else if ("followList" in me.dataset) nst.followList(me.dataset.followList);
})();
