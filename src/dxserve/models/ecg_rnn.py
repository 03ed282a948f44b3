"""The seed's recurrent network for time series, for ECG rhythm: a bidirectional GRU.

A small 1-D convolutional front end (two strided convolutions and a max-pool: 1,000 samples at
100 Hz become 125 steps of 64 features) shortens the sequence so the GRU reads 10 s of 12 leads
in a fraction of the steps; the GRU's states are pooled over time (mean and max), then Dense 64
ReLU (the features the out-of-distribution guard reads) and one logit a statement (multi-label,
a sigmoid each). The same network reads lead II alone (the other leads zero), as it was
trained with lead dropout.
"""

import torch
from torch import nn

ARCHITECTURE = (
    "Conv1D(32,7,stride 2,ReLU) > Conv1D(64,5,stride 2,ReLU) > MaxPool(2) > "
    "BiGRU(64) > mean+max pooling > Dense(64,ReLU) > Dense(K,sigmoid)"
)
FEATURES = 64
HIDDEN = 64


class EcgRNN(nn.Module):
    """``forward`` returns the logits ``(N, K)`` of input ``(N, leads, samples)``."""

    def __init__(self, leads: int = 12, classes: int = 6) -> None:
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv1d(leads, 32, kernel_size=7, stride=2, padding=3),
            nn.ReLU(),
            nn.Conv1d(32, 64, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )
        self.gru = nn.GRU(64, HIDDEN, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(4 * HIDDEN, FEATURES)
        self.out = nn.Linear(FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        steps, _ = self.gru(self.front(x).transpose(1, 2))  # (N, T, 2H)
        pooled = torch.cat([steps.mean(dim=1), steps.amax(dim=1)], dim=1)
        return torch.relu(self.dense(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class EcgExportHead(nn.Module):
    """The network as exported: ``probability`` and ``logit`` ``(N, K)``, ``features``
    ``(N, 64)`` for the out-of-distribution guard."""

    def __init__(self, model: EcgRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.features(x)
        logit = self.model.out(features)
        return torch.sigmoid(logit), logit, features
