"""Tenants and API keys. Keys are verified against their scrypt hash, then cached briefly."""

import datetime as dt
import hashlib
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, Executable, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dxserve.core.billing.plans import DEFAULT_PLAN
from dxserve.core.security.keys import new_key, split_token, verify_secret
from dxserve.core.security.principal import (
    PERMISSIONS,
    Principal,
    Role,
    Unauthenticated,
    parse_scopes,
)
from dxserve.errors import DxError, InvalidInput
from dxserve.store.ledger import Unit
from dxserve.store.tables import ApiKey, Tenant, utcnow

# A verified token's principal is reused for this long without a database read or a hash. A key
# revoked here stops at once; one revoked by another process stops within this time.
CACHE_SECONDS = 2.0
# A key's last-used time is written at most this often (not on every request).
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class NotFound(DxError):
    code = "not_found"


class Accounts:
    """Create tenants and keys; turn a bearer token into a :class:`Principal`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._hashed: dict[str, str] = {}  # tokens whose scrypt hash already matched: no re-hash
        self._lock = threading.Lock()

    def create_tenant(self, name: str, plan: str = DEFAULT_PLAN) -> str:
        name = name.strip()
        if not name:
            raise InvalidInput("tenant name must not be empty")
        tenant_id = uuid.uuid4().hex
        try:
            with Session(self.engine) as session, session.begin():
                session.add(Tenant(id=tenant_id, name=name, plan=plan, created_at=utcnow()))
        except IntegrityError:
            raise InvalidInput(f"a tenant named {name!r} already exists") from None
        return tenant_id

    def set_plan(self, name: str, plan: str) -> None:
        with Session(self.engine) as session, session.begin():
            tenant = session.scalar(select(Tenant).where(Tenant.name == name))
            if tenant is None:
                raise NotFound(f"no tenant named {name!r}")
            tenant.plan = plan

    def tenants(self) -> list[dict[str, object]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(Tenant).order_by(Tenant.name)).all()
        return [
            {"id": t.id, "name": t.name, "plan": t.plan, "created_at": as_utc(t.created_at)}
            for t in rows
        ]

    def tenant(self, tenant_id: str) -> dict[str, str]:
        with Session(self.engine) as session:
            row = session.get(Tenant, tenant_id)
        if row is None:
            raise NotFound("no such tenant")
        return {"id": row.id, "name": row.name, "plan": row.plan}

    def tenant_id(self, name: str) -> str:
        with Session(self.engine) as session:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == name))
        if tenant_id is None:
            raise NotFound(f"no tenant named {name!r}")
        return tenant_id

    def create_key(
        self,
        tenant: str,
        role: Role,
        name: str = "",
        scopes: str | None = None,
        expires_at: dt.datetime | None = None,
        unit: Unit | None = None,
    ) -> tuple[str, str]:
        """A new key for the named tenant: ``(key id, token)``; the token is not kept.
        ``scopes`` limits it to some of its role's permissions; ``expires_at`` ends it.
        With ``unit``, the key is written when the unit commits; without, at once (so for
        ``rotate`` and ``revoke``)."""
        tenant_id = self.tenant_id(tenant)
        key_id, token, row = self._new_key(tenant_id, Role(role), name, scopes, expires_at)
        self._write(unit, insert(ApiKey).values(row))
        return key_id, token

    def _new_key(
        self,
        tenant_id: str,
        role: Role,
        name: str,
        scopes: str | None,
        expires_at: dt.datetime | None,
    ) -> tuple[str, str, dict[str, object]]:
        limited = parse_scopes(scopes)
        if limited is not None and not limited <= PERMISSIONS[role]:
            extra = sorted(p.value for p in limited - PERMISSIONS[role])
            raise InvalidInput(f"role {role} cannot be given scopes {extra}")
        if expires_at is not None and as_utc(expires_at) <= utcnow():
            raise InvalidInput("expires_at must be in the future")
        key = new_key()
        row: dict[str, object] = {
            "id": key.key_id,
            "tenant_id": tenant_id,
            "role": role.value,
            "name": name,
            "salt": key.salt,
            "hash": key.hash,
            "scopes": " ".join(sorted(p.value for p in limited)) if limited else None,
            "expires_at": expires_at,
            "created_at": utcnow(),
        }
        return key.key_id, key.token, row

    def rotate(
        self,
        key_id: str,
        grace: dt.timedelta,
        tenant_id: str | None = None,
        unit: Unit | None = None,
    ) -> tuple[str, str]:
        """A new key like ``key_id`` (tenant, role, name, scopes, expiry); the old one keeps
        working for ``grace``, so clients can switch without an outage."""
        with Session(self.engine) as session:
            old = self._key_row(session, key_id, tenant_id)
        if not self._usable(old):
            raise InvalidInput(f"API key {key_id!r} is revoked or expired; create a new one")
        ends = utcnow() + grace
        shortened = min(as_utc(old.expires_at), ends) if old.expires_at else ends
        # The new key ends when the old one would have.
        spec = (old.tenant_id, Role(old.role), old.name, old.scopes, old.expires_at)
        new_id, token, row = self._new_key(*spec)
        self._write(
            unit,
            update(ApiKey).where(ApiKey.id == key_id).values(expires_at=shortened),
            insert(ApiKey).values(row),
            then=lambda: self._forget(key_id),
        )
        return new_id, token

    def revoke(self, key_id: str, tenant_id: str | None = None, unit: Unit | None = None) -> None:
        """Revoke a key (of ``tenant_id`` only, when given: another tenant's is not found)."""
        with Session(self.engine) as session:
            self._key_row(session, key_id, tenant_id)
        self._write(
            unit,
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow()),
            then=lambda: self._forget(key_id),
        )

    def _write(
        self, unit: Unit | None, *statements: Executable, then: Callable[[], None] | None = None
    ) -> None:
        """Run ``statements`` when ``unit`` commits, or at once without one; then ``then``."""
        target = unit if unit is not None else Unit()
        for statement in statements:
            target.execute(statement)
        if then is not None:
            target.then(then)
        if unit is None:
            with self.engine.begin() as connection:
                target.apply(connection)
            target.committed()

    @staticmethod
    def _key_row(session: Session, key_id: str, tenant_id: str | None) -> ApiKey:
        key = session.get(ApiKey, key_id)
        if key is None or (tenant_id is not None and key.tenant_id != tenant_id):
            raise NotFound(f"no API key {key_id!r}")
        return key

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._verified = {t: v for t, v in self._verified.items() if v[0].key_id != key_id}

    def has_keys(self) -> bool:
        with Session(self.engine) as session:
            return session.scalar(select(ApiKey.id).limit(1)) is not None

    def list_keys(self, tenant_id: str | None = None) -> list[dict[str, object]]:
        """Keys (of one tenant, or all), never their hashes."""
        query = select(ApiKey, Tenant.name).join(Tenant).order_by(ApiKey.created_at)
        if tenant_id is not None:
            query = query.where(ApiKey.tenant_id == tenant_id)
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        return [
            {
                "id": k.id,
                "tenant": t,
                "role": k.role,
                "name": k.name,
                "scopes": k.scopes.split() if k.scopes else None,
                "created_at": as_utc(k.created_at),
                "expires_at": as_utc(k.expires_at) if k.expires_at else None,
                "last_used_at": as_utc(k.last_used_at) if k.last_used_at else None,
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

    @staticmethod
    def _usable(key: ApiKey) -> bool:
        expired = key.expires_at is not None and as_utc(key.expires_at) <= utcnow()
        return key.revoked_at is None and not expired

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
                select(ApiKey, Tenant.name, Tenant.plan).join(Tenant).where(ApiKey.id == key_id)
            ).first()
        if row is None or not self._usable(row[0]):
            raise Unauthenticated("invalid API key")  # unknown, revoked and expired alike
        key, tenant_name, plan = row
        fingerprint = _fingerprint(token)
        with self._lock:
            known = self._hashed.get(fingerprint) == key_id
        if not known and not verify_secret(secret, key.salt, key.hash):
            raise Unauthenticated("invalid API key")
        self._touch(key)
        principal = _principal(key, tenant_name, plan)
        with self._lock:
            self._hashed[fingerprint] = key_id
            self._verified[fingerprint] = (principal, time.monotonic())
        return principal

    def principal_of(self, key_id: str) -> Principal:
        """The principal of a key known by its id (a web session's); :class:`Unauthenticated`
        once the key is revoked or expired."""
        with Session(self.engine) as session:
            row = session.execute(
                select(ApiKey, Tenant.name, Tenant.plan).join(Tenant).where(ApiKey.id == key_id)
            ).first()
        if row is None or not self._usable(row[0]):
            raise Unauthenticated("the API key of this session no longer works: sign in again")
        return _principal(*row)

    def _touch(self, key: ApiKey) -> None:
        """Record the key's use, at most once per ``LAST_USED_RESOLUTION``."""
        now = utcnow()
        if key.last_used_at and now - as_utc(key.last_used_at) < LAST_USED_RESOLUTION:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))


def _principal(key: ApiKey, tenant_name: str, plan: str) -> Principal:
    role = Role(key.role)
    return Principal(key.tenant_id, tenant_name, key.id, role, plan, parse_scopes(key.scopes))


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
