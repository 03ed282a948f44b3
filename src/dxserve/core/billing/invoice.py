"""A month's invoice from the usage a tenant recorded: one line per model version and unit,
a credit for the plan's included images, the monthly fee. The totals are sums of the events."""

import csv
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from dxserve.core.billing.plans import Plan

CENT = Decimal("0.01")


@dataclass(frozen=True)
class UsageTotal:
    """Recorded usage of one model version in a period."""

    model: str
    version: int
    requests: int
    images: int
    frames: int
    compute_ms: float
    bytes: int


@dataclass(frozen=True)
class Line:
    description: str
    quantity: int | Decimal  # images, frames; hours and GB to two places
    unit_price: Decimal
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "quantity": self.quantity if isinstance(self.quantity, int) else str(self.quantity),
            "unit_price": str(self.unit_price),
            "amount": str(self.amount),
        }


@dataclass(frozen=True)
class Invoice:
    tenant: str
    month: str  # YYYY-MM
    plan: Plan
    usage: list[UsageTotal]
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))

    @property
    def images(self) -> int:
        return sum(u.images for u in self.usage)

    @property
    def frames(self) -> int:
        return sum(u.frames for u in self.usage)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "month": self.month,
            "plan": self.plan.name,
            "currency": self.plan.currency,
            "lines": [line.to_dict() for line in self.lines],
            "total": str(self.total),
            "usage": {
                "requests": sum(u.requests for u in self.usage),
                "images": self.images,
                "frames": self.frames,
                "compute_ms": round(sum(u.compute_ms for u in self.usage), 3),
                "bytes": sum(u.bytes for u in self.usage),
                "by_model": [u.__dict__ for u in self.usage],
            },
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["tenant", "month", "description", "quantity", "unit_price", "amount", "currency"]
        )
        for line in self.lines:
            writer.writerow(
                [
                    self.tenant,
                    self.month,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.amount,
                    self.plan.currency,
                ]
            )
        writer.writerow([self.tenant, self.month, "total", "", "", self.total, self.plan.currency])
        return out.getvalue()


def make_invoice(
    tenant: str,
    month: str,
    plan: Plan,
    usage: list[UsageTotal],
    training_hours: float = 0.0,
    storage_bytes: int = 0,
) -> Invoice:
    """The invoice: per-image and per-frame lines, the included-images credit, the tenant's
    training jobs by the hour and its own models and datasets by the GB held."""
    lines = []
    if plan.monthly_fee:
        lines.append(_line(f"plan {plan.name}: monthly fee", 1, plan.monthly_fee))
    for u in sorted(usage, key=lambda u: (u.model, u.version)):
        lines.append(_line(f"{u.model}:{u.version} images", u.images, plan.per_image))
        if plan.per_frame:
            lines.append(_line(f"{u.model}:{u.version} frames", u.frames, plan.per_frame))
    included = min(plan.included_images, sum(u.images for u in usage))
    if included and plan.per_image:
        lines.append(
            _line(f"included images ({plan.included_images}/month)", included, -plan.per_image)
        )
    hours = Decimal(str(training_hours)).quantize(CENT, rounding=ROUND_HALF_UP)
    if hours and plan.per_training_hour:
        lines.append(_line("training and evaluation jobs (hours)", hours, plan.per_training_hour))
    gigabytes = (Decimal(storage_bytes) / 2**30).quantize(CENT, rounding=ROUND_HALF_UP)
    if gigabytes and plan.per_storage_gb:
        lines.append(_line("own models and datasets held (GB)", gigabytes, plan.per_storage_gb))
    return Invoice(tenant, month, plan, usage, lines)


def _line(description: str, quantity: int | Decimal, unit_price: Decimal) -> Line:
    amount = (unit_price * quantity).quantize(CENT, rounding=ROUND_HALF_UP)
    return Line(description, quantity, unit_price, amount)
