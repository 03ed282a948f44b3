"""The authenticated caller and the permissions of its role."""

from dataclasses import dataclass
from enum import StrEnum

from dxserve.errors import DxError, InvalidInput


class Role(StrEnum):
    platform_admin = "platform-admin"  # operates the platform: every tenant
    admin = "admin"
    clinician = "clinician"
    service = "service"


class Permission(StrEnum):
    diagnose = "diagnose"
    read_results = "read_results"
    infer = "infer"  # Open Inference Protocol
    manage_models = "manage_models"  # load/unload models: every tenant's (platform-admin only)
    feedback = "feedback"  # a clinician's verdict on a diagnosis
    read_audit = "read_audit"  # the tenant's audit trail
    manage_keys = "manage_keys"  # the tenant's API keys
    read_usage = "read_usage"  # the tenant's usage and invoices
    manage_tenants = "manage_tenants"  # every tenant (platform-admin only)
    # the tenant's own models, labelled datasets, training jobs and their promotion
    customise_models = "customise_models"


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.platform_admin: frozenset(Permission),
    Role.admin: frozenset(Permission) - {Permission.manage_tenants, Permission.manage_models},
    Role.clinician: frozenset({Permission.diagnose, Permission.read_results, Permission.feedback}),
    Role.service: frozenset({Permission.diagnose, Permission.read_results, Permission.infer}),
}


class Unauthenticated(DxError):
    """No valid API key."""

    code = "unauthenticated"


class Forbidden(DxError):
    """A valid key whose role may not do this."""

    code = "forbidden"


def parse_scopes(text: str | None) -> frozenset[Permission] | None:
    """Permissions named in ``text`` (space- or comma-separated); None for no limit."""
    if text is None or not text.strip():
        return None
    names = text.replace(",", " ").split()
    unknown = sorted(set(names) - {p.value for p in Permission})
    if unknown:
        raise InvalidInput(f"unknown scopes {unknown}; known: {[p.value for p in Permission]}")
    return frozenset(Permission(n) for n in names)


@dataclass(frozen=True)
class Principal:
    """An API key's tenant, role, plan and (optionally) the scopes it is limited to."""

    tenant_id: str
    tenant_name: str
    key_id: str
    role: Role
    plan: str = "standard"
    scopes: frozenset[Permission] | None = None

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role] and (
            self.scopes is None or permission in self.scopes
        )

    def require(self, permission: Permission) -> "Principal":
        if permission not in PERMISSIONS[self.role]:
            raise Forbidden(f"role {self.role} may not {permission.value.replace('_', ' ')}")
        if not self.may(permission):
            raise Forbidden(f"this key's scopes do not include {permission.value}")
        return self
