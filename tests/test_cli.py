import subprocess
import sys

import gwkcuda


def test_build_info_keys():
    info = gwkcuda.build_info()
    assert set(info) >= {"torch_version", "cuda_compiled", "cuda_archs"}
    assert isinstance(info["cuda_compiled"], bool)
    assert info["torch_version"].count(".") == 2


def test_info_command_runs_self_check(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gwkcuda", "info"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pack/unpack self-check on cpu: ok" in out.stdout
    assert "torch built against" in out.stdout
