"""bench/table_gwk.py's projection of the fine-tuning epochs a recipe needs."""
import importlib.util
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


def test_the_rerun_command_records_no_path_of_the_machine(monkeypatch):
    """exp_gwk.py's recorded command leaves the work folder and an absolute results folder to the
    reader (relative ones stay: they name a folder of the project), and cuts --arms to the run's."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # its sibling modules
    spec = importlib.util.spec_from_file_location("exp_gwk", SCRIPT.with_name("exp_gwk.py"))
    exp_gwk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp_gwk)
    argv = ["--workdir", "/data/run", "--out", "/data/run/results", "--epochs", "4", "--arms", "gwk:9:32:0",
            "kmeans:9:32:0", "--distill", "0.5"]
    assert exp_gwk.rerun_command(argv, "kmeans:9:32:0") == (
        "python bench/exp_gwk.py --workdir '<dir>' --out '<out>' --epochs 4 --distill 0.5 --arms kmeans:9:32:0")
    assert exp_gwk.rerun_command(["--workdir=/x", "--out=bench/results/gwk"]) == (
        "python bench/exp_gwk.py '--workdir=<dir>' --out=bench/results/gwk")
    assert exp_gwk.rerun_command(["--out=/abs"]) == "python bench/exp_gwk.py '--out=<out>'"
