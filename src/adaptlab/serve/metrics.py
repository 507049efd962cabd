"""Prometheus text exposition (format 0.0.4) of the server's counters, gauges and latency histogram."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)   # seconds


class Metrics:
    """Request counts by endpoint and status, token counts, and request latency / time-to-first-token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.prompt_tokens = 0
        self.histograms = {name: [0] * (len(LATENCY_BUCKETS) + 1) for name in ("request_latency", "time_to_first_token")}
        self.sums = dict.fromkeys(self.histograms, 0.0)

    def request(self, endpoint: str, status: int, prompt_tokens: int = 0) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.prompt_tokens += prompt_tokens

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.histograms[name][bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.sums[name] += seconds

    def render(self, gauges: dict[str, float], counters: dict[str, float]) -> str:
        """The exposition text; `gauges`/`counters` are live values owned by the engine."""
        lines = ["# TYPE adaptlab_requests_total counter"]
        with self._lock:
            lines += [f'adaptlab_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# TYPE adaptlab_prompt_tokens_total counter", f"adaptlab_prompt_tokens_total {self.prompt_tokens}"]
            for name, counts in self.histograms.items():
                lines += _histogram(f"adaptlab_{name}_seconds", counts, self.sums[name])
        for name, value in counters.items():
            lines += [f"# TYPE adaptlab_{name} counter", f"adaptlab_{name} {value}"]
        for name, value in gauges.items():
            lines += [f"# TYPE adaptlab_{name} gauge", f"adaptlab_{name} {value}"]
        return "\n".join(lines) + "\n"


def _histogram(name: str, counts: list[int], total: float) -> list[str]:
    lines, cumulative = [f"# TYPE {name} histogram"], 0
    for bound, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], counts, strict=True):
        cumulative += n
        lines.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
    return lines + [f"{name}_sum {total}", f"{name}_count {cumulative}"]
