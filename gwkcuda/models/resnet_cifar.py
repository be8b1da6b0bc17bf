"""CIFAR ResNets of He et al. (depth 6n + 2: 20, 32, 44, 56, 110) with option-A shortcuts
(identity, zero-padded channels, strided subsampling), layer names as in the widely used
akamaster/pytorch_resnet_cifar10 checkpoints."""
import os

import torch
import torch.nn.functional as F
from torch import nn


class _LambdaShortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the channels (no parameters)."""

    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = _LambdaShortcut(planes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth, num_classes=10, in_channels=3):
        super().__init__()
        n = (depth - 2) // 6
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes, blocks, stride):
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet_cifar(depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> ResNetCifar:
    """A CIFAR ResNet of the given depth (6n + 2). Input [B, in_channels, H, W] -> logits [B, num_classes]."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet_cifar: expected depth = 6n + 2 (20, 32, 44, 56, 110), got {depth!r}")
    return ResNetCifar(depth, num_classes, in_channels)


def load_checkpoint(model: nn.Module, path) -> nn.Module:
    """Loads a checkpoint into ``model`` without pickle-executing code (weights_only): a plain
    state_dict, or a dict holding one under 'state_dict' (keys may carry DataParallel's 'module.'
    prefix). A missing file, or keys that do not match the model, raise a clear error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path}: expected a file, got a folder or device")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types: UnpicklingError, RuntimeError, EOFError, ...
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path}: not a PyTorch state_dict that loads with weights_only=True "
                         f"({type(exc).__name__}: {first})") from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"checkpoint {path}: expected a state_dict (name -> tensor, or a dict with "
                         f"'state_dict'), got {type(blob).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ from the model's
        lines = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise ValueError(f"checkpoint {path}: does not fit {type(model).__name__}: "
                         f"{lines[0] if lines else str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise ValueError(f"checkpoint {path}: does not fit {type(model).__name__}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    return model
