"""The server's Prometheus metrics, in a registry of their own (one per server, so tests can run many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 1 ms to 2 min: a token on a big model, a first token behind a long queue.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("gemmaforge_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("gemmaforge_prompt_tokens", "Prompt tokens admitted to the batch", registry=r)
        self.completion_tokens = Counter("gemmaforge_completion_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram("gemmaforge_time_to_first_token_seconds", "From arrival to the first token",
                              buckets=_BUCKETS, registry=r)
        self.itl = Histogram("gemmaforge_inter_token_latency_seconds", "Between consecutive tokens of a sequence",
                             buckets=_BUCKETS, registry=r)
        self.latency = Histogram("gemmaforge_request_seconds", "Whole request, arrival to last byte",
                                 buckets=_BUCKETS, registry=r)
        self.queue_depth = Gauge("gemmaforge_queue_depth", "Sequences waiting for a batch row", registry=r)
        self.batch_occupancy = Gauge("gemmaforge_batch_occupancy", "Batch rows in use", registry=r)
        self.batch_size = Gauge("gemmaforge_batch_rows", "Batch rows in all (--max-batch)", registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)
