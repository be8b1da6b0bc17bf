"""MobileNetV2 for 32x32 inputs (CIFAR), as commonly adapted: stride 1 in the stem and in the
second stage, so that the last feature map is 4x4."""
import torch.nn.functional as F
from torch import nn

# (expansion t, output channels c, blocks n, stride of the first block s)
CIFAR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expansion, stride):
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.expand = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = F.relu6(self.bn1(self.expand(x)))
        out = F.relu6(self.bn2(self.depthwise(out)))
        out = self.bn3(self.project(out))
        return out + x if self.use_residual else out


class MobileNetV2Cifar(nn.Module):
    def __init__(self, num_classes=10, in_channels=3, width=1.0):
        super().__init__()
        c = int(32 * width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        blocks = []
        for t, cout, n, s in CIFAR_STAGES:
            cout = int(cout * width)
            for i in range(n):
                blocks.append(InvertedResidual(c, cout, t, s if i == 0 else 1))
                c = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(c, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = F.relu6(self.bn1(self.conv1(x)))
        out = self.blocks(out)
        out = F.relu6(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def mobilenetv2_cifar(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> MobileNetV2Cifar:
    """MobileNetV2 (2.2M parameters at width 1). Input [B, in_channels, H, W] -> logits [B, num_classes].
    Depthwise 3x3 filters are 9-long rows: product-quantise them with d = 9 (GWKConfig.layers)."""
    return MobileNetV2Cifar(num_classes, in_channels, width)
