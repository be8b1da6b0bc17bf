"""Off-the-shelf recurrent model: silero-vad (PyPI, MIT; its TorchScript weights inside the wheel)
compressed by Bin & Quant with no retraining, judged on its own decisions over real audio.

    pip install silero-vad --no-deps   # the package's own import needs torchaudio; its model file does not
    python bench/exp_silero.py --out bench/results/silero/binquant.json

The model is the TorchScript module the package ships. gwkcuda reaches its weights without
rebuilding it as an nn.Module: every TorchScript submodule says which torch.nn class it was scripted
from (``original_name``), so its Conv1d and LSTMCell weights are found like any others, and Bin &
Quant rewrites them in place, which the scripted forward then uses. (GWK needs forward hooks,
which TorchScript modules do not take, so it is not run here.) Only the 8 kHz network
(``_model_8k``) is compressed and counted, since FSDD is 8 kHz audio and the 16 kHz network never runs on it.

Audio: FSDD recordings, each padded with 0.3-0.6 s of silence at both ends (seeded), run in
256-sample chunks as the package's streaming API does; a chunk's decision is speech probability
>= 0.5. The search scores agreement with the float model's decisions on the "val" recordings
(index 5-9); the report gives agreement on the official test recordings (index 0-4). The gradient
mode's importances come from the cross-entropy of the model's probabilities against the float
model's on the search clips (no labels needed).
"""
import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import data, model_file  # noqa: E402
from gwkcuda.binquant import BinQuantConfig, bin_and_quant, save_binquant  # noqa: E402
from gwkcuda.cliutil import write_json  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402

CHUNK, SR = 256, 8000


def silero_jit_path() -> Path:
    """The TorchScript file inside the installed silero-vad package (found without importing the
    package, whose __init__ needs torchaudio)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("silero-vad is not installed: pip install silero-vad --no-deps")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.jit"


def clips(lo: int, hi: int, seed: int, count: int) -> torch.Tensor:
    """``count`` FSDD recordings with index in [lo, hi) (a seeded draw), each between two silences,
    padded to one length: [count, samples] at 8 kHz (a whole number of chunks)."""
    rec = data.fsdd_recordings()
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero((rec["index"] >= lo) & (rec["index"] < hi))
    out = []
    for i in np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False)):
        pad = rng.integers(int(0.3 * SR), int(0.6 * SR), size=2)
        out.append(np.concatenate([np.zeros(pad[0], np.float32), rec["audio"][rec["offsets"][i]:rec["offsets"][i + 1]],
                                   np.zeros(pad[1], np.float32)]))
    n = -(-max(len(a) for a in out) // CHUNK) * CHUNK
    return torch.from_numpy(np.stack([np.pad(a, (0, n - len(a))) for a in out]))


def speech_probabilities(model, audio: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """[N, samples] -> [N, chunks]: the streaming model's speech probability per 256-sample chunk."""
    model.reset_states()
    with torch.set_grad_enabled(grad):
        return torch.cat([model(audio[:, i:i + CHUNK], SR) for i in range(0, audio.shape[1], CHUNK)], 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-drop", type=float, default=1.0, help="agreement points the search may lose")
    ap.add_argument("--mode", choices=["perturb", "gradient"], default="perturb",
                    help="gradient: importances from the cross-entropy of the model's probabilities against "
                         "the float model's (its own decisions as soft targets) on the search clips")
    ap.add_argument("--allocation", choices=["layer", "global"], default="layer")
    ap.add_argument("--max-bins", type=int, default=16)
    ap.add_argument("--values", choices=["midpoint", "mean"], default="mean")
    ap.add_argument("--clips", type=int, default=150, help="recordings per split (search, report)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    path = silero_jit_path()
    vad = torch.jit.load(str(path)).eval()
    for p in vad._model_8k.parameters():  # loaded frozen; the gradient mode needs their .grad
        p.requires_grad_(True)
    search, report = clips(5, 10, 1, args.clips), clips(0, 5, 2, args.clips)
    ref_search = speech_probabilities(vad, search) >= 0.5
    ref_report_p = speech_probabilities(vad, report)
    ref_report = ref_report_p >= 0.5

    def agreement(_):
        return float(((speech_probabilities(vad, search) >= 0.5) == ref_search).float().mean())

    start = time.perf_counter()
    ref_search_p = speech_probabilities(vad, search)

    def grad_fn(_):
        p = speech_probabilities(vad, search, grad=True).clamp(1e-6, 1 - 1e-6)
        torch.nn.functional.binary_cross_entropy(p, ref_search_p).backward()

    config = BinQuantConfig(max_drop=args.max_drop, max_bins=args.max_bins, sensitivity=args.mode,
                            allocation=args.allocation, values=args.values, progress=sys.stderr.isatty())
    result = bin_and_quant(vad._model_8k, agreement, config, grad_fn=grad_fn)
    seconds = time.perf_counter() - start
    file = os.path.splitext(args.out)[0] + ".gwk"
    sizes = save_binquant(file, result)
    fresh = torch.jit.load(str(path)).eval()
    model_file.load_model(file, fresh._model_8k)  # the file's weights into a fresh copy of the package's model
    p = speech_probabilities(fresh, report)
    row = {"model": "silero-vad 8 kHz (TorchScript, from the wheel)", "settings": vars(args),
           "search_clips": len(search), "report_clips": len(report), "report_chunks": int(ref_report.numel()),
           "speech_fraction": float(ref_report.float().mean()),
           "agreement": float(((p >= 0.5) == ref_report).float().mean()),
           "agreement_on_speech": float((p >= 0.5)[ref_report].float().mean()),  # float said speech
           "agreement_on_silence": float((p < 0.5)[~ref_report].float().mean()),
           "mean_abs_probability_change": float((p - ref_report_p).abs().mean()),
           "ratios": sizes["ratios"], "bits_per_weight": sizes["bits_per_weight"], "file_bytes": sizes["file_bytes"],
           "fp32_bytes": sizes["fp32_bytes"], "evaluations": result.evaluations, "seconds": round(seconds, 1),
           "layers": [{"name": r.name, "shape": r.shape, "bins": r.bins, "sensitivity": r.sensitivity}
                      for r in result.layers],
           "float_layers": result.report["float_layers"], "machine": machine()}
    write_json(args.out, row)
    print(json.dumps({k: row[k] for k in ("agreement", "agreement_on_speech", "agreement_on_silence",
                                          "mean_abs_probability_change", "ratios", "speech_fraction")}))


if __name__ == "__main__":
    main()
