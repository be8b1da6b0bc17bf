"""Models and data loaders: checkpoint loading, IDX parsing, and the shared data sets when present."""
import gzip

import numpy as np
import pytest
import torch

from gwkcuda import data
from gwkcuda.models import build_model, kws_cnn, load_checkpoint, resnet_cifar

SHARED = data.data_root()
needs_shared = pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").exists(),
                                  reason=f"shared data sets not found at {SHARED}")


@pytest.mark.parametrize("depth, params", [(20, 269_722), (32, 464_154)])
def test_resnet_sizes(depth, params):
    assert sum(p.numel() for p in resnet_cifar(depth).parameters()) == params
    assert resnet_cifar(depth)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_adapts_channels_and_classes():
    assert resnet_cifar(20, num_classes=7, in_channels=1)(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    with pytest.raises(ValueError, match="expected depth = 6n \\+ 2"):
        resnet_cifar(21)


def test_kws_cnn_shape():
    assert kws_cnn()(torch.randn(3, 1, 129, 64)).shape == (3, 10)


def test_load_checkpoint_strips_prefix_and_refuses_mismatch(tmp_path):
    model = resnet_cifar(20)
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "c.th")
    other = load_checkpoint(resnet_cifar(20), tmp_path / "c.th")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), other.eval()(x))
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(resnet_cifar(32), tmp_path / "c.th")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(model, tmp_path / "missing.th")


def test_idx_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(tmp_path / "x-ubyte.gz", "wb") as f:
        f.write(header + arr.tobytes())
    assert torch.equal(data.load_idx(tmp_path / "x-ubyte.gz"), torch.from_numpy(arr))
    (tmp_path / "bad").write_bytes(header + arr.tobytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        data.load_idx(tmp_path / "bad")


def test_missing_data_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cifar10-jpeg.tar.gz")):
        data.cifar10("test", root=tmp_path)


@needs_shared
def test_mnist_idx_from_shared_data():
    images, labels = data.idx_dataset(SHARED / "mnist", "test")
    assert images.shape == (10_000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]


@pytest.mark.skipif(not (SHARED / "fsdd-recordings.tar.gz").exists(), reason=f"FSDD not found at {SHARED}")
def test_fsdd_splits_partition_the_recordings():
    sizes = {split: len(data.fsdd(split)[1]) for split in data.FSDD_SPLITS}
    assert sizes == {"train": 2700, "test": 300, "train-fit": 2400, "train-val": 300}
    x, y = data.fsdd("train-val")
    assert x.shape == (300, 1, 129, 64) and torch.bincount(y).tolist() == [30] * 10
    with pytest.raises(ValueError, match="expected split one of"):
        data.fsdd("validation")


def test_digits_split_is_fixed_and_stratified():
    x, y = data.load_dataset("digits", "test")
    x2, _ = data.load_dataset("digits", "test")
    assert x.shape == (450, 1, 8, 8) and torch.equal(x, x2) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.bincount(y).min() >= 43 and torch.bincount(y).max() <= 46  # 1,797 images in proportion


def test_mobilenetv2_cifar_shape_and_size():
    from gwkcuda.models import build_model
    model = build_model("mobilenetv2", 10, 3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert 2_200_000 < sum(p.numel() for p in model.parameters()) < 2_300_000
    assert build_model("mobilenetv2", 7, 1)(torch.randn(1, 1, 28, 28)).shape == (1, 7)


def test_kws_tiny_conv_keeps_its_weights_in_the_classifier():
    model = build_model("kws_tiny_conv")
    assert model(torch.randn(2, 1, 129, 64)).shape == (2, 10)
    fc = model[-1].weight.numel()
    assert fc == 8 * 64 * 32 * 10  # 8 channels of a 64 x 32 map (stride 2 over 129 x 64)
    assert fc / sum(p.numel() for p in model.parameters()) > 0.99


def test_cifar_augment_equals_cropping_and_flipping_each_image():
    """The batched gather against the per-image crop and flip it replaced, same random draws."""
    import torch.nn.functional as F

    from gwkcuda.train import cifar_augment

    x = torch.randn(37, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got = cifar_augment(x, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)  # the same draws, in the same order
    dy, dx = torch.randint(0, 9, (37,), generator=gen), torch.randint(0, 9, (37,), generator=gen)
    flip = torch.rand(37, generator=gen) < 0.5
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(37):
        crop = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        assert torch.equal(got[i], crop.flip(-1) if flip[i] else crop)
    assert 0 < int(flip.sum()) < 37 and got.is_contiguous()


def test_runs_building_one_cache_entry_together_both_succeed(tmp_path, monkeypatch):
    """Two runs started at once both miss the cache and build it: each writes a temporary file of
    its own, so neither renames the other's away (they once shared one name, and the second
    rename failed with FileNotFoundError)."""
    import threading

    monkeypatch.setenv("GWKCUDA_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "source.bin"
    source.write_bytes(b"x")
    both_built = threading.Barrier(2)

    def build():
        both_built.wait(timeout=10)  # neither saves before the other has missed the cache too
        return {"a": np.arange(5)}

    results, errors = [], []

    def run():
        try:
            results.append(data._cached("entry", source, build))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 2 and all(np.array_equal(r["a"], np.arange(5)) for r in results)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"entry-{data._file_key(source)}.npz"]
    np.testing.assert_array_equal(data._cached("entry", source, lambda: {})["a"], np.arange(5))  # read back


def test_a_new_cache_entry_removes_the_stale_ones_only(tmp_path, monkeypatch):
    """Re-extracting the data (same file, new size or time) or moving it away leaves an entry no run
    can read again: writing the new entry removes those, and keeps the entries of other files that
    are still there and those of an older format, which do not say what they were built from."""
    monkeypatch.setenv("GWKCUDA_CACHE", str(tmp_path / "cache"))
    cache = tmp_path / "cache"
    source, other, gone = (tmp_path / n for n in ("source.bin", "other.bin", "gone.bin"))
    for path in (source, other, gone):
        path.write_bytes(b"x")
    build = lambda: {"a": np.arange(3)}  # noqa: E731
    old_key, other_key, gone_key = (data._file_key(p) for p in (source, other, gone))
    data._cached("entry", source, build)
    data._cached("entry", other, build)
    data._cached("entry", gone, build)
    gone.unlink()
    np.savez(cache / f"entry-{'0' * 16}.npz", a=np.arange(3))  # an older entry: no source named
    np.savez(cache / "unrelated.npz", a=np.arange(3))

    source.write_bytes(b"xy")  # re-extracted: another key
    new_key = data._file_key(source)
    assert new_key != old_key
    np.testing.assert_array_equal(data._cached("entry", source, build)["a"], np.arange(3))
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [f"entry-{new_key}.npz", f"entry-{other_key}.npz", f"entry-{'0' * 16}.npz", "unrelated.npz"])
    assert set(data._cached("entry", source, lambda: {})) == {"a"}  # the source's name is not returned
