"""ECG phantoms: real rhythms from per-beat RR series, exact limb-lead relations in noisy
records, exact fiducial truth, and every format read back by the serving decoders."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from dxserve.core.intake.signal import STANDARD_LEADS
from dxserve.core.intake.waveform import decode_waveform
from dxserve.datasets.signals import open_signal_dataset, read_signal
from dxserve.phantoms.ecg.generate import generate_ecg, make_record
from dxserve.phantoms.ecg.noise import add_noise
from dxserve.phantoms.ecg.rhythm import AF, AVB1, BRADY, PVC, SINUS, TACHY

RECORDS = [make_record(21, i) for i in range(48)]


def test_limb_leads_obey_einthoven_and_goldberger_in_noisy_records() -> None:
    for record in RECORDS[:12]:
        x = record.samples.astype(np.float64)
        i, ii, iii, avr, avl, avf = (x[:, k] for k in range(6))
        tolerance = 1e-5 * np.abs(x).max()  # float32 storage
        assert np.abs(iii - (ii - i)).max() < tolerance
        assert np.abs(avr + (i + ii) / 2).max() < tolerance
        assert np.abs(avl - (i - ii / 2)).max() < tolerance
        assert np.abs(avf - (ii - i / 2)).max() < tolerance
    assert record.leads == STANDARD_LEADS


def test_each_rhythm_is_what_its_label_says() -> None:
    for record in RECORDS:
        labels, truth = record.plan.labels, record.intervals()
        rr = np.diff([b.qrs_on for b in record.beats])
        conducted = [b for b in record.beats if b.kind == "N"]
        if AF in labels:
            assert all(b.p_on is None for b in record.beats)
            assert truth["pr_ms"] is None
            assert rr.std() / rr.mean() > 0.1  # irregularly irregular
        else:
            assert all(b.p_on is not None for b in conducted)
            assert (truth["pr_ms"] > 200) == (AVB1 in labels)
        if BRADY in labels:
            assert truth["heart_rate"] < 60
        if TACHY in labels:
            assert truth["heart_rate"] > 100
        if SINUS in labels and PVC not in labels:
            assert 60 <= truth["heart_rate"] <= 100 and rr.std() / rr.mean() < 0.08
        ectopic = [k for k, b in enumerate(record.beats) if b.kind == "V"]
        assert bool(ectopic) == (PVC in labels)
        for k in ectopic:
            beat = record.beats[k]
            assert beat.p_on is None and beat.qrs_off - beat.qrs_on >= 0.12  # wide, no P
            if 0 < k < len(record.beats) - 1:  # premature, then a compensatory pause
                before, after = record.beats[k - 1], record.beats[k + 1]
                assert beat.qrs_on - before.qrs_on < 0.8 * (after.qrs_on - beat.qrs_on)


def test_truth_is_exact_and_self_consistent() -> None:
    record = RECORDS[0]
    truth = record.truth()
    beats = [b for b in record.beats if b.kind == "N"]
    pr = np.median([b.qrs_on - b.p_on for b in beats]) * 1000
    assert truth["intervals"]["pr_ms"] == pytest.approx(pr, abs=0.01)
    rr = truth["intervals"]["rr_ms"] / 1000
    assert truth["intervals"]["qtc_bazett_ms"] == pytest.approx(
        truth["intervals"]["qt_ms"] / np.sqrt(rr), abs=0.02
    )
    assert 12 <= truth["snr_db"] <= 30 and truth["synthetic"]


def test_noise_is_added_at_the_recorded_snr() -> None:
    rng = np.random.default_rng(0)
    clean = RECORDS[0].samples.astype(np.float64) * 0 + np.sin(np.linspace(0, 60, 5000))[:, None]
    noisy, kinds = add_noise(rng, clean, 500.0, 15.0)
    noise = noisy - clean
    snr = 10 * np.log10(clean.var(axis=0).mean() / noise.var(axis=0).mean())
    assert snr == pytest.approx(15.0, abs=0.01)
    assert set(kinds) >= {"baseline_wander", "muscle", "mains", "electrode_motion", "mains_hz"}


@pytest.mark.parametrize("fmt", ["npz", "wfdb", "dicom"])
def test_every_format_reads_back_through_the_serving_decoders(tmp_path: Path, fmt: str) -> None:
    generate_ecg(tmp_path, n=3, seed=21, fmt=fmt, workers=1)
    dataset = open_signal_dataset(tmp_path)
    assert len(dataset) == 3 and dataset.labels[0] == SINUS
    for item, record in zip(dataset.items, RECORDS, strict=False):
        signal = read_signal(item.path)
        assert signal.leads == STANDARD_LEADS and signal.rate == 500
        assert np.abs(signal.samples - record.samples).max() <= 0.0006  # 1 µV steps
        assert item.intervals() == record.intervals()
    if fmt == "dicom":
        ds = pydicom.dcmread(dataset.items[0].path)
        assert ds.Modality == "ECG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"
        assert decode_waveform(ds).leads == STANDARD_LEADS


def test_a_single_lead_dataset_is_lead_ii(tmp_path: Path) -> None:
    generate_ecg(tmp_path, n=2, seed=21, leads=1, workers=1)
    signal = read_signal(open_signal_dataset(tmp_path).items[0].path)
    assert signal.leads == ("II",)
    assert np.abs(signal.samples[:, 0] - RECORDS[0].samples[:, 1]).max() <= 0.0006
