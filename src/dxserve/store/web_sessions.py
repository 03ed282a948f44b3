"""Browser sessions of the web app: a random token in an HttpOnly cookie stands for the API key
a clinician signed in with. Only the token's hash is stored; a session ends when signed out,
after ``IDLE`` without a request, after ``LONGEST`` in all, or when its key stops working."""

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from dxserve.store.accounts import as_utc
from dxserve.store.ledger import Unit
from dxserve.store.tables import WebSessionRow, utcnow

IDLE = dt.timedelta(minutes=30)
LONGEST = dt.timedelta(hours=12)
# A session's last request is written at most this often.
SEEN_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class WebSession:
    id: str  # the hash of the cookie's token
    key_id: str
    csrf: str  # the synchronizer token every form and htmx request carries


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class WebSessions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open(self, unit: Unit, key_id: str) -> tuple[str, WebSession]:
        """A new session of ``key_id`` (written with ``unit``): the cookie's token and the
        session."""
        token = secrets.token_urlsafe(32)
        session = WebSession(_hash(token), key_id, secrets.token_urlsafe(32))
        now = utcnow()
        row = {"id": session.id, "key_id": key_id, "csrf": session.csrf}
        unit.insert(
            WebSessionRow.__table__,  # type: ignore[arg-type]
            {**row, "created_at": now, "seen_at": now, "ended_at": None},
        )
        return token, session

    def find(self, token: str) -> WebSession | None:
        """The live session of a cookie's token (its last request noted), or None."""
        now = utcnow()
        with Session(self.engine) as session:
            row = session.get(WebSessionRow, _hash(token))
            if row is None or row.ended_at is not None:
                return None
            if now - as_utc(row.seen_at) > IDLE or now - as_utc(row.created_at) > LONGEST:
                return None
            found = WebSession(row.id, row.key_id, row.csrf)
            if now - as_utc(row.seen_at) >= SEEN_RESOLUTION:
                row.seen_at = now
                session.commit()
        return found

    def end(self, unit: Unit, session_id: str) -> None:
        unit.execute(
            update(WebSessionRow)
            .where(WebSessionRow.id == session_id, WebSessionRow.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
