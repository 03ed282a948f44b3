"""Tenants and API keys on SQLite and PostgreSQL."""

from collections.abc import Iterator

import pytest

from dxserve.core.security.principal import Role, Unauthenticated
from dxserve.errors import InvalidInput
from dxserve.store.accounts import Accounts, NotFound
from dxserve.store.database import make_engine, migrate
from dxserve.store.tables import ApiKey


@pytest.fixture
def accounts(database_url: str) -> Iterator[Accounts]:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # idempotent
    yield Accounts(engine)
    engine.dispose()


def test_keys_authenticate_to_their_tenant_and_role(accounts: Accounts) -> None:
    name = f"clinic-{id(accounts)}"
    tenant_id = accounts.create_tenant(name)
    key_id, token = accounts.create_key(name, Role.clinician, "ward 3")
    principal = accounts.authenticate(token)
    assert (principal.tenant_id, principal.key_id, principal.role) == (
        tenant_id,
        key_id,
        Role.clinician,
    )
    assert principal.tenant_name == name
    assert accounts.authenticate(token) == principal  # cached path
    assert any(k["id"] == key_id and not k["revoked"] for k in accounts.list_keys())


def test_only_a_hash_is_stored(accounts: Accounts) -> None:
    accounts.create_tenant("hash-check")
    key_id, token = accounts.create_key("hash-check", Role.admin)
    from sqlalchemy.orm import Session

    with Session(accounts.engine) as session:
        row = session.get(ApiKey, key_id)
        assert row is not None
        secret = token.split("_", 2)[2]
        assert secret.encode() not in row.hash and secret.encode() not in row.salt
        assert len(row.hash) == 32


@pytest.mark.parametrize(
    "token", ["", "nope", "dxs__x", "dxs_abc_def", "Bearer x", "dxs_" + "a" * 12 + "_wrong"]
)
def test_bad_tokens_are_refused(accounts: Accounts, token: str) -> None:
    with pytest.raises(Unauthenticated):
        accounts.authenticate(token)


def test_wrong_secret_for_a_real_key_id(accounts: Accounts) -> None:
    accounts.create_tenant("wrong-secret")
    key_id, token = accounts.create_key("wrong-secret", Role.service)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(f"dxs_{key_id}_{'x' * 43}")
    accounts.authenticate(token)


def test_revoked_keys_stop_working_at_once(accounts: Accounts) -> None:
    accounts.create_tenant("revoke")
    key_id, token = accounts.create_key("revoke", Role.admin)
    accounts.authenticate(token)
    accounts.revoke(key_id)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(token)
    with pytest.raises(NotFound):
        accounts.revoke("missing")


def test_tenant_names_are_unique(accounts: Accounts) -> None:
    accounts.create_tenant("unique")
    with pytest.raises(InvalidInput, match="already exists"):
        accounts.create_tenant("unique")
    with pytest.raises(NotFound):
        accounts.create_key("no-such-tenant", Role.admin)
