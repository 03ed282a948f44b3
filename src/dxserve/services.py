"""The data plane every front end shares: diagnose a study, run an OIP inference.

Built once by :mod:`dxserve.server` (the composition root) and handed to the API.
"""

import asyncio
import contextlib
import io
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset

from dxserve.core.billing.invoice import Invoice, make_invoice
from dxserve.core.billing.plans import Plan
from dxserve.core.explain import SaliencyMap
from dxserve.core.explain.overlay import render_overlay
from dxserve.core.heads import JOINER, MULTILABEL
from dxserve.core.intake.decode import decode_bytes, image_pixels, is_dicom
from dxserve.core.intake.deidentify import reidentify
from dxserve.core.intake.signal import Signal
from dxserve.core.modality import IMAGE, SIGNAL, describe
from dxserve.core.offload import is_small, run_cpu
from dxserve.core.pipeline import diagnose
from dxserve.core.results.dicom_sr import (
    diagnosis_sr,
    heatmap_secondary_capture,
    input_as_secondary_capture,
    uid,
)
from dxserve.core.results.ecg_picture import render_ecg
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.runtime.registry import ModelRegistry, Selection
from dxserve.core.security.principal import Forbidden, Permission, Principal
from dxserve.core.text.analysis import ANALYSER, analyse_note
from dxserve.core.text.note_body import NoteBody
from dxserve.core.text.phi_rules import PhiSpan
from dxserve.core.text.phi_tagger import NAME_MODEL, TaggedNames
from dxserve.core.text.token_features import featurize
from dxserve.customisation import Customisation
from dxserve.errors import (
    InvalidInput,
    ModelNotFound,
    QuotaExceeded,
    Throttled,
    UnsupportedMedia,
    WrongModality,
)
from dxserve.intake import SIGNAL_TYPES, Body, Intake, open_body, part10, stored_signal
from dxserve.observability import Metrics
from dxserve.settings import Settings
from dxserve.store.accounts import Accounts, NotFound
from dxserve.store.audit import AuditTrail
from dxserve.store.blobs import BlobStore
from dxserve.store.diagnoses import Diagnoses, StoredInput
from dxserve.store.feedback import Feedback
from dxserve.store.identities import Identities
from dxserve.store.ledger import Ledger, Unit
from dxserve.store.notes import Notes
from dxserve.store.ratelimit import RateLimiter
from dxserve.store.tables import utcnow
from dxserve.store.usage import Usage, current_month, month_bounds
from dxserve.store.web_sessions import WebSessions


class Tensor(Protocol):
    """A named input tensor, as any front end decodes it."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def array(self) -> np.ndarray: ...


def heatmap_png(saliency: SaliencyMap, data: bytes) -> bytes:
    """The saliency map over the frame it explains, with its colour bar (PNG)."""
    frames = decode_bytes(data)
    title = f"{saliency.method}: frame {saliency.frame} — not for clinical use"
    return render_overlay(frames[saliency.frame], saliency, title)


def _settled(task: "asyncio.Future[Any]") -> None:
    """A task nobody awaits any more (its request failed): its failure is not news."""
    if not task.cancelled():
        task.exception()


def clinical_view(record: dict[str, Any]) -> dict[str, Any]:
    """A stored diagnosis as the clinical API shows it: a shadow version's answer is recorded
    for the model's owners but never shown as, or beside, the answer."""
    return {k: v for k, v in record.items() if k != "shadow"}


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    accounts: Accounts
    diagnoses: Diagnoses
    feedback_store: Feedback
    blobs: BlobStore
    metrics: Metrics
    audit: AuditTrail
    ledger: Ledger
    usage: Usage
    limiter: RateLimiter
    plans: dict[str, Plan]
    identities: Identities
    intake: Intake
    web_sessions: WebSessions
    notes: Notes
    customisation: Customisation

    def plan(self, principal: Principal) -> Plan:
        return self._plan_named(principal.plan)

    def plan_of(self, tenant_id: str) -> Plan:
        return self._plan_named(self.accounts.tenant(tenant_id)["plan"])

    def _plan_named(self, name: str) -> Plan:
        plan = self.plans.get(name)
        if plan is None:
            raise Forbidden(f"this tenant's plan {name!r} is not offered here")
        return plan

    def invoice(self, tenant_id: str, tenant_name: str, month: str) -> Invoice:
        """The month's invoice (``YYYY-MM``) of a tenant at its plan's prices."""
        start, end = month_bounds(month)
        usage = self.usage.totals(tenant_id, start, end)
        training = self.usage.training_hours(tenant_id, start, end)
        stored = self.customisation.storage_bytes(tenant_id)
        return make_invoice(tenant_name, month, self.plan_of(tenant_id), usage, training, stored)

    def tenant_scope(self, principal: Principal, tenant: str | None) -> tuple[str, str]:
        """``(id, name)`` of the tenant an admin request acts on: the caller's own; a
        platform admin may name any other."""
        if tenant is None or tenant == principal.tenant_name:
            return principal.tenant_id, principal.tenant_name
        principal.require(Permission.manage_tenants)
        return self.accounts.tenant_id(tenant), tenant

    async def throttle(self, principal: Principal) -> None:
        """Spend one of the key's tokens (its plan's rate); :class:`Throttled` when none."""
        if self.limiter.take_local(principal.key_id):
            return
        plan = self.plan(principal)
        wait = await asyncio.to_thread(
            self.limiter.take, principal.key_id, plan.rate_per_second, plan.burst
        )
        if wait is not None:
            raise Throttled(
                f"rate limit of {plan.rate_per_second:g} requests/s (burst {plan.burst}) of "
                f"plan {plan.name!r} reached for this key",
                wait,
            )

    async def check_quota(self, principal: Principal, images: int) -> None:
        """:class:`QuotaExceeded` when ``images`` more would pass the plan's monthly quota."""
        plan = self.plan(principal)
        if plan.monthly_quota is None:
            return
        used = self.usage.cached_images_this_month(principal.tenant_id)
        if used is None:
            used = await asyncio.to_thread(self.usage.images_this_month, principal.tenant_id)
        if used + images > plan.monthly_quota:
            start, end = month_bounds(current_month())
            raise QuotaExceeded(
                f"plan {plan.name!r} includes {plan.monthly_quota} images a month and "
                f"{used} were used in {start:%Y-%m}; more are possible from {end:%Y-%m-%d} "
                "or on another plan",
                (end - utcnow()).total_seconds(),
            )

    async def diagnose(
        self,
        principal: Principal,
        unit: Unit,
        data: bytes,
        media_type: str,
        model: str | None,
        explain: bool = False,
        files: dict[str, bytes] | None = None,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """Tell what the body is, decode it for the model named (or the default model of its
        modality), diagnose it (with a saliency map when ``explain``), store the input and
        add the result and its usage to ``unit``; the record. ``files``: a WFDB record's files;
        ``rate``: a CSV signal's sampling rate."""
        principal.require(Permission.diagnose)
        if not data and not files:
            raise InvalidInput("the request has no image or signal")
        await self.check_quota(principal, 1)
        pixels = image_pixels(data) if files is None else None
        if pixels is not None:  # PNG or JPEG: known from its header, nothing to parse
            body = Body(data, media_type, IMAGE)
        else:
            body = await asyncio.to_thread(open_body, data, media_type, files, rate)
        if body.modality == IMAGE and media_type in SIGNAL_TYPES:
            raise UnsupportedMedia(f"the body is an image, which Content-Type {media_type} is not")
        selection = await self._select(model, body, principal.tenant_id)
        ref = selection.primary.ref
        manifest = selection.primary.manifest
        small = manifest.modality == IMAGE and is_small(pixels, manifest.image_recipe.size)
        received = await run_cpu(small, self.intake.receive, principal.tenant_id, body, manifest)
        # What is stored is made beside the model (for a cine: its pixels cleaned).
        storing = asyncio.ensure_future(run_cpu(small, received.stored))
        try:
            max_frames = self.settings.max_frames or None
            outcome = await diagnose(selection, received.sample, max_frames, explain)
        except Exception:
            self.metrics.request(ref, ok=False)
            storing.add_done_callback(_settled)
            raise
        stored_bytes = await storing
        self.metrics.request(ref, ok=True)
        result = outcome.diagnosis.to_dict()
        if isinstance(received.sample, Signal):  # what is needed to read the input again
            signal = received.sample
            result["signal"] = {
                "rate": signal.rate,
                "leads": list(signal.leads),
                "seconds": round(signal.seconds, 3),
            }
        if not outcome.diagnosis.assessed:
            self.metrics.not_assessed.labels(ref.name, str(ref.version)).inc()
        if outcome.saliency is not None:
            map_digest = await asyncio.to_thread(self.blobs.put, outcome.saliency.to_bytes())
            result["explanation"]["sha256"] = map_digest
        digest = await asyncio.to_thread(self.blobs.put, stored_bytes)
        stored_type = "application/zip" if files else media_type
        stored = StoredInput(digest, stored_type, len(stored_bytes))
        diagnosis_id = uuid.uuid4().hex
        study = received.study_uid or uid(diagnosis_id, "study")
        record = self.diagnoses.add(
            unit, principal.tenant_id, principal.key_id, result, stored, diagnosis_id, study
        )
        self.usage.stage(
            unit,
            principal.tenant_id,
            principal.key_id,
            ref.name,
            ref.version,
            "diagnosis",
            images=1,
            frames=len(outcome.diagnosis.frames),
            compute_ms=outcome.diagnosis.timings_ms.get("inference", 0.0),
            size=len(stored_bytes),
            outcome="assessed" if outcome.diagnosis.assessed else "not_assessed",
        )
        return clinical_view(record)

    async def analyse_note(
        self, principal: Principal, unit: Unit, note: NoteBody, patient: str | None, tags: bool
    ) -> dict[str, Any]:
        """De-identify a clinical note and find its entities and codes; the original is kept
        sealed, the analysis stored with the request's usage. ``patient`` (else the note's
        FHIR subject, else its MRN) picks the patient's date offset and surrogates."""
        principal.require(Permission.diagnose)
        await self.check_quota(principal, 1)
        pseudonyms = await asyncio.to_thread(self.identities.pseudonyms, principal.tenant_id)
        started = time.perf_counter()
        names, finder = await self._tag_names(note.text)
        analysis = await asyncio.to_thread(
            analyse_note, note.text, pseudonyms, patient or note.patient, tags, names, finder
        )
        compute_ms = (time.perf_counter() - started) * 1000
        record = self.notes.add(
            unit,
            principal.tenant_id,
            principal.key_id,
            uuid.uuid4().hex,
            analysis.to_dict(),
            note.text,
        )
        name, version = ANALYSER
        self.usage.stage(
            unit,
            principal.tenant_id,
            principal.key_id,
            name,
            version,
            "note",
            images=1,
            frames=0,
            compute_ms=compute_ms,
            size=len(note.text.encode("utf-8")),
            outcome="assessed",
        )
        return record

    async def _tag_names(self, text: str) -> tuple[list[PhiSpan], str | None]:
        """The names the PHI tagger finds in ``text`` (run through its batcher, in windows) and
        its name:version; none and None when the repository has no tagger."""
        try:
            loaded = await self.registry.get_latest(NAME_MODEL)
        except ModelNotFound:
            return [], None
        tokens, windows = await asyncio.to_thread(featurize, text)
        size = loaded.manifest.max_batch_size
        parts = [loaded.batcher.infer(windows[i : i + size]) for i in range(0, len(windows), size)]
        outputs = [result[0]["probability"] for result in await asyncio.gather(*parts)]
        tagged = TaggedNames.from_windows(text, tokens, np.concatenate(outputs))
        return tagged.phi(loaded.manifest.threshold), f"{loaded.ref.name}:{loaded.ref.version}"

    async def _select(self, model: str | None, body: Body, tenant_id: str) -> Selection:
        """The model named, else the default model of the body's modality (as the tenant
        sees them: its own model of that name first)."""
        if model:
            return await self.registry.select(model, tenant_id)
        name = self.settings.model_for(body.modality)
        if name is not None:
            with contextlib.suppress(ModelNotFound):
                return await self.registry.select(name, tenant_id)
        missing = f" ({name} is not installed)" if name else ""
        raise WrongModality(
            f"this is {body.described()}; no model here reads {describe(body.modality)}{missing}"
        )

    def ecg_picture(self, principal: Principal, diagnosis_id: str) -> bytes:
        """The ECG a diagnosis read, on standard paper, shaded where it was explained."""
        principal.require(Permission.read_results)
        record = clinical_view(self.diagnoses.get(principal.tenant_id, diagnosis_id))
        if record.get("modality") != SIGNAL:
            raise NotFound("this diagnosis is not of an ECG: see …/heatmap.png for an image")
        stored = record["input"]
        data = self.blobs.get(stored["sha256"])
        signal = stored_signal(data, stored["media_type"], record["signal"]["rate"])
        saliency = self.saliency(principal, diagnosis_id)[0] if record.get("explanation") else None
        return render_ecg(signal, record, saliency)

    def heatmap_image(self, principal: Principal, diagnosis_id: str) -> bytes:
        """The explanation drawn over the input: the explained frame with its saliency map,
        or the ECG with its relevant segments shaded."""
        saliency, data = self.saliency(principal, diagnosis_id)
        if saliency.rows:  # a signal's leads
            return self.ecg_picture(principal, diagnosis_id)
        return heatmap_png(saliency, data)

    def _image_only(self, record: dict[str, Any], what: str) -> None:
        if record.get("modality", IMAGE) != IMAGE:
            raise NotFound(f"an ECG diagnosis has no {what}: its results are …/fhir and …/ecg.png")

    def saliency(self, principal: Principal, diagnosis_id: str) -> tuple[SaliencyMap, bytes]:
        """A diagnosis's saliency map and the input it explains (caller's tenant only)."""
        principal.require(Permission.read_results)
        record = self.diagnoses.get(principal.tenant_id, diagnosis_id)
        explanation = record.get("explanation")
        if not explanation:
            raise NotFound("this diagnosis has no explanation; diagnose with explain=true")
        saliency = SaliencyMap.from_bytes(self.blobs.get(explanation["sha256"]), explanation)
        return saliency, self.blobs.get(record["input"]["sha256"])

    def source_dataset(self, record: dict[str, Any]) -> Dataset:
        """The (de-identified) DICOM object a diagnosis read, or its PNG/JPEG input wrapped
        as Secondary Capture: the study its SR and heatmap belong to."""
        data = self.blobs.get(record["input"]["sha256"])
        if is_dicom(data):
            return pydicom.dcmread(io.BytesIO(data))
        return input_as_secondary_capture(record, decode_bytes(data)[0])

    def for_owner(self, tenant_id: str, result: Dataset, source: Dataset) -> bytes:
        """A result object pointed back at the owner's own patient and study (Part 10)."""
        identity = self.identities.of_study(tenant_id, str(source.StudyInstanceUID))
        return part10(reidentify(result, identity))

    def structured_report(self, principal: Principal, diagnosis_id: str) -> bytes:
        """The diagnosis as a DICOM Comprehensive 3D SR (TID 1500), Part 10 bytes."""
        principal.require(Permission.read_results)
        record = clinical_view(self.diagnoses.get(principal.tenant_id, diagnosis_id))
        self._image_only(record, "DICOM SR")
        source = self.source_dataset(record)
        return self.for_owner(principal.tenant_id, diagnosis_sr(record, source), source)

    def heatmap_dicom(self, principal: Principal, diagnosis_id: str) -> bytes:
        """The heatmap overlay as a Secondary Capture image in the source study."""
        saliency, data = self.saliency(principal, diagnosis_id)
        record = self.diagnoses.get(principal.tenant_id, diagnosis_id)
        self._image_only(record, "heatmap image")
        png = heatmap_png(saliency, data)
        with Image.open(io.BytesIO(png)) as image:
            overlay = np.asarray(image.convert("RGB"))
        source = self.source_dataset(record)
        image_sc = heatmap_secondary_capture(record, overlay, source)
        return self.for_owner(principal.tenant_id, image_sc, source)

    def feedback(
        self,
        principal: Principal,
        unit: Unit,
        diagnosis_id: str,
        agree: bool,
        correct_label: str | None,
        comment: str,
    ) -> dict[str, Any]:
        """Add a clinician's verdict on a diagnosis of the caller's tenant to ``unit``."""
        principal.require(Permission.feedback)
        record = self.diagnoses.get(principal.tenant_id, diagnosis_id)
        labels, answer = record["labels"], record["label"]
        several = record.get("task") == MULTILABEL  # a finding is several statements at once

        def known(label: str) -> bool:
            return label in labels or (several and all(p in labels for p in label.split(JOINER)))

        choices = f"one of {labels}" + (f", or several joined by {JOINER!r}" if several else "")
        if correct_label is None:
            if not agree or not known(answer):
                raise InvalidInput(
                    f"give correct_label ({choices}): the model answered {answer!r}"
                    + ("" if agree else " and you disagree")
                )
            correct_label = answer
        if not known(correct_label):
            raise InvalidInput(f"correct_label must be {choices}")
        if known(answer) and agree != (correct_label == answer):
            raise InvalidInput(
                f"agree={str(agree).lower()} contradicts correct_label {correct_label!r} "
                f"(the model answered {answer!r})"
            )
        view = self.feedback_store.record(
            unit, principal.tenant_id, principal.key_id, record, agree, correct_label, comment
        )
        self.metrics.feedback.labels(
            record["model"], str(record["version"]), answer, correct_label
        ).inc()
        return view

    async def infer(
        self,
        principal: Principal,
        unit: Unit,
        name: str,
        version: int | None,
        inputs: list[Tensor],
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run raw model input through the batcher (its usage added to ``unit``); the version
        used and every output."""
        principal.require(Permission.infer)
        loaded = await self.registry.get_latest(name, version, principal.tenant_id)
        tensor = self._model_input(inputs, loaded.manifest)
        await self.check_quota(principal, len(tensor))
        try:
            outputs, _, compute = await loaded.batcher.infer(tensor)
        except Exception:
            self.metrics.request(loaded.ref, ok=False)
            raise
        self.metrics.request(loaded.ref, ok=True)
        self.usage.stage(
            unit,
            principal.tenant_id,
            principal.key_id,
            loaded.ref.name,
            loaded.ref.version,
            "inference",
            images=len(tensor),
            frames=len(tensor),
            compute_ms=compute * 1000,
            size=tensor.nbytes,
            outcome="ok",
        )
        return loaded.ref.version, outputs

    def _model_input(self, inputs: list[Tensor], manifest: Manifest) -> np.ndarray:
        """The one input tensor, checked against the manifest's name, datatype and shape."""
        (spec,) = manifest.inputs
        if len(inputs) != 1 or inputs[0].name != spec.name:
            raise InvalidInput(f"model {manifest.name!r} takes one input named {spec.name!r}")
        given = inputs[0]
        if given.datatype != spec.datatype:
            raise InvalidInput(f"input {spec.name!r} must be {spec.datatype}, not {given.datatype}")
        shape = list(given.array.shape)
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(f"input {spec.name!r} must have shape {spec.shape}, not {shape}")
        limit = self.settings.max_batch_size or manifest.max_batch_size
        if not 1 <= shape[0] <= limit:
            raise InvalidInput(f"batch size must be between 1 and {limit}")
        return given.array

    def close_stores(self) -> None:
        """Commit what the ledger's writers hold, and stop them."""
        self.ledger.close()

    async def close(self) -> None:
        await self.registry.close()
        await asyncio.to_thread(self.close_stores)
        self.accounts.engine.dispose()  # its pooled connections; a later use opens new ones
