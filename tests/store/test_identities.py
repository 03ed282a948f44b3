"""Pseudonym keys and sealed identities on SQLite and PostgreSQL."""

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from dxserve.core.intake.deidentify import Identity
from dxserve.core.security.envelope import KeyRing, SealedError, new_master_key, parse_master_key
from dxserve.store.accounts import Accounts
from dxserve.store.database import make_engine, migrate
from dxserve.store.identities import Identities
from dxserve.store.tables import IdentityRow

OLD, NEW = parse_master_key(new_master_key()), parse_master_key(new_master_key())


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def tenants(engine: Engine, count: int) -> list[str]:
    accounts = Accounts(engine)
    return [accounts.create_tenant(f"t-{uuid.uuid4().hex[:8]}") for _ in range(count)]


def test_pseudonyms_are_stable_per_tenant_and_differ_between(engine: Engine) -> None:
    a, b = tenants(engine, 2)
    first = Identities(engine, KeyRing([OLD])).pseudonyms(a).uid("1.2.3")
    again = Identities(engine, KeyRing([OLD])).pseudonyms(a).uid("1.2.3")  # another process
    other = Identities(engine, KeyRing([OLD])).pseudonyms(b).uid("1.2.3")
    assert first == again != other and first.startswith("2.25.")


def test_identities_of_a_study_merge_and_stay_with_their_tenant(engine: Engine) -> None:
    a, b = tenants(engine, 2)
    store = Identities(engine, KeyRing([OLD]))
    patient = {"PatientID": "MRN1", "PatientName": "Doe^Jane"}
    store.remember(a, "2.25.9", "2.25.91", Identity({"2.25.9": "1.9", "2.25.91": "1.91"}, patient))
    store.remember(a, "2.25.9", "2.25.92", Identity({"2.25.92": "1.92"}, patient))
    store.remember(a, "2.25.9", "2.25.92", Identity({"2.25.92": "1.92"}, patient))  # resent
    study = store.of_study(a, "2.25.9")
    assert study.uids == {"2.25.9": "1.9", "2.25.91": "1.91", "2.25.92": "1.92"}
    assert study.patient == patient
    assert store.of_study(b, "2.25.9") == Identity()
    with Session(engine) as session:  # a row moved to another tenant does not open
        session.execute(update(IdentityRow).where(IdentityRow.tenant_id == a).values(tenant_id=b))
        session.commit()
    with pytest.raises(SealedError):
        store.of_study(b, "2.25.9")


def test_rewrap_under_a_new_master_key(engine: Engine) -> None:
    (a,) = tenants(engine, 1)
    old = Identities(engine, KeyRing([OLD]))
    secret_uid = old.pseudonyms(a).uid("1.2.3")
    old.remember(a, "2.25.1", "2.25.2", Identity({"2.25.1": "1.1"}, {"PatientID": "MRN-ZQXW-77"}))
    rotating = Identities(engine, KeyRing([NEW, OLD]))
    assert rotating.rewrap() >= 2 and rotating.rewrap() == 0
    new_only = Identities(engine, KeyRing([NEW]))
    assert new_only.pseudonyms(a).uid("1.2.3") == secret_uid
    assert new_only.of_study(a, "2.25.1").patient == {"PatientID": "MRN-ZQXW-77"}
    with Session(engine) as session:
        assert all(b"MRN-ZQXW-77" not in row for row in session.scalars(select(IdentityRow.sealed)))
