"""A study as a request carries it: the raw body with its Content-Type, or a multipart form's
``file`` field(s) (several: a WFDB record's files) and optional ``model``."""

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile

from dxserve.core.intake.decode import is_dicom
from dxserve.errors import InvalidInput, UnsupportedMedia

IMAGE_TYPES = ("image/png", "image/jpeg", "application/dicom")
SIGNAL_TYPES = ("text/csv", "application/json", "application/zip")
BODY_TYPES = (*IMAGE_TYPES, *SIGNAL_TYPES)


@dataclass
class Upload:
    data: bytes
    media_type: str
    model: str | None = None
    files: dict[str, bytes] | None = None  # a WFDB record's files


async def read_upload(request: Request) -> Upload:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        try:
            uploads = [u for u in form.getlist("file") if isinstance(u, UploadFile)]
            if not uploads:
                raise InvalidInput("multipart form needs a file field named 'file'")
            model = form.get("model")
            model = model if isinstance(model, str) and model else None
            if len(uploads) > 1:  # a WFDB record's header and signal files
                files = {Path(u.filename or "").name: await u.read() for u in uploads}
                return Upload(b"", "application/x-wfdb", model, files)
            data = await uploads[0].read()
            media = (uploads[0].content_type or "").lower()
        finally:
            await form.close()
        if media not in BODY_TYPES:
            media = "application/dicom" if is_dicom(data) else media or "application/octet-stream"
        return Upload(data, media, model)
    if content_type not in BODY_TYPES:
        raise UnsupportedMedia(
            f"Content-Type must be one of {', '.join(BODY_TYPES)} or multipart/form-data"
        )
    return Upload(await request.body(), content_type)
