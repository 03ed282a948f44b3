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


# Where the CAM maps look: the output of the second conv block (after its max-pool), 64 × 30 × 30.
# Map cell (i, j) is centred on input pixel (4i + 4, 4j + 4) of the 128 × 128 input.
CAM_STRIDE = 4
CAM_OFFSET = 4.0
FEATURES = 64  # the penultimate (Dense 64, after ReLU) layer, used by the out-of-distribution guard


class ExportHead(nn.Module):
    """The network as exported. Outputs, for a batch of N:

    - ``probability`` and ``logit``, each ``(N, 1)``;
    - ``gradcam`` ``(N, 30, 30)``: Grad-CAM (Selvaraju et al., 2017) of the logit on the last
      conv block's output ``A``: ReLU(Σ_k α_k A_k), α_k the spatial mean of ∂logit/∂A_k;
    - ``hirescam`` ``(N, 30, 30)``: HiResCAM (Draelos & Carin, 2020), Σ_k ∂logit/∂A_k ⊙ A_k —
      Grad-CAM without the spatial averaging of the gradient, which for a network whose head is
      dense layers is exactly each position's contribution to the logit (it localises the
      phantoms' findings far better: see ``dxserve evaluate --explain``).

    The dense head after ``A`` is ReLU(A·W1ᵀ + b1)·W2ᵀ + b2, so the gradient is written out in
    closed form, (W2 ⊙ 1[h > 0]) · W1: one ONNX Runtime run yields the prediction and its
    explanation, with no autograd at serving time;
    - ``features`` ``(N, 64)``: the penultimate layer ``h``, for the out-of-distribution guard.
    """

    def __init__(self, model: EchoCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        layers = list(self.model)
        activations = nn.Sequential(*layers[:6])(x)  # A: (N, 64, 30, 30)
        dense1, dense2 = layers[7], layers[9]
        assert isinstance(dense1, nn.Linear) and isinstance(dense2, nn.Linear)
        hidden = torch.relu(dense1(activations.flatten(1)))  # h: (N, 64)
        logit = dense2(hidden)
        gradient = ((hidden > 0).to(x.dtype) * dense2.weight) @ dense1.weight  # ∂logit/∂A
        gradient = gradient.reshape(activations.shape)
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        gradcam = torch.relu((weights * activations).sum(dim=1))
        hirescam = (gradient * activations).sum(dim=1)
        return torch.sigmoid(logit), logit, gradcam, hirescam, hidden


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
