"""Read TensorFlow checkpoints without TensorFlow.

A TF1/TF2 checkpoint (format V2, the default since TF 1.0) is a "tensor bundle": ``PREFIX.index``, a
LevelDB-style sorted table mapping each variable name to a small protobuf record (dtype, shape, shard,
offset, size, CRC32C), plus ``PREFIX.data-0000i-of-0000n`` files holding the raw little-endian bytes.
This module parses both, checks every block and tensor against its CRC, and returns numpy arrays.

HFL's PERT releases rename the files (``pert_model.ckpt`` is the data shard, ``pert_model.index`` the
index); :func:`find_checkpoint` accepts that naming as well as TensorFlow's own.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes masked CRC32C
# TensorFlow DataType enum -> numpy dtype; bfloat16 (14) is widened to float32 on read.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("float32"), 2: np.dtype("float64"), 3: np.dtype("int32"), 4: np.dtype("uint8"),
    5: np.dtype("int16"), 6: np.dtype("int8"), 9: np.dtype("int64"), 10: np.dtype("bool"),
    14: np.dtype("uint16"), 17: np.dtype("uint16"), 19: np.dtype("float16"), 22: np.dtype("uint32"),
    23: np.dtype("uint64"),
}
_DT_BFLOAT16 = 14
_DT_NAMES = {7: "string", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


def _unmask(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _crc_ok(data: bytes | memoryview, masked: int) -> bool:
    return google_crc32c.value(bytes(data)) == _unmask(masked)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end of its buffer")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varint/fixed fields, bytes for the rest."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("protobuf field runs past the end of its record")
        yield number, value


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lies in the data shards."""

    name: str
    dtype: int  # TensorFlow DataType enum value
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # masked, as TensorFlow stores it
    sliced: bool  # a partitioned variable (its slices are stored under other keys)

    @property
    def numpy_dtype(self) -> np.dtype | None:
        return _DTYPES.get(self.dtype)

    @property
    def dtype_name(self) -> str:
        if self.dtype == _DT_BFLOAT16:
            return "bfloat16"
        dt = self.numpy_dtype
        return str(dt) if dt is not None else _DT_NAMES.get(self.dtype, f"dtype {self.dtype}")


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    dtype, shape, shard, offset, size, crc, sliced = 0, (), 0, 0, 0, None, False
    for number, value in _proto_fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:
            dims = []
            for n, dim in _proto_fields(value):
                if n == 2:
                    dims.append(next((_int64(v) for k, v in _proto_fields(dim) if k == 1), 0))
            shape = tuple(dims)
        elif number == 3:
            shard = value
        elif number == 4:
            offset = _int64(value)
        elif number == 5:
            size = _int64(value)
        elif number == 6:
            crc = value
        elif number == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard, offset, size, crc, sliced)


def _table_items(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """All (key, value) pairs of a LevelDB-format table file, in key order; CRCs checked."""
    buf = path.read_bytes()
    if len(buf) < _FOOTER_LEN or struct.unpack_from("<Q", buf, len(buf) - 8)[0] != _TABLE_MAGIC:
        raise ValueError(f"{path}: not a TensorFlow checkpoint index (missing table footer; truncated?)")
    pos = len(buf) - _FOOTER_LEN
    _, pos = _varint(buf, pos)  # metaindex handle: unused by tensor bundles
    _, pos = _varint(buf, pos)
    index_offset, pos = _varint(buf, pos)
    index_size, _ = _varint(buf, pos)

    def block(offset: int, size: int) -> bytes:
        end = offset + size
        if end + _BLOCK_TRAILER > len(buf):
            raise ValueError(f"{path}: block at byte {offset} runs past the end of the file (truncated?)")
        data = buf[offset:end]
        kind = buf[end]
        (masked,) = struct.unpack_from("<I", buf, end + 1)
        if not _crc_ok(data + bytes([kind]), masked):
            raise ValueError(f"{path}: block at byte {offset} fails its CRC check (corrupt file)")
        if kind != 0:
            raise ValueError(f"{path}: block at byte {offset} is compressed (type {kind}); TensorFlow "
                             "writes checkpoint indexes uncompressed, so this is not a tensor bundle index")
        return data

    def entries(data: bytes) -> Iterator[tuple[bytes, bytes]]:
        (restarts,) = struct.unpack_from("<I", data, len(data) - 4)
        end = len(data) - 4 - 4 * restarts
        pos, key = 0, b""
        while pos < end:
            shared, pos = _varint(data, pos)
            unshared, pos = _varint(data, pos)
            vlen, pos = _varint(data, pos)
            key = key[:shared] + data[pos:pos + unshared]
            pos += unshared
            yield key, data[pos:pos + vlen]
            pos += vlen

    for _, handle in entries(block(index_offset, index_size)):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        yield from entries(block(offset, size))


def find_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(index file, prefix) of a checkpoint given as a folder, a prefix, or one of its files.

    Accepts TensorFlow's naming (``model.ckpt-100.index`` + ``model.ckpt-100.data-00000-of-00001``)
    and the renamed files of HFL's releases (``pert_model.index`` + ``pert_model.ckpt``).
    """
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            m = re.search(r'^model_checkpoint_path:\s*"(.+)"', state.read_text("utf-8", "replace"), re.M)
            if m:  # TensorFlow often records an absolute path of the machine that trained
                named = Path(m.group(1))
                for prefix in ((named if named.is_absolute() else path / named), path / named.name):
                    if Path(str(prefix) + ".index").is_file():
                        return Path(str(prefix) + ".index"), prefix
        indexes = sorted(path.glob("*.index"))
        if not indexes:
            raise FileNotFoundError(f"{path}: no TensorFlow checkpoint here (no *.index file)")
        if len(indexes) > 1:
            raise ValueError(f"{path}: several checkpoints ({', '.join(p.name for p in indexes)}); "
                             "pass the prefix of the one to convert, e.g. "
                             f"{indexes[-1].with_suffix('')}")
        return indexes[0], indexes[0].with_suffix("")
    name = str(path)
    if name.endswith(".index"):
        prefix = Path(name[: -len(".index")])
    elif _DATA_SUFFIX.search(name):
        prefix = Path(_DATA_SUFFIX.sub("", name))
    elif name.endswith(".meta"):
        prefix = Path(name[: -len(".meta")])
    else:
        prefix = path
    candidates = [Path(str(prefix) + ".index")]
    if prefix.suffix == ".ckpt":  # HFL's release: pert_model.ckpt (data) beside pert_model.index
        candidates.append(prefix.with_suffix(".index"))
    for index in candidates:
        if index.is_file():
            return index, prefix
    raise FileNotFoundError(f"{path}: checkpoint index not found (looked for "
                            f"{' and '.join(c.name for c in candidates)} in {prefix.parent})")


class TFCheckpoint:
    """Variables of a TensorFlow V2-format checkpoint, read lazily."""

    def __init__(self, path: str | Path):
        self.index_file, self.prefix = find_checkpoint(path)
        self.entries: dict[str, TensorEntry] = {}
        num_shards, big_endian = 1, False
        for key, value in _table_items(self.index_file):
            try:
                if key == b"":  # the bundle header
                    for number, v in _proto_fields(value):
                        if number == 1:
                            num_shards = v
                        elif number == 2:
                            big_endian = v == 1
                    continue
                name = key.decode("utf-8")
                self.entries[name] = _parse_entry(name, value)
            except (ValueError, UnicodeDecodeError, struct.error) as e:
                raise ValueError(f"{self.index_file}: unreadable record for {key[:80]!r}: {e}") from e
        if not self.entries:
            raise ValueError(f"{self.index_file}: the checkpoint index lists no variables")
        self.num_shards = num_shards
        self.byte_order = ">" if big_endian else "<"
        self._data_files: dict[int, Path] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def data_file(self, shard: int) -> Path:
        """Data shard ``shard``; a one-shard release may also name it ``PREFIX`` itself or ``STEM.ckpt``."""
        if shard in self._data_files:
            return self._data_files[shard]
        prefix = self.prefix
        candidates = [Path(f"{prefix}.data-{shard:05d}-of-{self.num_shards:05d}")]
        if self.num_shards == 1:
            candidates += [prefix, prefix.with_suffix(".ckpt"), prefix.with_suffix(".data")]
        for c in candidates:
            if c.is_file() and c.suffix not in (".index", ".meta"):
                self._data_files[shard] = c
                return c
        raise FileNotFoundError(f"{self.index_file}: data shard {shard} of {self.num_shards} not found "
                                f"(looked for {', '.join(dict.fromkeys(c.name for c in candidates))})")

    def read(self, name: str) -> np.ndarray:
        """The value of one variable, CRC-checked; bfloat16 comes back as float32."""
        if name not in self.entries:
            raise KeyError(f"{self.index_file}: no variable {name!r} in this checkpoint")
        e = self.entries[name]
        if e.sliced:
            raise ValueError(f"{self.index_file}: variable {name} is partitioned into slices; "
                             "re-save it unpartitioned to convert it")
        dtype = e.numpy_dtype
        if dtype is None:
            raise ValueError(f"{self.index_file}: variable {name} has {e.dtype_name} values, which pert "
                             "does not read (only numeric tensors)")
        count = int(np.prod(e.shape, dtype=np.int64))
        if any(d < 0 for d in e.shape) or e.size != count * dtype.itemsize:
            raise ValueError(f"{self.index_file}: variable {name} records {e.size} bytes for shape "
                             f"{list(e.shape)} of {e.dtype_name}; the index is corrupt")
        data_file = self.data_file(e.shard)
        with open(data_file, "rb") as f:
            f.seek(e.offset)
            raw = f.read(e.size)
        if len(raw) != e.size:
            raise ValueError(f"{data_file}: truncated: variable {name} needs bytes {e.offset}.."
                             f"{e.offset + e.size} but the file has {data_file.stat().st_size} bytes")
        if e.crc32c is not None and not _crc_ok(raw, e.crc32c):
            raise ValueError(f"{data_file}: variable {name} fails its CRC check (corrupt data file)")
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder(self.byte_order)).reshape(e.shape)
        if e.dtype == _DT_BFLOAT16:  # the upper half of a float32
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(dtype, copy=True)
