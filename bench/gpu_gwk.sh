#!/usr/bin/env bash
# The GWK recipe on a GPU: the paper's three CIFAR-10 models (ResNet-20, ResNet-56, MobileNetV2)
# through float training, EWGS QAT W4A4 with distillation from the float model, clustering inside
# retraining with the codes frozen after the last round, and codebook fine-tuning; GWK and plain
# k-means at d = 9, k = 32 (about 38x all-inclusive on ResNet-20; d = 8 on MobileNetV2), then one
# table of accuracy on the test images and file ratios.
#
#   bash bench/gpu_gwk.sh            # on a GPU: writes bench/results/gwk_gpu/*.json
#   bash bench/gpu_gwk.sh --smoke    # on the CPU, 16 training and 20 test images, about a minute: the script's check
#
# Each model runs under its own time limit (GWK_SLOT seconds, default 110: the three fit in 6
# minutes, build excluded). A model cut off keeps its per-epoch checkpoints in the work folder
# (GWK_WORKDIR), so running the script again continues where it stopped; the table says which
# models did not finish. The schedule below has not yet been timed on a GPU: the first run's
# per-model seconds (in the table) are what to size it by.
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
root="${GWK_DATA_ROOT:-../shared/data}"
if [ ! -f "$root/cifar10-jpeg.tar.gz" ]; then
  echo "no CIFAR-10 at $root/cifar10-jpeg.tar.gz (set GWK_DATA_ROOT): nothing to run"
  exit 2
fi
# The recipe of the CPU ablation's best point: distilled QAT, re-clustering rounds, then the last
# round's codes frozen (no final clustering) and the codebooks fine-tuned.
common=(--data-root "$root" --bits 4 --float16 --fold-batchnorm --distill 0.5 --temperature 4 --calib-batches 16
        --recluster-final freeze)
if [ "$smoke" = 1 ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  out="$work/results"
  slot="${GWK_SLOT:-120}"
  export OMP_NUM_THREADS=1  # tiny batches: one thread never waits at a parallel region's join
  common+=(--device cpu --batch 16 --train-images 16 --test-images 20 --finetune-images 16 --calib-batches 1 --delta 0)
  # model float-epochs qat-epochs recluster-rounds recluster-epochs epochs d
  schedule=("resnet20 1 1 1 1 1 9" "resnet56 1 1 1 1 1 9" "mobilenetv2 1 1 1 1 1 8")
else
  if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no GPU visible (run with --smoke to check the script on the CPU)"
    exit 0
  fi
  work="${GWK_WORKDIR:-$HOME/.cache/gwkcuda/gpu_gwk}"
  out="bench/results/gwk_gpu"
  slot="${GWK_SLOT:-110}"
  common+=(--device cuda --batch 256 --finetune-images 50000)
  # ResNet-20 starts from the pretrained checkpoint; ResNet-56 and MobileNetV2 train from scratch.
  # MobileNetV2 at d = 8: its pointwise rows (16 to 960 long) do not split into 9s, its 3x3
  # depthwise filters (9 long) stay in float.
  schedule=("resnet20 4 4 2 2 2 9" "resnet56 15 3 2 1 1 9" "mobilenetv2 15 3 2 1 1 8")
fi
mkdir -p "$work" "$out"
started=$(date +%s)
for entry in "${schedule[@]}"; do
  read -r model float_epochs qat_epochs rounds rc_epochs epochs d <<< "$entry"
  float_lr=0.0005
  [ "$model" != "resnet20" ] && float_lr=0.002
  echo "== $model (limit ${slot} s)"
  timeout "$slot" python bench/exp_gwk.py "${common[@]}" --model "$model" --workdir "$work/$model" --out "$out" \
    --float-epochs "$float_epochs" --float-lr "$float_lr" --qat-epochs "$qat_epochs" \
    --recluster-rounds "$rounds" --recluster-epochs "$rc_epochs" --epochs "$epochs" \
    --arms "gwk:$d:32:0" "kmeans:$d:32:0"
  code=$?
  if [ "$code" = 124 ]; then
    echo "$model: stopped at its ${slot} s limit; its checkpoints are kept in $work/$model (run again to continue)"
  elif [ "$code" != 0 ]; then
    echo "$model: failed (exit $code)"
  fi
  [ "$smoke" = 1 ] && [ "$code" != 0 ] && exit 1
done
echo "== table ($(( $(date +%s) - started )) s in all)"
python - "$out" "${schedule[@]}" <<'PY'
import json, os, sys
out, schedule = sys.argv[1], [s.split()[0] for s in sys.argv[2:]]
print("| model | method | d | float % | accuracy % | drop, points | all-inclusive | seconds (arm) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for model in schedule:
    tag = "" if model == "resnet20" else f"_{model}"
    found = False
    for method in ("gwk", "kmeans"):
        names = [n for n in sorted(os.listdir(out)) if n.startswith(f"{method}{tag}_d") and "_k32_s0_" in n
                 and n.endswith(".json")]
        for name in names:
            with open(os.path.join(out, name)) as f:
                r = json.load(f)
            acc, base = 100 * r["accuracy_full_test"], 100 * r["baseline_full_test"]
            print(f"| {model} | {method} | {r['settings']['d']} | {base:.2f} | {acc:.2f} | {base - acc:.2f} | "
                  f"{r['ratios']['all_inclusive']:.1f}x | {r['arm_seconds']:.0f} |")
            found = True
    if not found:
        print(f"| {model} | - | - | - | - | - | - | did not finish |")
PY
