"""A small CNN for 8x8 digit images (scikit-learn's bundled digits): the built-in default of the
demo, trainable in seconds on a CPU."""
from torch import nn


def digits_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """Input [B, in_channels, 8, 8] -> logits [B, num_classes]; ~38k parameters.

    conv 3x3 (16) - BN - ReLU - conv 3x3 (32) - BN - ReLU - maxpool 2 - linear 512 -> 64 - ReLU -
    linear 64 -> num_classes."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, num_classes))
