"""DICOM ECG waveforms (12-lead ECG, General ECG, Ambulatory ECG) → :class:`Signal`.

The rhythm group is read — the multiplex group of original samples, never a derived median
beat — with pydicom's ``waveform_array`` (sensitivity, correction and baseline applied) in the
units of each channel's ``ChannelSensitivityUnitsSequence``.
"""

import numpy as np
from pydicom.dataset import Dataset

from dxserve.core.intake.signal import Signal, millivolts
from dxserve.errors import InvalidInput, UnsupportedMedia

MAX_WAVEFORM_BYTES = 256 << 20  # decoded float64 samples of one group


def is_waveform(dataset: Dataset) -> bool:
    """True for a DICOM object that carries waveforms and no image."""
    return "WaveformSequence" in dataset and "PixelData" not in dataset


def rhythm_group(dataset: Dataset) -> int:
    """Index of the group to read: the first ORIGINAL one that is not a median beat."""
    groups = list(dataset.get("WaveformSequence") or [])
    if not groups:
        raise UnsupportedMedia("the DICOM object has no waveform")

    def derived(group: Dataset) -> bool:
        label = str(group.get("MultiplexGroupLabel", "") or "").upper()
        return group.get("WaveformOriginality") == "DERIVED" or "MEDIAN" in label

    for index, group in enumerate(groups):
        if not derived(group):
            return index
    return 0


def decode_waveform(dataset: Dataset) -> Signal:
    """The rhythm group of a DICOM waveform object as a signal in millivolts."""
    index = rhythm_group(dataset)
    group = dataset.WaveformSequence[index]
    try:
        channels = int(group.NumberOfWaveformChannels)
        samples = int(group.NumberOfWaveformSamples)
        rate = float(group.SamplingFrequency)
        definitions = list(group.ChannelDefinitionSequence)
    except (AttributeError, TypeError, ValueError):
        raise InvalidInput("the waveform lacks its channel count, samples or rate") from None
    if channels * samples * 8 > MAX_WAVEFORM_BYTES:
        raise InvalidInput(f"the waveform's {channels} × {samples} samples are over the limit")
    if len(definitions) != channels:
        raise InvalidInput("the waveform's channel definitions do not match its channel count")
    try:
        values = np.asarray(dataset.waveform_array(index), dtype=np.float64)
    except (AttributeError, KeyError, ValueError, NotImplementedError) as exc:
        raise InvalidInput(f"cannot decode the waveform: {type(exc).__name__}") from None
    names = [_channel_name(d, i) for i, d in enumerate(definitions)]
    to_mv = np.array([millivolts(_units(d)) for d in definitions])
    return Signal.of(values * to_mv, rate, names, "mV")


def _channel_name(definition: Dataset, index: int) -> str:
    source = definition.get("ChannelSourceSequence") or []
    if source:
        meaning = source[0].get("CodeMeaning")
        if meaning:
            return str(meaning)
    return str(definition.get("ChannelLabel") or f"channel {index + 1}")


def _units(definition: Dataset) -> str:
    items = definition.get("ChannelSensitivityUnitsSequence") or []
    return str(items[0].get("CodeValue", "uV")) if items else "uV"
