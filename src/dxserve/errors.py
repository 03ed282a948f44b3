"""Domain errors with stable codes. Nothing here knows about HTTP."""

import math


class DxError(Exception):
    """Base of every error dxserve raises on purpose; `code` is stable across releases."""

    code = "dxserve_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DxError):
    """The caller sent something dxserve cannot use (bad file, wrong type, bad option)."""

    code = "invalid_input"


class UnsupportedMedia(InvalidInput):
    """The bytes are not a format this model can read."""

    code = "unsupported_media"


class WrongModality(InvalidInput):
    """A readable image of a modality the model was not made for (CT sent to an echo model)."""

    code = "wrong_modality"


class MissingLeads(InvalidInput):
    """A signal without a lead the model reads (and not the single lead it reads alone)."""

    code = "missing_leads"


class DatasetError(InvalidInput):
    """A dataset on disk is missing, empty or laid out in a way no loader recognises."""

    code = "invalid_dataset"


class ModelNotFound(DxError):
    """No model (or version) of that name in the repository."""

    code = "model_not_found"


class ModelIntegrityError(DxError):
    """A model file does not match the checksum in its manifest."""

    code = "model_integrity"


class StorageUnavailable(DxError):
    """Stored data cannot be written now (a read-only or missing disk): try again later."""

    code = "storage_unavailable"


class StorageFull(StorageUnavailable):
    """The disk that keeps stored data is full."""

    code = "insufficient_storage"


class SchemaTooNew(DxError):
    """The database was migrated by a newer dxserve than this one."""

    code = "schema_too_new"


class MissingDependency(DxError):
    """An optional extra (e.g. `train`) is needed for this operation."""

    code = "missing_dependency"


class PayloadTooLarge(InvalidInput):
    """The request body is over the configured limit."""

    code = "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    """An image whose declared dimensions would decode to more than dxserve accepts (a
    decompression bomb, or simply too large)."""

    code = "image_too_large"


class Throttled(DxError):
    """Too many requests from this key: its plan's rate limit."""

    code = "rate_limited"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = max(1, math.ceil(retry_after))  # whole seconds, as Retry-After


class QuotaExceeded(Throttled):
    """The tenant used its plan's monthly quota."""

    code = "monthly_quota_exceeded"


class NotAcceptable(DxError):
    """The client accepts no representation this server returns."""

    code = "not_acceptable"


class ModelRejected(InvalidInput):
    """An uploaded model or its manifest failed a check."""

    code = "model_rejected"


class PromotionRefused(DxError):
    """A new version is worse than its base by more than the margin asked for."""

    code = "promotion_refused"


class TenantQuotaExceeded(DxError):
    """The tenant's plan does not hold this many models of its own, or this many bytes."""

    code = "tenant_quota_exceeded"
