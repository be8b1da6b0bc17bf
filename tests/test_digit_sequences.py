"""The connected-digit CTC task: utterances, decoding and error rates, the CTC loss's checks, and
the DeepSpeech2-style model (its frame arithmetic, and a compressed copy rebuilt from its file)."""
import pytest
import torch
import torch.nn.functional as F

from gwkcuda import data, model_file
from gwkcuda import digit_sequences as ds
from gwkcuda.gwk import GWKConfig, gwk_compress
from gwkcuda.models import MODEL_NAMES, build_model

needs_fsdd = pytest.mark.skipif(not (data.data_root() / "fsdd-recordings.tar.gz").exists(),
                                reason=f"FSDD not found at {data.data_root()}")


@pytest.mark.parametrize("a, b, distance", [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3),
                                            ("flaw", "lawn", 2), ("same", "same", 0), ("ab", "ba", 2)])
def test_edit_distance(a, b, distance):
    assert ds.edit_distance(list(a), list(b)) == distance == ds.edit_distance(list(b), list(a))


def test_greedy_decode_merges_repeats_and_drops_blanks():
    B = ds.BLANK
    paths = torch.tensor([[3, 3, B, 3, 5, 5, B, B, 7], [B, B, 1, 1, 1, 2, 9, 9, 9]])
    logits = F.one_hot(paths, ds.NUM_CLASSES).float()
    assert ds.greedy_decode(logits, torch.tensor([9, 6])) == [[3, 3, 5, 7], [1, 2]]


def test_error_rates():
    rates = ds.error_rates([[1, 2, 3], [4, 5], []], [[1, 2, 3], [4, 6, 5], [7, 8]])
    assert rates == {"digit_error_rate": 3 / 8, "sequence_accuracy": 1 / 3}
    with pytest.raises(ValueError, match="2 hypotheses for 3 references"):
        ds.error_rates([[1], [2]], [[1], [2], [3]])


def test_ctc_loss_equals_torch_and_checks_shapes():
    torch.manual_seed(0)
    logits = torch.randn(2, 12, ds.NUM_CLASSES)
    lengths, targets, target_lengths = torch.tensor([12, 9]), torch.tensor([1, 2, 3, 4, 4]), torch.tensor([3, 2])
    expected = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), targets, lengths, target_lengths, blank=ds.BLANK)
    torch.testing.assert_close(ds.ctc_loss(logits, lengths, targets, target_lengths), expected)
    with pytest.raises(ValueError, match=r"expected logits \[B, T, 11\], got \[2, 12\]"):
        ds.ctc_loss(logits[..., 0], lengths, targets, target_lengths)
    with pytest.raises(ValueError, match=r"expected output_lengths and target_lengths \[2\]"):
        ds.ctc_loss(logits, lengths[:1], targets, target_lengths)
    with pytest.raises(ValueError, match=r"expected targets \[5\] \(concatenated\), got \[4\]"):
        ds.ctc_loss(logits, lengths, targets[:4], target_lengths)
    with pytest.raises(ValueError, match="expected output_lengths in 1..12, got 9..13"):
        ds.ctc_loss(logits, torch.tensor([13, 9]), targets, target_lengths)
    with pytest.raises(ValueError, match=r"expected targets in 0..9 \(the blank is 10\), got 1..10"):
        ds.ctc_loss(logits, lengths, torch.tensor([1, 2, 3, 4, 10]), target_lengths)


@pytest.mark.parametrize("frames", [5, 6, 61, 200])
def test_ds2_frame_arithmetic_and_input_check(frames):
    model = build_model("ds2_digits", ds.NUM_CLASSES).eval()
    assert "ds2_digits" in MODEL_NAMES
    with torch.no_grad():
        out = model(torch.randn(2, 129, frames))
    assert out.shape == (2, int(model.output_lengths(torch.tensor([frames]))), ds.NUM_CLASSES)
    with pytest.raises(ValueError, match=r"expected input \[B, 129, T\] or \[B, 1, 129, T\], got \[2, 128, 8\]"):
        model(torch.randn(2, 128, 8))


def test_compressed_ds2_rebuilds_from_its_file_alone(tmp_path):
    torch.manual_seed(0)
    model = build_model("ds2_digits", ds.NUM_CLASSES).eval()
    model, report = gwk_compress(model, GWKConfig(d=2, k=16, importance="uniform", iters=3))
    assert sum(r["name"].startswith("rnn.weight") for r in report["layers"]) == 12
    arch = {"name": "ds2_digits", "num_classes": ds.NUM_CLASSES, "in_channels": 1}
    info = model_file.save_model(tmp_path / "ds2.gwk", model, arch=arch)
    x = torch.randn(3, 129, 40)
    with torch.no_grad():
        torch.testing.assert_close(model_file.load_model(tmp_path / "ds2.gwk")(x), model(x), rtol=0, atol=0)
    assert info["ratios"]["indices_only"] == pytest.approx(16.0, rel=1e-3)  # 2 bits per weight


@needs_fsdd
def test_connected_digits_are_seeded_and_keep_the_splits_apart():
    rec = data.fsdd_recordings()
    assert len(rec["index"]) == 3000 and len(rec["offsets"]) == 3001
    a, b = ds.connected_digits("test", 20, seed=5), ds.connected_digits("test", 20, seed=5)
    assert torch.equal(a.features, b.features) and a.recordings == b.recordings
    assert not torch.equal(a.features, ds.connected_digits("test", 20, seed=6).features)
    for split, (lo, hi) in ds.SPLITS.items():
        u = ds.connected_digits(split, 30, seed=0)
        used = [r for words in u.recordings for r in words]
        assert all(lo <= rec["index"][r] < hi for r in used)
        assert all(ds.MIN_DIGITS <= len(words) <= ds.MAX_DIGITS for words in u.recordings)
        for i, words in enumerate(u.recordings):
            assert u.labels(i) == rec["digit"][words].tolist()
            assert u.features[i, :, u.lengths[i]:].abs().sum() == 0  # zero past each length
    with pytest.raises(ValueError, match="expected split one of train, val, test, got 'dev'"):
        ds.connected_digits("dev", 3)
