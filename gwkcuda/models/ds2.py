"""A DeepSpeech2-style acoustic model, sized for 2 CPU cores: 2-D convolutions over
log-spectrogram frames, a stack of bidirectional GRUs, and a linear layer to characters, trained
with CTC (Amodei et al. 2016, the model of the paper's 7x Bin & Quant row, scaled down)."""
import torch
from torch import nn


class DeepSpeech2(nn.Module):
    """Input [B, freq, T] (or [B, 1, freq, T]) log-spectrogram -> logits [B, T', num_classes] with
    T' = :meth:`output_lengths` (T); class num_classes - 1 is the CTC blank by convention of the
    caller (gwkcuda.digit_sequences: digits 0-9, blank 10).

    conv (7x5, stride 2x2) -> BN -> hardtanh -> conv (5x5, stride 2x1) -> BN -> hardtanh (DS2's
    clipped ReLU), the channels x frequencies of each frame flattened, one nn.GRU of
    ``rnn_layers`` bidirectional layers of ``hidden`` units (directions concatenated, PyTorch's
    layout; DS2 sums them), a linear layer.
    Defaults: about 0.7M parameters, over 80% of them GRU weights."""

    def __init__(self, num_classes: int = 11, in_channels: int = 1, freq: int = 129, channels: int = 16,
                 hidden: int = 96, rnn_layers: int = 3):
        super().__init__()
        self.freq = freq
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, channels, (7, 5), stride=(2, 2), padding=(3, 2), bias=False),
            nn.BatchNorm2d(channels), nn.Hardtanh(0, 20),
            nn.Conv2d(channels, channels, (5, 5), stride=(2, 1), padding=(2, 2), bias=False),
            nn.BatchNorm2d(channels), nn.Hardtanh(0, 20))
        f = (freq + 2 * 3 - 7) // 2 + 1
        f = (f + 2 * 2 - 5) // 2 + 1
        self.rnn = nn.GRU(channels * f, hidden, num_layers=rnn_layers, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hidden, num_classes)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Frames out for frames in (the first convolution halves the frame rate)."""
        return torch.div(lengths + 2 * 2 - 5, 2, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        given = list(x.shape)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[2] != self.freq:
            raise ValueError(f"DeepSpeech2: expected input [B, {self.freq}, T] or [B, 1, {self.freq}, T], got {given}")
        h = self.conv(x)                                  # [B, C, F', T']
        h = h.permute(0, 3, 1, 2).flatten(2)              # [B, T', C*F']
        h, _ = self.rnn(h)                                # [B, T', 2*hidden]
        return self.fc(h)


def ds2_digits(num_classes: int = 11, in_channels: int = 1) -> DeepSpeech2:
    """The connected-digit model: DeepSpeech2 over FSDD's 129-bin log-spectrogram, 3 bidirectional
    GRU layers of 96 units, 11 outputs (10 digits and the blank)."""
    return DeepSpeech2(num_classes, in_channels)
