"""The compressed-model file: round trip, corruption, truncation, version and interrupted saves."""
import os
import pathlib

import pytest
import torch

from gwkcuda import io, ops
from gwkcuda.io import CompressedFileError, load_compressed, save_compressed


def sample():
    codes = torch.randint(0, 32, (1000,), generator=torch.Generator().manual_seed(0))
    tensors = {
        "layer1.codes": ops.pack_bits(codes, 5),
        "layer1.codebook": torch.randn(32, 4, generator=torch.Generator().manual_seed(1)),
        "bn.weight": torch.ones(16, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 3, dtype=torch.float16),
        "step": torch.tensor(7, dtype=torch.int64),
    }
    meta = {"config": {"d": 4, "k": 32}, "layers": [{"name": "layer1", "nbits": 5, "numel": 1000}]}
    return tensors, meta


def test_round_trip(tmp_path):
    tensors, meta = sample()
    path = tmp_path / "model.gwk"
    save_compressed(path, tensors, meta)
    loaded, loaded_meta = load_compressed(path)
    assert loaded_meta == meta
    assert set(loaded) == set(tensors)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t), name
    codes = ops.unpack_bits(loaded["layer1.codes"], 5, 1000)
    assert codes.max() < 32


def test_non_contiguous_tensor_is_stored_by_value(tmp_path):
    t = torch.arange(12.0).reshape(3, 4).t()
    save_compressed(tmp_path / "f", {"t": t}, {})
    assert torch.equal(load_compressed(tmp_path / "f")[0]["t"], t)


def test_every_flipped_byte_is_refused(tmp_path):
    tensors, meta = sample()
    path = tmp_path / "model.gwk"
    save_compressed(path, tensors, meta)
    original = path.read_bytes()
    accepted = []
    for i in range(len(original)):
        corrupted = bytearray(original)
        corrupted[i] ^= 0x01
        path.write_bytes(bytes(corrupted))
        try:
            load_compressed(path)
            accepted.append(i)
        except CompressedFileError:
            pass
    assert accepted == [], f"flipped bytes at {accepted[:10]} were not detected"


def test_truncated_file_is_refused(tmp_path):
    tensors, meta = sample()
    path = tmp_path / "model.gwk"
    save_compressed(path, tensors, meta)
    original = path.read_bytes()
    for length in [0, 4, 8, 100, len(original) // 2, len(original) - 1]:
        path.write_bytes(original[:length])
        with pytest.raises(CompressedFileError, match="truncated|corrupted"):
            load_compressed(path)


def test_unknown_format_version_is_refused(tmp_path, monkeypatch):
    tensors, meta = sample()
    monkeypatch.setattr(io, "FORMAT_VERSION", 99)
    save_compressed(tmp_path / "future.gwk", tensors, meta)
    monkeypatch.undo()
    with pytest.raises(CompressedFileError, match=r"unsupported format version 99; this gwkcuda reads versions 2, 3"):
        load_compressed(tmp_path / "future.gwk")


def test_version_2_files_still_load(tmp_path):
    """Version 2: one safetensors tensor per tensor and the JSON header in plain text."""
    import json

    from safetensors.torch import save_file
    tensors, meta = sample()
    header = {"format_version": 2, "meta": meta, "payload_sha256": io._payload_digest(tensors)}
    header["checksum"] = io._header_checksum(header)
    save_file(tensors, str(tmp_path / "v2.gwk"), metadata={"gwkcuda": json.dumps(header)})
    loaded, loaded_meta = load_compressed(tmp_path / "v2.gwk")
    assert loaded_meta == meta
    assert all(torch.equal(loaded[n], t) and loaded[n].dtype == t.dtype for n, t in tensors.items())


def test_header_is_compact(tmp_path):
    """130 small named tensors (a ResNet-20's batch norms and layers): the header, not the data,
    must stay a small share; a plain safetensors header took about 100 bytes per tensor."""
    tensors = {f"layer{i // 20}.{i % 20}.bn{j}.running_mean": torch.zeros(16) for i in range(65) for j in (1, 2)}
    path = tmp_path / "many.gwk"
    save_compressed(path, tensors, {})
    data_bytes = sum(t.numel() * 4 for t in tensors.values())
    assert path.stat().st_size - data_bytes < 1500
    assert set(load_compressed(path)[0]) == set(tensors)


def test_plain_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CompressedFileError, match="not a gwkcuda file: a safetensors file without gwkcuda's header"):
        load_compressed(tmp_path / "plain.safetensors")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.gwk"):
        load_compressed(tmp_path / "nothing.gwk")


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch, where):
    tensors, meta = sample()
    path = tmp_path / "model.gwk"
    save_compressed(path, tensors, meta)
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_compressed(path, {"other": torch.ones(5)}, {"new": True})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gwk"], "temporary file left behind"
    assert load_compressed(path)[1] == meta


def test_interrupted_first_save_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_compressed(tmp_path / "new.gwk", {"t": torch.ones(3)}, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tensors, meta, pattern", [
    ({"a": [1, 2]}, {}, "dict of str -> torch.Tensor"),
    ({"a": torch.ones(1)}, [], "meta as a dict"),
    ({"a": torch.ones(1)}, {"x": object()}, "JSON-serialisable"),
])
def test_bad_arguments_are_refused(tmp_path, tensors, meta, pattern):
    with pytest.raises(TypeError, match=pattern):
        save_compressed(tmp_path / "f", tensors, meta)


def test_no_pickle_in_the_package():
    root = pathlib.Path(io.__file__).parent
    offenders = [p.name for p in root.rglob("*.py")
                 if "import pickle" in p.read_text() or "torch.save(" in p.read_text()]
    assert offenders == []


def test_saved_file_has_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_compressed(tmp_path / "m.gwk", {"w": torch.zeros(3)}, {})
        assert (tmp_path / "m.gwk").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "m.gwk", 0o600)
        save_compressed(tmp_path / "m.gwk", {"w": torch.ones(3)}, {})  # a replaced file keeps its mode
        assert (tmp_path / "m.gwk").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
