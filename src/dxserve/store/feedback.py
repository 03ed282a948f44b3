"""Clinicians' feedback on diagnoses: stored, summarised per model version, exported for training.

Reads for the API take the caller's tenant id; only the operator's CLI (export, ``tenant_id``
None) reads across tenants.
"""

import csv
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.orm import Session

from dxserve.core.abstention import INDETERMINATE
from dxserve.core.ood import NOT_ASSESSED
from dxserve.store.blobs import BlobStore
from dxserve.store.ledger import Unit
from dxserve.store.tables import DiagnosisRow, FeedbackRow, utcnow


@dataclass(frozen=True)
class LabelledInput:
    """A diagnosed input and the label a clinician gave it: one example for retraining."""

    diagnosis_id: str
    sha256: str
    media_type: str
    label: str


SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "application/dicom": ".dcm"}


def export_labelled(labelled: list["LabelledInput"], blobs: BlobStore, out: Path) -> int:
    """Write labelled inputs as a dataset ``dxserve train`` reads (one folder per label and a
    ``manifest.csv`` of path and label); how many."""
    rows = []
    for item in labelled:
        path = Path(item.label) / f"{item.diagnosis_id}{SUFFIXES.get(item.media_type, '.bin')}"
        (out / path.parent).mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(blobs.get(item.sha256))
        rows.append({"path": path.as_posix(), "label": item.label})
    out.mkdir(parents=True, exist_ok=True)
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


class Feedback:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        unit: Unit,
        tenant_id: str,
        key_id: str,
        diagnosis: dict[str, Any],
        agree: bool,
        correct_label: str,
        comment: str,
    ) -> dict[str, Any]:
        """Add a key's feedback on a diagnosis to ``unit``, replacing that key's earlier
        feedback on it."""
        row = {
            "id": uuid.uuid4().hex,
            "tenant_id": tenant_id,
            "diagnosis_id": diagnosis["id"],
            "key_id": key_id,
            "model": diagnosis["model"],
            "version": diagnosis["version"],
            "predicted_label": diagnosis["label"],
            "agree": agree,
            "correct_label": correct_label,
            "comment": comment,
            "created_at": utcnow(),
        }
        unit.execute(
            delete(FeedbackRow).where(
                FeedbackRow.diagnosis_id == row["diagnosis_id"], FeedbackRow.key_id == key_id
            )
        )
        unit.execute(insert(FeedbackRow).values(row))  # a statement: after the delete
        return _view(row)

    def summary(
        self, model: str, labels: list[str], tenant_id: str | None
    ) -> dict[str, dict[str, Any]]:
        """Per version: how many verdicts, the agreement rate on the cases the model labelled,
        and the confusion matrix (rows: the clinician's label; columns: the model's answer)."""
        query = select(
            FeedbackRow.version, FeedbackRow.predicted_label, FeedbackRow.correct_label
        ).where(FeedbackRow.model == model)
        if tenant_id is not None:
            query = query.where(FeedbackRow.tenant_id == tenant_id)
        answers = [*labels, INDETERMINATE, NOT_ASSESSED]
        counts: dict[int, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        with Session(self.engine) as session:
            for version, predicted, correct in session.execute(query):
                counts[version][(correct, predicted)] += 1
        result = {}
        for version, cells in sorted(counts.items()):
            labelled = {k: n for k, n in cells.items() if k[1] in labels}
            agreed = sum(n for (correct, predicted), n in labelled.items() if correct == predicted)
            total_labelled = sum(labelled.values())
            result[str(version)] = {
                "n": sum(cells.values()),
                "agreement_rate": agreed / total_labelled if total_labelled else None,
                "confusion": {
                    "rows": "clinician's label",
                    "columns": "model's answer",
                    "labels": labels,
                    "answers": answers,
                    "matrix": [[cells.get((c, a), 0) for a in answers] for c in labels],
                },
            }
        return result

    def labelled_inputs(self, model: str, tenant_id: str | None = None) -> list[LabelledInput]:
        """Every diagnosed input of ``model`` with its clinician's label (the newest verdict
        when several clinicians gave one)."""
        query = (
            select(
                FeedbackRow.diagnosis_id,
                DiagnosisRow.input_sha256,
                DiagnosisRow.input_media_type,
                FeedbackRow.correct_label,
            )
            .join(DiagnosisRow, DiagnosisRow.id == FeedbackRow.diagnosis_id)
            .where(FeedbackRow.model == model)
            .order_by(FeedbackRow.created_at)
        )
        if tenant_id is not None:
            query = query.where(FeedbackRow.tenant_id == tenant_id)
        newest: dict[str, LabelledInput] = {}
        with Session(self.engine) as session:
            for diagnosis_id, sha256, media_type, label in session.execute(query):
                newest[diagnosis_id] = LabelledInput(diagnosis_id, sha256, media_type, label)
        return list(newest.values())


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "diagnosis_id": row["diagnosis_id"],
        "model": row["model"],
        "version": row["version"],
        "model_label": row["predicted_label"],
        "agree": row["agree"],
        "correct_label": row["correct_label"],
        "comment": row["comment"],
        "created": row["created_at"].isoformat(),
    }
