"""The fair float baseline of the GWK experiments: the pretrained ResNet-20 fine-tuned on the
JPEG train split for as many epochs as a compressed model gets in all (float + QAT + every
retraining phase), with the chain's float learning rate and batch, its accuracy on all 10,000
test images measured after every epoch (so the JSON also shows whether it stopped improving).

    python bench/exp_float_baseline.py --data-root ../shared/data --workdir <dir> --epochs 4

Writes ``<out>/float_baseline_<model>_e<epochs>.json`` after every epoch (atomically); a killed
run started again with the same arguments resumes after its last finished epoch.
``bench/table_gwk.py --baseline FILE`` measures every drop against it.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import pipelines, train  # noqa: E402
from gwkcuda.cliutil import count_arg, positive_arg, write_json  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402
from exp_gwk import rerun_command  # noqa: E402
from posttrain_tasks import CHECKPOINTS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--model", default="resnet20", choices=sorted(CHECKPOINTS))
    ap.add_argument("--workdir", required=True, help="per-epoch checkpoints (resumable)")
    ap.add_argument("--epochs", type=count_arg(1), default=4)
    ap.add_argument("--lr", type=positive_arg, default=5e-4, help="peak of the cosine schedule (the chain's --float-lr)")
    ap.add_argument("--batch", type=count_arg(1), default=64)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gwk"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, f"float_baseline_{args.model}_e{args.epochs}.json")
    task = pipelines.load_task(args.model, "cifar10", args.data_root)
    checkpoint = os.path.join(args.data_root or "../shared/data", "pretrained", CHECKPOINTS[args.model])
    command = rerun_command(sys.argv[1:], script="bench/exp_float_baseline.py")
    report = {"model": args.model, "data": "cifar10", "epochs": args.epochs, "lr": args.lr, "batch": args.batch,
              "checkpoint": os.path.basename(checkpoint), "evaluated_on": f"test[0:{len(task.x_test)}]",
              "per_epoch": [], "command": command, "machine": machine()}
    if os.path.exists(out):  # a resumed run keeps the epochs measured before it was killed
        with open(out) as f:
            report["per_epoch"] = json.load(f).get("per_epoch", [])
    started = time.perf_counter()
    if not report["per_epoch"]:  # epoch 0: the checkpoint as shipped
        shipped = pipelines.float_model(task, checkpoint, epochs=0).eval()
        report["per_epoch"].append({"epoch": 0, "loss": None,
                                    "accuracy_full_test": train.accuracy(shipped, task.x_test, task.y_test)})
        print(f"as shipped: {100 * report['per_epoch'][0]['accuracy_full_test']:.2f}%", flush=True)

    def measure(model, epoch, loss):
        model.eval()
        acc = train.accuracy(model, task.x_test, task.y_test)
        report["per_epoch"] = [e for e in report["per_epoch"] if e["epoch"] < epoch + 1]
        report["per_epoch"].append({"epoch": epoch + 1, "loss": loss, "accuracy_full_test": acc})
        report["accuracy_full_test"] = acc
        report["finished"] = epoch + 1 == args.epochs
        write_json(out, report)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, {100 * acc:.2f}% on all {len(task.x_test):,} "
              f"test images ({time.perf_counter() - started:.0f} s)", flush=True)

    pipelines.float_model(task, checkpoint, epochs=args.epochs, lr=args.lr, batch=args.batch,
                          workdir=args.workdir, show_progress=sys.stderr.isatty(), on_epoch=measure)


if __name__ == "__main__":
    main()
