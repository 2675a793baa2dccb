"""A small Prometheus text-format registry and its HTTP endpoint (``GET /metrics``).

Counters, gauges and histograms are kept per service instance (no process-global registry), so two
services in one process (tests) do not mix their figures. Updates take one lock; they happen once
per commit, not per read.
"""

from __future__ import annotations

import bisect
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Counter", "Gauge", "Histogram", "MetricsServer", "Registry", "parse_text"]


class _Metric:
    kind = ""

    def __init__(self, registry: Registry, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._lock = registry.lock
        registry.metrics.append(self)

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing total."""

    kind = "counter"

    def __init__(self, registry: Registry, name: str, help_text: str) -> None:
        super().__init__(registry, name, help_text)
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount

    def render(self) -> list[str]:
        return [f"{self.name} {self.value:.17g}"]


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, registry: Registry, name: str, help_text: str) -> None:
        super().__init__(registry, name, help_text)
        self.value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self.value = value

    def render(self) -> list[str]:
        return [f"{self.name} {self.value:.17g}"]


class Histogram(_Metric):
    """Cumulative buckets (upper bounds in the metric's unit), sum and count."""

    kind = "histogram"

    def __init__(self, registry: Registry, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        super().__init__(registry, name, help_text)
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.bounds, value)] += times
            self.sum += value * times
            self.count += times

    def render(self) -> list[str]:
        out, acc = [], 0
        for bound, c in zip(self.bounds, self.counts):
            acc += c
            out.append(f'{self.name}_bucket{{le="{bound:g}"}} {acc}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{self.name}_sum {self.sum:.17g}")
        out.append(f"{self.name}_count {self.count}")
        return out


class Registry:
    """The metrics of one service."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metrics: list[_Metric] = []

    def counter(self, name: str, help_text: str) -> Counter:
        return Counter(self, name, help_text)

    def gauge(self, name: str, help_text: str) -> Gauge:
        return Gauge(self, name, help_text)

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(self, name, help_text, buckets)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self.lock:
            for m in self.metrics:
                lines.append(f"# HELP {m.name} {m.help}")
                lines.append(f"# TYPE {m.name} {m.kind}")
                lines.extend(m.render())
        return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves ``registry.render()`` at ``http://host:port/metrics`` from a daemon thread."""

    def __init__(self, registry: Registry, host: str, port: int) -> None:
        reg = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = reg.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="ingest-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def parse_text(text: str) -> dict[str, float]:
    """Sample name (with labels) -> value, from Prometheus text (for tests and the benchmark)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
