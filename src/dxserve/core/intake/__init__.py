"""Intake: turning what a user sends (files, bytes) into the typed input of its modality —
Frames (an image or cine) or Signal (an ECG) — one decoder module a format.

pydicom reads and writes values as sent, without validating them: its validation warnings quote
the offending value, which may be a patient's name or ID, and an invalid value in an attribute
the de-identification keeps is the sender's business, not a reason to refuse a study.
"""

from pydicom import config

config.settings.reading_validation_mode = config.IGNORE
config.settings.writing_validation_mode = config.IGNORE
