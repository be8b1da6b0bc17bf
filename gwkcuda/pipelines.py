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
from .gwk import GWKConfig, allocate_layers, check_budget, gwk_compress, latent_layers
from .importance import sample_rows
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
                device="cpu", show_progress: bool = False, workdir=None, batch: int = 64,
                on_epoch=None) -> nn.Module:
    """The float model: from ``checkpoint`` then fine-tuned ``epochs`` on the train split (0: as
    shipped), or without a checkpoint trained from scratch for ``epochs``, in batches of ``batch``.
    workdir: resumable per-epoch checkpoints (float.pt), as in run_gwk. on_epoch(model, epoch,
    mean_loss): after each epoch (say, to measure the accuracy per epoch)."""
    arch = task.arch
    torch.manual_seed(seed)
    model = build_model(task.model_name, arch["num_classes"], arch["in_channels"])
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    model.to(device)
    if epochs > 0:
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        train.train(model, task.x_train, task.y_train, epochs=epochs, lr=lr, batch=batch, seed=seed, device=device,
                    augment=task.augment, show_progress=show_progress,
                    desc="float fine-tuning" if checkpoint is not None else "float training",
                    checkpoint=Path(workdir) / "float.pt" if workdir is not None else None,
                    on_epoch=(lambda e, loss: on_epoch(model, e, loss)) if on_epoch is not None else None)
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


def _fisher_samples(task: Task, count: int, seed: int = 0):
    """(inputs, targets): ``count`` training samples drawn (seeded) for the Fisher importances."""
    rows = sample_rows(len(task.x_train), count, seed)
    return task.x_train[rows], task.y_train[rows]


def run_binquant(model: nn.Module, task: Task, out, config: BinQuantConfig, *, search: int = 1000,
                 calib_batches: int = 8, criterion: str = "accuracy", storage: Optional[dict] = None,
                 device="cpu") -> dict:
    """Bin & Quant of a copy of ``model``; writes ``out`` (storage: model_file.save_model's
    float_dtype and fold_batchnorm) and returns the report."""
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
    fisher = config.sensitivity == "gradient" and config.importance == "fisher"
    samples = _fisher_samples(task, config.fisher_samples) if fisher else None
    result = bin_and_quant(model, score, config, grad_fn, samples=samples)
    info = save_binquant(out, result, arch=task.arch, **(storage or {}))
    report = _header("binquant", task, device, {**dataclasses.asdict(config), "search": search_where,
                                                 "calib_batches": calib_batches, "criterion": criterion,
                                                 "storage": storage or {}})
    report["details"] = {k: result.report[k] for k in ("evaluations", "layers")}
    report["details"].update(search_baseline=result.baseline_accuracy, search_accuracy=result.accuracy)
    return _finish(report, out, model_file.load_model(out), task, device, baseline, started, info)


@dataclass
class QATConfig:
    """EWGS quantisation-aware training before clustering (None in run_gwk: none).

    bits: weight and activation bits; epochs; lr for the model, quantizer_lr for the bounds and
    output scales (Adam, as EWGS); delta: a fixed EWGS delta, or None for the Hessian estimate
    refreshed after every ``delta_every`` epochs (0 before the first refresh, i.e. STE);
    hessian_samples: Hutchinson draws per batch (3 batches)."""
    bits: int = 4
    epochs: int = 2
    lr: float = 1e-3
    quantizer_lr: float = 1e-5
    delta: Optional[float] = None
    delta_every: int = 1
    hessian_samples: int = 10

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 1 <= self.bits <= 16):
            raise ValueError(f"QATConfig: expected bits in 1..16, got {self.bits!r}")
        if self.delta is not None and not self.delta >= 0:
            raise ValueError(f"QATConfig: expected delta >= 0 or None, got {self.delta!r}")


@dataclass(frozen=True)
class Recluster:
    """Clustering inside retraining (paper-spec 2.4, 2.6), an option of run_gwk after QAT:
    ``rounds`` times, the latent (EWGS) weights are clustered by GWK with fresh importances (from
    the second round on warm-started from the current codebooks) and then trained ``epochs``
    epochs straight through the codebooks: every forward assigns the latent weights to their
    nearest codewords, and codebooks, latent weights and the rest train. Then the codes are fixed
    (``final``: "cluster" clusters the latent weights once more, warm-started, with fresh
    importances; "freeze" keeps the trained codebooks and the codes the last round's forward
    uses, so the model computes what it computed) and the chain's codebook fine-tuning follows.

    stages > 1 clusters progressively: the EWGS layers are split, in model order, into ``stages``
    groups of consecutive layers (for ResNet-20 and 3 stages about one ResNet stage each), and
    round r clusters groups 1..min(r, stages) only; the layers not yet clustered train on as EWGS
    (W-bit latent) layers and absorb the error of those before them. Needs stages <= rounds, so
    that the last round has clustered every layer."""
    rounds: int = 1
    epochs: int = 1
    final: str = "cluster"
    stages: int = 1

    FINALS = ("cluster", "freeze")

    def __post_init__(self):
        for name in ("rounds", "epochs", "stages"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Recluster: expected {name} an int >= 1, got {value!r}")
        if self.final not in self.FINALS:
            raise ValueError(f"Recluster: expected final one of {self.FINALS}, got {self.final!r}")
        if self.stages > self.rounds:
            raise ValueError(f"Recluster: expected stages <= rounds (the last round clusters every layer), "
                             f"got stages={self.stages}, rounds={self.rounds}")

    def layers_of_round(self, names, r: int):
        """The layers round ``r`` (0-based) clusters, of the EWGS layers ``names`` in model order."""
        count = len(names) * min(r + 1, self.stages) // self.stages  # groups as even as can be
        return list(names[:count])


def _param_groups(model: nn.Module, lr: float, quantizer_lr: float):
    """Adam groups: EWGS quantiser parameters at quantizer_lr, everything else at lr."""
    from .ewgs import quantized_layers

    quant = {id(p) for _, m in quantized_layers(model) for p in m.quantizer_parameters()}
    rest = [p for p in model.parameters() if id(p) not in quant]
    groups = [{"params": rest, "lr": lr}]
    if quant:
        groups.append({"params": [p for p in model.parameters() if id(p) in quant], "lr": quantizer_lr})
    return groups


def run_qat(model: nn.Module, task: Task, qat: QATConfig, *, seed: int = 0, batch: int = 64,
            workdir=None, device="cpu", show_progress: bool = False, distill: Optional[train.Distillation] = None):
    """EWGS quantisation-aware training of a copy of the float ``model`` -> (quantised model,
    details {qat_losses, accuracy_after_qat, deltas}). Several run_gwk arms can share one result
    (``after_qat``). workdir: per-epoch checkpoints (qat.pt), resumable as in run_gwk. distill:
    knowledge distillation from a teacher during the QAT epochs (train.Distillation)."""
    from . import ewgs

    model = copy.deepcopy(model).to(device)
    ewgs.quantize_model(model, qat.bits, qat.bits)
    model.to(device)
    with torch.no_grad():  # initialise the quantisers' bounds and scales on one batch
        model.eval()(task.x_train[:batch].to(device))
    for _, m in ewgs.quantized_layers(model):
        if qat.delta is not None:
            m.delta_w.fill_(qat.delta)
            m.delta_a.fill_(qat.delta)

    def refresh_delta(epoch, loss):
        if qat.delta is None and (epoch + 1) % qat.delta_every == 0 and epoch + 1 < qat.epochs:
            batches = [(task.x_train[i * batch:(i + 1) * batch], task.y_train[i * batch:(i + 1) * batch])
                       for i in range(3)]
            loss_fn = lambda m, b: torch.nn.functional.cross_entropy(m(b[0].to(device)), b[1].to(device))
            model.eval()
            ewgs.update_delta(model, loss_fn, batches, samples=qat.hessian_samples, seed=seed + epoch)

    details = {"qat_losses": train.train(
        model, task.x_train, task.y_train, epochs=qat.epochs, lr=qat.lr, batch=batch,
        params=_param_groups(model, qat.lr, qat.quantizer_lr), augment=task.augment, seed=seed,
        device=device, show_progress=show_progress, desc=f"EWGS QAT W{qat.bits}A{qat.bits}",
        checkpoint=Path(workdir) / "qat.pt" if workdir is not None else None, on_epoch=refresh_delta,
        distill=distill)}
    xr, yr, _ = task.report_half()
    details["accuracy_after_qat"] = train.accuracy(model, xr, yr, device=device)
    details["deltas"] = {n: [float(m.delta_w), float(m.delta_a)] for n, m in ewgs.quantized_layers(model)}
    return model, details


def run_gwk(model: nn.Module, task: Task, out, config: GWKConfig, *, epochs: int = 5,
            lr: float = 1e-3, batch: int = 64, qat: Optional[QATConfig] = None, after_qat=None,
            storage: Optional[dict] = None, workdir=None, device="cpu", show_progress: bool = False,
            distill: Optional[train.Distillation] = None, recluster: Optional[Recluster] = None,
            budget_bits: Optional[float] = None, epoch_images: Optional[int] = None) -> dict:
    """The GWK chain on a copy of the float ``model``: [EWGS QAT] -> GWK-PQ (or plain k-means with
    importance "uniform") of the (latent) weights -> ``epochs`` of fine-tuning with codes fixed
    (codebooks, batch norm, biases, float layers, and quantiser parameters at qat.quantizer_lr);
    writes ``out`` (storage: model_file.save_model's float_dtype and fold_batchnorm) and returns
    the report. distill: knowledge distillation from a teacher (say the float model) during the
    fine-tuning (train.Distillation; pass the same to run_qat for the QAT phase). recluster:
    rounds of clustering inside retraining before the final clustering (:class:`Recluster`; needs
    ``qat``); their accuracies and losses go into the report's details. budget_bits: per-layer k
    from sensitivity (:func:`gwkcuda.gwk.allocate_layers`, once, before the first clustering) with
    the clustered layers' codes and codebooks at most this many bits per weight on average (None:
    every layer at config's (d, k)); the choice goes into the report's details. epoch_images: each
    retraining epoch (re-clustering rounds and fine-tuning) trains on this many train images drawn
    afresh from the whole split (None: all of them; see train.train).

    after_qat: the (model, details) run_qat returned for this ``model`` and ``qat``, to share one
    QAT run among arms that differ from the clustering on (None: run it here).
    workdir: a folder for per-epoch checkpoints (qat.pt, finetune.pt); a run started again with
    the same arguments and workdir resumes after the last finished epoch and ends with the same
    result as an uninterrupted run."""
    if recluster is not None and qat is None:
        raise ValueError("run_gwk: recluster trains the latent weights through the codebooks of EWGS layers, "
                         "so it needs qat (a QATConfig), got qat=None")
    float_bits = 16 if (storage or {}).get("float_dtype") == "float16" else 32
    train.check_epoch_images(epoch_images, len(task.x_train), "run_gwk")  # before any training
    if budget_bits is not None:  # before any training
        check_budget(model, config, budget_bits, float_bits=float_bits, ewgs_bits=qat.bits if qat else None)
    started = time.perf_counter()
    xr, yr, _ = task.report_half()
    baseline = train.accuracy(model.to(device), xr, yr, device=device)
    workdir = Path(workdir) if workdir is not None else None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    details = {}
    if qat is None:
        model = copy.deepcopy(model).to(device)
    else:
        if after_qat is None:
            after_qat = run_qat(model, task, qat, seed=config.seed, batch=batch, workdir=workdir,
                                device=device, show_progress=show_progress)
        model = copy.deepcopy(after_qat[0]).to(device)
        details.update(after_qat[1])

    def run_backward(after_each):
        train.backward_batches(model, task.x_train, task.y_train, batches=config.calib_batches,
                               batch=batch, device=device, after_each=after_each, seed=config.seed)

    samples = _fisher_samples(task, config.fisher_samples, config.seed) if config.importance == "fisher" else None
    if budget_bits is not None:
        chosen, details["allocation"] = allocate_layers(model, config, budget_bits, run_backward,
                                                        float_bits=float_bits, samples=samples)
        config = dataclasses.replace(config, layers={**config.layers, **chosen})
    quantizer_lr = qat.quantizer_lr if qat is not None else lr
    rounds = []
    ewgs_names = latent_layers(model, config) if recluster is not None else []
    if recluster is not None and recluster.stages > len(ewgs_names):
        raise ValueError(f"run_gwk: expected recluster.stages at most the {len(ewgs_names)} EWGS layers to "
                         f"cluster (a stage of no layer), got {recluster.stages}")
    for r in range(recluster.rounds if recluster is not None else 0):
        layers = recluster.layers_of_round(ewgs_names, r)
        gwk_compress(model, config, run_backward, show_progress=show_progress, samples=samples, keep_latent=True,
                     only=layers)
        model.to(device)
        clustered = train.accuracy(model, xr, yr, device=device)
        losses = train.train(
            model, task.x_train, task.y_train, epochs=recluster.epochs, lr=lr, batch=batch,
            params=_param_groups(model, lr, quantizer_lr), augment=task.augment, seed=config.seed + 2 + r,
            device=device, show_progress=show_progress, desc=f"re-clustering round {r + 1}/{recluster.rounds}",
            checkpoint=workdir / f"recluster{r}.pt" if workdir else None, distill=distill, epoch_images=epoch_images)
        rounds.append({"layers": len(layers), "accuracy_after_clustering": clustered, "losses": losses,
                       "accuracy_after_training": train.accuracy(model, xr, yr, device=device)})
    if rounds:
        details["recluster_rounds"] = rounds
    _, gwk_report = gwk_compress(model, config, run_backward, show_progress=show_progress, samples=samples,
                                 freeze_latent=recluster is not None and recluster.final == "freeze")
    model.to(device)
    details["accuracy_before_finetune"] = train.accuracy(model, xr, yr, device=device)
    curve = {}  # epoch -> accuracy on the report half (a resumed run measures its own epochs only)
    details["finetune_losses"] = train.train(
        model, task.x_train, task.y_train, epochs=epochs, lr=lr, batch=batch,
        params=_param_groups(model, lr, quantizer_lr), augment=task.augment, seed=config.seed + 1,
        device=device, show_progress=show_progress, desc="codebook fine-tuning",
        checkpoint=workdir / "finetune.pt" if workdir else None, distill=distill, epoch_images=epoch_images,
        on_epoch=lambda e, loss: curve.__setitem__(e + 1, train.accuracy(model, xr, yr, device=device)))
    details["finetune_accuracies"] = [curve.get(e) for e in range(1, epochs + 1)]
    details["float_layers"] = gwk_report["float_layers"]
    method = "kmeans" if config.importance == "uniform" else "gwk"
    info = model_file.save_model(out, model, arch=task.arch, meta={"method": method}, **(storage or {}))
    settings = {**dataclasses.asdict(config), "epochs": epochs, "lr": lr, "batch": batch, "storage": storage or {},
                "qat": dataclasses.asdict(qat) if qat is not None else None,
                "distill": distill.settings() if distill is not None else None,
                "recluster": dataclasses.asdict(recluster) if recluster is not None else None,
                "budget_bits": budget_bits, "epoch_images": epoch_images}
    report = _header(method, task, device, settings)
    report["details"] = details
    return _finish(report, out, model_file.load_model(out), task, device, baseline, started, info)


def default_out(method: str, model_name: str) -> Path:
    return Path(f"{model_name}-{method}.gwk")
