"""Model definitions used by the pipelines: CIFAR ResNets (option-A shortcuts, as the pretrained
checkpoints in the shared data folder) and a small keyword-spotting CNN."""
from .resnet_cifar import load_checkpoint, resnet_cifar  # noqa: F401
from .kws import kws_cnn  # noqa: F401
