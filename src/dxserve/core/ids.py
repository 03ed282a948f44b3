"""Identifiers of records that need to be unique, not secret (request ids, audit and usage
events): 128 random bits from a generator seeded once by the OS, without a system call each.
Anything a caller could guess its way into (diagnoses, keys) keeps using ``secrets``/``uuid4``.
"""

import random

_bits = random.Random()  # seeded from os.urandom


def record_id() -> str:
    """32 hex digits, as ``uuid4().hex``."""
    return f"{_bits.getrandbits(128):032x}"
