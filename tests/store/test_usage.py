"""Usage events on SQLite and PostgreSQL: staged in a unit of work, summed per model version."""

import datetime as dt
import time

import pytest

from dxserve.errors import InvalidInput
from dxserve.store.accounts import Accounts
from dxserve.store.database import make_engine, migrate
from dxserve.store.ledger import Unit
from dxserve.store.usage import Usage, current_month, month_bounds


def test_totals_per_model_and_month(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    accounts = Accounts(engine)
    a = accounts.create_tenant(f"usage-a-{time.monotonic_ns()}")
    b = accounts.create_tenant(f"usage-b-{time.monotonic_ns()}")
    usage, unit = Usage(engine), Unit()
    usage.stage(unit, a, "k1", "echo-cnn", 1, "diagnosis", 1, 32, 12.5, 1000, "assessed")
    usage.stage(unit, a, "k1", "echo-cnn", 1, "diagnosis", 1, 1, 2.0, 500, "not_assessed")
    usage.stage(unit, a, "k2", "echo-cnn", 2, "inference", 8, 8, 20.0, 4000, "ok")
    usage.stage(unit, b, "k3", "echo-cnn", 1, "diagnosis", 1, 1, 1.0, 10, "assessed")
    with engine.begin() as connection:
        unit.apply(connection)
    start, end = month_bounds(current_month())
    totals = {(t.model, t.version): t for t in usage.totals(a, start, end)}
    assert set(totals) == {("echo-cnn", 1), ("echo-cnn", 2)}
    v1 = totals[("echo-cnn", 1)]
    assert (v1.requests, v1.images, v1.frames, v1.bytes) == (2, 2, 33, 1500)
    assert v1.compute_ms == pytest.approx(14.5)
    assert usage.images_this_month(a) == 10 and usage.images_this_month(b) == 1
    last_month = start - dt.timedelta(days=1)
    assert usage.totals(a, *month_bounds(last_month.strftime("%Y-%m"))) == []
    engine.dispose()


def test_month_bounds() -> None:
    assert month_bounds("2026-12") == (
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )
    for bad in ("0000-01", "9999-12", "2026-13", "26-01", "2026-1-1"):
        with pytest.raises(InvalidInput):
            month_bounds(bad)
