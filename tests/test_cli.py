"""The gwkcuda command: every subcommand's happy path on tiny inputs, and user mistakes exiting 2
with one line on stderr."""
import json
import subprocess
import sys

import pytest

import gwkcuda
from gwkcuda import cli, model_file


def test_build_info_keys():
    info = gwkcuda.build_info()
    assert set(info) >= {"torch_version", "cuda_compiled", "cuda_archs"}
    assert isinstance(info["cuda_compiled"], bool)
    assert info["torch_version"].count(".") == 2


@pytest.mark.slow
def test_info_command_runs_self_check(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gwkcuda", "info"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pack/unpack self-check on cpu: ok" in out.stdout
    assert "torch built against" in out.stdout


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """A digits CNN trained 3 epochs, compressed by each method (files and reports)."""
    folder = tmp_path_factory.mktemp("cli")
    common = ["--model", "digits_cnn", "--data", "digits", "--float-epochs", "3", "--device", "cpu"]
    files = {}
    for method, extra in (("binquant", ["--search", "100"]), ("gwk", ["--epochs", "1"]),
                          ("kmeans", ["--epochs", "1", "--d", "8", "--float16", "--fold-batchnorm"])):
        out, report = folder / f"{method}.gwk", folder / f"{method}.json"
        assert cli.main(["compress", "--method", method, *common, *extra, "--out", str(out),
                         "--report", str(report)]) == 0
        files[method] = (out, json.loads(report.read_text()))
    return files


def test_compress_writes_file_and_report(compressed, capsys):
    for method, (path, report) in compressed.items():
        assert report["method"] == method and report["file_bytes"] == path.stat().st_size
        assert set(report["ratios"]) == {"indices_only", "with_codebooks", "all_inclusive"}
        assert report["ratios"]["all_inclusive"] == pytest.approx(report["fp32_bytes"] / report["file_bytes"])
        assert report["evaluated_on"] == "test[225:450]" and 0 <= report["accuracy"] <= 1
    assert compressed["kmeans"][1]["settings"]["importance"] == "uniform"
    assert compressed["kmeans"][1]["bits_per_weight"]["indices"] == pytest.approx(0.5)  # d=8, k=16
    assert compressed["kmeans"][1]["settings"]["storage"] == {"float_dtype": "float16", "fold_batchnorm": True}
    methods = {r["layer"]: r["method"] for r in compressed["kmeans"][1]["layers"]}
    assert "float16" in methods.values() and "float32" not in methods.values(), methods


def test_evaluate_matches_the_report(compressed, capsys):
    """evaluate's default split is the report's: the same images, the same accuracy, and it says which."""
    for method, (path, report) in compressed.items():
        assert cli.main(["evaluate", str(path), "--data", "digits", "--device", "cpu"]) == 0
        line = capsys.readouterr().out
        assert f"on digits {report['evaluated_on']} (225 images, --split report-half" in line, line
        assert f"accuracy {100 * report['accuracy']:.2f}%" in line, (line, report["accuracy"])
    assert cli.main(["evaluate", str(path), "--data", "digits", "--split", "test", "--device", "cpu"]) == 0
    assert "on digits test[0:450] (450 images, --split test" in capsys.readouterr().out
    assert cli.main(["evaluate", str(path), "--data", "digits", "--split", "search-half", "--device", "cpu"]) == 0
    assert "on digits test[0:225] (225 images" in capsys.readouterr().out


def test_inspect_totals_equal_the_file_size(compressed, capsys):
    for method, (path, _) in compressed.items():
        assert cli.main(["inspect", str(path)]) == 0
        out = capsys.readouterr().out
        rows = [line.split() for line in out.splitlines() if line and line[0].isalnum()]
        total = next(r for r in rows if r[0] == "total")
        listed = sum(int(r[-2]) for r in rows if r[0] not in ("total", "layer", "fp32", "compression:")
                     and r[-1].endswith("%")) + int(next(l for l in out.splitlines()
                                                         if l.startswith("(file header)")).split()[-2])
        assert int(total[-2]) == path.stat().st_size == listed
        assert "(c) all-inclusive" in out


def test_bench_quick_prints_a_table(capsys):
    assert cli.main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    for op in ("pack_bits", "unpack_bits", "weighted k-means", "pq_linear"):
        assert op in out
    assert "machine:" in out


@pytest.mark.slow
def test_demo_writes_table_json_and_png(tmp_path, capsys):
    assert cli.main(["--quiet", "demo", "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "binquant" in out and "gwk" in out and "kmeans" in out and "(c) all" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["method"] for r in report["runs"]} == {"binquant", "gwk", "kmeans"}
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in report["runs"]:
        assert model_file.describe(r["file"])["file_bytes"] == r["file_bytes"]


def _corrupt(src, dst):
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def _digits(method, *knobs):
    """compress argv for the digits CNN on the digits data with extra knobs."""
    return ["compress", "--method", method, "--model", "digits_cnn", "--data", "digits", *knobs]


MISTAKES = [
    (["compress", "--method", "gwk", "--model", "resnet7", "--data", "digits"], "unknown model 'resnet7'"),
    (["compress", "--method", "gwk", "--model", "digits_cnn", "--data", "nowhere"], "unknown data set 'nowhere'"),
    (["compress", "--method", "gwk", "--model", "digits_cnn", "--data", "cifar10", "--data-root", "{tmp}"],
     "CIFAR-10 archive not found: expected {tmp}/cifar10-jpeg.tar.gz"),
    (_digits("gwk", "--k", "0"), "argument --k: expected an integer in 1..65536, got 0"),
    (_digits("binquant", "--max-bins", "1"),
     "argument --max-bins: expected an integer in 2..65536, got 1"),
    (_digits("gwk", "--epochs", "-1"),
     "argument --epochs: expected an integer >= 0, got -1"),
    (_digits("gwk", "--lr", "0"),
     "argument --lr: expected a finite number > 0, got 0"),
    (_digits("binquant", "--search", "all"),
     "argument --search: expected an integer >= 1, got 'all'"),
    (_digits("gwk", "--bits", "17"),
     "argument --bits: expected an integer in 1..16, got 17"),
    (_digits("binquant", "--max-bins", "70000"),
     "argument --max-bins: expected an integer in 2..65536, got 70000"),
    (_digits("gwk", "--checkpoint", "{tmp}/no.pt"),
     "checkpoint not found"),
    (["compress", "--method", "svd", "--model", "digits_cnn", "--data", "digits"], "invalid choice: 'svd'"),
    (["compress", "--model", "digits_cnn"], "the following arguments are required: --method"),
    (["evaluate", "{tmp}/missing.gwk", "--data", "digits"], "file not found: {tmp}/missing.gwk"),
    (["inspect", "{tmp}/bad.gwk"], "corrupted"),
    (["inspect", "{tmp}"], "gwkcuda: error:"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, message", MISTAKES, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _) in enumerate(MISTAKES)])
def test_user_mistakes_exit_2_with_one_line(argv, message, tmp_path, compressed, capsys):
    _corrupt(compressed["gwk"][0], tmp_path / "bad.gwk")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.replace("{tmp}", str(tmp_path)) in err, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gwkcuda", "--debug", "inspect", str(tmp_path / "x.gwk")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "Traceback" in out.stderr
    out = subprocess.run([sys.executable, "-m", "gwkcuda", "inspect", str(tmp_path / "x.gwk")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip() == f"gwkcuda: error: file not found: {tmp_path / 'x.gwk'}"


@pytest.mark.slow
def test_gwk_chain_with_ewgs_resumes_to_the_same_file(tmp_path, monkeypatch, capsys):
    """float training -> EWGS QAT -> GWK -> fine-tuning, killed inside QAT (3rd epoch checkpoint),
    then --resume: the file equals an uninterrupted run's, byte for byte."""
    from gwkcuda import train

    argv = ["compress", "--method", "gwk", "--model", "digits_cnn", "--data", "digits", "--device", "cpu",
            "--float-epochs", "2", "--bits", "4", "--qat-epochs", "2", "--delta-every", "1", "--epochs", "2",
            "--calib-batches", "2", "--iters", "5"]
    assert cli.main(argv + ["--out", str(tmp_path / "full.gwk")]) == 0

    original = train._save_atomic
    saved = {"n": 0}

    class Killed(BaseException):
        pass

    def save_then_die(obj, path):
        original(obj, path)
        saved["n"] += 1
        if saved["n"] == 3:  # float 2 epochs and QAT epoch 1 of 2 done: killed inside QAT
            raise Killed

    monkeypatch.setattr(train, "_save_atomic", save_then_die)
    with pytest.raises(Killed):
        cli.main(argv + ["--out", str(tmp_path / "resumed.gwk")])
    assert not (tmp_path / "resumed.gwk").exists() and (tmp_path / "resumed.gwk.work" / "qat.pt").exists()
    monkeypatch.setattr(train, "_save_atomic", original)
    assert cli.main(argv + ["--out", str(tmp_path / "resumed.gwk"), "--resume"]) == 0
    assert (tmp_path / "resumed.gwk").read_bytes() == (tmp_path / "full.gwk").read_bytes()
    assert not (tmp_path / "resumed.gwk.work").exists()
    fresh = model_file.load_model(tmp_path / "full.gwk")
    from gwkcuda.ewgs import QConv2d
    assert isinstance(fresh[3], QConv2d) and fresh[3].codebook is not None


def test_ctrl_c_is_one_line_exit_130_and_resume_finishes_the_same_file(tmp_path, monkeypatch, capsys):
    """Ctrl-C inside fine-tuning: one line naming what was kept and the --resume command, exit 130,
    no file under the final name; the printed command finishes with the file of an uninterrupted run."""
    import shlex
    from gwkcuda import train

    argv = ["compress", "--method", "kmeans", "--model", "digits_cnn", "--data", "digits", "--device", "cpu",
            "--float-epochs", "2", "--epochs", "2", "--calib-batches", "2", "--iters", "3"]
    assert cli.main(argv + ["--out", str(tmp_path / "full.gwk")]) == 0
    original, saved = train._save_atomic, {"n": 0}

    def save_then_ctrl_c(obj, path):
        original(obj, path)
        saved["n"] += 1
        if saved["n"] == 3:  # float training done, first fine-tuning epoch saved
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save_atomic", save_then_ctrl_c)
    capsys.readouterr()
    out = tmp_path / "cut.gwk"
    assert cli.main(argv + ["--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"gwkcuda: interrupted; the finished epochs are kept in {out}.work"), err
    assert not out.exists() and (tmp_path / "cut.gwk.work" / "finetune.pt").exists()
    command = shlex.split(err.split("to continue: ", 1)[1])
    assert command[0] == "gwkcuda" and command[-1] == "--resume"
    monkeypatch.setattr(train, "_save_atomic", original)
    assert cli.main(command[1:]) == 0
    assert out.read_bytes() == (tmp_path / "full.gwk").read_bytes()


def test_gpu_check_without_a_gpu_checks_prerequisites_and_exits_0():
    """bench/gpu_check.sh on a machine with no GPU: the prerequisites are checked and named, then it
    says there is no GPU and exits 0 (it never reaches the build)."""
    import torch
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: gpu_check.sh would run the whole check")
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "== prerequisites" in out.stdout and "torch " in out.stdout and "nvcc " in out.stdout
    assert out.stdout.strip().endswith("no GPU visible: nothing to check on this machine")
