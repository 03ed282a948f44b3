"""Signals in: every decoder yields the same typed Signal, and the signal recipe turns any rate,
length and lead set into the model's windows."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dxserve.core.intake.signal import STANDARD_LEADS, Signal, lead_name
from dxserve.core.intake.signal_table import decode_csv, decode_json
from dxserve.core.intake.waveform import decode_waveform, is_waveform
from dxserve.core.intake.wfdb_record import decode_wfdb, unzip
from dxserve.core.preprocess import SignalRecipe, recipe_from_dict
from dxserve.errors import InvalidInput

RECIPE = SignalRecipe("ecg-100hz-10s", 100.0, 10.0, STANDARD_LEADS)


def sine_signal(rate: float = 500.0, seconds: float = 10.0, leads=STANDARD_LEADS) -> Signal:
    t = np.arange(int(rate * seconds)) / rate
    samples = np.stack([np.sin(2 * np.pi * (1 + i) * t) for i in range(len(leads))], axis=1)
    return Signal.of(samples, rate, list(leads))


def test_lead_names_are_standardised() -> None:
    assert lead_name("Lead I (Einthoven)") == "I"
    assert lead_name("lead ii") == "II" and lead_name("AVF") == "aVF" and lead_name("v6") == "V6"
    assert lead_name("Resp") == "Resp"


def test_the_real_dicom_ecg_reads_as_its_rhythm_strip_in_millivolts() -> None:
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm", download=False))
    assert is_waveform(ds)
    signal = decode_waveform(ds)
    assert signal.leads == STANDARD_LEADS and signal.rate == 1000.0 and signal.seconds == 10.0
    raw = ds.waveform_array(0)  # microvolts
    assert np.allclose(signal.samples, raw / 1000)
    # Einthoven: III = II − I on the device's own samples (within its 1.25 µV steps).
    i, ii, iii = (signal.lead(n) for n in ("I", "II", "III"))
    assert np.abs(iii - (ii - i)).max() < 0.01


def test_csv_with_a_time_column_or_a_rate_and_json_in_either_shape() -> None:
    csv = "time,I,ii\n" + "\n".join(f"{k / 250:.4f},{k % 7},{-(k % 5)}" for k in range(1000))
    signal = decode_csv(csv.encode())
    assert signal.rate == pytest.approx(250) and signal.leads == ("I", "II")
    assert signal.samples.shape == (1000, 2) and signal.samples[3, 0] == 3
    no_time = decode_csv(b"II\n1\n2\n3\n", rate=500, units="uV")
    assert no_time.samples[:, 0].tolist() == [0.001, 0.002, 0.003]
    with pytest.raises(InvalidInput, match="rate"):
        decode_csv(b"II\n1\n2\n")
    with pytest.raises(InvalidInput, match="number"):
        decode_csv(b"II\n1\nabc\n", rate=1)
    by_lead = decode_json(json.dumps({"rate": 500, "leads": {"II": [1, 2], "V1": [3, 4]}}).encode())
    rows = decode_json(
        json.dumps(
            {"rate": 500, "units": "uV", "lead_names": ["II"], "samples": [[5], [6]]}
        ).encode()
    )
    assert by_lead.samples.tolist() == [[1, 3], [2, 4]] and rows.samples[1, 0] == 0.006
    for bad in (
        b"[1, 2]",
        b"{",
        json.dumps({"rate": 1, "leads": {"I": [1], "II": [1, 2]}}).encode(),
    ):
        with pytest.raises(InvalidInput):
            decode_json(bad)


def test_a_wfdb_record_reads_from_its_zip(tmp_path: Path) -> None:
    import wfdb

    original = sine_signal(rate=360, seconds=5, leads=("II", "V1"))
    wfdb.wrsamp(
        "rec1",
        fs=360,
        units=["mV", "mV"],
        sig_name=["II", "V1"],
        p_signal=original.samples,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in tmp_path.iterdir():
            archive.write(path, f"some/folder/{path.name}")
    signal = decode_wfdb(unzip(buffer.getvalue()))
    assert signal.leads == ("II", "V1") and signal.rate == 360
    assert np.abs(signal.samples - original.samples).max() < 1e-3


def test_a_wfdb_header_cannot_reach_files_it_was_not_sent() -> None:
    with pytest.raises(InvalidInput, match="not sent"):
        decode_wfdb({"rec.hea": b"rec 1 360 100\nother.dat 16 200 16 0 0 0 0 II\n"})
    with pytest.raises(InvalidInput):
        decode_wfdb({"rec.hea": b"rec 1 360 100\n../../etc/passwd 16 200 16 0 0 0 0 II\n"})
    with pytest.raises(InvalidInput, match="names"):
        decode_wfdb({"rec.hea": b"rec 1 360 100\n", "../x.dat": b""})


def test_signal_recipe_resamples_filters_windows_and_scales() -> None:
    signal = sine_signal(rate=500, seconds=25)
    windows = RECIPE.apply(signal)
    # two whole windows and a last one aligned to the end (its 5 s left over ≥ half a window)
    assert windows.shape == (3, 12, 1000) and windows.dtype == np.float32
    assert np.allclose(np.median(windows, axis=2), 0, atol=0.05)
    _, starts = RECIPE.windows(RECIPE.condition(signal))
    assert starts.tolist() == [0.0, 10.0, 15.0]
    assert recipe_from_dict(RECIPE.to_dict()) == RECIPE


def test_the_band_keeps_the_ecg_band_and_takes_out_mains_hum() -> None:
    recipe = SignalRecipe("at-500", 500.0, 10.0, ("II",))
    t = np.arange(5000) / 500
    x = Signal.of(np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 60 * t), 500, ["II"])
    spectrum = np.abs(np.fft.rfft(recipe.condition(x)[:, 0])) / 2500
    hz = np.fft.rfftfreq(5000, 1 / 500)
    assert spectrum[hz == 10] > 0.95 and spectrum[hz == 60] < 0.01


def test_missing_leads_are_refused_unless_the_signal_is_the_single_lead() -> None:
    limb = sine_signal(leads=("I", "II", "III"))
    with pytest.raises(InvalidInput, match=r"lacks lead.*V1.*or lead II alone"):
        RECIPE.apply(limb)
    lead_ii = sine_signal(leads=("ii",))
    x = RECIPE.apply(lead_ii)
    assert x.shape == (1, 12, 1000)
    assert np.abs(x[0, 1]).max() > 0.5 and not np.delete(x[0], 1, axis=0).any()
    with pytest.raises(InvalidInput, match="at least"):
        RECIPE.apply(sine_signal(seconds=1))


def test_a_short_record_is_padded_to_one_window() -> None:
    x = RECIPE.apply(sine_signal(seconds=6))
    assert x.shape == (1, 12, 1000) and not x[:, :, 650:].any()


@pytest.mark.parametrize(
    "samples, rate, leads",
    [
        (np.zeros((10, 2)), 500, ["I"]),
        (np.zeros((10, 1)), 0, ["I"]),
        (np.full((10, 1), np.nan), 500, ["I"]),
        (np.zeros((10, 2)), 500, ["I", "lead i"]),
    ],
)
def test_malformed_signals_are_refused(samples: np.ndarray, rate: float, leads: list[str]) -> None:
    with pytest.raises(InvalidInput):
        Signal.of(samples, rate, leads)
