"""The models and data of the post-training side-by-side runs (bench/exp_posttrain.py): a pretrained
model, the layers every method clusters, a pool of calibration samples, and how to score the
model, take its batch gradients and its per-sample losses. One task per model family, so that the
same methods run unchanged on images and on text.
"""
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import data, train  # noqa: E402
from gwkcuda.importance import fisher_from_losses, fisher_importance, sample_rows  # noqa: E402
from gwkcuda.models import load_checkpoint, resnet_cifar  # noqa: E402

CHECKPOINTS = {"resnet20": "resnet20-12fca82f.th", "resnet32": "resnet32-d509ac18.th"}
MODELS = tuple(CHECKPOINTS) + ("minilm",)


@dataclass
class Task:
    """model: the float model (eval mode); layers: the names of the clustered layers;
    pool: (inputs: a tensor [P, ...] or a list of P inputs, targets: int64 [P]) to draw calibration
    samples from; where: what the pool and the scored data are, in words;
    accuracy(model) -> float on the scored data (never in the pool);
    backward(model, inputs, targets, seed, after_each): mean-loss backward passes over mini-batches
    of the samples (the batch-gradient importances); sample_loss(model, input, target) -> scalar
    loss of one sample; fisher(model, inputs, targets) -> the per-sample Fisher sums of the layers;
    fisher_method: how those are taken, in words."""
    model: nn.Module
    layers: List[str]
    pool: Tuple[Sequence, torch.Tensor]
    where: Dict[str, str]
    accuracy: Callable
    backward: Callable
    sample_loss: Callable
    fisher: Callable
    fisher_method: str

    def draw(self, samples: int, seed: int):
        """The seed's calibration draw: ``samples`` of the pool, the same for every method."""
        inputs, targets = self.pool
        rows = sample_rows(len(targets), samples, seed)
        picked = inputs[rows] if isinstance(inputs, torch.Tensor) else [inputs[i] for i in rows.tolist()]
        return picked, targets[rows]


def load_resnet(name):
    """The pretrained CIFAR ResNet ``name`` (eval mode) and its clustered layers: the inner
    convolutions (>= 1024 weights; the first convolution and the classifier stay in float)."""
    model = resnet_cifar(int(name[len("resnet"):]))
    model = load_checkpoint(model, data.data_root() / "pretrained" / CHECKPOINTS[name]).eval()
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.weight.numel() >= 1024]
    return model, layers


def resnet_task(name) -> Task:
    """CIFAR-10 JPEG test images 0-1999 calibrate (batches of 64, per-sample Fisher sums by vmap),
    images 5000-9999 score."""
    model, layers = load_resnet(name)
    images, labels = data.cifar10("test")
    x = data.cifar10_normalize(images)
    xr, yr = x[5000:], labels[5000:]

    def backward(m, xs, ys, seed, after_each):
        train.backward_batches(m, xs, ys, batches=len(xs) // 64, batch=64, after_each=after_each, seed=seed)

    return Task(model=model, layers=layers, pool=(x[:2000].clone(), labels[:2000].clone()),
                where={"calibration": "CIFAR-10 JPEG test images 0-1999", "report": "test images 5000-9999"},
                accuracy=lambda m: train.accuracy(m, xr, yr), backward=backward,
                sample_loss=lambda m, xi, yi: F.cross_entropy(m(xi[None]), yi[None]),
                fisher=lambda m, xs, ys: fisher_importance(m, layers, xs, ys), fisher_method="vmap")


def minilm_task(glosses: int = 4000, batch: int = 32) -> Task:
    """all-MiniLM-L6-v2 and the WordNet supersense probe (gwkcuda.minilm): the probe is fitted on
    the float embeddings of the first half of ``glosses`` noun glosses, which are also the
    calibration pool (the probe's cross-entropy gives the gradients), and scores the second half.
    The clustered layers: the 36 Linear layers of the six transformer blocks (the embedding
    tables stay in float in every method)."""
    from gwkcuda import minilm

    model = minilm.load_minilm("cpu")
    texts, labels = minilm.wordnet_supersenses(limit=glosses)
    half = len(texts) // 2
    train_x, test_x, train_y, test_y = texts[:half], texts[half:], labels[:half], labels[half:]
    probe = minilm.Probe(minilm.embed(model, train_x), train_y)
    head = probe.as_linear().requires_grad_(False)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".encoder." in f".{n}."]

    def loss(m, xs, ys):
        return F.cross_entropy(head(minilm.sentence_embedding(m, list(xs))), ys)

    def backward(m, xs, ys, seed, after_each):
        for i in range(0, len(xs), batch):
            loss(m, xs[i:i + batch], ys[i:i + batch]).backward()
            after_each()

    def sample_loss(m, text, y):
        return loss(m, [text], y.reshape(1))

    def fisher(m, xs, ys):
        return fisher_from_losses(m, layers, (sample_loss(m, t, y) for t, y in zip(xs, ys)))

    return Task(model=model, layers=layers, pool=(train_x, train_y),
                where={"calibration": f"the probe's {half} WordNet noun glosses",
                       "report": f"the other {len(test_x)} glosses (supersense probe accuracy)"},
                accuracy=lambda m: probe.accuracy(minilm.embed(m, test_x), test_y), backward=backward,
                sample_loss=sample_loss, fisher=fisher, fisher_method="one backward per sample")


def make_task(name) -> Task:
    return minilm_task() if name == "minilm" else resnet_task(name)
