"""Signals sent as a table: CSV (a header of lead names; a first ``time`` column in seconds,
or the rate given by the caller) or JSON (``{"rate": 500, "units": "mV", "leads": {"II": [...]}}``
or ``{"rate": 500, "lead_names": [...], "samples": [[...], ...]}``, samples × leads)."""

import csv
import io
import json
from typing import Any

import numpy as np

from dxserve.core.intake.signal import Signal
from dxserve.errors import InvalidInput

TIME_COLUMNS = {"time", "t", "time_s", "seconds", "s"}


def decode_csv(data: bytes, rate: float | None = None, units: str = "mV") -> Signal:
    """A CSV of samples with a header row naming the leads."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise InvalidInput("the CSV needs a header row of lead names and rows of samples")
    header = [h.strip() for h in rows[0]]
    try:
        values = np.array([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    except ValueError:
        raise InvalidInput("every CSV value below the header must be a number") from None
    if values.ndim != 2 or values.shape[1] != len(header):
        raise InvalidInput("every CSV row needs one value per header column")
    if header[0].lower() in TIME_COLUMNS:
        steps = np.diff(values[:, 0])
        if len(steps) == 0 or not (steps > 0).all():
            raise InvalidInput("the CSV's time column must increase")
        rate = 1.0 / float(np.median(steps))
        header, values = header[1:], values[:, 1:]
    if rate is None:
        raise InvalidInput("give the sampling rate (?rate=HZ) or a first column 'time' in seconds")
    return Signal.of(values, rate, header, units)


def decode_json(data: bytes) -> Signal:
    """A JSON object with ``rate`` and either ``leads`` (name → samples) or ``lead_names``
    and ``samples`` (rows of samples × leads)."""
    try:
        body: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(body, dict) or "rate" not in body:
        raise InvalidInput('a JSON signal is an object with "rate" and "leads" or "samples"')
    units = str(body.get("units", "mV"))
    try:
        if isinstance(body.get("leads"), dict):
            names = list(body["leads"])
            columns = [np.asarray(body["leads"][n], dtype=np.float64) for n in names]
            if len({len(c) for c in columns}) != 1 or columns[0].ndim != 1:
                raise InvalidInput("every lead needs the same number of samples")
            return Signal.of(np.stack(columns, axis=1), body["rate"], names, units)
        samples = np.asarray(body.get("samples"), dtype=np.float64)
        names = [str(n) for n in body.get("lead_names") or []]
    except (TypeError, ValueError):
        raise InvalidInput("signal samples must be numbers") from None
    if samples.ndim != 2 or samples.shape[1] != len(names):
        raise InvalidInput('"samples" must be rows of one value per name in "lead_names"')
    return Signal.of(samples, body["rate"], names, units)
