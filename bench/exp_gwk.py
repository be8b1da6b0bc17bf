"""GWK-PQ experiments on CIFAR-10 ResNet-20 behind the README's GWK tables: one float fine-tuning
and one EWGS QAT run shared by every arm, then per arm (method, d, k, seed): clustering of the QAT
latent weights (GWK importances, or uniform for plain k-means), codebook fine-tuning with codes
fixed, the compressed file, and its accuracy reloaded from the file on all 10,000 test images.

    python bench/exp_gwk.py --data-root ../shared/data --workdir <dir> \\
        --arms gwk:9:16:0 kmeans:9:16:0 gwk:9:64:0

Each arm writes ``<out>/<method>_d<d>_k<k>_s<seed>.json`` (the pipeline's report plus the full
test split accuracies, the shared phases' settings and the machine); bench/table_gwk.py turns
them into the README tables. The shared phases checkpoint into --workdir, so a second invocation
with more arms (or after a kill) reuses them. ``--distill ALPHA`` adds knowledge distillation from
the float model to the QAT and fine-tuning phases (a QAT run and arm names of their own,
``..._kd<alpha>t<T>``). ``--recluster-rounds R --recluster-epochs E`` clusters inside retraining
first (pipelines.Recluster; arm names ``..._rc<R>x<E>``; ``--recluster-final freeze``: the last
round's codes and codebooks kept, ``..._rc<R>x<E>f``; ``--recluster-stages S``: progressive, the layers
clustered in S groups over the first S rounds, ``..._rc<R>x<E>p<S>``). ``--fresh-images``: each
retraining epoch draws its --finetune-images afresh from the whole train split instead of reusing
one fixed subset (``..._fresh``).
"""
import argparse
import dataclasses
import os
import shlex
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import model_file, pipelines, train  # noqa: E402
from gwkcuda.cliutil import count_arg, non_negative_arg, number_arg, positive_arg, write_json  # noqa: E402
from gwkcuda.gwk import GWKConfig  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402
from posttrain_tasks import CHECKPOINTS  # noqa: E402  (bench/: the pretrained file of each model)


def parse_arm(text):
    """"method:d:k:seed" -> (method, d, k, seed); d and k are checked against GWKConfig before any
    training starts."""
    fields = text.split(":")
    if len(fields) != 4 or fields[0] not in ("gwk", "kmeans"):
        raise argparse.ArgumentTypeError(f"expected gwk:D:K:SEED or kmeans:D:K:SEED, got {text!r}")
    try:
        d, k, seed = (int(f) for f in fields[1:])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers D, K and SEED in {fields[0]}:D:K:SEED, got {text!r}") \
            from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {seed} in {text!r}")
    return fields[0], d, k, seed


def rerun_command(argv, arm=None, script="bench/exp_gwk.py"):
    """The command that reruns this run: its arguments with the work folder (and an absolute
    results folder) left to the reader, so that no path of the machine it ran on is recorded,
    and, given an arm, --arms cut to that arm."""
    out, args = [], iter(argv)
    for a in args:
        if a == "--workdir":
            next(args, None)
            out += ["--workdir", "<dir>"]
        elif a.startswith("--workdir="):
            out.append("--workdir=<dir>")
        elif a == "--out":
            value = next(args, "")
            out += ["--out", "<out>" if os.path.isabs(value) else value]
        elif a.startswith("--out="):
            out.append("--out=<out>" if os.path.isabs(a[len("--out="):]) else a)
        elif a == "--arms" and arm is not None:
            for value in args:
                if value.startswith("--"):
                    out.append(value)
                    break
        else:
            out.append(a)
    return f"python {script} " + shlex.join(out + (["--arms", arm] if arm is not None else []))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--model", default="resnet20", choices=["resnet20", "resnet32", "resnet56", "mobilenetv2"])
    ap.add_argument("--checkpoint", default=None,
                    help="pretrained float model (default: <data-root>/pretrained/resnet20-12fca82f.th or "
                         "resnet32-d509ac18.th for those models; the others are trained from scratch for "
                         "--float-epochs)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=count_arg(1), default=64, help="training batch size of every phase")
    ap.add_argument("--train-images", type=count_arg(1), default=None,
                    help="use only the first N training images in every phase (default: all 50,000)")
    ap.add_argument("--test-images", type=count_arg(1), default=None,
                    help="judge on the first N test images (default: all 10,000)")
    ap.add_argument("--workdir", required=True, help="checkpoints of the shared phases and of each arm")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gwk"))
    ap.add_argument("--float-epochs", type=count_arg(0), default=1)
    ap.add_argument("--float-lr", type=positive_arg, default=5e-4)
    ap.add_argument("--bits", type=count_arg(1, 16), default=4)
    ap.add_argument("--qat-epochs", type=count_arg(0), default=2)
    ap.add_argument("--delta", type=non_negative_arg, default=None,
                    help="a fixed EWGS delta instead of the Hessian estimate (a QAT run of its own)")
    ap.add_argument("--epochs", type=count_arg(0), default=1, help="codebook fine-tuning epochs per arm")
    ap.add_argument("--finetune-images", type=count_arg(1), default=25000,
                    help="training images per retraining epoch of each arm: the first N of one shuffled order, the "
                         "same every epoch, or N fresh ones every epoch with --fresh-images")
    ap.add_argument("--fresh-images", action="store_true",
                    help="each retraining epoch of the arms draws its --finetune-images afresh from the whole "
                         "train split instead of reusing one fixed subset (arm names ..._fresh)")
    ap.add_argument("--lr", type=positive_arg, default=1e-3)
    ap.add_argument("--calib-batches", type=count_arg(1), default=16)
    ap.add_argument("--tag", default="", help="suffix of the arms' names (JSON files and checkpoints)")
    ap.add_argument("--float16", action="store_true", help="store float tensors as float16")
    ap.add_argument("--fold-batchnorm", action="store_true", help="store batch norms as scale and shift")
    ap.add_argument("--distill", type=number_arg(0.0, strict=False, high=1.0), default=0.0,
                    help="weight alpha in [0, 1] of knowledge distillation from the float model during QAT and "
                         "fine-tuning (0: cross-entropy alone)")
    ap.add_argument("--temperature", type=positive_arg, default=4.0, help="distillation temperature (> 0)")
    ap.add_argument("--recluster-rounds", type=count_arg(0), default=0,
                    help="clustering inside retraining: rounds of clustering the latent weights, each followed by "
                         "--recluster-epochs epochs through the codebooks, before the final clustering (0: none)")
    ap.add_argument("--recluster-epochs", type=count_arg(1), default=1,
                    help="training epochs per re-clustering round")
    ap.add_argument("--recluster-final", choices=pipelines.Recluster.FINALS, default="cluster",
                    help="after the rounds: cluster once more, or freeze the last round's codes and codebooks "
                         "(arm names ..._rc<R>x<E>f)")
    ap.add_argument("--recluster-stages", type=count_arg(1), default=1,
                    help="progressive clustering: the layers in this many groups (model order), round r "
                         "clustering the first r of them (<= --recluster-rounds; arm names ..._rc<R>x<E>p<S>)")
    ap.add_argument("--budget-bits", type=positive_arg, default=None,
                    help="per-layer k from sensitivity, the clustered layers' codes and codebooks at most this many "
                         "bits per weight on average (default: every layer at the arm's k)")
    ap.add_argument("--arms", type=parse_arm, nargs="+", required=True, help="method:d:k:seed")
    args = ap.parse_args()
    try:
        recluster = (pipelines.Recluster(args.recluster_rounds, args.recluster_epochs, args.recluster_final,
                                         args.recluster_stages) if args.recluster_rounds else None)
    except ValueError as exc:
        ap.error(f"--recluster-epochs/--recluster-stages: {exc}")
    if args.recluster_stages != 1 and not args.recluster_rounds:
        ap.error(f"--recluster-stages {args.recluster_stages}: expected with --recluster-rounds >= 1, got none")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no CUDA device")
    # Every setting is checked here, before the float model trains for minutes or hours.
    try:
        qat = pipelines.QATConfig(bits=args.bits, epochs=args.qat_epochs, delta=args.delta)
        configs = [GWKConfig(d=d, k=k, importance="uniform" if method == "kmeans" else "abs",
                             calib_batches=args.calib_batches, seed=seed) for method, d, k, seed in args.arms]
    except ValueError as exc:
        ap.error(f"--arms/--bits/--calib-batches: {exc}")
    root = args.data_root
    checkpoint = args.checkpoint or (os.path.join(root or "../shared/data", "pretrained", CHECKPOINTS[args.model])
                                     if args.model in CHECKPOINTS else None)
    os.makedirs(args.out, exist_ok=True)
    show = sys.stderr.isatty()
    device, batch = args.device, args.batch

    task = pipelines.load_task(args.model, "cifar10", root)
    task = dataclasses.replace(task, x_train=task.x_train[:args.train_images], y_train=task.y_train[:args.train_images],
                               x_test=task.x_test[:args.test_images], y_test=task.y_test[:args.test_images])
    if args.finetune_images > len(task.x_train):
        ap.error(f"--finetune-images: expected at most the {len(task.x_train):,} train images, "
                 f"got {args.finetune_images:,}")
    judged = f"all {len(task.x_test):,} test images"
    model_tag = "" if args.model == "resnet20" else f"_{args.model}"  # in the names of folders and arms
    started = time.perf_counter()
    fmodel = pipelines.float_model(task, checkpoint, epochs=args.float_epochs, lr=args.float_lr, device=device,
                                   batch=batch, workdir=os.path.join(args.workdir, "float" + model_tag),
                                   show_progress=show)
    fmodel.eval()
    float_full = train.accuracy(fmodel, task.x_test, task.y_test, device=device)
    print(f"float {args.model}: {100 * float_full:.2f}% on {judged} ({time.perf_counter() - started:.0f} s)",
          flush=True)
    distill = train.Distillation(fmodel, args.distill, args.temperature) if args.distill else None
    kd_tag = f"_kd{args.distill:g}t{args.temperature:g}" if distill else ""
    delta_tag = "" if args.delta is None else f"_delta{args.delta:g}"
    qat_dir = os.path.join(args.workdir, "qat" + model_tag + kd_tag + delta_tag)  # each QAT setting: a run of its own
    os.makedirs(qat_dir, exist_ok=True)
    after_qat = pipelines.run_qat(fmodel, task, qat, seed=0, batch=batch, workdir=qat_dir, device=device,
                                  show_progress=show, distill=distill)
    qat_full = train.accuracy(after_qat[0].eval(), task.x_test, task.y_test, device=device)
    print(f"EWGS QAT W{args.bits}A{args.bits}: {100 * qat_full:.2f}% on {judged} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    # The arms retrain on --finetune-images drawn afresh from the whole split every epoch
    # (--fresh-images), or on one fixed random subset of that size (the same for every arm).
    ft_task, epoch_images = task, args.finetune_images
    if not args.fresh_images:
        subset = torch.randperm(len(task.x_train), generator=torch.Generator().manual_seed(1234))[:epoch_images]
        ft_task = dataclasses.replace(task, x_train=task.x_train[subset], y_train=task.y_train[subset])
        epoch_images = None  # every epoch: the whole subset
    storage = {"float_dtype": "float16" if args.float16 else "float32", "fold_batchnorm": args.fold_batchnorm}
    for (method, d, k, seed), config in zip(args.arms, configs):
        rc_tag = (f"_rc{recluster.rounds}x{recluster.epochs}{f'p{recluster.stages}' if recluster.stages > 1 else ''}"
                  f"{'f' if recluster.final == 'freeze' else ''}" if recluster else "")
        budget_tag = "" if args.budget_bits is None else f"_b{args.budget_bits:g}"
        fresh_tag = "_fresh" if args.fresh_images else ""
        name = f"{method}{model_tag}_d{d}_k{k}_s{seed}{kd_tag}{rc_tag}{budget_tag}{fresh_tag}{args.tag}"
        arm_started = time.perf_counter()
        out_file = os.path.join(args.workdir, name + ".gwk")
        report = pipelines.run_gwk(fmodel, ft_task, out_file, config, epochs=args.epochs, lr=args.lr, batch=batch,
                                   qat=qat, after_qat=after_qat, storage=storage, workdir=os.path.join(args.workdir, name),
                                   device=device, show_progress=show, distill=distill, recluster=recluster,
                                   budget_bits=args.budget_bits, epoch_images=epoch_images)
        reloaded = model_file.load_model(out_file).eval()
        report.update({
            "file": f"<dir>/{name}.gwk",  # in the work folder, which the command leaves to the reader
            "accuracy_full_test": train.accuracy(reloaded, task.x_test, task.y_test, device=device),
            "baseline_full_test": float_full, "qat_full_test": qat_full,
            "shared": {"float_epochs": args.float_epochs, "float_lr": args.float_lr,
                       "qat": dataclasses.asdict(qat), "finetune_images": args.finetune_images,
                       "command": rerun_command(sys.argv[1:], f"{method}:{d}:{k}:{seed}")},
            "machine": machine(), "arm_seconds": time.perf_counter() - arm_started})
        write_json(os.path.join(args.out, name + ".json"), report)
        r = report["ratios"]
        print(f"{name}: {100 * report['accuracy_full_test']:.2f}% (float {100 * float_full:.2f}%), "
              f"(a) {r['indices_only']:.1f}x (b) {r['with_codebooks']:.1f}x (c) {r['all_inclusive']:.1f}x, "
              f"{report['arm_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
