"""The gwkcuda command line: ``gwkcuda SUBCOMMAND`` or ``python -m gwkcuda SUBCOMMAND``.

  demo      the main job: train a small CNN on scikit-learn's digits, compress it with Bin & Quant,
            GWK-PQ and plain k-means, print a side-by-side table, write a JSON report and a plot
  compress  compress a model (--method binquant|gwk|kmeans) into a .gwk file, with a JSON report
  evaluate  accuracy of a compressed file, run through the codebook kernels
  inspect   per-layer table of a compressed file: method, bits per weight, bytes, share; ratios
  bench     the kernel microbenchmarks as a table
  info      build facts and a bit-exact pack/unpack self-check

A user mistake (unknown model, missing data, bad knob, unreadable file) prints one line on stderr
and exits with status 2; --debug shows the traceback instead.
"""
import argparse
import os
import shlex
import sys
from pathlib import Path

import torch

from . import io
from .cliutil import UserError, count_arg, format_table, non_negative_arg, positive_arg, write_json
from .cliutil import resolve_device as _device
from .workdir import locked as workdir_lock

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


RECLUSTER_FINALS = ("cluster", "freeze")  # pipelines.Recluster.FINALS (tests/test_recluster.py: they agree)
CHECKPOINTS = ("float.pt", "qat.pt", "finetune.pt")  # compress's per-phase checkpoints in its work folder


def _checkpoints(workdir: Path):
    """The per-phase checkpoints in a work folder: CHECKPOINTS and one per re-clustering round."""
    return [workdir / n for n in CHECKPOINTS] + sorted(workdir.glob("recluster*.pt"))


class Interrupted(Exception):
    """Ctrl-C, with what was kept and how to continue: one line, exit status 130."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UserError(f"{message} (see {self.prog} --help)")


def _self_check(device: str) -> str:
    """Packs and unpacks random codes at every nbits on ``device`` and compares with the reference."""
    from . import ops, reference

    gen = torch.Generator().manual_seed(0)
    for nbits in range(1, 17):
        codes = torch.randint(0, 2**nbits, (4097,), generator=gen, dtype=torch.int32)
        packed = ops.pack_bits(codes.to(device), nbits)
        if not torch.equal(packed.cpu(), reference.pack_bits(codes, nbits)):
            return f"FAILED: pack_bits differs from the reference at nbits={nbits}"
        if not torch.equal(ops.unpack_bits(packed, nbits, codes.numel()).cpu(), codes):
            return f"FAILED: unpack_bits does not invert pack_bits at nbits={nbits}"
    return "ok (nbits 1..16, 4097 codes, bit-exact against the reference)"


def cmd_info(args) -> int:
    import gwkcuda

    info = gwkcuda.build_info()
    print(f"gwkcuda {gwkcuda.__version__}")
    print(f"  torch at run time     {torch.__version__}")
    print(f"  torch built against   {info['torch_version']}")
    print(f"  CUDA kernels compiled {'yes, archs ' + info['cuda_archs'] if info['cuda_compiled'] else 'no'}")
    gpu = torch.cuda.is_available()
    print(f"  GPU seen              {torch.cuda.get_device_name(0) if gpu else 'none'}")
    print(f"  CPU loops run at      {gwkcuda.cpu_level()}")
    ok = True
    for device in ["cpu"] + (["cuda"] if gpu and info["cuda_compiled"] else []):
        result = _self_check(device)
        ok &= result.startswith("ok")
        print(f"  pack/unpack self-check on {device}: {result}")
    return 0 if ok else 1


MAX_SEED = 2**32 - 1  # seeds are combined with epoch and iteration numbers into 64-bit generator seeds


def _show_progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _summary(report: dict) -> str:
    r = report["ratios"]
    return (f"{report['method']} {report['model']} on {report['data']}: {r['all_inclusive']:.2f}x all-inclusive "
            f"({report['file_bytes']} bytes against {report['fp32_bytes']} in fp32), accuracy "
            f"{100 * report['accuracy']:.2f}% on {report['evaluated_on']} (float "
            f"{100 * report['baseline_accuracy']:.2f}%, drop {report['accuracy_drop_points']:.2f} points); "
            f"the compressed layers alone: {r['with_codebooks']:.2f}x with codebooks, {r['indices_only']:.2f}x "
            f"indices only")


def cmd_compress(args) -> int:
    from . import pipelines
    from .binquant import BinQuantConfig
    from .gwk import GWKConfig

    device = _device(args.device)
    progress = _show_progress(args)
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    if args.checkpoint is None and args.float_epochs == 0:
        raise UserError("--float-epochs 0 without --checkpoint would compress an untrained network: train it "
                        "(--float-epochs N, default 20) or pass the trained weights with --checkpoint")
    if args.method == "binquant" and args.allocation == "global" and args.sensitivity != "gradient":
        raise UserError("--allocation global needs --sensitivity gradient (its split order comes from gradients)")
    if args.method == "binquant" and args.budget_bits is not None:
        raise UserError("--budget-bits chooses each layer's k for GWK / k-means: Bin & Quant sizes its bins "
                        "with --max-drop")
    if args.method == "binquant" and args.importance == "abs":
        raise UserError("--importance abs is GWK's: Bin & Quant's gradient sensitivity takes square or fisher")
    task = pipelines.load_task(args.model, args.data, args.data_root)
    if args.method == "binquant":
        config = BinQuantConfig(max_drop=args.max_drop, max_bins=args.max_bins,
                                sensitivity=args.sensitivity, values=args.values, share=args.share,
                                allocation=args.allocation, importance=args.importance or "square",
                                fisher_samples=args.fisher_samples, progress=progress)
    else:
        importance = "uniform" if args.method == "kmeans" else args.importance or "abs"
        config = GWKConfig(d=args.d, k=args.k, importance=importance, beta=args.beta,
                           calib_batches=args.calib_batches, fisher_samples=args.fisher_samples,
                           iters=args.iters, seed=args.seed)
    qat = None  # every knob is checked before any training starts
    if args.method != "binquant" and args.bits is not None:
        qat = pipelines.QATConfig(bits=args.bits, epochs=args.qat_epochs, quantizer_lr=args.quantizer_lr,
                                  delta=args.delta, delta_every=args.delta_every)
    recluster = None
    if args.recluster_stages > 1 and not args.recluster_rounds:
        raise UserError(f"--recluster-stages {args.recluster_stages} splits the re-clustering rounds into stages: "
                        "it needs --recluster-rounds >= 1, got 0")
    if args.method != "binquant" and args.recluster_rounds:
        if qat is None:
            raise UserError(f"--recluster-rounds {args.recluster_rounds} trains the latent weights through "
                            "the codebooks of EWGS layers: it needs --bits (quantisation-aware training)")
        if args.recluster_stages > args.recluster_rounds:
            raise UserError(f"--recluster-stages: expected at most --recluster-rounds ({args.recluster_rounds}: "
                            f"the last round clusters every layer), got {args.recluster_stages}")
        recluster = pipelines.Recluster(rounds=args.recluster_rounds, epochs=args.recluster_epochs,
                                        final=args.recluster_final, stages=args.recluster_stages)
    out = Path(args.out or pipelines.default_out(args.method, args.model))
    _check_output(out, "--out")
    if args.report:
        _check_output(Path(args.report), "--report")
    from .models import build_model

    untrained = build_model(task.model_name, task.arch["num_classes"], task.arch["in_channels"])
    _check_model_takes(untrained, task.x_train[:2], task.y_train,
                       f"--model {task.model_name}", f"--data {task.data_name}")
    float_layers = (_check_gwk_knobs(args, task, config, untrained) if args.method != "binquant"
                    else _check_binquant_layers(task, config, untrained))
    workdir = Path(args.workdir or f"{out}.work")
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir}: expected a folder, got a file")
    resume = "gwkcuda " + shlex.join(list(args.argv) + ([] if args.resume else ["--resume"]))
    try:
        with workdir_lock(workdir):
            try:
                report = _compress_in(workdir, args, task, config, qat, recluster, out, device, progress)
            except KeyboardInterrupt:
                raise Interrupted(f"interrupted; the finished epochs are kept in {workdir}, and {out} was not "
                                  f"written; to continue: {resume}") from None
            except (UserError, ValueError, OSError) as exc:
                if any(c.exists() for c in _checkpoints(workdir)):  # never left behind silently
                    raise UserError(f"{_one_line(exc)} (the finished epochs are kept in {workdir}; once the "
                                    f"cause is fixed, continue with: {resume})") from exc
                raise
    finally:
        try:
            workdir.rmdir()  # only when empty: no checkpoint is ever thrown away here
        except OSError:
            pass
    if args.report:
        write_json(args.report, report)
    print(_summary(report))
    if float_layers:
        print("kept in float: " + "; ".join(float_layers))
    print(f"wrote {out}" + (f" and {args.report}" if args.report else ""))
    return 0


def _check_output(path: Path, flag: str) -> None:
    """Before any work: the output's folder exists and the path is not a folder."""
    if path.is_dir():
        raise UserError(f"{flag} {path}: expected a file name, got a folder")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: the folder {folder} is not writable")


def _check_binquant_layers(task, config, model) -> list:
    """Some layer for Bin & Quant to compress, on the untrained architecture; returns [] (Bin &
    Quant's report names the layers it leaves in float)."""
    from .weights import compressible_weights

    if not compressible_weights(model, config.min_weights):
        raise UserError(f"--model {task.model_name}: no Conv/Linear/Embedding layer or recurrent matrix with at least "
                        f"{config.min_weights} weights for Bin & Quant to compress")
    return []


def _check_gwk_knobs(args, task, config, model) -> list:
    """Knobs that depend on the model and data, checked on the untrained architecture before any
    training: some layer must be quantisable at (--d, --k), and --calib-batches must fit the data.
    Returns the layers that will stay in float, each with its reason and share of the weights."""
    from .gwk import plan_layers

    plan, skipped = plan_layers(model, config)
    if not plan:
        reasons = "; ".join(f"{n}: {why}" for n, why in skipped.items())
        raise UserError(f"--d {args.d} --k {args.k}: no layer of {task.model_name} can be quantised ({reasons})")
    sizes = {n: m.weight.numel() for n, m in model.named_modules() if n in plan or n in skipped}
    total = sum(sizes.values())
    kept = sum(sizes[n] for n in skipped)
    if kept > total / 2:
        print(f"gwkcuda: warning: {100 * kept / total:.1f}% of {task.model_name}'s weights stay in float at "
              f"--d {args.d} --k {args.k}: the file will be far larger than the ratio of the compressed "
              "layers suggests", file=sys.stderr)
    if args.budget_bits is not None:
        from .gwk import check_budget
        try:
            check_budget(model, config, args.budget_bits, float_bits=16 if args.float16 else 32, ewgs_bits=args.bits)
        except ValueError as exc:
            raise UserError(f"--budget-bits: {str(exc).split(': ', 1)[1]}") from None
    batches = -(-len(task.x_train) // 64)
    if args.calib_batches > batches:
        raise UserError(f"--calib-batches: expected at most {batches} (the {len(task.x_train)} training "
                        f"images in batches of 64), got {args.calib_batches}")
    # The user asked for none of these: the summary names them, with the weights they hold.
    return [f"{name} ({why}; {100 * sizes[name] / total:.1f}% of the weights)" for name, why in skipped.items()]


def _compress_in(workdir: Path, args, task, config, qat, recluster, out, device, progress) -> dict:
    """The compression itself, with ``workdir`` held: float model, method, file; the per-epoch
    checkpoints are removed once the file is written."""
    from . import pipelines

    checkpoints = _checkpoints(workdir)
    if not args.resume:
        for c in checkpoints:  # a fresh run: never continue from an older run's checkpoints
            c.unlink(missing_ok=True)
    has_ckpt = args.checkpoint is not None
    float_epochs = args.float_epochs if args.float_epochs is not None else (0 if has_ckpt else 20)
    float_lr = args.float_lr if args.float_lr is not None else (5e-4 if has_ckpt else 2e-3)
    model = pipelines.float_model(task, args.checkpoint, epochs=float_epochs, lr=float_lr, seed=args.seed,
                                  device=device, show_progress=progress, workdir=workdir)
    storage = {"float_dtype": "float16" if args.float16 else "float32", "fold_batchnorm": args.fold_batchnorm}
    if args.method == "binquant":
        report = pipelines.run_binquant(model, task, out, config, search=args.search,
                                        criterion=args.criterion, storage=storage, device=device)
    else:
        report = pipelines.run_gwk(model, task, out, config, epochs=args.epochs, lr=args.lr, qat=qat,
                                   storage=storage, workdir=workdir, device=device, show_progress=progress,
                                   recluster=recluster, budget_bits=args.budget_bits)
    for c in _checkpoints(workdir):  # finished: the checkpoints have served
        c.unlink(missing_ok=True)
    return report


def _load_file(path):
    if not Path(path).exists():
        raise UserError(f"file not found: {path}")
    from . import model_file

    return model_file.load_model(path)


EVALUATE_SPLITS = ("report-half", "search-half", "test", "train")


def cmd_evaluate(args) -> int:
    from . import data, train

    device = _device(args.device)
    model = _load_file(args.file).to(device)
    x, y = data.load_dataset(args.data, "train" if args.split == "train" else "test", args.data_root)
    n = len(x)
    where = {"report-half": (n // 2, n), "search-half": (0, n // 2)}.get(args.split, (0, n))
    x, y = x[where[0]:where[1]], y[where[0]:where[1]]
    described = f"{'train' if args.split == 'train' else 'test'}[{where[0]}:{where[1]}]"
    if len(x) == 0:
        raise UserError(f"--split {args.split}: no images in {args.data}'s {args.split}")
    _check_model_takes(model, x[:1], y, args.file, args.data, device)
    acc = train.accuracy(model, x, y, device=device)
    print(f"{args.file}: accuracy {100 * acc:.2f}% on {args.data} {described} ({len(x)} images, "
          f"--split {args.split}, {device})")
    return 0


def _check_model_takes(model, x, y, model_name: str, data_name: str, device="cpu") -> None:
    """The data fits the model, before any long work: a few images x through it, and every label
    of y within its outputs; UserError naming both otherwise."""
    try:
        with torch.no_grad():
            outputs = model.eval()(x.to(device)).shape[-1]
    except (RuntimeError, ValueError, IndexError) as exc:
        raise UserError(f"{model_name} cannot take {data_name} images of shape {list(x.shape[1:])} "
                        f"({str(exc).splitlines()[0]})") from None
    if int(y.max()) >= outputs:
        raise UserError(f"{model_name} has {outputs} outputs, but {data_name} has labels up to {int(y.max())}")


def cmd_inspect(args) -> int:
    if not Path(args.file).exists():  # before the imports below: a mistake is answered at once
        raise UserError(f"file not found: {args.file}")
    from . import model_file

    info = model_file.describe(args.file)
    rows = []
    for r in info["layers"]:
        bpw = "" if r["bits_per_weight"] is None else f"{r['bits_per_weight']:.3f}"
        rows.append([r["layer"], "x".join(map(str, r["shape"] or [])), r["method"], r["detail"], bpw,
                     r["bytes"], f"{100 * r['share']:.1f}%"])
    rows.append(["(file header)", "", "", "", "", info["header_bytes"],
                 f"{100 * info['header_bytes'] / info['file_bytes']:.1f}%"])
    rows.append(["total", "", info["method"] or "", "", f"{info['bits_per_weight']['all_inclusive']:.3f}",
                 info["file_bytes"], "100.0%"])
    print(format_table(["layer", "shape", "method", "bins or (d, k)", "bits/weight", "bytes", "share"], rows))
    r, b = info["ratios"], info["bits_per_weight"]
    print(f"fp32 model {info['fp32_bytes']} bytes; file {info['file_bytes']} bytes")
    if r["indices_only"] is not None:
        print(f"compression: (a) indices only {r['indices_only']:.2f}x ({b['indices']:.3f} bits/weight), "
              f"(b) indices + codebooks {r['with_codebooks']:.2f}x ({b['with_codebooks']:.3f} bits/weight), "
              f"(c) all-inclusive {r['all_inclusive']:.2f}x")
    return 0


def cmd_bench(args) -> int:
    from . import microbench

    rows = microbench.run(quick=args.quick)
    print(format_table(["op", "shape", "median", "baseline", "baseline median", "speed-up"],
                       [[r["op"], r["shape"], f"{r['median_ms']:.3f} ms", r["baseline"],
                         f"{r['baseline_ms']:.3f} ms", f"{r['speedup']:.2f}x"] for r in rows]))
    print(f"machine: {microbench.machine()}")
    return 0


def cmd_demo(args) -> int:
    from . import demo

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: expected a folder (the demo writes a report, a plot and files), got a file")
    return demo.main(args, progress=_show_progress(args))


def _add_common(p, data_required=True):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run (default: auto, i.e. cuda when a GPU is visible, else cpu)")
    p.add_argument("--data-root", default=None,
                   help="folder of the shared data sets (default: $GWKCUDA_DATA, else shared/data beside the checkout)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gwkcuda", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks (default: off)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (default: on a terminal)")
    # --debug/--quiet also after the subcommand; SUPPRESS keeps the top-level value when absent.
    flags = _Parser(add_help=False)
    flags.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks (default: off)")
    flags.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars (default: progress bars on a terminal)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[flags], **k)

    p = sub.add_parser("info", help="build info and a pack/unpack self-check")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="the main job on a built-in default (digits; CIFAR-10 with --data-root)")
    p.add_argument("--out", default="gwkcuda-demo", help="folder for the report, plot and files (default: %(default)s)")
    p.add_argument("--data-root", default=None,
                   help="run the CIFAR-10 ResNet-20 version on the data in this folder (default: none, the digits CNN)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run (default: auto, i.e. cuda when a GPU is visible, else cpu)")
    p.add_argument("--seed", type=count_arg(0, MAX_SEED), default=0,
                   help="seed of training and clustering (default: 0)")
    p.set_defaults(func=cmd_demo)

    from .models import MODEL_NAMES
    p = sub.add_parser("compress", help="compress a model into a .gwk file")
    p.add_argument("--method", required=True, choices=("binquant", "gwk", "kmeans"),
                   help="binquant: Bin & Quant, no retraining; gwk: gradient-weighted k-means PQ with codebook "
                        "fine-tuning; kmeans: the same with plain k-means (required)")
    p.add_argument("--model", required=True, help=f"one of {', '.join(MODEL_NAMES)} (required)")
    p.add_argument("--checkpoint", default=None,
                   help="trained float weights (a state_dict file) (default: none, the model is trained from scratch)")
    p.add_argument("--data", required=True, help="digits, cifar10, fsdd, mnist, or a folder of IDX files (required)")
    p.add_argument("--out", default=None, help="compressed file to write (default: MODEL-METHOD.gwk)")
    p.add_argument("--report", default=None, help="also write the JSON report here (default: none)")
    p.add_argument("--seed", type=count_arg(0, MAX_SEED), default=0, help="seed of training, calibration and "
                   "clustering (default: 0)")
    p.add_argument("--float-epochs", type=count_arg(0), default=None,
                   help="epochs of float training from scratch (default: 20), or of fine-tuning --checkpoint "
                        "(default: 0)")
    p.add_argument("--float-lr", type=positive_arg, default=None,
                   help="learning rate of the float training (default: 2e-3 from scratch, 5e-4 fine-tuning)")
    p.add_argument("--workdir", default=None, help="folder of the per-epoch checkpoints, held by one run at a "
                   "time (default: OUT.work)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last finished epoch (same arguments) (default: off)")
    p.add_argument("--float16", action="store_true",
                   help="store the tensors left in float (batch norm, biases, uncompressed layers, float "
                        "codebooks and bin values) as float16: half their bytes (default: float32)")
    p.add_argument("--fold-batchnorm", action="store_true",
                   help="store each batch norm as its scale and shift (2 numbers per channel instead of 4); "
                        "the file is then for inference, not further training (default: off)")
    g = p.add_argument_group("Bin & Quant")
    g.add_argument("--max-drop", type=non_negative_arg, default=1.0,
                   help="accuracy points the search may lose on its images (default: %(default)s)")
    g.add_argument("--max-bins", type=count_arg(2, 2**16), default=16,
                   help="bins per layer at most (default: %(default)s)")
    g.add_argument("--sensitivity", default="gradient", choices=("perturb", "gradient"),
                   help="how bins are split: by perturbing each bin and evaluating (the paper's), or by "
                        "gradient estimates without evaluations (default: %(default)s)")
    g.add_argument("--values", default="midpoint", choices=("midpoint", "mean"),
                   help="each bin's value: its midpoint, or the mean of its weights (default: %(default)s)")
    g.add_argument("--search", type=count_arg(1), default=1000,
                   help="search images, from the first half of the test split (default: %(default)s)")
    g.add_argument("--criterion", default="accuracy", choices=("accuracy", "agreement"),
                   help="search on accuracy, or on agreement with the float model's predictions "
                        "(default: %(default)s)")
    g.add_argument("--allocation", default="layer", choices=("layer", "global"),
                   help="bins layer by layer, or one global split order (needs --sensitivity gradient) "
                        "(default: %(default)s)")
    g.add_argument("--share", default="none", choices=("none", "kind"),
                   help="one set of bins per layer kind instead of per layer (default: %(default)s)")
    g = p.add_argument_group("GWK / k-means")
    g.add_argument("--d", type=count_arg(1), default=4,
                   help="sub-vector length: weights per code; layers whose rows it does not divide stay in "
                        "float (default: %(default)s)")
    g.add_argument("--k", type=count_arg(1, 2**16), default=16,
                   help="codewords per layer: log2(k) bits per code (default: %(default)s)")
    g.add_argument("--importance", default=None, choices=("abs", "square", "fisher"),
                   help="gradient importances: summed |gradient| or gradient^2 of calibration batches, or "
                        "fisher, the sum of each sample's own gradient^2 (see --fisher-samples); Bin & Quant's "
                        "gradient sensitivity takes square or fisher (default: abs for GWK, square for "
                        "Bin & Quant)")
    g.add_argument("--fisher-samples", type=count_arg(1), default=1024,
                   help="training samples whose per-sample gradients give the fisher importances "
                        "(default: %(default)s)")
    g.add_argument("--beta", type=non_negative_arg, default=None,
                   help="nudge: importances become 1 + beta * s / mean(s) (default: none, the plain weighted mean)")
    g.add_argument("--calib-batches", type=count_arg(1), default=16,
                   help="training batches of 64 whose gradients give the importances (default: %(default)s)")
    g.add_argument("--iters", type=count_arg(0), default=25,
                   help="Lloyd iterations of the k-means (default: %(default)s)")
    g.add_argument("--epochs", type=count_arg(0), default=5,
                   help="codebook fine-tuning epochs, codes fixed (default: %(default)s)")
    g.add_argument("--lr", type=positive_arg, default=1e-3, help="fine-tuning learning rate (default: %(default)s)")
    g.add_argument("--bits", type=count_arg(1, 16), default=None,
                   help="EWGS quantisation-aware training of weights and activations at this many bits before "
                        "clustering (default: none)")
    g.add_argument("--qat-epochs", type=count_arg(0), default=2, help="EWGS training epochs (default: %(default)s)")
    g.add_argument("--quantizer-lr", type=positive_arg, default=1e-5,
                   help="learning rate of the EWGS quantiser bounds and scales (default: %(default)s)")
    g.add_argument("--delta", type=non_negative_arg, default=None,
                   help="fixed EWGS delta (default: a Hessian estimate after every --delta-every epochs)")
    g.add_argument("--delta-every", type=count_arg(1), default=1,
                   help="epochs between EWGS delta estimates (default: %(default)s)")
    g.add_argument("--budget-bits", type=positive_arg, default=None,
                   help="per-layer k from sensitivity: each layer's k (8 to 256, at --d) chosen so that the "
                        "clustered layers' codes and codebooks average at most this many bits per weight with "
                        "the least sensitivity-weighted error (default: none, every layer at --k)")
    g.add_argument("--recluster-rounds", type=count_arg(0), default=0,
                   help="clustering inside retraining (needs --bits): rounds of GWK clustering of the latent "
                        "weights, each followed by --recluster-epochs epochs of training straight through the "
                        "codebooks, before the final clustering (default: %(default)s, one clustering)")
    g.add_argument("--recluster-epochs", type=count_arg(1), default=1,
                   help="training epochs per re-clustering round (default: %(default)s)")
    g.add_argument("--recluster-final", choices=RECLUSTER_FINALS, default="cluster",
                   help="after the rounds: cluster the latent weights once more, or freeze the codes the last "
                        "round's forward uses with its trained codebooks (default: %(default)s)")
    g.add_argument("--recluster-stages", type=count_arg(1), default=1,
                   help="progressive clustering: the layers split in model order into this many groups, round r "
                        "clustering the first r of them, the rest training on unclustered (at most "
                        "--recluster-rounds; default: %(default)s, all layers every round)")
    _add_common(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("evaluate", help="accuracy of a compressed file")
    p.add_argument("file", help="a .gwk file written by gwkcuda compress")
    p.add_argument("--data", required=True, help="digits, cifar10, fsdd, mnist, or a folder of IDX files")
    p.add_argument("--split", default="report-half", choices=EVALUATE_SPLITS,
                   help="images to score: report-half (the second half of the test split, which every "
                        "report is judged on; default), search-half (the first half, where Bin & Quant "
                        "searches), test (all of it) or train")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("inspect", help="per-layer table of a compressed file")
    p.add_argument("file", help="a .gwk file written by gwkcuda compress")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("bench", help="kernel microbenchmarks as a table")
    p.add_argument("--quick", action="store_true", help="small shapes, seconds instead of minutes (default: off)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.func(args)
    except (Interrupted, KeyboardInterrupt) as exc:
        if debug:
            raise
        print(f"gwkcuda: {exc if isinstance(exc, Interrupted) else 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UserError, ValueError, OSError) as exc:  # OSError: disk full, read-only, size limit, ...
        if debug:
            raise
        print(f"gwkcuda: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, io.CompressedFileError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"  # "No space left on device: OUT", not "[Errno 28] ..."
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
