"""A clinical note as a request carries it: plain UTF-8 text, or a FHIR R4 DocumentReference or
Binary with a base64 ``text/plain`` attachment (its subject, when given, names the patient).

Errors say what is wrong and where, never what the note says: FHIR validation errors are
reported by location and kind, without the input.
"""

import json
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from dxserve.errors import InvalidInput, UnsupportedMedia

MAX_CHARACTERS = 100_000  # about 15,000 words: longer than any single note
TEXT_TYPES = ("text/plain",)
FHIR_TYPES = ("application/fhir+json", "application/json")


@dataclass(frozen=True)
class NoteBody:
    text: str
    patient: str | None  # the FHIR subject's identifier or reference


def read_note(data: bytes, media_type: str, charset: str | None = None) -> NoteBody:
    """The note in ``data``; :class:`InvalidInput` for what cannot be one."""
    if media_type in TEXT_TYPES:
        return NoteBody(_text(data, charset or "utf-8"), None)
    if media_type in FHIR_TYPES:
        return _from_fhir(data)
    raise UnsupportedMedia(
        f"a note is sent as {' or '.join(TEXT_TYPES + FHIR_TYPES)}, not {media_type or 'no type'}"
    )


def _text(data: bytes, charset: str) -> str:
    if charset.lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise UnsupportedMedia(f"a note's text is UTF-8, not {charset}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the note is not valid UTF-8 (byte {error.start})") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.strip():
        raise InvalidInput("the note is empty")
    if len(text) > MAX_CHARACTERS:
        raise InvalidInput(f"the note has {len(text)} characters; at most {MAX_CHARACTERS}")
    if "\x00" in text:
        raise InvalidInput("the note holds a NUL character: it is not text")
    return text


def _validated(model: type[Any], resource: dict[str, Any]) -> Any:
    try:
        return model.model_validate(resource)
    except ValidationError as error:
        where = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'resource'}: {e['type']}"
            for e in error.errors(include_input=False, include_url=False)[:5]
        )
        raise InvalidInput(
            f"the {resource['resourceType']} is not valid FHIR R4 ({where})"
        ) from None


def _from_fhir(data: bytes) -> NoteBody:
    try:
        resource = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not JSON") from None
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind == "Binary":
        binary = _validated(Binary, resource)
        return NoteBody(_attachment(binary.contentType, binary.data), None)
    if kind == "DocumentReference":
        document = _validated(DocumentReference, resource)
        attachments = [c.attachment for c in document.content]
        plain = [a for a in attachments if (a.contentType or "").split(";")[0] in TEXT_TYPES]
        if not plain:
            raise InvalidInput("the DocumentReference has no text/plain attachment")
        attachment = plain[0]
        return NoteBody(_attachment(attachment.contentType, attachment.data), _subject(document))
    raise InvalidInput(f"a note in FHIR is a DocumentReference or a Binary, not {kind!r}")


def _attachment(content_type: str | None, data: bytes | None) -> str:
    """The text of an attachment (``data``: as fhir.resources decoded it from base64)."""
    media_type, _, params = (content_type or "").partition(";")
    if media_type.strip() not in TEXT_TYPES:
        raise UnsupportedMedia(f"the attachment is {media_type or 'untyped'}, not text/plain")
    if data is None:
        raise InvalidInput("the attachment has no data (a URL to fetch is not followed)")
    charset = params.partition("charset=")[2].strip() or "utf-8"
    return _text(data, charset)


def _subject(document: Any) -> str | None:
    subject = document.subject
    if subject is None:
        return None
    if subject.identifier is not None and subject.identifier.value:
        return str(subject.identifier.value)
    return str(subject.reference) if subject.reference else None
