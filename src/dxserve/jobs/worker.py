"""``dxserve worker``: take training jobs from the database queue and run them, one at a time.

A job's data is opened in a scratch folder that is removed when the job ends: the tenant's
datasets (their sealed archives) and, when asked, its clinicians' feedback on the base model.
Progress (epoch, loss, validation AUC) goes to the job's heartbeat, which is also where a
requested cancellation is noticed. The job's wall time is metered when it ends.
"""

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.core.security.envelope import KeyRing
from dxserve.datasets import Dataset
from dxserve.datasets.archive import extract
from dxserve.datasets.layouts import open_dataset
from dxserve.errors import DatasetError, DxError
from dxserve.settings import Settings
from dxserve.store.audit import AuditTrail, load_key
from dxserve.store.blobs import BlobStore
from dxserve.store.database import make_engine, migrate
from dxserve.store.datasets import Datasets
from dxserve.store.feedback import Feedback, export_labelled
from dxserve.store.jobs import CANCELLED, FAILED, SUCCEEDED, JobCancelled, Jobs
from dxserve.store.usage import Usage

log = logging.getLogger("dxserve.worker")
HEARTBEAT_S = 10.0


@dataclass
class Worker:
    settings: Settings
    jobs: Jobs
    datasets: Datasets
    feedback: Feedback
    blobs: BlobStore
    usage: Usage
    name: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "Worker":
        engine = make_engine(settings.database)
        migrate(engine)
        keys = KeyRing.from_settings(settings.master_secret, settings.master_key_file)
        audit = AuditTrail(engine, load_key(settings.audit_secret, settings.data_dir))
        return cls(
            settings,
            Jobs(engine, audit),
            Datasets(engine),
            Feedback(engine),
            BlobStore(settings.data_dir / "blobs", keys),
            Usage(engine),
            f"{socket.gethostname()}:{os.getpid()}",
        )

    def run(
        self, once: bool = False, poll_s: float = 2.0, stop: threading.Event | None = None
    ) -> int:
        """Run jobs until ``stop`` is set (or, with ``once``, until the queue is empty); how
        many ran."""
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set():
            job = self.jobs.claim(self.name)
            if job is None:
                if once:
                    break
                stop.wait(poll_s)
                continue
            self.run_job(job)
            done += 1
        return done

    def run_job(self, job: dict[str, Any]) -> None:
        started = time.perf_counter()
        tenant_id, key_id = self.jobs.owner(job["id"])
        try:
            result = self._execute(job, tenant_id)
            status, error = SUCCEEDED, None
        except JobCancelled:
            result, status, error = None, CANCELLED, "cancelled"
        except DxError as exc:
            result, status, error = None, FAILED, exc.detail
        except Exception as exc:  # reported on the job; the worker goes on
            log.exception("job failed", extra={"job": job["id"]})
            result, status, error = None, FAILED, f"internal error ({type(exc).__name__})"
        spec = job["spec"]
        seconds = time.perf_counter() - started
        metered = self.usage.event(
            tenant_id, key_id, spec.get("name") or spec["model_name"],
            int((result or {}).get("version") or spec["version"]), "training",
            images=0, frames=0, compute_ms=seconds * 1000, size=0, outcome=status,
        )  # fmt: skip
        self.jobs.finish(job["id"], status, result, error, metered)

    def _execute(self, job: dict[str, Any], tenant_id: str) -> dict[str, Any]:
        spec = job["spec"]
        owner = spec["owner"]
        repository = (
            ModelRepository(self.settings.tenant_repository / owner, owner)
            if owner
            else ModelRepository(self.settings.repository)
        )
        ref = repository.resolve(spec["model_name"], spec["version"])
        with tempfile.TemporaryDirectory(prefix="dxserve-job-") as scratch:
            dataset = self._dataset(tenant_id, spec, ref, Path(scratch))
            progress = Progress(lambda p: self.jobs.heartbeat(job["id"], p))
            if job["kind"] == "evaluate":
                return self._evaluate(ref, dataset, spec, progress)
            return self._fine_tune(ref, dataset, spec, tenant_id, progress)

    def _dataset(
        self, tenant_id: str, spec: dict[str, Any], ref: ModelRef, scratch: Path
    ) -> Dataset:
        """The job's data: its datasets and (with ``feedback``) the labelled inputs of the
        tenant's diagnoses by the base model, as one dataset."""
        parts = []
        for dataset_id in spec.get("datasets", []):
            record = self.datasets.get(tenant_id, dataset_id)
            parts.append(extract(self.blobs.get(record["sha256"]), scratch / dataset_id))
        if spec.get("feedback"):
            labelled = self.feedback.labelled_inputs(ref.name, tenant_id)
            if labelled:
                export_labelled(labelled, self.blobs, scratch / "feedback")
                parts.append(open_dataset(scratch / "feedback"))
        if not parts:
            raise DatasetError("the job's data is empty (no dataset, no labelled feedback)")
        labels = parts[0].labels
        for part in parts[1:]:
            if part.labels != labels:
                raise DatasetError(
                    f"the job's datasets label {labels} and {part.labels} differently"
                )
        items = tuple(item for part in parts for item in part.items)
        # Named for the card by what it holds, not by the scratch folder that held it.
        names = [*spec.get("datasets", []), *(["feedback"] if spec.get("feedback") else [])]
        root = Path("tenant-data") / "+".join(names)
        return Dataset(root, "+".join(p.layout for p in parts), items, labels)

    def _fine_tune(
        self,
        base: ModelRef,
        dataset: Dataset,
        spec: dict[str, Any],
        tenant_id: str,
        progress: "Progress",
    ) -> dict[str, Any]:
        from dxserve.training.fine_tune import fine_tune
        from dxserve.training.loop import TrainConfig

        namespace = ModelRepository(self.settings.tenant_repository / tenant_id, tenant_id)
        config = TrainConfig(
            epochs=int(spec.get("epochs", 10)),
            learning_rate=float(spec.get("learning_rate", 1e-3)),
            seed=int(spec.get("seed", 0)),
        )
        result = fine_tune(base, dataset, namespace, spec["name"], config, progress.observer())
        return {
            **result,
            "datasets": spec.get("datasets", []),
            "feedback": bool(spec.get("feedback")),
        }

    def _evaluate(
        self, ref: ModelRef, dataset: Dataset, spec: dict[str, Any], progress: "Progress"
    ) -> dict[str, Any]:
        from dxserve.training.evaluate import evaluate

        manifest = ref.manifest()
        if tuple(manifest.labels) != tuple(dataset.labels):
            raise DatasetError(f"the data labels {list(dataset.labels)}; {ref} {manifest.labels}")
        progress.report({"stage": "evaluating", "files": len(dataset)})
        summary = evaluate(ref, dataset, "all").to_dict()
        named = spec.get("datasets", []) + (["feedback"] if spec.get("feedback") else [])
        key = "tenant data: " + ", ".join(named)
        manifest.evaluations[key] = summary
        manifest.save(ref.path)
        return {"model": ref.name, "version": ref.version, "evaluation": summary}


class Progress:
    """A job's progress, sent at each epoch and at least every ``HEARTBEAT_S`` in between."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self._send = send
        self._state: dict[str, Any] = {}
        self._sent = 0.0

    def report(self, update: dict[str, Any], force: bool = True) -> None:
        self._state.update(update)
        if force or time.monotonic() - self._sent > HEARTBEAT_S:
            self._send(dict(self._state))
            self._sent = time.monotonic()

    def observer(self) -> Any:
        from dxserve.training.loop import Observer

        return Observer(
            on_data=lambda stage, total: self.report({"stage": f"loading {stage}", "files": total}),
            on_epoch_start=lambda epoch, batches: self.report({"stage": "training", "epoch": epoch}),
            on_batch=lambda loss: self.report({"batch_loss": round(loss, 4)}, force=False),
            on_epoch=lambda s: self.report(
                {"epoch": s.epoch, "loss": round(s.train_loss, 4), "val_loss": round(s.val_loss, 4),
                 "val_auc": s.val.get("auc"), "seconds": round(s.seconds, 1)}
            ),
        )  # fmt: skip
