"""The compressed-model file: a safetensors file with a compact gwkcuda header.

Layout (format version 3): the caller's tensors are concatenated, one flat safetensors tensor per
dtype (``float32``, ``uint8``, ...); the safetensors ``__metadata__`` holds one key, ``gwkcuda``:
"3:" and the header as zlib-compressed, base64-encoded JSON (one key: safetensors writes several
in no fixed order, and equal models must give equal files)::

    {"format_version": 3,
     "meta": {...},            # the caller's metadata (JSON values)
     "index": {dtype: [[name, shape], ...]},   # each blob's tensors, back to back in this order
     "payload_sha256": hex,    # over every blob's dtype, shape and bytes, in dtype order
     "checksum": hex}          # sha256 of the four fields above

so a flipped byte anywhere (payload, header or the caller's metadata) is detected on load. Why one
blob per dtype and a compressed header: a ResNet-20 compressed 35x is about 30 KB, and a plain
safetensors header (name, dtype, shape and offsets of ~130 tensors) was 14 KB of it; this header is
about 2 KB. Version 2 files (one safetensors tensor per tensor, plain JSON header) still load.
Saving is atomic: the bytes go to a temporary file in the target folder, are fsync'ed, then
renamed over the final name, so an interrupted save never leaves a partial file under that name
and never destroys an existing one. The temporary file's name carries the writer's process id;
one left behind by a killed writer is removed by the next save into that folder. No pickle is
involved.

Loading trusts nothing in the file: only regular files are read, the header decompresses to at
most MAX_HEADER_BYTES, and every field has its JSON type checked before it is used.
"""
import base64
import binascii
import hashlib
import json
import math
import os
import re
import stat
import tempfile
import zlib

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
_META_KEY = "gwkcuda"
MAX_HEADER_BYTES = 16 << 20  # a ResNet-20's header is 2 KB; a crafted one must not inflate to GBs
_TMP_TAG = "gwkcuda-"  # temporary files: .NAME.gwkcuda-PID-RANDOM.tmp
_TMP_PATTERN = re.compile(r"^\..+\.gwkcuda-(\d+)-[^.]+\.tmp$")


class CompressedFileError(ValueError):
    """A compressed-model file that cannot be read: truncated, corrupted, or of another version."""


def _payload_digest(tensors: dict) -> str:
    """sha256 over each tensor's name, dtype, shape and raw bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, dtype_name(t.dtype), list(t.shape)]).encode())
        # Raw bytes through a uint8 view: works for every dtype, bfloat16 included.
        raw = t.reshape(-1).view(torch.uint8) if t.numel() else t.new_empty(0, dtype=torch.uint8)
        h.update(raw.numpy().tobytes())
    return h.hexdigest()


def _header_checksum(header: dict) -> str:
    body = {k: header[k] for k in ("format_version", "meta", "index", "payload_sha256") if k in header}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def save_compressed(path, tensors: dict, meta: dict) -> None:
    """Writes ``tensors`` and ``meta`` to ``path`` atomically.

    Args:
        path: destination file; its folder must exist. An existing file is replaced only once the
            new one is complete on disk.
        tensors: name -> Tensor (any dtype and shape, any device; stored from CPU, contiguous).
        meta: JSON-serialisable dict (config, per-layer facts, ...), returned as is by load.
    """
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in tensors.items()):
        raise TypeError("save_compressed: expected tensors as a dict of str -> torch.Tensor, got "
                        f"{type(tensors).__name__}")
    if not isinstance(meta, dict):
        raise TypeError(f"save_compressed: expected meta as a dict, got {type(meta).__name__}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save_compressed: meta must be JSON-serialisable: {exc}") from exc

    blobs, index = _pack(tensors)
    header = {"format_version": FORMAT_VERSION, "meta": meta, "index": index,
              "payload_sha256": _payload_digest(blobs)}
    header["checksum"] = _header_checksum(header)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER_BYTES:  # a file this gwkcuda would refuse to read
        raise ValueError(f"save_compressed: the header would take {len(text)} bytes, more than the "
                         f"{MAX_HEADER_BYTES} a reader accepts; store large values as tensors")
    packed = base64.b64encode(zlib.compress(text, 9)).decode("ascii")
    payload = _st_save(blobs, metadata={_META_KEY: f"{FORMAT_VERSION}:{packed}"})
    atomic_write(os.fspath(path), payload)


def _pack(tensors: dict):
    """name -> tensor  ->  (dtype name -> flat blob, index {dtype name: [[name, shape], ...]}):
    each dtype's tensors lie back to back in its blob in index order, so no offsets are stored."""
    parts, index = {}, {}
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        dtype = dtype_name(t.dtype)
        index.setdefault(dtype, []).append([name, list(t.shape)])
        parts.setdefault(dtype, []).append(t.reshape(-1))
    return {dtype: torch.cat(ts) for dtype, ts in parts.items()}, index


def _unpack(path: str, blobs: dict, index: dict) -> dict:
    tensors = {}
    try:
        if sorted(index) != sorted(blobs):
            raise ValueError(f"blobs {sorted(blobs)} for an index of {sorted(index)}")
        for dtype, entries in index.items():
            blob, offset = blobs[dtype], 0
            for name, shape in entries:
                numel = math.prod(shape)
                tensors[name] = blob[offset:offset + numel].reshape(shape)
                offset += numel
            if offset != blob.numel():
                raise ValueError(f"the {dtype} blob holds {blob.numel()} values, the index {offset}")
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CompressedFileError(f"{path}: corrupted tensor index ({exc})") from exc
    return tensors


def _file_mode(path: str) -> int:
    """The mode of the file being replaced, else what a plain open() would give (0666 & ~umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists under another user (or cannot be asked): leave its files alone
    return True


def remove_stale_temporaries(folder: str) -> list:
    """Deletes this tool's temporary files in ``folder`` whose writing process no longer exists
    (left by a kill inside a save); returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP_PATTERN.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def atomic_write(path, payload: bytes) -> None:
    """Writes ``payload`` to ``path`` atomically: a temporary file in the same folder, fsync'ed,
    then renamed over ``path`` (an existing file is replaced only once the new one is complete)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    remove_stale_temporaries(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{_TMP_TAG}{os.getpid()}-",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; a saved model is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        # Interrupted (error, KeyboardInterrupt): drop the partial file, keep any old one.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data itself is already synced


_KINDS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"PK\x03\x04", "a zip archive "
          "(a torch.save checkpoint is one)"), (b"\x1f\x8b", "a gzip file"), (b"%PDF", "a PDF"),
          (b"\x7fELF", "an executable"), (b"\x80", "a pickle"), (b"{", "JSON text"), (b"[", "JSON text"))


def _looks_like(data: bytes) -> str:
    """What a file that is not safetensors looks like, from its first bytes."""
    for magic, kind in _KINDS:
        if data.startswith(magic):
            return kind
    return "neither safetensors nor a known kind"


def _read_header(path: str, data: bytes) -> dict:
    if len(data) < 9:
        raise CompressedFileError(f"{path}: truncated ({len(data)} bytes; not even a header length)")
    if data[8:9] != b"{":  # safetensors: an 8-byte length, then its JSON header
        raise CompressedFileError(f"{path}: not a gwkcuda file: it looks like {_looks_like(data.lstrip())}")
    n = int.from_bytes(data[:8], "little")
    if 8 + n > len(data):
        raise CompressedFileError(f"{path}: truncated or corrupted (header says {n} bytes, file has "
                                  f"{len(data) - 8} after the length)")
    try:
        st_meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
        if _META_KEY not in st_meta:
            raise CompressedFileError(f"{path}: not a gwkcuda file: a safetensors file without gwkcuda's header")
        text = st_meta[_META_KEY]
        if not text.startswith("{"):  # version 3 and later: "VERSION:base64(zlib(JSON))"
            version, _, packed = text.partition(":")
            if version != str(FORMAT_VERSION):
                raise CompressedFileError(f"{path}: unsupported format version {version}; this gwkcuda "
                                          f"reads versions {', '.join(map(str, READABLE_VERSIONS))}")
            text = _inflate(path, base64.b64decode(packed, validate=True))
        # else version 2: plain JSON
        header = json.loads(text)
    except RecursionError:
        raise CompressedFileError(f"{path}: corrupted header (JSON nested too deeply)") from None
    except (ValueError, KeyError, TypeError, AttributeError, zlib.error, binascii.Error) as exc:
        if isinstance(exc, CompressedFileError):
            raise
        raise CompressedFileError(f"{path}: not a readable gwkcuda compressed file (corrupted "
                                  f"header: {exc!r})") from exc
    if not isinstance(header, dict) or "format_version" not in header:
        raise CompressedFileError(f"{path}: corrupted header (no format_version)")
    if header["format_version"] not in READABLE_VERSIONS:
        raise CompressedFileError(f"{path}: unsupported format version {header['format_version']!r}; "
                                  f"this gwkcuda reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    keys = ("meta", "index", "payload_sha256", "checksum") if header["format_version"] == 3 else \
        ("meta", "payload_sha256", "checksum")
    for key in keys:
        if key not in header:
            raise CompressedFileError(f"{path}: corrupted header (no {key!r})")
    for key, kind in (("meta", dict), ("payload_sha256", str), ("checksum", str), ("index", dict)):
        if key in header and not isinstance(header[key], kind):
            raise CompressedFileError(f"{path}: corrupted header ({key!r} is a {type(header[key]).__name__}, "
                                      f"expected a {kind.__name__})")
    if _header_checksum(header) != header["checksum"]:
        raise CompressedFileError(f"{path}: corrupted header (checksum mismatch)")
    if "index" in header:
        _check_index(path, header["index"])
    return header


def _inflate(path: str, packed: bytes) -> bytes:
    """zlib-decompresses the header, refusing more than MAX_HEADER_BYTES (a decompression bomb)."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(packed, MAX_HEADER_BYTES + 1)
    if len(text) > MAX_HEADER_BYTES or inflater.unconsumed_tail:
        raise CompressedFileError(f"{path}: corrupted header (it decompresses to more than "
                                  f"{MAX_HEADER_BYTES} bytes)")
    return text


def _check_index(path: str, index: dict) -> None:
    """index: {dtype name: [[tensor name, shape], ...]} with shapes of non-negative ints."""
    for dtype, entries in index.items():
        if not isinstance(entries, list):
            raise CompressedFileError(f"{path}: corrupted tensor index (entry {dtype!r} is not a list)")
        for entry in entries:
            ok = (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                  and isinstance(entry[1], list)
                  and all(type(n) is int and n >= 0 for n in entry[1]))
            if not ok:
                raise CompressedFileError(f"{path}: corrupted tensor index (expected [name, shape] with a "
                                          f"shape of non-negative ints, got {str(entry)[:80]})")


def load_compressed(path):
    """Reads a file written by :func:`save_compressed`.

    Returns:
        (tensors, meta): name -> CPU Tensor, and the caller's metadata dict.
    Raises:
        FileNotFoundError if ``path`` does not exist; CompressedFileError if the file is
        truncated, corrupted (any payload or header byte changed) or of an unknown format version.
    """
    path = os.fspath(path)
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, /dev/zero never end
        raise CompressedFileError(f"{path}: not a regular file")
    with open(path, "rb") as f:
        data = f.read()
    header = _read_header(path, data)
    try:
        stored = _st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CompressedFileError(f"{path}: truncated or corrupted tensor data ({exc})") from exc
    if _payload_digest(stored) != header["payload_sha256"]:
        raise CompressedFileError(f"{path}: tensor data is corrupted (checksum of the tensors' names, "
                                  "dtypes, shapes and bytes differs from the header)")
    if header["format_version"] == 2:
        return stored, header["meta"]
    return _unpack(path, stored, header["index"]), header["meta"]
