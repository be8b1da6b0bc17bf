"""gwkcuda.compress / save / load on a model defined here (not from the zoo): the README's snippet
as written, each method, and the user's mistakes named."""
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import gwkcuda
from gwkcuda.binquant import BinQuantConfig
from gwkcuda.gwk import GWKConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    section = text[text.index("## Compress your own model"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README snippet", "exec"), {})
    printed = capsys.readouterr().out
    ratio = float(printed.split("x,")[0])
    assert (tmp_path / "my-model.gwk").exists() and ratio > 5, printed


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 4))


def _task():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(600, 16, generator=gen)
    y = (x[:, :4].argmax(1))  # a learnable rule
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:400]), y[:400]).backward()
        opt.step()
    return model, x, y


def _accuracy(m, x, y):
    with torch.no_grad():
        return float((m.eval()(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("method", ["gwk", "kmeans", "binquant"])
def test_each_method_compresses_saves_and_reloads_a_user_model(method, tmp_path):
    model, x, y = _task()
    before = _accuracy(model, x[400:], y[400:])
    calibration = [(x[i:i + 50], y[i:i + 50]) for i in range(0, 400, 50)]
    if method == "binquant":
        config = BinQuantConfig(max_drop=2.0, max_bins=16, sensitivity="gradient", allocation="global")
        report = gwkcuda.compress(model, config, calibration=calibration, progress=False,
                                  eval_fn=lambda m: _accuracy(m, x[400:500], y[400:500]))
        assert report["method"] == "binquant" and report["evaluations"] >= 1
    else:
        config = GWKConfig(d=4, k=16, importance="abs" if method == "gwk" else "uniform", min_weights=1000)
        report = gwkcuda.compress(model, config, calibration=calibration if method == "gwk" else None,
                                  progress=False)
        assert [r["name"] for r in report["layers"]] == ["0", "2"] and "4" in report["float_layers"]
    info = gwkcuda.save(tmp_path / "m.gwk", model)
    assert info["ratios"]["all_inclusive"] > 3
    restored = gwkcuda.load(tmp_path / "m.gwk", _model())
    with torch.no_grad():
        assert torch.allclose(restored(x), model.eval()(x), atol=1e-5)
    assert _accuracy(restored, x[400:], y[400:]) >= before - 0.1


def test_mistakes_are_named():
    model, x, y = _task()
    with pytest.raises(ValueError, match="needs calibration batches"):
        gwkcuda.compress(model, GWKConfig(importance="abs"))
    with pytest.raises(ValueError, match="pass eval_fn"):
        gwkcuda.compress(model, BinQuantConfig())
    with pytest.raises(TypeError, match="expected a BinQuantConfig or a GWKConfig, got dict"):
        gwkcuda.compress(model, {"d": 4})
    with pytest.raises(ValueError, match=r"cannot take calibration batch 0 \(inputs \(8, 3\)\)"):
        gwkcuda.compress(model, GWKConfig(), calibration=[(torch.randn(8, 3), torch.zeros(8, dtype=torch.long))])
    with pytest.raises(ValueError, match="no layer to quantise"):
        gwkcuda.compress(nn.Sequential(nn.Linear(4, 4)), GWKConfig(importance="uniform"))
