"""`/metrics`: the service's state in the Prometheus text format, read from the job store at
each scrape (so any node, or `nst web` alone, answers for the whole cluster). No torch here."""

from __future__ import annotations

import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from .models import utcnow
from .status import NAMES
from .store import Store


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        counts = self.store.counts()
        by_status = GaugeMetricFamily("nst_jobs", "Jobs in the history, by status", labels=["status"])
        for status in NAMES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        queue = self.store.queue()
        yield GaugeMetricFamily("nst_queue_depth", "Queued jobs (waiting for a worker or for their images)",
                                value=len(queue))
        yield CounterMetricFamily("nst_jobs_failed", "Jobs that ended failed", value=counts.get("failed", 0))
        yield from self._durations()
        yield from self._running()
        yield from self._workers()

    def _durations(self):
        count, total, latest = self.store.done_durations()
        yield SummaryMetricFamily("nst_job_duration_seconds", "Start to end of each done job",
                                  count_value=count, sum_value=total)
        peak = latest.record.get("gpu_peak_memory_mib") if latest else None
        if peak is not None:
            yield GaugeMetricFamily("nst_last_job_gpu_peak_memory_bytes",
                                    "Peak GPU memory of the most recent done job", value=peak * 2**20)

    def _running(self):
        rate = GaugeMetricFamily("nst_iterations_per_second", "Iterations per second of each running job",
                                 labels=["job", "host", "device"])
        done = GaugeMetricFamily("nst_job_progress_ratio", "Share of the work done of each running job",
                                 labels=["job", "host", "device"])
        devices = {d.run_id: d.device for d in self.store.all_daemons()}  # a worker per device: which one
        for job in self.store.running():
            p, labels = job.progress, [str(job.id), job.host or "", devices.get(job.run_id, "")]
            if p.elapsed:
                rate.add_metric(labels, p.step / p.elapsed)
            done.add_metric(labels, p.fraction)
        yield rate
        yield done

    def _workers(self):
        silent = GaugeMetricFamily("nst_worker_heartbeat_age_seconds", "Seconds since each daemon's heartbeat",
                                   labels=["host", "run_id", "roles", "device"])
        now = utcnow()
        for d in self.store.all_daemons():
            silent.add_metric([d.host, d.run_id, d.roles, d.device], (now - d.heartbeat_at).total_seconds())
        yield silent
        yield GaugeMetricFamily("nst_scrape_timestamp_seconds", "When this answer was made", value=time.time())


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
