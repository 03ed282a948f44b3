"""Tenants and API keys. Keys are verified against their scrypt hash, then cached briefly."""

import datetime as dt
import hashlib
import threading
import time
import uuid

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dxserve.core.security.keys import new_key, split_token, verify_secret
from dxserve.core.security.principal import Principal, Role, Unauthenticated
from dxserve.errors import DxError, InvalidInput
from dxserve.store.tables import ApiKey, Tenant, utcnow

# A verified token's principal is reused for this long without a database read or a hash. A key
# revoked here stops at once; one revoked by another process stops within this time.
CACHE_SECONDS = 2.0


class NotFound(DxError):
    code = "not_found"


class Accounts:
    """Create tenants and keys; turn a bearer token into a :class:`Principal`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._hashed: dict[str, str] = {}  # tokens whose scrypt hash already matched: no re-hash
        self._lock = threading.Lock()

    def create_tenant(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise InvalidInput("tenant name must not be empty")
        tenant_id = uuid.uuid4().hex
        try:
            with Session(self.engine) as session, session.begin():
                session.add(Tenant(id=tenant_id, name=name, created_at=utcnow()))
        except IntegrityError:
            raise InvalidInput(f"a tenant named {name!r} already exists") from None
        return tenant_id

    def tenant_id(self, name: str) -> str:
        with Session(self.engine) as session:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == name))
        if tenant_id is None:
            raise NotFound(f"no tenant named {name!r}")
        return tenant_id

    def create_key(self, tenant: str, role: Role, name: str = "") -> tuple[str, str]:
        """A new key for the named tenant: ``(key id, token)``; the token is not kept."""
        tenant_id = self.tenant_id(tenant)
        key = new_key()
        with Session(self.engine) as session, session.begin():
            session.add(
                ApiKey(
                    id=key.key_id,
                    tenant_id=tenant_id,
                    role=Role(role).value,
                    name=name,
                    salt=key.salt,
                    hash=key.hash,
                    created_at=utcnow(),
                )
            )
        return key.key_id, key.token

    def revoke(self, key_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            key = session.get(ApiKey, key_id)
            if key is None:
                raise NotFound(f"no API key {key_id!r}")
            key.revoked_at = key.revoked_at or utcnow()
        with self._lock:
            self._verified = {t: v for t, v in self._verified.items() if v[0].key_id != key_id}

    def has_keys(self) -> bool:
        with Session(self.engine) as session:
            return session.scalar(select(ApiKey.id).limit(1)) is not None

    def list_keys(self) -> list[dict[str, object]]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(ApiKey, Tenant.name).join(Tenant).order_by(ApiKey.created_at)
            ).all()
        return [
            {
                "id": k.id,
                "tenant": t,
                "role": k.role,
                "name": k.name,
                "created_at": k.created_at,
                "revoked": k.revoked_at is not None,
            }
            for k, t in rows
        ]

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified less than ``CACHE_SECONDS`` ago (no I/O)."""
        entry = self._verified.get(_fingerprint(token))
        if entry and time.monotonic() - entry[1] < CACHE_SECONDS:
            return entry[0]
        return None

    def authenticate(self, token: str) -> Principal:
        """The principal of a bearer token; :class:`Unauthenticated` for any bad token."""
        cached = self.cached(token)
        if cached is not None:
            return cached
        parts = split_token(token)
        if parts is None:
            raise Unauthenticated("invalid API key")
        key_id, secret = parts
        with Session(self.engine) as session:
            row = session.execute(
                select(ApiKey, Tenant.name).join(Tenant).where(ApiKey.id == key_id)
            ).first()
        if row is None or row[0].revoked_at is not None:
            raise Unauthenticated("invalid API key")
        key, tenant_name = row
        fingerprint = _fingerprint(token)
        with self._lock:
            known = self._hashed.get(fingerprint) == key_id
        if not known and not verify_secret(secret, key.salt, key.hash):
            raise Unauthenticated("invalid API key")
        principal = Principal(key.tenant_id, tenant_name, key.id, Role(key.role))
        with self._lock:
            self._hashed[fingerprint] = key_id
            self._verified[fingerprint] = (principal, time.monotonic())
        return principal


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
