"""The two pipelines end to end, as the CLI and the demo run them: load (or train) a float model,
compress it, write the compressed file, reload it and measure, and return a JSON-ready report.

Evaluation protocol. Bin & Quant searches on the first half of the test split (at most ``search``
images of it) and is judged on the second half, which the search never sees; GWK trains on the
train split and is judged on the same second half. Every report states the images it used
(``evaluated_on``) and compares with the float model on exactly those images.

Report keys (stable; ``gwkcuda inspect`` and the demo read them):
    method, model, data, device, evaluated_on, seconds,
    baseline_accuracy, accuracy (of the model reloaded from the file), accuracy_drop_points,
    file_bytes, fp32_bytes, ratios {indices_only, with_codebooks, all_inclusive},
    bits_per_weight {indices, with_codebooks, all_inclusive},
    layers [{layer, shape, method, detail, bytes, share, bits_per_weight}],
    settings {the method's knobs}, details {method-specific facts: evaluations, per-layer
    sensitivity, accuracy before fine-tuning, ...}.
"""
import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import __version__, data, model_file, train
from .binquant import BinQuantConfig, bin_and_quant, save_binquant
from .gwk import GWKConfig, gwk_compress
from .models import build_model, load_checkpoint


@dataclass
class Task:
    """A model name and its data: x [N, C, H, W] float, y [N] int64, for train and test."""
    model_name: str
    data_name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def arch(self) -> dict:
        return {"name": self.model_name, "num_classes": int(self.y_train.max()) + 1,
                "in_channels": int(self.x_train.shape[1])}

    @property
    def augment(self):
        return train.cifar_augment if self.data_name == "cifar10" else None

    def report_half(self):
        """The second half of the test split: (x, y, description)."""
        n = len(self.x_test)
        return self.x_test[n // 2:], self.y_test[n // 2:], f"test[{n // 2}:{n}]"

    def search_half(self, size: Optional[int] = None):
        """The first half of the test split, cut to ``size`` images: (x, y, description)."""
        n = len(self.x_test) // 2 if size is None else min(size, len(self.x_test) // 2)
        return self.x_test[:n], self.y_test[:n], f"test[0:{n}]"


def load_task(model_name: str, data_name: str, root=None) -> Task:
    x_train, y_train = data.load_dataset(data_name, "train", root)
    x_test, y_test = data.load_dataset(data_name, "test", root)
    build_model(model_name)  # fails early, naming the choices, on an unknown model
    return Task(model_name, str(data_name), x_train, y_train, x_test, y_test)


def float_model(task: Task, checkpoint=None, *, epochs: int = 20, lr: float = 2e-3, seed: int = 0,
                device="cpu", show_progress: bool = False) -> nn.Module:
    """The float model: from ``checkpoint`` when given, else trained from scratch on the train split."""
    arch = task.arch
    torch.manual_seed(seed)
    model = build_model(task.model_name, arch["num_classes"], arch["in_channels"])
    if checkpoint is not None:
        return load_checkpoint(model, checkpoint).to(device)
    model.to(device)
    train.train(model, task.x_train, task.y_train, epochs=epochs, lr=lr, seed=seed, device=device,
                augment=task.augment, show_progress=show_progress, desc="float training")
    return model


def _finish(report: dict, out, model_loaded: nn.Module, task: Task, device, baseline: float,
            started: float, info: dict) -> dict:
    x, y, where = task.report_half()
    acc = train.accuracy(model_loaded.to(device), x, y, device=device)
    report.update({
        "evaluated_on": where, "baseline_accuracy": baseline, "accuracy": acc,
        "accuracy_drop_points": 100 * (baseline - acc), "file": str(out),
        "file_bytes": info["file_bytes"], "fp32_bytes": info["fp32_bytes"],
        "ratios": info["ratios"], "bits_per_weight": info["bits_per_weight"],
        "layers": [{k: r[k] for k in ("layer", "shape", "method", "detail", "bytes", "share",
                                      "bits_per_weight")} for r in info["layers"]],
        "seconds": time.perf_counter() - started})
    return report


def _header(method: str, task: Task, device, settings) -> dict:
    return {"gwkcuda_version": __version__, "method": method, "model": task.model_name,
            "data": task.data_name, "device": str(device), "settings": settings}


def run_binquant(model: nn.Module, task: Task, out, config: BinQuantConfig, *, search: int = 1000,
                 calib_batches: int = 8, criterion: str = "accuracy", device="cpu") -> dict:
    """Bin & Quant of a copy of ``model``; writes ``out`` and returns the report."""
    started = time.perf_counter()
    model = copy.deepcopy(model).to(device).eval()
    xr, yr, _ = task.report_half()
    baseline = train.accuracy(model, xr, yr, device=device)
    xs, ys, search_where = task.search_half(search)
    grad_fn = None
    if config.sensitivity == "gradient":
        def grad_fn(m):
            train.backward_batches(m, task.x_train, task.y_train, batches=calib_batches, device=device)
    score = train.search_score(model, xs, ys, criterion, device=device)
    result = bin_and_quant(model, score, config, grad_fn)
    info = save_binquant(out, result, arch=task.arch)
    report = _header("binquant", task, device, {**dataclasses.asdict(config), "search": search_where,
                                                 "calib_batches": calib_batches, "criterion": criterion})
    report["details"] = {k: result.report[k] for k in ("evaluations", "layers")}
    report["details"].update(search_baseline=result.baseline_accuracy, search_accuracy=result.accuracy)
    return _finish(report, out, model_file.load_model(out), task, device, baseline, started, info)


def run_gwk(model: nn.Module, task: Task, out, config: GWKConfig, *, epochs: int = 5,
            lr: float = 1e-3, batch: int = 64, device="cpu", show_progress: bool = False) -> dict:
    """GWK-PQ (or plain k-means with importance "uniform") of a copy of ``model``, then
    ``epochs`` of fine-tuning (codebooks, batch norm, biases, float layers); writes ``out`` and
    returns the report."""
    started = time.perf_counter()
    model = copy.deepcopy(model).to(device)
    xr, yr, _ = task.report_half()
    baseline = train.accuracy(model, xr, yr, device=device)

    def run_backward(after_each):
        train.backward_batches(model, task.x_train, task.y_train, batches=config.calib_batches,
                               batch=batch, device=device, after_each=after_each, seed=config.seed)

    _, gwk_report = gwk_compress(model, config, run_backward)
    model.to(device)
    before = train.accuracy(model, xr, yr, device=device)
    losses = train.train(model, task.x_train, task.y_train, epochs=epochs, lr=lr, batch=batch,
                         augment=task.augment, seed=config.seed, device=device,
                         show_progress=show_progress, desc="codebook fine-tuning")
    info = model_file.save_model(out, model, arch=task.arch, meta={"method": "gwk"})
    settings = {**dataclasses.asdict(config), "epochs": epochs, "lr": lr, "batch": batch}
    method = "kmeans" if config.importance == "uniform" else "gwk"
    report = _header(method, task, device, settings)
    report["details"] = {"accuracy_before_finetune": before, "finetune_losses": losses,
                         "float_layers": gwk_report["float_layers"]}
    return _finish(report, out, model_file.load_model(out), task, device, baseline, started, info)


def default_out(method: str, model_name: str) -> Path:
    return Path(f"{model_name}-{method}.gwk")
