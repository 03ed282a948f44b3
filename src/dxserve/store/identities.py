"""Each tenant's pseudonym key and the identities de-identification took away, sealed.

Rows are keyed by pseudonymous UIDs only; the original identifiers exist only inside sealed
values, each bound (AES-GCM associated data) to its tenant and instance, so a row copied to
another tenant, or another instance, fails to open.
"""

import secrets
import threading

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dxserve.core.intake.deidentify import Identity, Pseudonyms
from dxserve.core.security.envelope import HEADER_BYTES, KeyRing
from dxserve.store.tables import IdentityRow, PseudonymKey

PSEUDONYM_KEY_BYTES = 32


def _key_aad(tenant_id: str) -> bytes:
    return f"pseudonym-key\0{tenant_id}".encode()


def _identity_aad(tenant_id: str, sop_uid: str) -> bytes:
    return f"identity\0{tenant_id}\0{sop_uid}".encode()


class Identities:
    def __init__(self, engine: Engine, keys: KeyRing) -> None:
        self.engine = engine
        self.keys = keys
        self._pseudonyms: dict[str, Pseudonyms] = {}
        self._lock = threading.Lock()

    def pseudonyms(self, tenant_id: str) -> Pseudonyms:
        """The tenant's pseudonyms (its key is made on first use)."""
        found = self._pseudonyms.get(tenant_id)
        if found is None:
            with self._lock:
                found = self._pseudonyms.get(tenant_id) or Pseudonyms(self._secret(tenant_id))
                self._pseudonyms[tenant_id] = found
        return found

    def _secret(self, tenant_id: str) -> bytes:
        aad = _key_aad(tenant_id)
        with Session(self.engine) as session:
            row = session.get(PseudonymKey, tenant_id)
            if row is not None:
                return self.keys.open(row.sealed, aad)
            secret = secrets.token_bytes(PSEUDONYM_KEY_BYTES)
            session.add(PseudonymKey(tenant_id=tenant_id, sealed=self.keys.seal(secret, aad)))
            try:
                session.commit()
                return secret
            except IntegrityError:  # another process made it first: use theirs
                session.rollback()
        with Session(self.engine) as session:
            row = session.get(PseudonymKey, tenant_id)
            assert row is not None
            return self.keys.open(row.sealed, aad)

    def remember(self, tenant_id: str, study_uid: str, sop_uid: str, identity: Identity) -> None:
        """Keep what de-identifying instance ``sop_uid`` took away (once: the same instance
        always de-identifies to the same pseudonyms)."""
        sealed = self.keys.seal(identity.to_bytes(), _identity_aad(tenant_id, sop_uid))
        with Session(self.engine) as session:
            if session.get(IdentityRow, (tenant_id, sop_uid)) is not None:
                return
            session.add(
                IdentityRow(
                    tenant_id=tenant_id, sop_uid=sop_uid, study_uid=study_uid, sealed=sealed
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # stored meanwhile by a concurrent upload of the instance

    def of_study(self, tenant_id: str, study_uid: str) -> Identity:
        """Everything known of a pseudonymous study of the tenant (empty if nothing)."""
        identity = Identity()
        with Session(self.engine) as session:
            rows = session.execute(
                select(IdentityRow.sop_uid, IdentityRow.sealed).where(
                    IdentityRow.tenant_id == tenant_id, IdentityRow.study_uid == study_uid
                )
            ).all()
        for sop_uid, sealed in rows:
            opened = self.keys.open(sealed, _identity_aad(tenant_id, sop_uid))
            identity.merge(Identity.from_bytes(opened))
        return identity

    def rewrap(self) -> int:
        """Re-wrap every sealed value's data key under the current master key; how many."""
        changed = 0
        with Session(self.engine) as session:
            rows: list[PseudonymKey | IdentityRow] = [
                *session.scalars(select(PseudonymKey)),
                *session.scalars(select(IdentityRow)),
            ]
            for row in rows:
                header = self.keys.rewrap(row.sealed[:HEADER_BYTES])
                if header != row.sealed[:HEADER_BYTES]:
                    row.sealed = header + row.sealed[HEADER_BYTES:]
                    changed += 1
            session.commit()
        return changed
