"""The kinds of input a model reads: a manifest's ``modality``, and what intake makes of a body.

Each modality has one typed input (see :mod:`dxserve.core.intake`): an image or cine is
:class:`~dxserve.core.intake.frames.Frames`, an ECG or other time series is
:class:`~dxserve.core.intake.signal.Signal`; clinical text comes later.
"""

IMAGE = "image"
SIGNAL = "signal"
TEXT = "text"
MODALITIES = (IMAGE, SIGNAL, TEXT)

DESCRIPTIONS = {
    IMAGE: "images (PNG, JPEG, DICOM image or cine)",
    SIGNAL: "signals (ECG: DICOM waveform, WFDB, CSV or JSON)",
    TEXT: "clinical text",
}


def describe(modality: str) -> str:
    """What a model of ``modality`` reads, in words for an error message."""
    return DESCRIPTIONS.get(modality, modality)
