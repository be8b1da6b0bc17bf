"""The findings of a reliability audit, one test per finding (its repro as the input where possible):
silent wrong results in ops and training, decompression bombs, crafted headers, faults, bad
checkpoints, shared work folders, late knob checks, float extremes in k-means, slow seeding."""
import base64
import json
import os
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
import zlib

import pytest
import torch

from gwkcuda import cli, io, kmeans, model_file, ops, reference, train
from gwkcuda.workdir import locked

from .conftest import DEVICES, needs_cuda

DIGITS = ["--model", "digits_cnn", "--data", "digits", "--device", "cpu"]


def _one_line_error(capsys, argv, *expected):
    """cli.main(argv) exits 2 with one 'gwkcuda: error:' line holding every expected fragment."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("gwkcuda: error: ") and "Traceback" not in err, err
    for fragment in expected:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def model_gwk(tmp_path_factory):
    """A small k-means-compressed digits CNN file."""
    out = tmp_path_factory.mktemp("hardening") / "m.gwk"
    assert cli.main(["compress", "--method", "kmeans", *DIGITS, "--float-epochs", "1", "--epochs", "0",
                     "--iters", "2", "--calib-batches", "1", "--out", str(out)]) == 0
    return out


# --- 1. a meta tensor among CPU tensors --------------------------------------------------------

def test_1_meta_tensor_mixed_with_cpu_tensors_is_refused():
    x, meta = torch.randn(1, 6, 2), torch.zeros(1, 3, 2, device="meta")
    labels = torch.zeros(1, 6, dtype=torch.int64)
    calls = {
        "kmeans_assign": lambda: ops.kmeans_assign(x, meta),
        "cluster_reduce": lambda: ops.cluster_reduce(x, None, labels.to("meta"), 3),
        "gwk_lloyd_step": lambda: ops.gwk_lloyd_step(x, None, meta),
        "gwk_lloyd_step_into": lambda: ops.gwk_lloyd_step(x, None, torch.zeros(1, 3, 2), labels_out=labels.to("meta")),
        "pq_linear": lambda: ops.pq_linear(torch.randn(2, 4), torch.zeros(3, 2, dtype=torch.uint8),
                                           torch.zeros(1, 4, 2, device="meta")),
        "pq_decode": lambda: ops.pq_decode(torch.zeros(3, 2, dtype=torch.uint8, device="meta"),
                                           torch.zeros(1, 4, 2)),
    }
    for op, call in calls.items():
        with pytest.raises(RuntimeError, match="all tensors on one device"):
            call()
    # All-meta inputs still give meta outputs of the right shapes (torch.compile's tracing).
    lab, sq = ops.kmeans_assign(x.to("meta"), meta)
    assert lab.device.type == "meta" and tuple(sq.shape) == (1, 6)


# --- 2. unpack_bits size arithmetic --------------------------------------------------------------

def test_2_unpack_bits_sizes_never_wrap():
    buf = torch.zeros(8, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="numel \\* nbits must fit 64 bits"):
        ops.unpack_bits(buf, 16, 2**60 + 1)  # numel * nbits wraps int64
    with pytest.raises(RuntimeError, match=f"{2**58} codes of 16 bits need {2**59} bytes"):
        ops.unpack_bits(buf, 16, 2**58)
    for numel in (2**63, 2**64 + 5):
        with pytest.raises(ValueError, match="expected numel an int of 64 bits"):
            ops.unpack_bits(buf, 16, numel)
    with pytest.raises(ValueError, match="expected nbits an int of 64 bits"):
        ops.pack_bits(torch.zeros(4, dtype=torch.int32), 2**70)
    # Exact sizes are unchanged: 8 codes of 3 bits fill 3 bytes.
    assert torch.equal(ops.unpack_bits(torch.full((3,), 255, dtype=torch.uint8), 3, 8), torch.full((8,), 7, dtype=torch.int32))


# --- 3. no silent None gradients -----------------------------------------------------------------

def test_3_backward_through_kmeans_ops_raises():
    x = torch.randn(1, 6, 2, requires_grad=True)
    c = torch.zeros(1, 3, 2)
    outputs = {
        "kmeans_assign": lambda: ops.kmeans_assign(x, c)[1],
        "cluster_reduce": lambda: ops.cluster_reduce(x, None, torch.zeros(1, 6, dtype=torch.int64), 3)[0],
        "gwk_lloyd_step": lambda: ops.gwk_lloyd_step(x, None, c)[0],
        "gwk_lloyd_step_into": lambda: ops.gwk_lloyd_step(x, None, c, labels_out=torch.zeros(1, 6, dtype=torch.int64))[0],
    }
    for op, out in outputs.items():
        with pytest.raises(RuntimeError, match=f"derivative for gwkcuda::{op} is not implemented"):
            out().sum().backward()
    assert x.grad is None
    with torch.no_grad():  # the forward itself is fine
        assert torch.equal(ops.kmeans_assign(x, c)[0], reference.kmeans_assign(x.detach(), c)[0])


# --- 4. decompression bombs ----------------------------------------------------------------------

def test_4_header_that_inflates_past_the_cap_is_refused_in_bounded_memory(tmp_path, monkeypatch):
    path = tmp_path / "bomb.gwk"
    monkeypatch.setattr(io, "MAX_HEADER_BYTES", 1 << 30)  # a writer without the cap
    io.save_compressed(path, {"t": torch.ones(2)}, {"pad": "a" * (64 << 20)})
    monkeypatch.undo()
    assert path.stat().st_size < 200_000  # 64 MiB of header in a small file
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(io.CompressedFileError, match="decompresses to more than"):
        io.load_compressed(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - started < 1 and peak < 3 * io.MAX_HEADER_BYTES, peak
    with pytest.raises(ValueError, match="more than the .* a reader accepts"):
        io.save_compressed(tmp_path / "big.gwk", {"t": torch.ones(2)}, {"pad": "a" * (17 << 20)})


# --- 5. crafted headers --------------------------------------------------------------------------

def _write_header(path, header_text: str, tensors=None):
    """A version-3 file whose header is exactly ``header_text`` (checksums as given)."""
    from safetensors.torch import save
    packed = base64.b64encode(zlib.compress(header_text.encode(), 9)).decode()
    path.write_bytes(save(tensors or {"float32": torch.ones(1)}, metadata={"gwkcuda": f"3:{packed}"}))
    return path


def _resave(src, dst, edit):
    """src's tensors and header, edited by edit(tensors, meta), written with valid checksums."""
    tensors, meta = io.load_compressed(src)
    edit(tensors, meta)
    io.save_compressed(dst, tensors, meta)
    return dst


CRAFTED = {
    "layers of the wrong type": lambda t, m: m.update(layers=5),
    "a layer entry of the wrong type": lambda t, m: m["layers"].update({next(iter(m["layers"])): "pq"}),
    "arch of the wrong type": lambda t, m: m.update(arch=["digits_cnn"]),
    "a billion classes": lambda t, m: m["arch"].update(num_classes=10**9),
    "fp32_bytes 0": lambda t, m: m.update(fp32_bytes=0),
    "PQ layer on a missing module": lambda t, m: m["layers"].update(
        {"nowhere.weight": {**next(iter(m["layers"].values()))}}),
    "codes shape that does not cover the weight": lambda t, m: next(iter(m["layers"].values())).update(
        codes_shape=[1, 1]),
    "k beyond 16-bit codes": lambda t, m: next(iter(m["layers"].values())).update(k=10**6),
    "a training checkpoint": lambda t, m: (m.clear(), m.update(checkpoint={"epoch": 0})),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_5_crafted_headers_get_one_line_not_a_traceback(case, model_gwk, tmp_path, capsys):
    bad = _resave(model_gwk, tmp_path / "bad.gwk", CRAFTED[case])
    _one_line_error(capsys, ["evaluate", str(bad), "--data", "digits", "--device", "cpu"], str(bad))
    if case != "PQ layer on a missing module":  # the header itself is sound: inspect may list it
        _one_line_error(capsys, ["inspect", str(bad)], str(bad))
    else:
        assert cli.main(["inspect", str(bad)]) == 0 and "nowhere" in capsys.readouterr().out
    with pytest.raises(io.CompressedFileError):
        model_file.load_model(bad)


def test_5_deeply_nested_and_mistyped_headers(tmp_path, capsys):
    deep = _write_header(tmp_path / "deep.gwk", '{"format_version":3,"meta":{"x":' + "[" * 200_000 +
                         "]" * 200_000 + '},"index":{},"payload_sha256":"0","checksum":"0"}')
    _one_line_error(capsys, ["inspect", str(deep)], "nested too deeply")
    typed = _write_header(tmp_path / "typed.gwk", json.dumps({"format_version": 3, "meta": [1], "index": {},
                                                              "payload_sha256": "0", "checksum": "0"}))
    _one_line_error(capsys, ["inspect", str(typed)], "'meta' is a list")


# --- 6. non-finite training ----------------------------------------------------------------------

def test_6_non_finite_knobs_are_refused_and_divergence_writes_no_file(tmp_path, capsys):
    out = tmp_path / "x.gwk"
    _one_line_error(capsys, ["compress", "--method", "kmeans", *DIGITS, "--lr", "inf", "--out", str(out)],
                    "argument --lr: expected a finite number > 0, got inf")
    _one_line_error(capsys, ["compress", "--method", "binquant", *DIGITS, "--max-drop", "nan", "--out", str(out)],
                    "argument --max-drop: expected a finite number >= 0, got nan")
    # The audit's repro with a learning rate that is finite but far too large: NaN weights.
    _one_line_error(capsys, ["compress", "--method", "kmeans", *DIGITS, "--lr", "1e30", "--float-epochs", "1",
                             "--epochs", "1", "--calib-batches", "1", "--iters", "2", "--out", str(out)],
                    "codebook fine-tuning diverged: loss", "lower the learning rate")
    assert not out.exists()
    model = torch.nn.Linear(4, 2)
    with pytest.raises(train.TrainingDiverged, match="diverged: loss nan"):
        train.train(model, torch.full((8, 4), float("nan")), torch.zeros(8, dtype=torch.int64), epochs=1)


# --- 7. faults, bad checkpoints, bad data, odd files ---------------------------------------------

@pytest.mark.slow
def test_7_file_size_limit_is_one_line(tmp_path):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    out = subprocess.run([sys.executable, "-m", "gwkcuda", "compress", "--method", "kmeans", *DIGITS,
                          "--float-epochs", "1", "--epochs", "0", "--iters", "2", "--calib-batches", "1",
                          "--out", str(tmp_path / "x.gwk")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, preexec_fn=limit)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "gwkcuda: error: File too large", out.stderr


def _bad_checkpoints(folder, model_gwk):
    import collections
    from gwkcuda.models import build_model

    paths = {"random bytes": folder / "random.pt", "empty": folder / "empty.pt", "a .gwk file": model_gwk,
             "wrong architecture": folder / "resnet.pt", "wrong shapes": folder / "five.pt",
             "a pickle weights_only refuses": folder / "pickle.pt"}
    paths["random bytes"].write_bytes(os.urandom(5000))
    paths["empty"].write_bytes(b"")
    torch.save(build_model("resnet20", 10, 3).state_dict(), paths["wrong architecture"])
    torch.save(build_model("digits_cnn", 5, 1).state_dict(), paths["wrong shapes"])
    torch.save({"state_dict": collections.Counter(a=1), "f": print}, paths["a pickle weights_only refuses"])
    return paths


def test_7_every_bad_checkpoint_is_one_line(tmp_path, model_gwk, capsys):
    for case, path in _bad_checkpoints(tmp_path, model_gwk).items():
        err = _one_line_error(capsys, ["compress", "--method", "kmeans", *DIGITS, "--checkpoint", str(path),
                                       "--out", str(tmp_path / "x.gwk")], f"checkpoint {path}")
        assert ("does not fit" in err) == case.startswith("wrong"), (case, err)


def test_7_corrupt_or_inconsistent_idx_files(tmp_path, capsys):
    import gzip
    import struct

    def idx(name, dims, body):
        (tmp_path / name).write_bytes(bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + body)

    idx("train-images-idx3-ubyte", [10, 4, 4], bytes(160))
    idx("train-labels-idx1-ubyte", [9], bytes(9))  # one label short
    idx("t10k-images-idx3-ubyte", [10, 4, 4], bytes(100))  # truncated
    idx("t10k-labels-idx1-ubyte", [10], bytes(10))
    argv = ["compress", "--method", "kmeans", "--model", "digits_cnn", "--data", str(tmp_path), "--out",
            str(tmp_path / "x.gwk")]
    _one_line_error(capsys, argv, "inconsistent IDX train files")
    idx("train-labels-idx1-ubyte", [10], bytes(10))
    _one_line_error(capsys, argv, "truncated IDX file (100 values for shape [10, 4, 4], which needs 160)")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 0x08, 3, 0]))  # header cut short
    _one_line_error(capsys, argv, "truncated IDX file (a header of 3 dimensions")
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x0d\x01\x00\x00\x00\x03" + bytes(5))  # float32 data, 5 bytes for 3 values
    _one_line_error(capsys, argv, "truncated IDX file (1 values for shape [3]")


def test_7_workdir_resume_inspect_and_odd_files(tmp_path, model_gwk, capsys):
    from gwkcuda.data import load_dataset
    from gwkcuda.models import build_model

    a_file = tmp_path / "afile"
    a_file.write_text("x")
    base = ["compress", "--method", "kmeans", *DIGITS, "--float-epochs", "1", "--out", str(tmp_path / "x.gwk")]
    _one_line_error(capsys, base + ["--workdir", str(a_file)], f"--workdir {a_file}: expected a folder, got a file")
    # --resume with another model's float.pt (5 classes, so the classifier does not fit)
    work = tmp_path / "w"
    work.mkdir()
    x, y = load_dataset("digits", "train")
    train.train(build_model("digits_cnn", 5, 1), x[y < 5][:64], y[y < 5][:64], epochs=1,
                checkpoint=work / "float.pt")
    _one_line_error(capsys, base + ["--workdir", str(work), "--resume"], "a checkpoint of another run",
                    "run without --resume")
    _one_line_error(capsys, ["inspect", str(work / "float.pt")], "a training checkpoint")
    _one_line_error(capsys, ["inspect", "/dev/zero"], "/dev/zero: not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-m", "gwkcuda", "inspect", str(fifo)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == f"gwkcuda: error: {fifo}: not a regular file"


# --- 8. shared work folders and stale temporary files --------------------------------------------

def test_8_a_held_work_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from gwkcuda import pipelines

    out = tmp_path / "x.gwk"
    with locked(f"{out}.work"):
        monkeypatch.setattr(pipelines, "float_model", lambda *a, **k: pytest.fail("trained anyway"))
        _one_line_error(capsys, ["compress", "--method", "kmeans", *DIGITS, "--out", str(out)],
                        "is in use by another gwkcuda run", f"process {os.getpid()}")
    assert (tmp_path / "x.gwk.work").is_dir()  # the holder's folder is left alone
    # Released (its holder gone), the folder serves the next run, which removes it when done.
    monkeypatch.undo()
    assert cli.main(["compress", "--method", "kmeans", *DIGITS, "--float-epochs", "1", "--epochs", "0",
                     "--iters", "2", "--calib-batches", "1", "--out", str(out)]) == 0
    assert out.exists() and not (tmp_path / "x.gwk.work").exists()


def test_8_a_kill_inside_the_save_window_leaves_a_temporary_the_next_save_removes(tmp_path):
    target = tmp_path / "f.gwk"
    # A writer killed (SIGKILL) between writing its temporary file and renaming it.
    script = (f"import os, signal, torch\nfrom gwkcuda import io\n"
              f"os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"io.save_compressed({str(target)!r}, {{'t': torch.ones(3)}}, {{}})\n")
    proc = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".f.gwk.gwkcuda-") and left[0].endswith(".tmp"), left
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live writer's temporary file is never touched
        live = tmp_path / f".g.gwk.gwkcuda-{sleeper.pid}-abc.tmp"
        live.write_bytes(b"partial")
        io.save_compressed(target, {"t": torch.ones(3)}, {})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "f.gwk"])
    finally:
        sleeper.kill()
        sleeper.wait()


# --- 9. every knob checked before any work, in the flag's own name -------------------------------

KNOBS = [
    (["--k", "65536"], "--d 4 --k 65536: no layer of digits_cnn can be quantised"),
    (["--d", "7"], "--d 7 --k 16: no layer of digits_cnn can be quantised"),
    (["--beta", "inf"], "argument --beta: expected a finite number >= 0, got inf"),
    (["--calib-batches", "1000000"], "--calib-batches: expected at most 22 (the 1347 training images in batches of 64)"),
    (["--seed", str(2**70)], "argument --seed: expected an integer in 0..4294967295"),
    (["--k", "70000"], "argument --k: expected an integer in 1..65536, got 70000"),
    (["--report", "/no/such/folder/r.json"], "--report /no/such/folder/r.json: the folder /no/such/folder does not exist"),
]


@pytest.mark.parametrize("knob, message", KNOBS, ids=[k[0] for k, _ in KNOBS])
def test_9_knobs_are_refused_before_training(knob, message, tmp_path, capsys, monkeypatch):
    from gwkcuda import pipelines

    monkeypatch.setattr(pipelines, "float_model", lambda *a, **k: pytest.fail("trained before refusing"))
    _one_line_error(capsys, ["compress", "--method", "gwk", *DIGITS, *knob, "--out", str(tmp_path / "x.gwk")], message)
    assert not (tmp_path / "x.gwk.work").exists()


def test_9_out_naming_a_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    from gwkcuda import pipelines

    monkeypatch.setattr(pipelines, "float_model", lambda *a, **k: pytest.fail("trained before refusing"))
    _one_line_error(capsys, ["compress", "--method", "gwk", *DIGITS, "--out", str(tmp_path)],
                    f"--out {tmp_path}: expected a file name, got a folder")


# --- 10. float extremes in k-means, an exact oracle ----------------------------------------------

def test_10_points_near_the_float32_limit_are_refused_and_work_in_float64():
    x = torch.tensor([[3.0e38], [-3.0e38], [2.9e38], [1.0]])
    with pytest.raises(ValueError, match="too large for float32 distances .* pass the points as float64"):
        kmeans.weighted_kmeans(x, k=2, iters=5)
    r = kmeans.weighted_kmeans(x.double(), k=2, iters=5)
    assert torch.isfinite(r.centroids).all() and torch.isfinite(r.inertia)
    for j in range(2):  # each centroid the mean of its points
        assert r.centroids[j, 0].item() == pytest.approx(x.double()[r.labels == j].mean().item(), rel=1e-12)
    assert kmeans.max_magnitude(torch.float32, 1) == pytest.approx(9.22e18, rel=1e-3)


def test_10_reference_lloyd_step_is_exact_for_the_smallest_weights():
    x = torch.tensor([[[0.3], [0.5], [10.0]]])
    w = torch.tensor([[1e-45, 1e-45, 1.0]])  # the smallest float32 subnormal
    c = torch.tensor([[[0.0], [10.0]]])
    new_ref = reference.gwk_lloyd_step(x, w, c)[0]
    new_op = ops.gwk_lloyd_step(x, w, c)[0]
    exact = (0.3 + 0.5) / 2  # the mean of float32 0.3 and 0.5 in float64, rounded once
    assert new_ref[0, 0, 0].item() == pytest.approx(exact, rel=1e-7) and torch.equal(new_ref, new_op)


# --- 11. k-means++ in batches --------------------------------------------------------------------

def test_11_kmeanspp_runs_in_logarithmically_many_rounds(monkeypatch):
    calls = {"n": 0}
    assign = ops.kmeans_assign

    def counting(*a):
        calls["n"] += 1
        return assign(*a)

    monkeypatch.setattr(ops, "kmeans_assign", counting)
    x = torch.randn(1, 5000, 2, generator=torch.Generator().manual_seed(0))
    c = kmeans.kmeanspp_init(x, torch.ones(1, 5000), 1024, seed=0)
    assert calls["n"] == len(kmeans.kmeanspp_batches(1024)) == 93  # one slice of points: one op per round
    assert sum(kmeans.kmeanspp_batches(65536)) == 65536 and len(kmeans.kmeanspp_batches(65536)) == 162
    assert kmeans.kmeanspp_batches(32) == [1] * 32  # exact k-means++ up to 32 centroids
    assert len(torch.unique(c[0], dim=0)) == 1024  # distinct points (no point drawn twice here)


def test_11_batched_seeding_is_as_good_as_sequential_kmeanspp():
    """Seeding inertia (every point to its nearest seed) of the batched draw against
    scikit-learn's sequential k-means++ on the same points, over 5 seeds each."""
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    import numpy as np

    x = torch.randn(20000, 4, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 2.0, 0.5, 3.0])

    def inertia(c):
        return float(ops.kmeans_assign(x[None], c[None])[1].sum())

    ours = np.median([inertia(kmeans.kmeanspp_init(x[None], torch.ones(1, 20000), 256, seed=s)[0]) for s in range(5)])
    theirs = np.median([inertia(torch.from_numpy(sklearn_cluster.kmeans_plusplus(
        x.numpy(), 256, random_state=s, n_local_trials=1)[0])) for s in range(5)])
    assert ours <= 1.1 * theirs, (ours, theirs)


@needs_cuda
def test_1_cpu_tensor_among_cuda_ones_gets_our_message():
    """A CPU input with CUDA ones reaches the CUDA kernels, which check before they make a device
    guard: our message, not c10's "non-CUDA DeviceType" error."""
    cpu_x, cuda_c = torch.randn(1, 6, 2), torch.zeros(1, 3, 2, device="cuda")
    calls = {
        "kmeans_assign": lambda: ops.kmeans_assign(cpu_x, cuda_c),
        "cluster_reduce": lambda: ops.cluster_reduce(cpu_x, None, torch.zeros(1, 6, dtype=torch.int64, device="cuda"), 3),
        "gwk_lloyd_step": lambda: ops.gwk_lloyd_step(cpu_x, None, cuda_c),
        "pq_linear": lambda: ops.pq_linear(torch.randn(2, 4), torch.zeros(3, 2, dtype=torch.uint8, device="cuda"),
                                           torch.zeros(1, 4, 2, device="cuda")),
        "pq_decode": lambda: ops.pq_decode(torch.zeros(3, 2, dtype=torch.uint8), torch.zeros(1, 4, 2, device="cuda")),
    }
    for op, call in calls.items():
        with pytest.raises(RuntimeError, match=r"expected \w+ on") as err:
            call()
        assert "DeviceType" not in str(err.value), (op, err.value)


@pytest.mark.parametrize("device", DEVICES)
def test_10_nan_points_get_label_0_and_infinite_distance_on_every_backend(device):
    x = torch.tensor([[[float("nan"), 1.0], [0.0, 0.0]]], device=device)
    labels, sqdist = ops.kmeans_assign(x, torch.tensor([[[5.0, 5.0], [0.0, 0.0]]], device=device))
    assert labels.tolist() == [[0, 1]] and sqdist[0, 0].item() == float("inf") and sqdist[0, 1].item() == 0
