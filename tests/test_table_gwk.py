"""bench/table_gwk.py's projection of the fine-tuning epochs a recipe needs, and the checks and
recorded command of the experiment scripts behind it (bench/exp_gwk.py, bench/exp_float_baseline.py)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "table_gwk.py"
spec = importlib.util.spec_from_file_location("table_gwk", SCRIPT)
table_gwk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table_gwk)


def run(accuracies):
    return {"method": "gwk", "settings": {"epochs": len(accuracies)}, "shared": {"finetune_images": 100},
            "details": {"finetune_accuracies": accuracies}}


def test_the_projection_extends_the_log_fit_to_the_target():
    # 70% + 1 point per doubling of the epochs: 75% at 2^5 = 32 epochs.
    line = table_gwk.projection(run([0.70 + 0.01 * math.log2(e) for e in range(1, 5)]), 0.75)
    assert "gains 1.00 points per doubling" in line and "reaches 75.00% after about 32 epochs of 100 images" in line


@pytest.mark.parametrize("accuracies, says", [([0.7, 0.69, 0.68], "does not reach 75.00% at any length"),
                                              ([0.7, 0.71], None), ([0.7, None, 0.72], None)])
def test_the_projection_needs_a_rising_curve_of_three_points(accuracies, says):
    line = table_gwk.projection(run(accuracies), 0.75)
    assert line is None if says is None else says in line


def bench_script(monkeypatch, name):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # its sibling modules
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_from_another_float_model_say_so():
    """Arms started from a float model fine-tuned longer are told apart in the recipe and the
    ablation caption; those of the 1-epoch model read as before."""
    one = {**run([0.8]), "baseline_full_test": 0.8596, "qat_full_test": 0.8577}
    one["shared"] = {**one["shared"], "float_epochs": 1}
    four = {**run([0.8]), "baseline_full_test": 0.8791, "qat_full_test": 0.8702}
    four["shared"] = {**four["shared"], "float_epochs": 4}
    assert table_gwk.recipe(one) == "1 x 100 images"
    assert table_gwk.recipe(four) == "1 x 100 images, from the float model fine-tuned 4 epochs"
    assert table_gwk.chain_models([one, four, one]) == (
        "float 85.96%, after EWGS QAT 85.77%; float 87.91% (fine-tuned 4 epochs), after EWGS QAT 87.02%")


def test_the_recipe_says_fresh_images():
    fresh = run([0.8] * 4)
    fresh["shared"] = {"finetune_images": 10000}
    fresh["settings"] = {**fresh["settings"], "epoch_images": 10000}
    assert table_gwk.recipe(fresh) == "4 x 10000 fresh images"
    fresh["settings"]["epoch_images"] = None
    assert table_gwk.recipe(fresh) == "4 x 10000 images"


def test_the_rerun_command_records_no_path_of_the_machine(monkeypatch):
    """exp_gwk.py's recorded command leaves the work folder and an absolute results folder to the
    reader (relative ones stay: they name a folder of the project), and cuts --arms to the run's."""
    exp_gwk = bench_script(monkeypatch, "exp_gwk")
    argv = ["--workdir", "/data/run", "--out", "/data/run/results", "--epochs", "4", "--arms", "gwk:9:32:0",
            "kmeans:9:32:0", "--distill", "0.5"]
    assert exp_gwk.rerun_command(argv, "kmeans:9:32:0") == (
        "python bench/exp_gwk.py --workdir '<dir>' --out '<out>' --epochs 4 --distill 0.5 --arms kmeans:9:32:0")
    assert exp_gwk.rerun_command(["--workdir=/x", "--out=bench/results/gwk"]) == (
        "python bench/exp_gwk.py '--workdir=<dir>' --out=bench/results/gwk")
    assert exp_gwk.rerun_command(["--out=/abs"]) == "python bench/exp_gwk.py '--out=<out>'"


@pytest.mark.parametrize("script, flags, says", [
    ("exp_gwk", ["--bits", "0"], "--bits: expected an integer in 1..16, got 0"),
    ("exp_gwk", ["--lr", "nan"], "--lr: expected a finite number > 0, got nan"),
    ("exp_gwk", ["--finetune-images", "0"], "--finetune-images: expected an integer >= 1, got 0"),
    ("exp_gwk", ["--calib-batches", "0"], "--calib-batches: expected an integer >= 1, got 0"),
    ("exp_gwk", ["--recluster-rounds", "-1"], "--recluster-rounds: expected an integer >= 0, got -1"),
    ("exp_gwk", ["--arms", "gwk:0:32:0"], "PQConfig: expected d an int >= 1, got 0"),
    ("exp_gwk", ["--arms", "gwk:9:32"], "expected gwk:D:K:SEED or kmeans:D:K:SEED, got 'gwk:9:32'"),
    ("exp_gwk", ["--arms", "gwk:9:x:0"], "expected integers D, K and SEED"),
    ("exp_gwk", ["--bits", "4", "--delta", "-1"], "--delta: expected a finite number >= 0, got -1"),
    ("exp_gwk", ["--distill", "1.5"], "--distill: expected a number in [0, 1], got 1.5"),
    ("exp_float_baseline", ["--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
])
def test_the_experiments_refuse_a_bad_setting_before_any_data_is_read(monkeypatch, tmp_path, capsys, script, flags,
                                                                      says):
    """Every setting is checked before the data is read and the float model trains (minutes to
    hours): an empty data folder would otherwise fail later, with another message."""
    module = bench_script(monkeypatch, script)
    argv = [script, "--data-root", str(tmp_path), "--workdir", str(tmp_path / "work"), "--out", str(tmp_path)]
    if script == "exp_gwk" and "--arms" not in flags:
        argv += ["--arms", "gwk:9:32:0"]
    monkeypatch.setattr("sys.argv", argv + flags)
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_a_glob_with_the_float_baseline_leaves_it_out_and_other_files_are_refused(tmp_path, capsys):
    arm, fair, other = tmp_path / "gwk.json", tmp_path / "float_baseline.json", tmp_path / "other.json"
    arm.write_text(json.dumps({**run([0.8]), "accuracy_full_test": 0.8}))
    fair.write_text(json.dumps({"model": "resnet20", "per_epoch": [], "accuracy_full_test": 0.88}))
    other.write_text(json.dumps({"images_per_second": 1.0}))
    assert [r["accuracy_full_test"] for r in table_gwk.load([fair, arm])] == [0.8]
    assert "left out" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="expected a run of bench/exp_gwk.py"):
        table_gwk.load([arm, other])
    with pytest.raises(SystemExit, match="expected at least one run"):
        table_gwk.load([fair])


def test_the_ablation_table_names_each_run_s_seed(capsys):
    runs = []
    for seed, acc in ((0, 0.81), (1, 0.83)):
        r = {**run([acc]), "accuracy_full_test": acc, "baseline_full_test": 0.88, "ratios": {"all_inclusive": 38.3},
             "details": {"accuracy_before_finetune": 0.5, "finetune_accuracies": [acc]}}
        r["settings"] = {**r["settings"], "d": 9, "k": 32, "seed": seed}
        runs.append(r)
    table_gwk.ablation_table(runs)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| gwk")]
    assert rows == ["| gwk | 9 | 32 | 1 | 1 x 100 images | 1 | 50.00 | 83.00 (88.00) | +5.00 | 38.3x |",
                    "| gwk | 9 | 32 | 0 | 1 x 100 images | 1 | 50.00 | 81.00 (88.00) | +7.00 | 38.3x |"]
