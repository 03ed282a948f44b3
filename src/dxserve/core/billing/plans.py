"""Price plans: what a tenant pays per image and frame, what a month includes, how fast and how
much it may call. Built-in plans can be replaced by a TOML file (``DXSERVE_PLANS_FILE``)::

    [plans.clinic]
    currency = "EUR"
    monthly_fee = "200.00"
    included_images = 2000      # each month, before per-image prices apply
    per_image = "0.08"
    per_frame = "0.002"
    monthly_quota = 20000       # images a month; requests beyond it are refused (omit: no cap)
    tenant_models = 10          # models of its own (uploaded or fine-tuned) a tenant may hold
    tenant_storage_mb = 4096    # ... and bytes of them and of its labelled datasets
    per_training_hour = "2.00"  # fine-tuning and evaluation jobs
    per_storage_gb = "0.10"     # a month, on the models and datasets held when invoiced
    rate_per_second = 10        # per API key, token bucket ...
    burst = 20                  # ... of this size
"""

import tomllib
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dxserve.errors import InvalidInput


@dataclass(frozen=True)
class Plan:
    name: str
    currency: str = "EUR"
    monthly_fee: Decimal = Decimal("0")
    included_images: int = 0
    per_image: Decimal = Decimal("0")
    per_frame: Decimal = Decimal("0")
    monthly_quota: int | None = None
    rate_per_second: float = 20.0
    burst: int = 40
    tenant_models: int | None = 10  # models of its own a tenant may hold (None: no cap)
    tenant_storage_mb: int | None = 4096  # bytes of them and of its datasets
    per_training_hour: Decimal = Decimal("0")  # fine-tuning and evaluation jobs, wall time
    per_storage_gb: Decimal = Decimal("0")  # a month, on what is held when invoiced

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


DEFAULT_PLAN = "standard"
BUILT_IN = {
    "trial": Plan(
        "trial", included_images=500, per_image=Decimal("0"), monthly_quota=500,
        rate_per_second=2, burst=5, tenant_models=1, tenant_storage_mb=512,
    ),
    "standard": Plan(
        "standard", monthly_fee=Decimal("0"), included_images=1000, per_image=Decimal("0.05"),
        per_frame=Decimal("0.001"), rate_per_second=20, burst=40,
        per_training_hour=Decimal("2.00"), per_storage_gb=Decimal("0.10"),
    ),
}  # fmt: skip


def load_plans(path: Path | None) -> dict[str, Plan]:
    """The plans of ``path`` (TOML, see the module docstring), else the built-in ones."""
    if path is None:
        return dict(BUILT_IN)
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read the plans file {path}: {exc}") from None
    plans = {name: _plan(name, spec) for name, spec in document.get("plans", {}).items()}
    if not plans:
        raise InvalidInput(f"the plans file {path} defines no [plans.NAME] table")
    return plans


def _plan(name: str, spec: dict[str, Any]) -> Plan:
    known = {f.name for f in fields(Plan)} - {"name"}
    unknown = set(spec) - known
    if unknown:
        raise InvalidInput(f"plan {name!r}: unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("monthly_fee", "per_image", "per_frame", "per_training_hour", "per_storage_gb"):
            try:
                values[key] = Decimal(str(value))
            except InvalidOperation:
                raise InvalidInput(f"plan {name!r}: {key} must be a number") from None
            if values[key] < 0:
                raise InvalidInput(f"plan {name!r}: {key} must not be negative")
        else:
            values[key] = value
    plan = Plan(name, **values)
    if plan.rate_per_second <= 0 or plan.burst < 1:
        raise InvalidInput(f"plan {name!r}: rate_per_second must be > 0 and burst ≥ 1")
    return plan


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value
