"""Training and evaluation loops shared by the pipelines, the CLI and the demo (tensors in memory,
mini-batches moved to the device one at a time)."""
import copy
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .progress import progress


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: training stops at once and nothing is written from it."""


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500,
             device="cpu") -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (eval mode) on x [N, ...], y [N]."""
    if len(x) == 0:
        return 0.0
    return int((predictions(model, x, batch, device) == y).sum()) / len(x)


def predictions(model: nn.Module, x: torch.Tensor, batch: int = 500, device="cpu") -> torch.Tensor:
    """Top-1 class of each row of x (eval mode), on the CPU."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch].to(device)).argmax(1).cpu() for i in range(0, len(x), batch)])


def search_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: str = "accuracy",
                 device="cpu") -> Callable[[nn.Module], float]:
    """The function a compression search scores a candidate by, on (x, y): its accuracy, or its
    agreement with ``model``'s current predictions ("agreement": 1.0 for the uncompressed model;
    every changed prediction counts, right or wrong, so gains on some images cannot hide losses
    on others)."""
    if criterion == "accuracy":
        return lambda m: accuracy(m, x, y, device=device)
    if criterion != "agreement":
        raise ValueError(f"search_score: expected criterion 'accuracy' or 'agreement', got {criterion!r}")
    reference = predictions(model, x, device=device)
    return lambda m: float((predictions(m, x, device=device) == reference).float().mean())


def cifar_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch [B, C, H, W]: random crop with 4-pixel zero padding
    and random horizontal flip, the whole batch in one gather (no per-image loop)."""
    B, _, H, W = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (B,), generator=generator)
    dx = torch.randint(0, 9, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    rows = dy[:, None] + torch.arange(H)  # [B, H]
    cols = dx[:, None] + torch.where(flip[:, None], torch.arange(W - 1, -1, -1), torch.arange(W))  # [B, W]
    out = padded[torch.arange(B)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def _save_atomic(state: dict, path: Path) -> None:
    """A training checkpoint as a gwkcuda.io file (atomic, checksummed, no pickle): tensors of the
    model and optimiser state, the rest as JSON."""
    from . import io

    tensors = {f"model.{k}": v for k, v in state["model"].items()}
    opt_state = {}
    for pid, entry in state["optimizer"]["state"].items():
        opt_state[str(pid)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{key}"] = value
            else:
                opt_state[str(pid)][key] = value
    meta = {k: state[k] for k in ("epoch", "epochs", "losses", "schedule")}
    meta["optimizer"] = {"param_groups": state["optimizer"]["param_groups"], "state": opt_state}
    io.save_compressed(path, tensors, {"checkpoint": meta})


def _load_checkpoint(path: Path, device) -> dict:
    from . import io

    tensors, meta = io.load_compressed(path)
    if not isinstance(meta.get("checkpoint"), dict):
        raise io.CompressedFileError(f"{path}: not a training checkpoint")
    try:
        return _checkpoint_state(tensors, meta["checkpoint"], device)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise io.CompressedFileError(f"{path}: corrupted training checkpoint ({type(exc).__name__}: {exc})") from exc


def _checkpoint_state(tensors: dict, meta: dict, device) -> dict:
    model = {k[len("model."):]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    opt_state = {int(pid): dict(rest) for pid, rest in meta["optimizer"]["state"].items()}
    for k, v in tensors.items():
        if k.startswith("optimizer."):
            _, pid, key = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[key] = v.to(device) if key != "step" else v
    optimizer = {"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]}
    return {**meta, "model": model, "optimizer": optimizer}


def _resume(checkpoint: Path, device, epochs: int, model, opt, sched):
    """Restores model, optimiser and schedule from a checkpoint of this run -> (losses, next epoch)."""
    state = _load_checkpoint(checkpoint, device)
    if state.get("epochs") != epochs:
        raise ValueError(f"{checkpoint}: a checkpoint of a {state.get('epochs')}-epoch run, not {epochs}; "
                         "remove it or run without --resume")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        return list(state["losses"]), int(state["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{checkpoint}: a checkpoint of another run, which does not fit this model "
                         f"({first}); remove it or run without --resume") from exc


class Distillation:
    """Knowledge distillation (Hinton et al. 2015) during retraining: the loss on a batch is
    (1 - alpha) * cross-entropy(student, labels) + alpha * T^2 * KL(softmax(teacher / T) ||
    softmax(student / T)), the teacher (say the float or QAT model) in eval mode without
    gradients, on the same augmented batch. alpha in [0, 1]; temperature T > 0."""

    def __init__(self, teacher: nn.Module, alpha: float = 0.5, temperature: float = 4.0):
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"Distillation: expected a teacher nn.Module, got {type(teacher).__name__}")
        if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
            raise ValueError(f"Distillation: expected alpha in [0, 1], got {alpha!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"Distillation: expected temperature a finite number > 0, got {temperature!r}")
        # A frozen copy: the caller's model (often the one the student was copied from) is untouched.
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.alpha, self.temperature = float(alpha), float(temperature)

    def settings(self) -> dict:
        return {"alpha": self.alpha, "temperature": self.temperature}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """logits [B, C] of the student on inputs, labels [B] -> the scalar loss."""
        with torch.no_grad():
            target = self.teacher(inputs)  # a private copy, in eval mode since __init__
        if target.shape != logits.shape:
            raise ValueError(f"Distillation: the teacher gave {list(target.shape)} logits, the student "
                             f"{list(logits.shape)}")
        T = self.temperature
        soft = F.kl_div(F.log_softmax(logits / T, -1), F.log_softmax(target / T, -1), log_target=True,
                        reduction="batchmean") * T * T
        return (1 - self.alpha) * F.cross_entropy(logits, labels) + self.alpha * soft


def check_epoch_images(epoch_images: Optional[int], rows: int, who: str) -> None:
    """Raises ValueError unless epoch_images (rows per epoch; None: all) is an int in 1..rows."""
    if epoch_images is not None and (isinstance(epoch_images, bool) or not isinstance(epoch_images, int)
                                     or not 1 <= epoch_images <= rows):
        raise ValueError(f"{who}: expected epoch_images an int in 1..{rows} (the training images) or None, "
                         f"got {epoch_images!r}")


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 1e-3,
          batch: int = 64, weight_decay: float = 0.0, params: Optional[Iterable] = None,
          augment: Optional[Callable] = None, seed: int = 0, device="cpu",
          show_progress: bool = False, desc: str = "train",
          checkpoint: Optional[os.PathLike] = None,
          on_epoch: Optional[Callable[[int, float], None]] = None, shard=(0, 1),
          distill: Optional["Distillation"] = None, epoch_images: Optional[int] = None) -> list:
    """Adam with a cosine schedule over ``epochs`` on (x, y); returns the mean loss per epoch.

    params: the parameters (or Adam parameter groups, each with its own lr) to train; default all
    of the model's. augment(batch, generator) -> batch, on the CPU. Epoch e draws its order and
    augmentation from a generator seeded with (seed, e), so an epoch does not depend on the ones
    before it. checkpoint: a file written (atomically) after every epoch with the model,
    optimiser and schedule; if it exists when training starts, training resumes after its last
    epoch and ends exactly as an uninterrupted run. on_epoch(epoch, mean_loss) runs after each
    epoch, before the checkpoint is written. shard=(rank, world): this process trains on the rows
    rank, rank + world, ... of every batch, the batch cut to a multiple of world (data parallel;
    see gwkcuda.distributed.train_ddp). distill: knowledge distillation from a teacher on every
    (augmented) batch (see :class:`Distillation`); None: cross-entropy alone. epoch_images: each
    epoch trains on this many rows of (x, y), drawn afresh with the epoch's order, so that short
    epochs still see all of x over a run (None: every row, every epoch).
    Raises TrainingDiverged at the first non-finite loss (before its step, so no NaN reaches the
    weights or a checkpoint), and ValueError if ``checkpoint`` exists but is not of this run.
    """
    check_epoch_images(epoch_images, len(x), desc)
    params = list(model.parameters() if params is None else params)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    losses, start = [], 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        losses, start = _resume(checkpoint, device, epochs, model, opt, sched)
    for epoch in progress(range(start, epochs), show_progress, desc=desc, unit="epoch",
                          initial=start, total=epochs):
        model.train()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(x), generator=gen)[:epoch_images]
        total, count = 0.0, 0
        batches = progress(range(0, len(order), batch), show_progress, desc=f"{desc}, epoch {epoch + 1}/{epochs}",
                           unit="batch", leave=False)
        for i in batches:
            b = order[i:i + batch]
            if shard[1] > 1:  # equal shares, so that every rank takes part in every step
                b = b[: len(b) - len(b) % shard[1]][shard[0]::shard[1]]
                if len(b) == 0:
                    continue
            xb = x[b]
            if augment is not None:
                xb = augment(xb, gen)
            xb, yb = xb.to(device), y[b].to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb) if distill is None else distill.loss(logits, yb, xb)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(f"{desc} diverged: loss {value} at epoch {epoch + 1}, batch "
                                       f"{i // batch + 1} (learning rate {opt.param_groups[0]['lr']:g}); "
                                       "nothing was written from it: lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += value * len(b)
            count += len(b)
        end_epoch(epoch, epochs, total / max(1, count), losses, model, opt, sched, on_epoch, checkpoint)
    return losses


def end_epoch(epoch, epochs, mean_loss, losses, model, opt, sched, on_epoch, checkpoint) -> None:
    """An epoch's close, shared by the training loops: the schedule's step, the loss recorded,
    on_epoch(epoch, mean_loss), then the checkpoint (if any) written atomically."""
    sched.step()
    losses.append(mean_loss)
    if on_epoch is not None:
        on_epoch(epoch, mean_loss)
    if checkpoint is not None:
        _save_atomic({"epoch": epoch, "epochs": epochs, "losses": losses, "model": model.state_dict(),
                      "optimizer": opt.state_dict(), "schedule": sched.state_dict()}, checkpoint)


def backward_batches(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batches: int,
                     batch: int = 64, device="cpu", after_each: Optional[Callable[[], None]] = None,
                     seed: int = 0) -> None:
    """Runs the cross-entropy backward over ``batches`` mini-batches drawn (seeded) from (x, y),
    in eval mode (batch-norm statistics untouched). Gradients accumulate in .grad unless
    after_each (called after every backward) consumes and clears them."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    for t in range(batches):
        b = order[(t * batch) % len(x):][:batch]
        loss = F.cross_entropy(model(x[b].to(device)), y[b].to(device))
        loss.backward()
        if after_each is not None:
            after_each()
