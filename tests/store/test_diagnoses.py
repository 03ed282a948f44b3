"""Diagnoses: written by the ledger, tenant isolation and cursor pagination on SQLite and PostgreSQL."""

import asyncio

import pytest

from dxserve.core.security.principal import Role
from dxserve.errors import InvalidInput
from dxserve.store.accounts import Accounts, NotFound
from dxserve.store.audit import AuditTrail
from dxserve.store.database import make_engine, migrate
from dxserve.store.diagnoses import Diagnoses, StoredInput
from dxserve.store.ledger import Ledger, Unit

STORED = StoredInput("ab" * 32, "image/png", 1234)


def result(i: int) -> dict[str, object]:
    return {"model": "echo-cnn", "version": 1, "label": "normal", "probability": i / 100}


@pytest.fixture
def stores(database_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    migrate(engine)
    accounts, diagnoses = Accounts(engine), Diagnoses(engine)
    ledger = Ledger(engine, AuditTrail(engine, b"test-key"))
    tenants = []
    for name in ("a", "b"):
        unique = f"{name}-{id(diagnoses)}"
        tenant_id = accounts.create_tenant(unique)
        key_id, _ = accounts.create_key(unique, Role.clinician)
        tenants.append((tenant_id, key_id))
    yield Writer(diagnoses, ledger), tenants
    ledger.close()
    engine.dispose()


class Writer:
    """Diagnoses added as a request adds them: in a unit the ledger commits."""

    def __init__(self, diagnoses: Diagnoses, ledger: Ledger) -> None:
        self.diagnoses, self.ledger = diagnoses, ledger
        self.get, self.page = diagnoses.get, diagnoses.page

    async def add(self, *args: object) -> dict[str, object]:
        unit = Unit()
        record = self.diagnoses.add(unit, *args)  # type: ignore[arg-type]
        await self.ledger.commit(unit)
        return record


def test_concurrent_writes_share_transactions(stores) -> None:  # type: ignore[no-untyped-def]
    diagnoses, [(tenant, key), _] = stores

    async def write() -> list[dict[str, object]]:
        return await asyncio.gather(
            *(diagnoses.add(tenant, key, result(i), STORED) for i in range(50))
        )

    records = asyncio.run(write())
    assert len({r["id"] for r in records}) == 50
    assert diagnoses.ledger.awaited.items == 50
    assert diagnoses.ledger.awaited.transactions < 50  # several requests' rows per commit
    for record in records:
        assert diagnoses.get(tenant, str(record["id"])) == record


def test_a_tenant_never_sees_another_tenants_diagnosis(stores) -> None:  # type: ignore[no-untyped-def]
    diagnoses, [(tenant_a, key_a), (tenant_b, _)] = stores
    record = asyncio.run(diagnoses.add(tenant_a, key_a, result(1), STORED))
    with pytest.raises(NotFound):
        diagnoses.get(tenant_b, str(record["id"]))
    assert diagnoses.page(tenant_b, 10, None) == ([], None)


def test_pages_are_newest_first_and_complete(stores) -> None:  # type: ignore[no-untyped-def]
    diagnoses, [(tenant, key), _] = stores

    async def write() -> None:
        for i in range(23):  # one at a time, so creation times are ordered
            await diagnoses.add(tenant, key, result(i), STORED)

    asyncio.run(write())
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = diagnoses.page(tenant, 5, cursor)
        seen.extend(items)
        pages += 1
        if cursor is None:
            break
    assert pages == 5 and len(seen) == 23
    assert len({s["id"] for s in seen}) == 23
    assert [s["probability"] for s in seen] == [i / 100 for i in reversed(range(23))]


def test_invalid_cursor(stores) -> None:  # type: ignore[no-untyped-def]
    diagnoses, [(tenant, _), _] = stores
    with pytest.raises(InvalidInput):
        diagnoses.page(tenant, 5, "not-a-cursor")


def test_a_multilabel_answer_naming_every_statement_is_stored(stores) -> None:  # type: ignore[no-untyped-def]
    diagnoses, [(tenant, key), _] = stores
    statements = (
        "sinus_rhythm",
        "sinus_bradycardia",
        "sinus_tachycardia",
        "atrial_fibrillation",
        "premature_ventricular_complexes",
        "first_degree_av_block",
    )
    label = " + ".join(statements)  # 132 characters: over the first schema's 100
    made = asyncio.run(diagnoses.add(tenant, key, {**result(1), "label": label}, STORED))
    assert diagnoses.get(tenant, str(made["id"]))["label"] == label
