"""Data sets for the pipelines, read from the shared data folder (never bundled with the project).

- CIFAR-10 from its JPEG archive (decoded once, cached as uint8 arrays outside the repository);
- any data set in the canonical IDX format (MNIST and friends), gzipped or not;
- the Free Spoken Digit Dataset as log-spectrograms, with its official split.

The data folder is $GWKCUDA_DATA if set, else ``shared/data`` beside the project checkout. A missing
file raises FileNotFoundError naming the path that was expected.
"""
import gzip
import hashlib
import io as _io
import os
import re
import tarfile
import wave
import zipfile
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def data_root() -> Path:
    """The shared data folder: $GWKCUDA_DATA, else shared/data beside the project checkout."""
    env = os.environ.get("GWKCUDA_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def cache_dir() -> Path:
    """Where decoded arrays are cached: $GWKCUDA_CACHE, else ~/.cache/gwkcuda."""
    path = Path(os.environ.get("GWKCUDA_CACHE", Path.home() / ".cache" / "gwkcuda"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require(path: Path, what: str, root=None) -> Path:
    """path, or FileNotFoundError naming it and how the data folder was chosen (root: the folder
    the caller was given, e.g. --data-root; None: $GWKCUDA_DATA or the default)."""
    if not path.exists():
        if root is not None:
            hint = f"the data folder given ({root}) does not hold it"
        elif os.environ.get("GWKCUDA_DATA"):
            hint = f"$GWKCUDA_DATA = {os.environ['GWKCUDA_DATA']} does not hold it"
        else:
            hint = "pass --data-root (or set GWKCUDA_DATA) to the folder holding the shared data sets"
        raise FileNotFoundError(f"{what} not found: expected {path} ({hint})")
    return path


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


_CACHE_SOURCE = "__source__"  # the array in each cache entry naming the file it was built from


def _cached(name: str, source: Path, build):
    """Arrays built from `source` once, then read from an .npz cache (no pickle). Writing an entry
    removes the entries of the same name that are stale for sure: built from this very file before
    it changed, or from a file that is gone (so that re-extracting the data does not grow the
    cache by a copy each time)."""
    cache = cache_dir() / f"{name}-{_file_key(source)}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            return {k: f[k] for k in f.files if k != _CACHE_SOURCE}
    arrays = build()
    # A temporary file of this process's own (atomic_write), so that runs started together, each
    # building the cache, do not rename one another's file away.
    built_from = str(source.resolve())
    buf = _io.BytesIO()
    np.savez(buf, **arrays, **{_CACHE_SOURCE: np.array(built_from)})
    atomic_write(cache, buf.getvalue())
    _remove_stale_entries(name, built_from, keep=cache)
    return arrays


def _remove_stale_entries(name: str, source: str, keep: Path) -> None:
    """Removes the entries of `name` but `keep` that were built from `source` (the resolved path)
    or from a file that no longer exists."""
    entry = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{16}}\.npz$")
    for path in cache_dir().iterdir():
        if path == keep or not entry.match(path.name):
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                built_from = str(f[_CACHE_SOURCE]) if _CACHE_SOURCE in f.files else None
            if built_from is not None and (built_from == source or not Path(built_from).exists()):
                path.unlink()
        except (OSError, ValueError, zipfile.BadZipFile):  # unreadable, or removed meanwhile: not ours to judge
            pass


def cifar10(split: str = "test", root=None):
    """CIFAR-10 from cifar10-jpeg.tar.gz: (images uint8 [N, 32, 32, 3], labels int64 [N]), ordered
    by file number then class, so that any prefix is class-balanced (deterministic).
    split: "train" (50,000) or "test" (10,000)."""
    if split not in ("train", "test"):
        raise ValueError(f"cifar10: expected split 'train' or 'test', got {split!r}")
    archive = _require(Path(root or data_root()) / "cifar10-jpeg.tar.gz", "CIFAR-10 archive", root)

    def build():
        from PIL import Image
        found = []  # (name, part, label, image); the archive is read as one stream, then sorted
        with tarfile.open(archive, "r|gz") as tar:
            for m in tar:
                if not (m.isfile() and m.name.endswith(".jpg")):
                    continue
                part, cls = m.name.split("/")[-3:-1]
                with Image.open(_io.BytesIO(tar.extractfile(m).read())) as img:
                    pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
                found.append((m.name, part, CIFAR10_CLASSES.index(cls), pixels))
        # By file number, then class: every prefix (e.g. the first 5,000 test images) holds all
        # classes in equal measure, unlike the archive's class-by-class order.
        found.sort(key=lambda item: (Path(item[0]).name, item[0]))
        images = {p: [f[3] for f in found if f[1] == p] for p in ("train", "test")}
        labels = {p: [f[2] for f in found if f[1] == p] for p in ("train", "test")}
        return {f"{p}_{k}": np.stack(v) if k == "images" else np.asarray(v, dtype=np.int64)
                for p in ("train", "test") for k, v in (("images", images[p]), ("labels", labels[p]))}

    arrays = _cached("cifar10-v2", archive, build)
    return torch.from_numpy(arrays[f"{split}_images"]), torch.from_numpy(arrays[f"{split}_labels"])


def cifar10_normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 32, 32, 3] -> float32 [N, 3, 32, 32], normalised with the CIFAR-10 statistics."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def load_idx(path) -> torch.Tensor:
    """A tensor from a file in the IDX format (gzipped or not): uint8, int8, int16, int32,
    float32 or float64 data, any rank."""
    path = _require(Path(path), "IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    rank = data[3]
    if rank < 1 or len(data) < 4 + 4 * rank:
        raise ValueError(f"{path}: truncated IDX file (a header of {rank} dimensions needs {4 + 4 * rank} "
                         f"bytes, the file has {len(data)})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    dtype = np.dtype(dtypes[data[2]])
    expected = int(np.prod(dims, dtype=object))
    have = (len(data) - 4 - 4 * rank) // dtype.itemsize
    if have != expected:
        raise ValueError(f"{path}: {'truncated' if have < expected else 'corrupted'} IDX file ({have} "
                         f"values for shape {dims}, which needs {expected})")
    body = np.frombuffer(data, dtype=dtype, offset=4 + 4 * rank, count=expected)
    return torch.from_numpy(body.reshape(dims).astype(body.dtype.newbyteorder("="))).clone()


def idx_dataset(folder, split: str = "train"):
    """(images, labels) from a folder of IDX files named like MNIST's ({train,t10k}-{images-idx3,
    labels-idx1}-ubyte[.gz])."""
    folder = Path(folder)
    prefix = {"train": "train", "test": "t10k"}[split]
    def find(kind):
        for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
            if (folder / name).exists():
                return folder / name
        raise FileNotFoundError(f"IDX data set: expected {folder / (prefix + '-' + kind + '-ubyte.gz')}")
    images, labels = load_idx(find("images-idx3")), load_idx(find("labels-idx1"))
    if images.dim() not in (3, 4) or labels.dim() != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: inconsistent IDX {split} files: images {list(images.shape)} (expected "
                         f"[N, H, W] or [N, C, H, W]) and labels {list(labels.shape)} (expected [N])")
    if labels.dtype.is_floating_point or (len(labels) and int(labels.min()) < 0):
        raise ValueError(f"{folder}: IDX {split} labels must be non-negative integers")
    return images, labels.long()


FSDD_SAMPLE_RATE = 8000
FSDD_FRAMES = 64  # 64 hops of 128 samples: about one second


FSDD_SPLITS = {"train": (5, 50), "test": (0, 5), "train-fit": (10, 50), "train-val": (5, 10)}


def fsdd_recordings(root=None):
    """Every FSDD recording as float32 audio in [-1, 1]: dict of "audio" [total samples] (all
    recordings end to end, sorted by file name), "offsets" [3001], "digit", "speaker" (an int per
    speaker, by sorted name) and "index" [3000]. Decoded once, cached."""
    archive = _require(Path(root or data_root()) / "fsdd-recordings.tar.gz", "FSDD archive", root)

    def build():
        recordings = []
        with tarfile.open(archive, "r|gz") as tar:  # one stream; sorted afterwards
            for m in tar:
                if m.isfile() and m.name.endswith(".wav"):
                    recordings.append((Path(m.name).stem, tar.extractfile(m).read()))
        recordings.sort()
        speakers = sorted({stem.split("_")[1] for stem, _ in recordings})
        audio, meta = [], []
        for stem, blob in recordings:
            digit, speaker, index = stem.split("_")
            with wave.open(_io.BytesIO(blob)) as w:
                raw, width = w.readframes(w.getnframes()), w.getsampwidth()
            a = np.frombuffer(raw, dtype={1: np.uint8, 2: "<i2"}[width]).astype(np.float32)
            audio.append((a - 128) / 128 if width == 1 else a / 32768)
            meta.append((int(digit), speakers.index(speaker), int(index)))
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in audio])]).astype(np.int64)
        m = np.asarray(meta, dtype=np.int64)
        return {"audio": np.concatenate(audio), "offsets": offsets,
                "digit": m[:, 0], "speaker": m[:, 1], "index": m[:, 2]}

    return _cached("fsdd-audio-v1", archive, build)


def fsdd(split: str = "train", root=None):
    """Free Spoken Digit Dataset as log-spectrograms: (x float32 [N, 1, 129, 64], labels [N]).

    Official split: recordings with index 0-4 are the test set (300), the rest train (2,700).
    For searches that must not see the test set, the train split divides further by recording
    index: "train-fit" (10-49, 2,400) to train on and "train-val" (5-9, 300) to search on.
    Spectrogram: STFT with a 256-sample Hann window and hop 128 at 8 kHz, log(1 + |X|), cropped
    or zero-padded to 64 frames."""
    if split not in FSDD_SPLITS:
        raise ValueError(f"fsdd: expected split one of {', '.join(FSDD_SPLITS)}, got {split!r}")
    archive = _require(Path(root or data_root()) / "fsdd-recordings.tar.gz", "FSDD archive", root)

    def build():
        rec = fsdd_recordings(root)
        window = torch.hann_window(256)
        x = []
        for a, b in zip(rec["offsets"][:-1], rec["offsets"][1:]):
            spec = torch.stft(torch.from_numpy(rec["audio"][a:b]), 256, 128, window=window,
                              return_complex=True).abs().log1p()
            frames = spec[:, :FSDD_FRAMES]
            x.append(torch.nn.functional.pad(frames, (0, FSDD_FRAMES - frames.shape[1])).numpy())
        return {"x": np.stack(x).astype(np.float32), "y": rec["digit"], "index": rec["index"]}

    arrays = _cached("fsdd-v2", archive, build)
    lo, hi = FSDD_SPLITS[split]
    keep = torch.from_numpy((arrays["index"] >= lo) & (arrays["index"] < hi))
    return torch.from_numpy(arrays["x"])[keep].unsqueeze(1), torch.from_numpy(arrays["y"])[keep]


def digits(split: str = "train"):
    """scikit-learn's bundled 8x8 digits (1,797 images, no download): (x float32 [N, 1, 8, 8] in
    [0, 1], labels int64 [N]); a fixed stratified split, 1,347 train / 450 test."""
    if split not in ("train", "test"):
        raise ValueError(f"digits: expected split 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    parts = train_test_split(x, bunch.target, test_size=450, stratify=bunch.target, random_state=0)
    x_part, y_part = (parts[0], parts[2]) if split == "train" else (parts[1], parts[3])
    return torch.from_numpy(x_part).unsqueeze(1), torch.from_numpy(y_part.astype(np.int64))


DATASET_NAMES = ("digits", "cifar10", "fsdd", "mnist")


def load_dataset(name, split: str = "test", root=None):
    """A data set ready for a model: (x float32 [N, C, H, W], labels int64 [N]).

    name: "digits" (scikit-learn, no files needed), "cifar10" (normalised per channel), "fsdd"
    (log-spectrograms), "mnist" (the IDX files in the data folder's mnist/), or the path of a
    folder of IDX files named like MNIST's (images scaled to [0, 1]).
    split: "train" or "test". A missing file raises FileNotFoundError naming the expected path."""
    if split not in ("train", "test"):
        raise ValueError(f"load_dataset: expected split 'train' or 'test', got {split!r}")
    root = Path(root or data_root())
    if name == "digits":
        return digits(split)
    if name == "cifar10":
        images, labels = cifar10(split, root)
        return cifar10_normalize(images), labels
    if name == "fsdd":
        return fsdd(split, root)
    folder = root / "mnist" if name == "mnist" else Path(name)
    if name != "mnist" and not folder.is_dir():
        raise FileNotFoundError(f"unknown data set {name!r}: expected one of {', '.join(DATASET_NAMES)} "
                                "or a folder of IDX files")
    images, labels = idx_dataset(folder, split)
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return (x.unsqueeze(1) if x.dim() == 3 else x), labels
