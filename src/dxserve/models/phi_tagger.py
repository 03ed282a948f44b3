"""The PHI tagger: a bidirectional GRU over a note's tokens that marks the names the format rules
cannot see ("Thank you for referring Jane Doe").

Each token is the sum of three embeddings — its word, its shape, the mean of its character
trigrams (see :mod:`dxserve.core.text.token_features`: all hashed, so no vocabulary file and no
unknown word) — read in context by a BiGRU; one logit a token: is it part of a name.
"""

import torch
from torch import nn

from dxserve.core.text.token_features import NGRAM_BUCKETS, SHAPE_BUCKETS, WORD_BUCKETS

ARCHITECTURE = "Embedding(word 64 + shape 64 + mean char-trigram 64) > BiGRU(96) > Dense(1)"
EMBEDDING = 64
HIDDEN = 96


class PhiTagger(nn.Module):
    """``forward`` returns logits ``(N, T)`` of int64 token features ``(N, T, 2 + trigrams)``."""

    def __init__(self) -> None:
        super().__init__()
        self.word = nn.Embedding(WORD_BUCKETS, EMBEDDING, padding_idx=0)
        self.shape = nn.Embedding(SHAPE_BUCKETS, EMBEDDING, padding_idx=0)
        self.ngram = nn.Embedding(NGRAM_BUCKETS, EMBEDDING, padding_idx=0)
        self.dropout = nn.Dropout(0.25)
        self.gru = nn.GRU(EMBEDDING, HIDDEN, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * HIDDEN, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Clamped: any integers a client sends over the Open Inference Protocol are valid input.
        word = x[:, :, 0].clamp(0, WORD_BUCKETS - 1)
        shape = x[:, :, 1].clamp(0, SHAPE_BUCKETS - 1)
        grams = x[:, :, 2:].clamp(0, NGRAM_BUCKETS - 1)
        count = (grams > 0).sum(dim=2, keepdim=True).clamp(min=1).to(torch.float32)
        token = self.word(word) + self.shape(shape) + self.ngram(grams).sum(2) / count
        steps, _ = self.gru(self.dropout(token))
        return self.out(self.dropout(steps)).squeeze(-1)


class PhiExportHead(nn.Module):
    """The tagger as exported: ``probability`` and ``logit`` ``(N, T)``."""

    def __init__(self, model: PhiTagger) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.model(x)
        return torch.sigmoid(logit), logit
