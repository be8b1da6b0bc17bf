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


def kws_tiny_conv(num_classes: int = 10, in_channels: int = 1, filters: int = 8,
                  input_shape=(129, 64)) -> nn.Sequential:
    """The "tiny_conv" keyword spotter of TensorFlow's micro_speech example, the model family of
    the Bin & Quant authors' speech notebook: one 10x8 convolution (stride 2, ``filters``
    channels), ReLU, dropout, and a fully connected classifier that holds almost all weights.

    Input [B, in_channels, freq, time] with (freq, time) = ``input_shape`` -> logits [B, num_classes];
    ~164k parameters for the FSDD log-spectrogram (129 x 64), 99.6% of them in the classifier."""
    conv = nn.Conv2d(in_channels, filters, (10, 8), stride=2, padding=(4, 3))
    out_h = (input_shape[0] + 2 * 4 - 10) // 2 + 1
    out_w = (input_shape[1] + 2 * 3 - 8) // 2 + 1
    return nn.Sequential(conv, nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(filters * out_h * out_w, num_classes))
