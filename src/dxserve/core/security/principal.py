"""The authenticated caller and the permissions of its role."""

from dataclasses import dataclass
from enum import StrEnum

from dxserve.errors import DxError


class Role(StrEnum):
    admin = "admin"
    clinician = "clinician"
    service = "service"


class Permission(StrEnum):
    diagnose = "diagnose"
    read_results = "read_results"
    infer = "infer"  # Open Inference Protocol
    manage_models = "manage_models"
    feedback = "feedback"  # a clinician's verdict on a diagnosis
    read_audit = "read_audit"  # the tenant's audit trail


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.admin: frozenset(Permission),
    Role.clinician: frozenset({Permission.diagnose, Permission.read_results, Permission.feedback}),
    Role.service: frozenset({Permission.diagnose, Permission.read_results, Permission.infer}),
}


class Unauthenticated(DxError):
    """No valid API key."""

    code = "unauthenticated"


class Forbidden(DxError):
    """A valid key whose role may not do this."""

    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    """An API key's tenant and role."""

    tenant_id: str
    tenant_name: str
    key_id: str
    role: Role

    def require(self, permission: Permission) -> "Principal":
        if permission not in PERMISSIONS[self.role]:
            raise Forbidden(f"role {self.role} may not {permission.value.replace('_', ' ')}")
        return self
