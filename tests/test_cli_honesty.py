"""The command line never reports a misleading success: one test per case found trying it as a new
user would (the layer left in float unannounced, an untrained network compressed, evaluate scoring
other images than the report, silent long phases, late failures and leftovers, tracebacks, and
misleading messages)."""
import json

import pytest
import torch

from gwkcuda import cli, io, model_file

DIGITS = ["--model", "digits_cnn", "--data", "digits", "--device", "cpu"]
QUICK = ["--float-epochs", "1", "--epochs", "0", "--iters", "2", "--calib-batches", "1"]


def _run(capsys, argv):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# 1 -----------------------------------------------------------------------------------------------

def test_1_float_layers_are_named_and_the_summary_leads_with_the_all_inclusive_ratio(tmp_path, capsys):
    code, out, err = _run(capsys, ["compress", "--method", "kmeans", *DIGITS, *QUICK, "--d", "3",
                                   "--out", str(tmp_path / "d3.gwk")])
    assert code == 0, err
    # digits_cnn's Linear 512 -> 64 holds 32768 of the 38160 Conv/Linear weights
    assert err.startswith("gwkcuda: warning: 87.9% of digits_cnn's weights stay in float at --d 3 --k 16"), err
    kept = next(l for l in out.splitlines() if l.startswith("kept in float: "))
    assert "8 (row length 512 not divisible by d = 3; 85.9% of the weights)" in kept
    assert "0 (144 weights < min_weights 1024; 0.4% of the weights)" in kept
    summary = out.splitlines()[0]
    assert summary.startswith("kmeans digits_cnn on digits: ") and summary.split(": ", 1)[1].split("x all-inclusive")[0]
    ratio = float(summary.split(": ", 1)[1].split("x all-inclusive")[0])
    assert ratio == pytest.approx(model_file.describe(tmp_path / "d3.gwk")["ratios"]["all_inclusive"], abs=0.005)
    assert ratio < 1.5  # the honest figure leads; the compressed layers' 10.7x comes after
    assert summary.index("all-inclusive") < summary.index("indices only")


# 2 -----------------------------------------------------------------------------------------------

def test_2_untrained_network_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    from gwkcuda import pipelines

    monkeypatch.setattr(pipelines, "load_task", lambda *a, **k: pytest.fail("loaded data before refusing"))
    code, _, err = _run(capsys, ["compress", "--method", "kmeans", *DIGITS, "--float-epochs", "0",
                                 "--out", str(tmp_path / "x.gwk")])
    assert code == 2 and "--float-epochs 0 without --checkpoint would compress an untrained network" in err


# 3: evaluate's splits (tests/test_cli.py::test_evaluate_matches_the_report) --------------------

# 4 -----------------------------------------------------------------------------------------------

def test_4_progress_within_epochs_and_over_the_global_search(capsys):
    from gwkcuda import train
    from gwkcuda.binquant import BinQuantConfig, bin_and_quant
    from gwkcuda.models import build_model

    model = build_model("digits_cnn", 10, 1)
    x, y = torch.randn(300, 1, 8, 8), torch.randint(0, 10, (300,))
    train.train(model, x, y, epochs=1, batch=50, show_progress=True, desc="float training")
    err = capsys.readouterr().err
    assert "float training, epoch 1/1" in err and "/6 [" in err, err  # a bar over the 6 batches

    def grad_fn(m):
        torch.nn.functional.cross_entropy(m(x[:64]), y[:64]).backward()

    bin_and_quant(model, lambda m: 1.0, BinQuantConfig(sensitivity="gradient", allocation="global", progress=True,
                                                       layer_sensitivity=False), grad_fn)
    err = capsys.readouterr().err
    assert "bin & quant (global)" in err and "evaluation" in err, err


# 5 -----------------------------------------------------------------------------------------------

def test_5_a_failure_after_training_names_the_kept_work_folder_or_removes_it(tmp_path, capsys, monkeypatch):
    from gwkcuda import pipelines

    def broken(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "x.gwk"))

    monkeypatch.setattr(pipelines, "run_gwk", broken)
    out = tmp_path / "x.gwk"
    code, _, err = _run(capsys, ["compress", "--method", "kmeans", *DIGITS, *QUICK, "--out", str(out)])
    assert code == 2 and err.count("\n") == 1, err
    assert f"No space left on device: {out} (the finished epochs are kept in {out}.work" in err
    assert "continue with: gwkcuda compress" in err and err.strip().endswith("--resume)")
    assert (tmp_path / "x.gwk.work" / "float.pt").exists()
    # A failure before any epoch finished leaves no folder behind.
    monkeypatch.setattr(pipelines, "float_model", broken)
    code, _, err = _run(capsys, ["compress", "--method", "kmeans", *DIGITS, *QUICK, "--out", str(tmp_path / "y.gwk")])
    assert code == 2 and not (tmp_path / "y.gwk.work").exists(), err


# 6 -----------------------------------------------------------------------------------------------

def test_6_mistakes_that_gave_tracebacks_are_one_line(tmp_path, capsys):
    from gwkcuda.models import build_model

    resnet = build_model("resnet20", 10, 3)
    from gwkcuda.gwk import GWKConfig, gwk_compress
    gwk_compress(resnet, GWKConfig(d=9, k=16, importance="uniform", iters=1))
    cifar_file = tmp_path / "resnet.gwk"
    model_file.save_model(cifar_file, resnet, arch={"name": "resnet20", "num_classes": 10, "in_channels": 3})
    code, _, err = _run(capsys, ["evaluate", str(cifar_file), "--data", "digits", "--device", "cpu"])
    assert code == 2 and err.count("\n") == 1 and "cannot take digits images of shape [1, 8, 8]" in err, err
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    code, _, err = _run(capsys, ["compress", "--method", "kmeans", *DIGITS, "--checkpoint", str(not_a_checkpoint),
                                 "--out", str(tmp_path / "x.gwk")])
    assert code == 2 and "not a PyTorch state_dict" in err, err
    a_file = tmp_path / "demo-out"
    a_file.write_text("x")
    code, _, err = _run(capsys, ["demo", "--out", str(a_file)])
    assert code == 2 and f"--out {a_file}: expected a folder" in err, err


# 7 -----------------------------------------------------------------------------------------------

def test_7_messages_say_what_is_really_wrong(tmp_path, capsys):
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"method": "gwk"}))
    ckpt = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, ckpt)
    for path, kind in ((png, "a PNG image"), (report, "JSON text"), (ckpt, "a zip archive")):
        code, _, err = _run(capsys, ["inspect", str(path)])
        assert code == 2 and f"not a gwkcuda file: it looks like {kind}" in err, err
    code, _, err = _run(capsys, ["compress", "--method", "gwk", "--model", "resnet20", "--data", "cifar10",
                                 "--data-root", str(tmp_path), "--out", str(tmp_path / "x.gwk")])
    assert code == 2 and f"the data folder given ({tmp_path}) does not hold it" in err and "GWKCUDA_DATA" not in err
    code, _, err = _run(capsys, ["compress", "--method", "binquant", *DIGITS, "--sensitivity", "perturb",
                                 "--allocation", "global", "--out", str(tmp_path / "x.gwk")])
    assert code == 2 and "--allocation global needs --sensitivity gradient" in err and "Config" not in err
    code, _, err = _run(capsys, ["compress", "--method", "kmeans", *DIGITS, *QUICK, "--out", str(tmp_path / "k.gwk")])
    assert code == 0
    assert io.load_compressed(tmp_path / "k.gwk")[1]["method"] == "kmeans"
    code, out, _ = _run(capsys, ["inspect", str(tmp_path / "k.gwk")])
    assert next(l for l in out.splitlines() if l.startswith("total")).split()[1] == "kmeans"


def test_8_help_gives_every_option_a_meaning_and_a_default(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name, p in sub.items():
        for action in p._actions:
            if action.dest in ("help",):
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and not action.required:
                assert "default" in action.help, (name, action.dest, action.help)
