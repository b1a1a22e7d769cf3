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
  const describe = (job) => {
    const p = job.progress;
    if (job.status === "running" && p.total) return `step ${p.step}/${p.total} · loss ${p.loss ? p.loss.toExponential(2) : "-"} · ETA ${fmt(p.eta)}`;
    if (job.status === "done") return `done in ${fmt(job.duration_s)}`;
    return job.status === "failed" ? (job.error || "failed") : job.status;
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
        row.querySelector(".eta").textContent = describe(job);
      }
    };
    await tick();
    setInterval(tick, 1000);
  }
  async function followJob(id, initial) {
    let offset = 0, last = initial;
    const log = document.getElementById("log");
    const tick = async () => {
      const job = await (await fetch(`/api/jobs/${id}`)).json();
      paint(document.getElementById("status"), job.status);
      document.getElementById("bar").style.width = `${(job.progress.fraction * 100).toFixed(1)}%`;
      document.getElementById("eta").textContent = describe(job);
      const chunk = await (await fetch(`/api/jobs/${id}/log?offset=${offset}`)).json();
      if (chunk.text) {
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent += chunk.text;
        if (atBottom) log.scrollTop = log.scrollHeight;
      }
      offset = chunk.offset;
      // A job that just ended has new files to show: reload once.
      if (job.status !== last && ["done", "failed", "cancelled"].includes(job.status)) { window.location.reload(); return false; }
      last = job.status;
      return !["done", "failed", "cancelled"].includes(job.status);
    };
    if (await tick()) { const timer = setInterval(async () => { if (!(await tick())) clearInterval(timer); }, 1000); }
  }
  return {followList, followJob};
})();
// Started from the script tag's data attributes: the Content-Security-Policy allows no inline script.
(() => {
  const me = document.currentScript;
  if (!me) return;
  if (me.dataset.followJob) nst.followJob(Number(me.dataset.followJob), me.dataset.status);
  else if ("followList" in me.dataset) nst.followList(me.dataset.followList);
})();
