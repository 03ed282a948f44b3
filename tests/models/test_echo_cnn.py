"""The seed's CNN, exactly: layer sequence, shapes and 3,705,921 parameters."""

import pytest

torch = pytest.importorskip("torch", reason="the model needs the train extra")
from torch import nn  # noqa: E402

from dxserve.models.echo_cnn import EchoCNN, count_parameters  # noqa: E402


def test_parameter_count_matches_the_seed() -> None:
    assert count_parameters(EchoCNN()) == 3_705_921


def test_layer_sequence() -> None:
    model = EchoCNN()
    kinds = [type(layer) for layer in model]
    assert kinds == [
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.Sigmoid,
    ]
    conv1, conv2 = model[0], model[3]
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (3, 32, (3, 3))
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (32, 64, (3, 3))
    assert model[2].kernel_size == model[5].kernel_size == 2
    assert (model[7].in_features, model[7].out_features) == (57_600, 64)
    assert (model[9].in_features, model[9].out_features) == (64, 1)


def test_forward_is_sigmoid_of_logits() -> None:
    model = EchoCNN().eval()
    x = torch.rand(3, 3, 128, 128)
    with torch.no_grad():
        probability, logits = model(x), model.logits(x)
    assert probability.shape == (3, 1)
    assert torch.allclose(probability, torch.sigmoid(logits))
