"""Words and punctuation of a text with their character offsets: the unit de-identification is
scored in (a token of an identifier left in the text is a leak, whatever its neighbours)."""

import re
from collections.abc import Iterator

TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each word or punctuation mark of ``text``."""
    for match in TOKEN.finditer(text):
        yield match.start(), match.end()
