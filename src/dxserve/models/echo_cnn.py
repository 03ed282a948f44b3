"""The seed document's heart-disease CNN for cardiac ultrasound, in PyTorch.

Conv2D 32 3×3 ReLU → MaxPool 2 → Conv2D 64 3×3 ReLU → MaxPool 2 → Flatten → Dense 64 ReLU →
Dense 1 sigmoid, on 128×128×3 input: 3,705,921 parameters, as in the seed's Keras listing
(valid padding, floor pooling). PyTorch's layout is NCHW, so Flatten orders features
channel-first; the function is the same network.
"""

import torch
from torch import nn

INPUT_SHAPE = (3, 128, 128)
ARCHITECTURE = (
    "Conv2D(32,3x3,ReLU) > MaxPool(2) > Conv2D(64,3x3,ReLU) > MaxPool(2) > Flatten > "
    "Dense(64,ReLU) > Dense(1,sigmoid)"
)


class EchoCNN(nn.Sequential):
    """The seed CNN. ``forward`` returns the probability; :meth:`logits` the pre-sigmoid score."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 32, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 30 * 30, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
            nn.Sigmoid(),
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Scores before the final sigmoid (what BCE-with-logits trains on, stably)."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x


class ExportHead(nn.Module):
    """The network as exported: outputs ``probability`` and ``logit``, each ``(N, 1)``."""

    def __init__(self, model: EchoCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.model.logits(x)
        return torch.sigmoid(logit), logit


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
