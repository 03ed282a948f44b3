"""Tenant customisation: a tenant's own models (uploaded, or fine-tuned by a job), its labelled
datasets, its training jobs, and the guarded promotion of a new version.

A tenant's models live in its own namespace (see :mod:`dxserve.core.runtime.registry`): no other
tenant sees them, on any route. What it holds is capped by its plan (models, bytes).
"""

import asyncio
import datetime as dt
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pydicom
from PIL import Image

from dxserve.core.billing.plans import Plan
from dxserve.core.intake.decode import is_dicom
from dxserve.core.results.card import COMPARISON
from dxserve.core.runtime.admission import (
    NAME_PATTERN,
    Limits,
    check_model,
    read_manifest,
)
from dxserve.core.runtime.aliases import read_aliases, set_alias
from dxserve.core.runtime.manifest import sha256_file
from dxserve.core.runtime.registry import ModelRegistry
from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.security.principal import Permission, Principal
from dxserve.datasets.archive import extract, package
from dxserve.errors import (
    DatasetError,
    DxError,
    InvalidInput,
    ModelNotFound,
    ModelRejected,
    PromotionRefused,
    TenantQuotaExceeded,
)
from dxserve.intake import Intake
from dxserve.settings import Settings
from dxserve.store.blobs import BlobStore
from dxserve.store.datasets import Datasets
from dxserve.store.jobs import Jobs
from dxserve.store.ledger import Unit

FINE_TUNE, EVALUATE = "fine-tune", "evaluate"
# The default promotion guard: the new version may be worse than its base on the held-out
# split by at most this much AUC, and this much expected calibration error.
MAX_AUC_DROP = 0.02
MAX_ECE_RISE = 0.02


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


@dataclass
class Customisation:
    settings: Settings
    registry: ModelRegistry
    datasets: Datasets
    jobs: Jobs
    blobs: BlobStore
    intake: Intake

    def namespace(self, tenant_id: str) -> ModelRepository:
        return self.registry.repository_of(tenant_id)

    # -- quotas ----------------------------------------------------------------------------
    def storage_bytes(self, tenant_id: str) -> int:
        """Bytes the tenant holds: its models' folders and its live datasets."""
        return tree_bytes(self.namespace(tenant_id).root) + self.datasets.bytes_held(tenant_id)

    def check_room(self, tenant_id: str, plan: Plan, new_bytes: int, new_model: bool) -> None:
        models = self.namespace(tenant_id).models()
        if new_model and plan.tenant_models is not None and len(models) >= plan.tenant_models:
            raise TenantQuotaExceeded(
                f"plan {plan.name!r} holds {plan.tenant_models} models of a tenant's own and "
                f"this tenant has {len(models)}; delete one or change plans"
            )
        if plan.tenant_storage_mb is None:
            return
        limit = plan.tenant_storage_mb << 20
        held = self.storage_bytes(tenant_id)
        if held + new_bytes > limit:
            raise TenantQuotaExceeded(
                f"plan {plan.name!r} holds {plan.tenant_storage_mb} MiB of models and datasets; "
                f"this tenant holds {held >> 20} MiB and this needs {new_bytes >> 20} MiB more"
            )

    # -- bring your own model --------------------------------------------------------------
    def upload_model(
        self,
        principal: Principal,
        plan: Plan,
        name: str,
        model: Path,
        manifest_bytes: bytes,
        intended_use: str | None,
    ) -> dict[str, Any]:
        """Check an uploaded ONNX file and its manifest, and add them as the next version of
        the tenant's model ``name``: :class:`ModelRejected` (422) for what fails a check."""
        principal.require(Permission.customise_models)
        if not re.match(NAME_PATTERN, name):
            raise ModelRejected("a model name is 1–63 of a-z, 0-9, '.', '_', '-', first a-z or 0-9")
        if name in self.registry.repository.models():
            raise ModelRejected(
                f"{name!r} is a platform model's name; choose another (fine-tune a platform "
                "model to specialise it)"
            )
        manifest = read_manifest(manifest_bytes)
        limits = Limits(
            int(self.settings.max_model_mb * (1 << 20)),
            self.settings.max_model_nodes,
            self.settings.model_check_memory_mb << 20,
        )
        checks = check_model(model, manifest, limits)
        digest = sha256_file(model)
        if digest != manifest.sha256:
            raise ModelRejected(
                "the manifest's sha256 is not the file's: upload the manifest written with it"
            )
        namespace = self.namespace(principal.tenant_id)
        self.check_room(
            principal.tenant_id, plan, model.stat().st_size, not namespace.versions(name)
        )
        version, folder = namespace.new_version_dir(name)
        try:
            shutil.copyfile(model, folder / manifest.model_file)
            uploaded = replace(
                manifest,
                name=name,
                version=version,
                sha256=digest,
                # A tenant's model is not for clinical use until its admin records an intended
                # use and the evaluation that supports it (record_intended_use).
                not_for_clinical_use=True,
                clinical_use_warning=manifest.clinical_use_warning
                or "Not for clinical use: no evaluation recorded by this tenant.",
                intended_use=intended_use or manifest.intended_use,
                evaluations={},
                training={**manifest.training, "uploaded": {"checks": checks}},
            )
            uploaded.save(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return {"name": name, "version": version, "checks": checks, "manifest": uploaded.to_dict()}

    async def delete_model(self, principal: Principal, name: str) -> None:
        """Remove one of the tenant's own models, every version (its traffic falls back to the
        platform's model of that name, if there is one)."""
        principal.require(Permission.customise_models)
        namespace = self.namespace(principal.tenant_id)
        if not namespace.versions(name):
            raise ModelNotFound(f"this tenant has no model named {name!r}")
        await self.registry.unload(name, None, principal.tenant_id)
        await asyncio.to_thread(shutil.rmtree, namespace.root / name)

    # -- datasets --------------------------------------------------------------------------
    def add_dataset(
        self, principal: Principal, plan: Plan, unit: Unit, name: str, data: bytes
    ) -> dict[str, Any]:
        """Take a labelled dataset (a zip of a layout ``dxserve train`` reads): every file
        de-identified as at intake, renamed, kept sealed."""
        principal.require(Permission.customise_models)
        tenant_id = principal.tenant_id
        with tempfile.TemporaryDirectory() as scratch:
            dataset = extract(data, Path(scratch))

            def clean(path: Path) -> tuple[bytes, str]:
                raw = path.read_bytes()
                if not is_dicom(raw):
                    return _without_metadata(raw)
                try:
                    received = self.intake.deidentify(tenant_id, pydicom.dcmread(io.BytesIO(raw)))
                    return received.stored(), ".dcm"
                except DxError:
                    raise
                except Exception:  # pydicom's errors name no patient data, but say little
                    raise DatasetError("a DICOM file of the dataset cannot be read") from None

            archived = package(dataset, clean)
            summary = {**dataset.summary(), "root": name}
        self.check_room(tenant_id, plan, len(archived), new_model=False)
        digest = self.blobs.put(archived)
        return self.datasets.add(unit, tenant_id, name, digest, len(archived), summary)

    def delete_dataset(self, principal: Principal, unit: Unit, dataset_id: str) -> None:
        principal.require(Permission.customise_models)
        digest = self.datasets.delete(unit, principal.tenant_id, dataset_id)
        if digest is not None:

            def delete_blob() -> None:  # once the deletion is committed
                self.blobs.delete(digest)

            unit.then(delete_blob)

    # -- jobs ------------------------------------------------------------------------------
    def submit_job(
        self, principal: Principal, plan: Plan, unit: Unit, kind: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Queue a fine-tuning or evaluation job after checking what it names is the tenant's
        (or the platform's, for a base model)."""
        principal.require(Permission.customise_models)
        tenant_id = principal.tenant_id
        for dataset_id in spec.get("datasets", []):
            self.datasets.get(tenant_id, dataset_id)  # NotFound: 404
        if not spec.get("datasets") and not spec.get("feedback"):
            raise InvalidInput("name at least one dataset, or feedback=true")
        reference = spec["base"] if kind == FINE_TUNE else spec["model"]
        name, _, tag = reference.partition(":")
        ref = self.registry.resolve(name, int(tag) if tag.isdigit() else None, tenant_id)
        if tag and not tag.isdigit():
            raise InvalidInput("name the version (model:VERSION), not an alias")
        if kind == EVALUATE and ref.owner != tenant_id:
            raise ModelNotFound(f"this tenant has no model named {name!r} to evaluate")
        resolved = {**spec, "owner": ref.owner, "model_name": ref.name, "version": ref.version}
        if kind == FINE_TUNE:
            target = spec.get("name") or ref.name
            if not re.match(NAME_PATTERN, target):
                raise InvalidInput("name: 1–63 of a-z, 0-9, '.', '_', '-'")
            self.check_room(
                tenant_id,
                plan,
                tree_bytes(ref.path),
                not self.namespace(tenant_id).versions(target),
            )
            resolved["name"] = target
        return self.jobs.submit(unit, tenant_id, principal.key_id, kind, resolved)

    def job(self, principal: Principal, job_id: str) -> dict[str, Any]:
        principal.require(Permission.customise_models)
        return self.jobs.get(principal.tenant_id, job_id)

    # -- promotion -------------------------------------------------------------------------
    def promote(
        self,
        principal: Principal,
        name: str,
        version: int,
        stage: str,
        weight: float,
        max_auc_drop: float,
        max_ece_rise: float,
    ) -> dict[str, Any]:
        """Route the tenant's traffic for ``name`` to ``version`` as a shadow, a canary of
        ``weight`` percent or all of it, only if its held-out comparison with its base allows."""
        principal.require(Permission.customise_models)
        namespace = self.namespace(principal.tenant_id)
        if not namespace.versions(name):
            raise ModelNotFound(f"this tenant has no model named {name!r}")
        manifest = namespace.resolve(name, version).manifest()
        comparison = manifest.evaluations.get(COMPARISON)
        if comparison is None:
            raise PromotionRefused(
                f"{name}:{version} has no comparison with a base on record; only a fine-tuned "
                "version is promoted this way"
            )
        verdict = guard(comparison, max_auc_drop, max_ece_rise)
        if not verdict["allowed"]:
            raise PromotionRefused(
                f"refused: {verdict['reason']}. Comparison: {json.dumps(verdict)}"
            )
        base = int(comparison["base"]["version"])
        if stage == "shadow":
            alias = set_alias(
                namespace.root / name, namespace.versions(name), "production", [str(base)], version
            )
        elif stage == "canary":
            routes = [f"{base}:{100 - weight:g}", f"{version}:{weight:g}"]
            alias = set_alias(
                namespace.root / name, namespace.versions(name), "production", routes, None
            )
        else:
            alias = set_alias(
                namespace.root / name, namespace.versions(name), "production", [str(version)], None
            )
        return {"model": name, "stage": stage, "production": alias.to_dict(), "guard": verdict}

    def record_intended_use(
        self, principal: Principal, name: str, version: int, intended_use: str, evaluation: str
    ) -> dict[str, Any]:
        """Lift "not for clinical use" from a version of the tenant's own model: its admin states
        the intended use and names the evaluation on record (an evaluation job on the tenant's
        data, or a fine-tune's held-out comparison) that supports it. Refused for a model
        trained on dxserve's synthetic phantoms, whatever was evaluated since."""
        principal.require(Permission.customise_models)
        namespace = self.namespace(principal.tenant_id)
        if not namespace.versions(name):
            raise ModelNotFound(f"this tenant has no model named {name!r}")
        ref = namespace.resolve(name, version)
        manifest = ref.manifest()
        if manifest.training.get("synthetic_phantoms"):
            raise PromotionRefused(
                f"{ref} was trained on synthetic phantoms: it stays not for clinical use"
            )
        if evaluation not in manifest.evaluations:
            raise PromotionRefused(
                f"{ref} has no evaluation {evaluation!r} on record; it has "
                f"{sorted(manifest.evaluations) or 'none'}: run an evaluation job first"
            )
        recorded = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        cleared = replace(
            manifest,
            intended_use=intended_use,
            not_for_clinical_use=False,
            clinical_use_warning=(
                f"Intended use recorded by this tenant's administrator on {recorded}, supported "
                f"by the evaluation {evaluation!r}; not validated by dxserve."
            ),
            training={
                **manifest.training,
                "intended_use_record": {
                    "by_key": principal.key_id,
                    "at": recorded,
                    "evaluation": evaluation,
                },
            },
        )
        cleared.save(ref.path)
        return {"model": name, "version": version, "manifest": cleared.to_dict()}

    def aliases(self, tenant_id: str, name: str) -> dict[str, Any]:
        return {
            a: v.to_dict() for a, v in read_aliases(self.namespace(tenant_id).root / name).items()
        }


def guard(comparison: dict[str, Any], max_auc_drop: float, max_ece_rise: float) -> dict[str, Any]:
    """Whether a new version may replace its base: its held-out AUC at most ``max_auc_drop``
    below the base's and its ECE at most ``max_ece_rise`` above (point estimates; the
    bootstrap intervals are reported beside them)."""
    base, new = comparison["base"], comparison["new"]
    auc_delta = new["auc"] - base["auc"]
    ece_delta = new["ece"] - base["ece"]
    reasons = []
    if auc_delta < -max_auc_drop:
        reasons.append(
            f"AUC {new['auc']:.3f} is {-auc_delta:.3f} below the base's {base['auc']:.3f} (margin {max_auc_drop})"
        )
    if ece_delta > max_ece_rise:
        reasons.append(
            f"ECE {new['ece']:.3f} is {ece_delta:.3f} above the base's {base['ece']:.3f} (margin {max_ece_rise})"
        )
    return {
        "allowed": not reasons,
        "reason": "; ".join(reasons) or "within the margins",
        "auc": {
            "base": base["auc"],
            "new": new["auc"],
            "delta": round(auc_delta, 4),
            "base_95": base.get("auc_95"),
            "new_95": new.get("auc_95"),
            "delta_95": comparison.get("auc_delta_95"),
        },
        "ece": {"base": base["ece"], "new": new["ece"], "delta": round(ece_delta, 4)},
        "held_out": comparison.get("held_out"),
        "margins": {"max_auc_drop": max_auc_drop, "max_ece_rise": max_ece_rise},
    }


def _without_metadata(data: bytes) -> tuple[bytes, str]:
    """A PNG or JPEG re-encoded without its metadata (text chunks, EXIF: where names hide);
    a JPEG keeps its quantisation tables."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            out = io.BytesIO()
            if image.format == "JPEG":
                image.save(out, "JPEG", quality="keep")
                return out.getvalue(), ".jpg"
            image.save(out, "PNG")
            return out.getvalue(), ".png"
    except Exception:
        raise InvalidInput("a dataset file is neither DICOM nor a readable PNG or JPEG") from None
