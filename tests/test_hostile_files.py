"""Compressed files written on purpose with valid checksums and hostile contents: each refused
with CompressedFileError naming the field, in well under a second and bounded memory (measured in a
fresh process: the resident set's growth while loading). Plus the table-driven Huffman decoder
against the bit-by-bit reference."""
import json
import subprocess
import sys

import pytest
import torch

from gwkcuda import huffman, io, model_file, reference
from gwkcuda.models import build_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A PQ (GWK) digits CNN file and a Bin & Quant one with Huffman-coded indices."""
    from gwkcuda.gwk import GWKConfig, gwk_compress

    folder = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, 1)
    gwk_compress(model, GWKConfig(d=4, k=16, importance="uniform", iters=2))
    model_file.save_model(folder / "pq.gwk", model, arch={"name": "digits_cnn", "num_classes": 10, "in_channels": 1})
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, 1)
    bins = {}
    for name in ("3.weight", "8.weight"):  # skewed bin counts: Huffman beats a bit array
        w = model.get_parameter(name)
        idx = torch.multinomial(torch.tensor([0.7, 0.1, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01]), w.numel(), replacement=True)
        values = torch.linspace(-0.1, 0.1, 8)
        with torch.no_grad():
            w.copy_(values[idx].reshape(w.shape))
        bins[name] = {"indices": idx, "values": values}
    model_file.save_model(folder / "bins.gwk", model, arch={"name": "digits_cnn", "num_classes": 10, "in_channels": 1},
                          bins=bins)
    _, meta = io.load_compressed(folder / "bins.gwk")
    assert any(i["encoding"] == "huffman" for i in meta["layers"].values()), meta["layers"]
    return folder


def _first(meta, kind, encoding=None):
    return next(n for n, i in meta["layers"].items() if i["kind"] == kind and (encoding is None or i.get("encoding") == encoding))


def _pq(edit):
    return ("pq.gwk", edit)


def _bins(edit):
    return ("bins.gwk", edit)


GALLERY = {  # name -> (source file, edit(tensors, meta)), the field the message names
    "1e9 classes": (_pq(lambda t, m: m["arch"].update(num_classes=10**9)), "arch.num_classes"),
    "classes unlike the stored classifier": (_pq(lambda t, m: m["arch"].update(num_classes=1000)), "does not fit digits_cnn"),
    "codebook 1e5 x 1e5 x 10": (_pq(lambda t, m: m["layers"][_first(m, "pq")].update(groups=10**5, k=10**5, d=10)),
                                ".k: expected an int >= 1 and <= 65536"),
    "permuted weight shape": (_pq(lambda t, m: m["layers"][_first(m, "pq")].update(
        shape=m["layers"][_first(m, "pq")]["shape"][::-1])), "does not fit digits_cnn"),
    "k smaller than the codebook": (_pq(lambda t, m: m["layers"][_first(m, "pq")].update(k=8)), ".codes: expected"),
    "codes cut short": (_pq(lambda t, m: t.update({_first(m, "pq").rsplit(".", 1)[0] + ".codes":
                                                   t[_first(m, "pq").rsplit(".", 1)[0] + ".codes"][:-3]})), ".codes: expected"),
    "codes_shape beyond the file": (_pq(lambda t, m: m["layers"][_first(m, "pq")].update(
        codes_shape=[10**9, 10**9], shape=[10**9, 10**9 * 4], numel=4 * 10**18)), ".codes: expected 10"),
    "Huffman lengths violating Kraft": (_bins(lambda t, m: m["layers"][_first(m, "bins", "huffman")].update(
        code_lengths=[1] * len(m["layers"][_first(m, "bins", "huffman")]["code_lengths"]))), "Kraft"),
    "Huffman length over the cap": (_bins(lambda t, m: m["layers"][_first(m, "bins", "huffman")]["code_lengths"].__setitem__(0, 60)),
                                    "code_lengths: expected"),
    "Huffman numel beyond its stream": (_bins(lambda t, m: m["layers"][_first(m, "bins", "huffman")].update(
        numel=10**9, shape=[10**9])), "Huffman stream of at least"),
    "bins without room in nbits": (_bins(lambda t, m: m["layers"].update({
        _first(m, "bins"): {**m["layers"][_first(m, "bins")], "encoding": "bitarray", "nbits": 1, "bins": 8}})),
        ".nbits: expected an int in 1..16 with room for 8 bins"),
    "bin values missing": (_bins(lambda t, m: t.pop(_first(m, "bins", "huffman") + ".values")), ".values: missing"),
}

CHILD = r"""
import json, resource, sys, time
from gwkcuda import io, model_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    model_file.load_model(sys.argv[1])
    print(json.dumps({"error": None}))
except io.CompressedFileError as exc:
    print(json.dumps({"error": str(exc), "seconds": time.perf_counter() - t,
                      "grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


@pytest.mark.parametrize("case", sorted(GALLERY))
def test_hostile_file_is_refused_fast_in_bounded_memory(case, files, tmp_path):
    (source, edit), field = GALLERY[case]
    tensors, meta = io.load_compressed(files / source)
    edit(tensors, meta)
    path = tmp_path / "hostile.gwk"
    io.save_compressed(path, tensors, meta)  # valid checksums
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and field in result["error"], (case, result, out.stderr[-500:])
    assert result["seconds"] < 1 and result["grew_mb"] < 200, (case, result)


def test_untouched_files_still_load(files):
    for name in ("pq.gwk", "bins.gwk"):
        model_file.load_model(files / name)


@pytest.mark.parametrize("bins, n", [(1, 50), (2, 1000), (16, 5000), (256, 20000)])
def test_huffman_decode_equals_the_bit_by_bit_reference(bins, n):
    gen = torch.Generator().manual_seed(bins)
    p = torch.rand(bins, generator=gen) ** 4 + 1e-3
    sym = torch.multinomial(p, n, replacement=True, generator=gen)
    lengths = huffman.code_lengths(torch.bincount(sym, minlength=bins).tolist())
    stream = huffman.encode(sym, lengths)
    assert torch.equal(huffman.decode(stream, lengths, n), sym)
    assert torch.equal(reference.huffman_decode(stream, lengths, n), sym)


@pytest.mark.slow
def test_huffman_long_code_words_and_bad_streams():
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    sym = torch.cat([torch.full((c,), i) for i, c in enumerate(fib)])
    lengths = huffman.code_lengths(torch.bincount(sym).tolist())
    assert max(lengths) == 29  # longer than the decoder's 11-bit table: the canonical fallback
    stream = huffman.encode(sym[torch.randperm(len(sym), generator=torch.Generator().manual_seed(0))], lengths)
    decoded = huffman.decode(stream, lengths, len(sym))
    assert torch.equal(decoded, reference.huffman_decode(stream, lengths, len(sym)))
    with pytest.raises(ValueError, match="Kraft"):
        huffman.decode(stream, [1, 1, 1], 5)
    with pytest.raises(ValueError, match="stream ended after"):
        huffman.decode(stream[:100], lengths, 790)
    with pytest.raises(ValueError, match="cannot fit in a stream of 3 bytes"):
        huffman.decode(stream[:3], lengths, 10**6)
    # An incomplete code (Kraft sum < 1): a bit pattern no word matches.
    with pytest.raises(ValueError, match="no code word matches"):
        huffman.decode(torch.tensor([0xFF], dtype=torch.uint8), [2, 2, 0], 3)
