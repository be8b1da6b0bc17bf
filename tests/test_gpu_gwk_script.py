"""bench/gpu_gwk.sh --smoke: the GPU recipe's script, run on the CPU on a few images of each of
its three models, so that it cannot rot between the runs on a lent GPU."""
import os
import subprocess
from pathlib import Path

import pytest

from gwkcuda import data

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not (data.data_root() / "cifar10-jpeg.tar.gz").exists(),
                    reason=f"CIFAR-10 not found at {data.data_root()}")
def test_the_gpu_recipe_script_runs_its_smoke_mode():
    env = {**os.environ, "GWK_DATA_ROOT": str(data.data_root())}
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_gwk.sh"), "--smoke"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| {m}", method] for m in ("resnet20", "resnet56", "mobilenetv2") for method in ("gwk", "kmeans")]
    assert "did not finish" not in out.stdout
    for row in rows:  # every arm wrote a compressed file and was judged
        accuracy, ratio = float(row.split(" | ")[4]), float(row.split(" | ")[6].rstrip("x"))
        assert 0 <= accuracy <= 100 and ratio > 1, row
