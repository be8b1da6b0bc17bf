"""Model definitions used by the pipelines: CIFAR ResNets (option-A shortcuts, as the pretrained
checkpoints in the shared data folder), MobileNetV2 for CIFAR, two small keyword spotters (a CNN and micro_speech's tiny_conv), a small digits CNN and a
DeepSpeech2-style connected-digit model (convolutions, bidirectional GRUs, CTC).

:func:`build_model` makes any of them by name; a compressed file records that name so that
``gwkcuda evaluate`` can rebuild the architecture."""
from .digits import digits_cnn
from .ds2 import DeepSpeech2, ds2_digits  # noqa: F401
from .kws import kws_cnn, kws_tiny_conv
from .mobilenetv2 import mobilenetv2_cifar
from .resnet_cifar import load_checkpoint, resnet_cifar  # noqa: F401

RESNET_DEPTHS = (20, 32, 44, 56, 110)
MODEL_NAMES = ("digits_cnn", "ds2_digits", "kws_cnn", "kws_tiny_conv", "mobilenetv2") + tuple(f"resnet{d}" for d in RESNET_DEPTHS)


def build_model(name: str, num_classes: int = 10, in_channels: int = 1):
    """A freshly initialised model by name (one of MODEL_NAMES); ValueError names the choices."""
    if name == "digits_cnn":
        return digits_cnn(num_classes, in_channels)
    if name == "ds2_digits":
        return ds2_digits(num_classes, in_channels)
    if name == "kws_cnn":
        return kws_cnn(num_classes, in_channels)
    if name == "kws_tiny_conv":
        return kws_tiny_conv(num_classes, in_channels)
    if name == "mobilenetv2":
        return mobilenetv2_cifar(num_classes, in_channels)
    if name.startswith("resnet") and name[6:].isdigit() and int(name[6:]) in RESNET_DEPTHS:
        return resnet_cifar(int(name[6:]), num_classes, in_channels)
    raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}")
