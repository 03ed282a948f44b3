"""Names found by the trained PHI tagger (``phi-tagger`` in the model repository): its per-token
probabilities made into spans. The network itself is ONNX, run by the registry like any model
(and reachable over the Open Inference Protocol); this module only prepares and reads it."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dxserve.core.text.known_words import is_not_a_name
from dxserve.core.text.phi_rules import PhiSpan
from dxserve.core.text.token_features import featurize, per_token

NAME_MODEL = "phi-tagger"
INPUT_NAME = "tokens"
OUTPUT_NAMES = ("probability", "logit")
JOINING = frozenset(" -'.")  # what may stand between two words of one name


@dataclass(frozen=True)
class TaggedNames:
    text: str
    tokens: list[tuple[int, int]]
    probabilities: np.ndarray  # one a token: is it part of a name

    @classmethod
    def from_windows(
        cls, text: str, tokens: list[tuple[int, int]], per_window: np.ndarray
    ) -> "TaggedNames":
        return cls(text, tokens, per_token(per_window, len(tokens)))

    @classmethod
    def of(cls, text: str, run: Callable[[np.ndarray], np.ndarray]) -> "TaggedNames":
        """Tag ``text`` with ``run`` (windows → per-window probabilities)."""
        tokens, windows = featurize(text)
        return cls.from_windows(text, tokens, run(windows) if tokens else np.zeros((1, 0)))

    def spans(self, threshold: float) -> list[tuple[int, int]]:
        """Runs of word tokens at or over ``threshold``, joined across spaces, hyphens,
        apostrophes and initials' full stops; those surely no name dropped (known_words)."""
        found: list[tuple[int, int]] = []
        for (start, end), p in zip(self.tokens, self.probabilities, strict=True):
            if p < threshold or not self.text[start].isalnum():
                continue
            if (
                found
                and set(self.text[found[-1][1] : start]) <= JOINING
                and start - found[-1][1] <= 2
            ):
                found[-1] = (found[-1][0], end)
            else:
                found.append((start, end))
        return [(a, b) for a, b in found if not is_not_a_name(self.text[a:b])]

    def phi(self, threshold: float) -> list[PhiSpan]:
        return [PhiSpan(a, b, "NAME") for a, b in self.spans(threshold)]
