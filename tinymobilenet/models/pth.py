"""Reading PyTorch checkpoints (``.pth`` / ``.pt``) with NumPy alone, safely.

    >>> state = pth.load("mobilenet_v2-7ebf99e0.pth")      # {name: ndarray}, no torch needed

What a ``.pth`` file is
-----------------------
``torch.save(obj, f)`` *pickles* ``obj``: usually a state dict, an ``OrderedDict`` from
parameter names to tensors. A tensor is a view into a *storage*, a flat buffer of
elements of one dtype: its shape, strides (in elements) and storage offset say which
elements it sees, so several tensors may view one storage (a slice, a transpose, weights
tied between two layers). The numbers themselves are kept out of the pickle. Each storage
appears in it only as a *persistent id*, a tuple the pickler emits instead of the object::

    ("storage", storage_type, key, location, numel)     e.g. ("storage", FloatStorage, "0", "cpu", 12)

``storage_type`` names the element type (``torch.FloatStorage`` = float32 ...; newer
files write ``torch.storage.UntypedStorage``, whose ``numel`` counts bytes, and give the
dtype in the tensor's rebuild call), ``key`` finds the raw bytes beside the pickle. A
tensor is pickled as a call to be made when loading::

    torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
                                    requires_grad, backward_hooks)

torch writes two layouts around this pickle.

*Zip archive* (torch >= 1.6, the default)::

    archive/data.pkl      the pickle (protocol 2); ``archive`` is any folder name
    archive/data/0        storage "0": its raw bytes, nothing else
    archive/data/1        ...
    archive/byteorder     "little" or "big" (files before torch 1.10 have none: little)
    archive/version       the format version (3)

*Legacy stream* (torch < 1.6, or ``torch.save(..., _use_new_zipfile_serialization=False)``;
torchvision's older files and many ported checkpoints use it): five pickles in a row, then
raw data::

    pickle   the magic number 0x1950a86a20f9469cfc6c
    pickle   the protocol version, 1001
    pickle   system info {"protocol_version", "little_endian", "type_sizes"}
    pickle   the object; its persistent ids carry a sixth field, view metadata
             (view_key, offset, numel) for a storage that is a slice of another, or None
    pickle   the list of storage keys
    then, for each key in that list: an int64 element count and the storage's raw bytes
    (both little-endian, whatever the machine that wrote them)

Why unpickling needs care
-------------------------
A pickle is a program for a small stack machine, and two of its instructions make it
dangerous: ``GLOBAL module name`` imports *any* attribute of *any* module, and ``REDUCE``
calls the callable on top of the stack with a tuple of arguments. ``GLOBAL os system``
followed by ``REDUCE`` on ``("rm -rf ~",)`` is a complete attack, run by ``pickle.load``
before it returns anything. A ``.pth`` from the internet must not be unpickled plainly.

This module's :class:`Unpickler` overrides ``find_class``, the one place where the
unpickler turns a (module, name) pair into an object: it answers only the names in
:data:`ALLOWED_GLOBALS` (a state dict's needs, the same idea as
``torch.load(weights_only=True)``) and maps each to a function *of this module* that
records what it was given (tensor rebuilds return a placeholder; storage types and dtypes
are inert records). Every other global raises :class:`UnsafeCheckpointError` naming it,
before anything is called. Persistent ids are checked field by field, and every tensor's
offset, shape and strides are checked against its storage's size before NumPy sees them,
so a hostile view cannot read outside its storage either. Each pickle is first decoded
once without being run (``pickletools.genops``), which checks every length field against
the bytes really there: a corrupt file is then one clear error, not a huge allocation.

What comes back
---------------
Tensors become NumPy arrays with the stored dtype (float32, float16, float64, int64,
int32, int16, int8, uint8, bool, uint16/32/64, complex64/128), shape and strides. Tensors
viewing one storage share its memory as they do in torch (each storage's bytes are read
from the file once, into a writable buffer). bfloat16 has no NumPy dtype: its values are
returned exactly as float32 (a bfloat16 is the top half of a float32). Dtypes NumPy
cannot hold (float8, quantized, complex32) are refused with an error naming them.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import zipfile
import zlib


from ._pth_pickle import (ALLOWED_GLOBALS, CheckpointFormatError, Unpickler,
                          UnsafeCheckpointError, _materialize, _text)

__all__ = ["load", "Unpickler", "ALLOWED_GLOBALS", "CheckpointFormatError",
           "UnsafeCheckpointError"]


# ---- the two layouts ----------------------------------------------------------------------
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# what a damaged file can raise while being parsed; each becomes one CheckpointFormatError
_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                 IndexError, AttributeError, OverflowError, RecursionError, struct.error,
                 zipfile.BadZipFile, zlib.error, RuntimeError, LookupError, OSError,
                 MemoryError)        # MemoryError: a corrupt length field asks for any amount


def load(path):
    """Read a PyTorch ``.pth``/``.pt`` file (either layout) without torch and without
    running anything from it: what ``torch.load(path, weights_only=True)`` returns, with
    each tensor an ``ndarray`` (its dtype, shape and strides; tensors that share a storage
    share memory).

    A state dict comes back as an ``OrderedDict`` ``{name: ndarray}``; dicts, lists,
    tuples, numbers and strings come back as themselves.

    Raises ``FileNotFoundError`` for a missing file, :class:`UnsafeCheckpointError` for a
    pickle that asks for any global outside :data:`ALLOWED_GLOBALS`, and
    :class:`CheckpointFormatError` (a ``ValueError``) for a truncated or corrupt file;
    every message starts with the file name.
    """
    path = os.fspath(path)
    label = path
    with open(path, "rb") as f:          # FileNotFoundError / IsADirectoryError name it
        head = f.read(512)
        f.seek(0)
        try:
            if not head:
                raise CheckpointFormatError("empty file")
            if head.startswith(b"PK"):
                return _load_zip(f, label)
            if len(head) >= 262 and head[257:262] == b"ustar":
                raise CheckpointFormatError(
                    "a tar archive: the layout of torch < 0.4, which this reader does not "
                    "read; load it with that torch and save it again")
            return _load_legacy(f, label)
        except CheckpointFormatError as e:
            raise _named(e, label) from None
        except _PARSE_ERRORS as e:
            raise CheckpointFormatError(f"{label}: truncated or corrupt PyTorch checkpoint "
                                        f"({type(e).__name__}: {e})") from None


def _named(error, label):
    """The same error with the file name in front (once)."""
    text = str(error)
    return error if text.startswith(label + ":") else type(error)(f"{label}: {text}")


# deflate's largest ratio of output to input bytes (RFC 1951's longest match, 258 bytes,
# coded in as little as 2 bits, plus block overhead): 1032:1
_DEFLATE_MOST = 1032


def _load_zip(f, label):
    archive_size = f.seek(0, io.SEEK_END)
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointFormatError("a zip archive without one <archive>/data.pkl: not a "
                                        "PyTorch checkpoint")
        prefix = pickles[0][:-len("data.pkl")]
        names = set(zf.namelist())
        if prefix + "constants.pkl" in names:
            raise CheckpointFormatError("a TorchScript archive (torch.jit.save), not a "
                                        "torch.save checkpoint")
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointFormatError(f"byteorder record says {byteorder!r}")
        storages = {}
        obj = _unpickle(io.BytesIO(zf.read(pickles[0])), label, storages)

        def read(storage):
            name = f"{prefix}data/{storage.key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise CheckpointFormatError(f"storage {storage.key!r} ({name}) is missing") \
                    from None
            if info.file_size != storage.nbytes:       # checked before anything is read
                raise CheckpointFormatError(f"storage {storage.key!r} has {info.file_size} "
                                            f"bytes, its tensors need {storage.nbytes}")
            # the directory's sizes are the file's word: an entry's bytes must fit in the
            # file, and inflate to at most what deflate can (~1032:1; stored: 1:1), before
            # its storage is allocated
            most = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED
                                         else _DEFLATE_MOST) + 64
            if info.compress_size > archive_size or info.file_size > most:
                raise CheckpointFormatError(
                    f"storage {storage.key!r} claims {info.file_size} bytes from "
                    f"{info.compress_size} in a file of {archive_size}: a corrupt directory")
            buf = bytearray(storage.nbytes)
            with zf.open(info) as data:
                if data.readinto(buf) != len(buf):
                    raise CheckpointFormatError(f"storage {storage.key!r} is truncated")
            return buf

        return _materialize(obj, {k: read(s) for k, s in storages.items()}, byteorder)


def _unpickle(f, label, storages=None, legacy=False):
    """One pickle from ``f`` through :class:`Unpickler`, after a dry pass.

    The dry pass, ``pickletools.genops``, decodes the opcodes without executing any and
    checks every length field against the bytes actually there. Without it a corrupt
    length (a ``BYTEARRAY8`` of 10**18 bytes) makes the C unpickler allocate first and
    fail late and noisily."""
    start = f.tell()
    try:
        for _ in pickletools.genops(f):
            pass
    except ValueError as e:               # genops' word for a malformed opcode stream
        raise CheckpointFormatError(f"truncated or corrupt pickle ({e})") from None
    f.seek(start)
    return Unpickler(f, label, storages, legacy).load()


class _Bounded:
    """The file ``f`` with every read capped at the bytes left in it: a corrupt length
    field in a pickle then gives "truncated" instead of a read of gigabytes. Keeps its own
    position (``BufferedReader.tell`` costs more than a small read)."""

    def __init__(self, f):
        self.f, self.size, self.pos = f, os.fstat(f.fileno()).st_size, f.tell()

    def read(self, n=-1):
        left = max(0, self.size - self.pos)
        data = self.f.read(left if n is None or n < 0 else min(n, left))
        self.pos += len(data)
        return data

    def readline(self, n=-1):
        line = self.f.readline(n)
        self.pos += len(line)
        return line

    def readinto(self, buf):
        n = self.f.readinto(buf)
        self.pos += n
        return n

    def peek(self, n=1):
        # lets the C unpickler read ahead from the buffer (many times faster than a
        # Python-level read per opcode); a buffered peek never allocates more than its buffer
        return self.f.peek(n)

    def tell(self):
        return self.pos

    def seek(self, pos):
        self.pos = self.f.seek(pos)
        return self.pos


def _load_legacy(f, label):
    f = _Bounded(f)

    def header():
        return _unpickle(f, label)                 # restricted too: any pickle can attack

    magic = header()
    if magic != _LEGACY_MAGIC:
        raise CheckpointFormatError("not a PyTorch checkpoint (neither a zip archive nor a "
                                    "legacy stream: no magic number)")
    version = header()
    if version != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"legacy protocol version {version!r}, expected "
                                    f"{_LEGACY_PROTOCOL}")
    info = header()
    if not isinstance(info, dict):
        raise CheckpointFormatError("legacy system info is not a dict")
    storages = {}
    obj = _unpickle(f, label, storages, legacy=True)
    keys = _unpickle(f, label)
    if not isinstance(keys, list):
        raise CheckpointFormatError("legacy storage key list is not a list")
    data = {}
    for key in keys:
        key = _text(key)
        storage = storages.get(key)
        if storage is None or key in data:
            raise CheckpointFormatError(f"storage key {key!r} in the key list does not match "
                                        f"the pickle")
        (count,) = struct.unpack("<q", _read_exactly(f, 8, key))
        if count != storage.numel:
            raise CheckpointFormatError(f"storage {key!r} holds {count} elements, its "
                                        f"tensors need {storage.numel}")
        if f.tell() + storage.nbytes > f.size:        # checked before allocating
            raise CheckpointFormatError(f"storage {key!r} is truncated")
        buf = bytearray(storage.nbytes)
        if f.readinto(buf) != len(buf):
            raise CheckpointFormatError(f"storage {key!r} is truncated")
        data[key] = buf
    # torch ignores sys_info's byte order and reads the data as little-endian: so do we
    return _materialize(obj, data, "little")


def _read_exactly(f, n, key):
    chunk = f.read(n)
    if len(chunk) != n:
        raise CheckpointFormatError(f"storage {key!r} is truncated")
    return chunk


