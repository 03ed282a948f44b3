"""dxserve: self-hosted medical AI models as a service."""

__version__ = "0.1.0"

NOT_FOR_CLINICAL_USE = (
    "Not for clinical use: this model was trained on synthetic phantoms, "
    "not on real patient studies."
)
