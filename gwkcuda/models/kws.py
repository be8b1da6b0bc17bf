"""A small keyword-spotting CNN on log-spectrograms, the stand-in for the speech
command-and-control models of the paper."""
from torch import nn


def kws_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Sequential:
    """Input [B, in_channels, freq, time] log-spectrogram -> logits [B, num_classes].

    Three conv-BN-ReLU-pool stages, global average pooling and a linear classifier; ~30k
    parameters at width 32."""
    def stage(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2)]
    return nn.Sequential(*stage(in_channels, width // 2), *stage(width // 2, width),
                         *stage(width, 2 * width), nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, num_classes))
