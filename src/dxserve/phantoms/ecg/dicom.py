"""ECG phantoms as DICOM 12-Lead ECG Waveform Storage objects of invented patients, laid out
as electrocardiographs write them: one ORIGINAL "RHYTHM" multiplex group, 16-bit samples at a
sensitivity of 1 µV, each channel coded in SCP-ECG's lead codes."""

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dxserve.phantoms.dicom import FakePatient, describe_patient, new_dataset

TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.2"
SENSITIVITY_UV = 1.0
# SCP-ECG lead codes (as in DICOM PS3.16 CID 3001) and their meanings.
LEAD_CODES = {
    "I": ("5.6.3-9-1", "Lead I"),
    "II": ("5.6.3-9-2", "Lead II"),
    "III": ("5.6.3-9-61", "Lead III"),
    "aVR": ("5.6.3-9-62", "aVR, augmented voltage, right"),
    "aVL": ("5.6.3-9-63", "aVL, augmented voltage, left"),
    "aVF": ("5.6.3-9-64", "aVF, augmented voltage, foot"),
    "V1": ("5.6.3-9-3", "Lead V1"),
    "V2": ("5.6.3-9-4", "Lead V2"),
    "V3": ("5.6.3-9-5", "Lead V3"),
    "V4": ("5.6.3-9-6", "Lead V4"),
    "V5": ("5.6.3-9-7", "Lead V5"),
    "V6": ("5.6.3-9-8", "Lead V6"),
}


def _code(value: str, scheme: str, meaning: str, version: str | None = None) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    if version:
        item.CodingSchemeVersion = version
    return item


def ecg_dataset(
    samples_mv: np.ndarray, rate: float, leads: tuple[str, ...], rng: np.random.Generator
) -> Dataset:
    """A 12-lead (or, for other lead sets, General) ECG waveform object of a fake patient."""
    sop_class = TWELVE_LEAD_ECG_STORAGE if len(leads) == 12 else GENERAL_ECG_STORAGE
    ds = new_dataset(sop_class, rng)
    describe_patient(ds, FakePatient.random(rng), rng)
    ds.Modality = "ECG"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.ManufacturerModelName = "ecg-phantom"
    ds.StudyDescription = "Resting 12-lead ECG"
    ds.AcquisitionContextSequence = Sequence([])
    ds.SeriesDescription = "Synthetic phantom. Not patient data. Not for clinical use."

    group = Dataset()
    group.MultiplexGroupTimeOffset = 0
    group.WaveformOriginality = "ORIGINAL"
    group.MultiplexGroupLabel = "RHYTHM"
    group.NumberOfWaveformChannels = len(leads)
    group.NumberOfWaveformSamples = len(samples_mv)
    group.SamplingFrequency = f"{rate:g}"
    channels = []
    for lead in leads:
        code, meaning = LEAD_CODES[lead]
        channel = Dataset()
        channel.ChannelSourceSequence = Sequence([_code(code, "SCPECG", meaning, "1.3")])
        channel.ChannelSensitivity = f"{SENSITIVITY_UV:g}"
        channel.ChannelSensitivityUnitsSequence = Sequence(
            [_code("uV", "UCUM", "microvolt", "1.4")]
        )
        channel.ChannelSensitivityCorrectionFactor = 1
        channel.ChannelBaseline = 0
        channel.ChannelSampleSkew = 0
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = Sequence(channels)
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    counts = np.clip(np.round(samples_mv * 1000 / SENSITIVITY_UV), -32768, 32767)
    group.WaveformData = counts.astype("<i2").tobytes()
    ds.WaveformSequence = Sequence([group])
    return ds


def write_ecg(
    path: Path,
    samples_mv: np.ndarray,
    rate: float,
    leads: tuple[str, ...],
    rng: np.random.Generator,
) -> None:
    ecg_dataset(samples_mv, rate, leads, rng).save_as(path, enforce_file_format=True)
