"""Prometheus metrics (Triton-like series, per model and version) and JSON logs without PHI."""

import json
import logging
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Histogram

from dxserve.core.runtime.repository import ModelRef


class Metrics:
    """One app's metrics, in its own registry (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.request_success = Counter(
            "dxserve_inference_request_success",
            "Successful inference requests.",
            labels,
            registry=self.registry,
        )
        self.request_failure = Counter(
            "dxserve_inference_request_failure",
            "Failed inference requests.",
            labels,
            registry=self.registry,
        )
        self.inference_count = Counter(
            "dxserve_inference_count",
            "Inferences performed (rows; a batch of N counts N).",
            labels,
            registry=self.registry,
        )
        self.execution_count = Counter(
            "dxserve_inference_exec_count",
            "Model executions (session runs); inference_count / exec_count is the mean batch size.",
            labels,
            registry=self.registry,
        )
        self.queue_duration = Counter(
            "dxserve_inference_queue_duration_us",
            "Cumulative time requests waited in the batch queue, in microseconds.",
            labels,
            registry=self.registry,
        )
        self.compute_duration = Counter(
            "dxserve_inference_compute_infer_duration_us",
            "Cumulative model execution time, in microseconds.",
            labels,
            registry=self.registry,
        )
        self.feedback = Counter(
            "dxserve_feedback",
            "Clinician verdicts by the model's answer and the clinician's label; agreement rate "
            "and confusion matrix per version follow from them.",
            [*labels, "model_answer", "clinician_label"],
            registry=self.registry,
        )
        self.not_assessed = Counter(
            "dxserve_out_of_distribution_refusals",
            "Studies not assessed because the out-of-distribution guard refused them.",
            labels,
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "dxserve_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def on_batch(self, ref: ModelRef, rows: int, queued_s: float, compute_s: float) -> None:
        labels = (ref.name, str(ref.version))
        self.inference_count.labels(*labels).inc(rows)
        self.execution_count.labels(*labels).inc()
        self.queue_duration.labels(*labels).inc(queued_s * 1e6)
        self.compute_duration.labels(*labels).inc(compute_s * 1e6)

    def request(self, ref: ModelRef | tuple[str, int], ok: bool) -> None:
        name, version = (ref.name, ref.version) if isinstance(ref, ModelRef) else ref
        counter = self.request_success if ok else self.request_failure
        counter.labels(name, str(version)).inc()


class JsonFormatter(logging.Formatter):
    """One JSON object a line; ``extra`` fields are included as they are."""

    RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in self.RESERVED})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr for dxserve and uvicorn."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("dxserve", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # dxserve logs each request itself
