from decimal import Decimal
from pathlib import Path

import pytest

from dxserve.core.billing.invoice import UsageTotal, make_invoice
from dxserve.core.billing.plans import BUILT_IN, load_plans
from dxserve.errors import InvalidInput


def test_plans_from_toml_and_their_errors(tmp_path: Path) -> None:
    assert load_plans(None) == BUILT_IN
    path = tmp_path / "plans.toml"
    path.write_text('[plans.a]\nper_image = "0.10"\nmonthly_quota = 5\n')
    plan = load_plans(path)["a"]
    assert plan.per_image == Decimal("0.10") and plan.monthly_quota == 5
    for bad, message in [
        ("[plans.a]\nprice = 1\n", "unknown fields"),
        ('[plans.a]\nper_image = "-1"\n', "negative"),
        ('[plans.a]\nper_image = "x"\n', "number"),
        ("[plans.a]\nburst = 0\n", "burst"),
        ("[other]\n", "defines no"),
        ("[plans.a\n", "cannot read"),
    ]:
        path.write_text(bad)
        with pytest.raises(InvalidInput, match=message):
            load_plans(path)


def test_invoice_lines_sum_to_the_total_and_the_usage() -> None:
    plan = load_plans(None)["standard"]  # 1000 included, 0.05 an image, 0.001 a frame
    usage = [
        UsageTotal("echo-cnn", 1, 900, 900, 28_800, 1234.5, 10**8),
        UsageTotal("echo-cnn", 2, 300, 333, 333, 20.0, 10**6),
    ]
    invoice = make_invoice("st-mary", "2026-11", plan, usage)
    assert invoice.images == 1233 and invoice.frames == 29_133
    assert invoice.total == sum(line.amount for line in invoice.lines)
    # 1233 × 0.05 + 29133 × 0.001 (rounded per line: 28.80 + 0.33) − 1000 × 0.05
    assert invoice.total == Decimal("61.65") + Decimal("28.80") + Decimal("0.33") - Decimal("50")
    assert invoice.to_dict()["total"] == str(invoice.total)
    assert invoice.to_csv().splitlines()[-1] == f"st-mary,2026-11,total,,,{invoice.total},EUR"
    quiet = make_invoice("st-mary", "2026-11", plan, [])
    assert quiet.total == 0 and quiet.lines == []


def test_training_jobs_and_own_storage_are_billed() -> None:
    plan = BUILT_IN["standard"]  # 2.00 a training hour, 0.10 a GB held
    invoice = make_invoice("a", "2026-12", plan, [], training_hours=1.5, storage_bytes=3 << 30)
    lines = {line.description: line for line in invoice.lines}
    training = lines["training and evaluation jobs (hours)"]
    assert training.quantity == Decimal("1.50") and training.amount == Decimal("3.00")
    storage = lines["own models and datasets held (GB)"]
    assert storage.quantity == Decimal("3.00") and storage.amount == Decimal("0.30")
    assert invoice.total == Decimal("3.30")
    assert "1.50" in invoice.to_csv() and invoice.to_dict()["lines"][0]["quantity"] == "1.50"
    assert make_invoice("a", "2026-12", plan, []).lines == []  # nothing used, nothing billed
