"""Training throughput of ResNet-20 on 32x32 inputs: images per second of one training step
(augmentation, forward, backward, Adam step) in the three phases of the GWK chain, side by side
with the loop as it was, in one run, with the FLOP floor.

    python bench/bench_train.py --out bench/results/train/train.json

Phases: float; EWGS quantisation-aware training W4A4 (ewgs.quantize_model); PQ fine-tuning (the
QAT model's quantised layers product-quantised, d = 9, k = 16: codes fixed, codebooks and
quantisers trained, as in the GWK chain). Variants, each adding to the one before:
- "per-image augmentation, batch 64": the loop as it was (a Python loop over the images of a batch
  for the crop and flip), the pipelines' batch size;
- "batched augmentation": train.cifar_augment, one gather per batch (the same images);
- "one-pass EWGS quantiser": ops.ewgs_quantize instead of the quantiser as a dozen torch ops
  (ewgs._Quantized.fused; the rows above run the torch ops, as the loop did);
- "channels_last": the model and inputs in channels-last memory format;
- "batch 256": four times the batch (the learning rate would be scaled with it);
- "bf16 autocast": only where the CPU computes bf16 natively (AVX-512 BF16 or AMX), else left out.
The floor: forward + backward FLOPs per image (3x the forward's multiply-adds x 2) over the
machine's fp32 (and bf16) matmul peak measured in the same run.
"""
import argparse
import contextlib
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import ewgs  # noqa: E402
from gwkcuda.cliutil import format_table, write_json  # noqa: E402
from gwkcuda.gwk import GWKConfig, gwk_compress  # noqa: E402
from gwkcuda.microbench import cpu_has_native_bf16, machine  # noqa: E402
from gwkcuda.models import resnet_cifar  # noqa: E402
from gwkcuda.train import cifar_augment  # noqa: E402


def per_image_augment(x, generator):
    """The augmentation as it was: crop and flip image by image (the baseline's cost)."""
    B, _, H, W = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (B,), generator=generator)
    dx = torch.randint(0, 9, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    out = torch.empty_like(x)
    for i in range(B):
        crop = padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def phase_model(phase, data):
    """The model each phase trains: the float ResNet-20; its EWGS W4A4 copy; and that copy with its
    quantised layers product-quantised (as in the chain: PQ fine-tuning runs on the QAT model)."""
    model = resnet_cifar(20)
    if phase != "float":
        ewgs.quantize_model(model, 4, 4)
        with torch.no_grad():
            model.eval()(data[:64])  # the quantisers' bounds from one batch, as run_qat does
    if phase == "PQ fine-tuning":
        model = gwk_compress(model, GWKConfig(d=9, k=16, importance="uniform"))[0]
    return model


def forward_macs(model, x):
    """Multiply-adds of one image's forward pass through the float model's convolutions and linear
    layers (the same arithmetic in every phase)."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        total += out[0].numel() * (m.weight[0].numel() if isinstance(m, torch.nn.Conv2d) else m.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(x[:1])
    for h in handles:
        h.remove()
    return total


def matmul_peak(dtype, n=2048, repeats=5):
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


def images_per_second(model, data, labels, *, batch, augment, channels_last, bf16, fused, steps):
    ewgs._Quantized.fused = fused
    try:
        return _images_per_second(model, data, labels, batch=batch, augment=augment, channels_last=channels_last,
                                  bf16=bf16, steps=steps)
    finally:
        ewgs._Quantized.fused = True


def _images_per_second(model, data, labels, *, batch, augment, channels_last, bf16, steps):
    model = copy.deepcopy(model).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    for step in range(steps + 2):  # two warm-up steps
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        t = time.perf_counter()
        xb = augment(data[idx], gen)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(model(xb), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if step >= 2:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per variant (median)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.manual_seed(0)
    data = torch.randn(2048, 3, 32, 32)
    labels = torch.randint(0, 10, (2048,))
    native_bf16 = cpu_has_native_bf16()
    peak = {"fp32": matmul_peak(torch.float32)}
    if native_bf16:
        peak["bf16"] = matmul_peak(torch.bfloat16)
    loop = dict(batch=64, augment=per_image_augment, channels_last=False, bf16=False, fused=False)
    variants = [("per-image augmentation, batch 64", loop)]
    for name, change in (("batched augmentation", dict(augment=cifar_augment)),
                         ("one-pass EWGS quantiser", dict(fused=True)),
                         ("channels_last", dict(channels_last=True)),
                         ("batch 256", dict(batch=256))) + ((("bf16 autocast", dict(bf16=True)),) if native_bf16 else ()):
        variants.append((name, {**variants[-1][1], **change}))
    flops = 3 * 2 * forward_macs(resnet_cifar(20), data)  # forward + backward (about twice the forward)
    rows, table = [], []
    for phase in ("float", "EWGS QAT W4A4", "PQ fine-tuning"):
        model = phase_model(phase, data)
        base = None
        for name, kw in variants:
            ips = images_per_second(model, data, labels, steps=args.steps, **kw)
            base = base or ips
            floor = peak["bf16" if kw["bf16"] else "fp32"] / flops
            rows.append({"phase": phase, "variant": name, **{k: v for k, v in kw.items() if k != "augment"},
                         "images_per_second": ips, "vs_baseline": ips / base, "floor_images_per_second": floor,
                         "flops_per_image": flops})
            table.append([phase, name, f"{ips:.0f}", f"{ips / base:.2f}x", f"{floor:.0f}", f"{ips / floor:.1%}"])
            print(f"{phase}: {name}: {ips:.0f} images/s", file=sys.stderr, flush=True)
    write_json(args.out, {"machine": machine(), "peak_flops": peak, "steps": args.steps, "rows": rows})
    print(f"{machine()}; matmul peak fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s"
          + (f", bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s" if native_bf16 else "") + f"; median of {args.steps} steps\n")
    print(format_table(["phase", "variant", "images/s", "vs per-image loop", "FLOP floor images/s", "of floor"], table))


if __name__ == "__main__":
    main()
