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

import collections
import io
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["load", "Unpickler", "ALLOWED_GLOBALS", "CheckpointFormatError",
           "UnsafeCheckpointError"]


class CheckpointFormatError(ValueError):
    """A file that is not a readable PyTorch checkpoint: truncated, corrupt, or holding
    something a state dict never holds. The message starts with the file name."""


class UnsafeCheckpointError(CheckpointFormatError):
    """The file's pickle asks for a global outside :data:`ALLOWED_GLOBALS`: loading it
    could run code, so it is refused (nothing from it has been called)."""


# ---- dtypes -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DType:
    """A torch dtype as the file names it (``torch.float32``): ``numpy`` is the NumPy
    type of one stored element, byte order left out (bfloat16 is stored as ``u2``).

    Frozen with slots (no ``__dict__``), so a hostile pickle's BUILD cannot modify it."""
    name: str
    numpy: str

    @property
    def itemsize(self) -> int:
        return np.dtype(self.numpy).itemsize


_DTYPES = {d.name: d for d in (
    DType("float32", "f4"), DType("float64", "f8"), DType("float16", "f2"),
    DType("bfloat16", "u2"),
    DType("int64", "i8"), DType("int32", "i4"), DType("int16", "i2"), DType("int8", "i1"),
    DType("uint8", "u1"), DType("uint16", "u2"), DType("uint32", "u4"), DType("uint64", "u8"),
    DType("bool", "?"), DType("complex64", "c8"), DType("complex128", "c16"))}

# torch's other dtypes (torch 2.13): real torch names, so refused as "no NumPy equivalent"
# rather than as unsafe globals
_NO_NUMPY_DTYPES = frozenset(
    ["complex32", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
     "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "quint8", "qint32", "quint4x2",
     "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16"]
    + [f"int{b}" for b in range(1, 8)] + [f"uint{b}" for b in range(1, 8)])

# the legacy typed storage classes, by the name the pickle gives them
_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_NO_NUMPY_STORAGES = frozenset(["ComplexHalfStorage", "QInt8Storage", "QUInt8Storage",
                                "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage"])


@dataclass(frozen=True, slots=True)
class StorageType:
    """``torch.FloatStorage`` & co.: ``dtype`` is None for ``torch.storage.UntypedStorage``
    (bytes; the tensor's rebuild call gives the dtype)."""
    name: str
    dtype: DType | None


# ---- what the pickle builds: inert records, turned into arrays afterwards -----------------
# All frozen with slots: a hostile pickle's BUILD opcode (which sets attributes on the object
# on top of the stack) can change none of them, nor the module-level callables below.
@dataclass(frozen=True, slots=True, eq=False)
class _Storage:
    """One storage the pickle refers to: its key, element type (None: bytes) and length
    in elements, and, for legacy view metadata, the storage it is a slice of."""
    key: str
    dtype: DType | None
    numel: int
    root: "_Storage | None" = None
    root_offset: int = 0

    @property
    def nbytes(self) -> int:
        return self.numel * (self.dtype.itemsize if self.dtype is not None else 1)


@dataclass(frozen=True, slots=True, eq=False)
class _TensorRef:
    """A tensor as the pickle describes it (sizes in elements); :func:`_materialize`
    makes it an array once the storages' bytes are read."""
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple
    dtype: DType


@dataclass(frozen=True, slots=True)
class _Global:
    """What an allowed global resolves to: a callable record around one of this module's
    functions (a plain function has a writable ``__dict__`` and ``__defaults__``)."""
    name: str
    fn: object

    def __call__(self, *args):
        return self.fn(*args)


def _int(value, what):
    if type(value) is not int:           # bool is an int subclass: refuse it too
        raise CheckpointFormatError(f"{what} must be an integer, got {type(value).__name__}")
    return value


def _ints(value, what):
    if not isinstance(value, tuple):
        raise CheckpointFormatError(f"{what} must be a tuple, got {type(value).__name__}")
    return tuple(_int(v, what) for v in value)


def _tensor(storage, storage_offset, size, stride, dtype=None):
    if not isinstance(storage, _Storage):
        raise CheckpointFormatError(f"a tensor's storage is a {type(storage).__name__}, "
                                    f"not a storage")
    dtype = storage.dtype if dtype is None else dtype
    if not isinstance(dtype, DType):
        raise CheckpointFormatError("a tensor on an untyped storage has no dtype")
    if storage.dtype is not None and storage.dtype != dtype:
        raise CheckpointFormatError(f"a {dtype.name} tensor on a {storage.dtype.name} storage")
    return _TensorRef(storage, _int(storage_offset, "storage offset"), _ints(size, "size"),
                      _ints(stride, "stride"), dtype)


# The functions the allow-list maps torch's names to. Their signatures are torch's own
# (torch/_utils.py), so a well-formed file calls them exactly as it would call torch's.
def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # requires_grad, hooks and metadata (torch-side flags) have no meaning for an array
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    return _tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, _TensorRef):
        raise CheckpointFormatError("a Parameter that wraps no tensor")
    return data                          # a Parameter is a tensor with a training flag


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _size(dims=()):
    return _ints(tuple(dims) if isinstance(dims, list) else dims, "torch.Size")


#: (module, name) -> what the unpickler returns for it. Nothing else is ever resolved.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch._utils", f.__name__): _Global(f"torch._utils.{f.__name__}", f)
       for f in (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
                 _rebuild_parameter_with_state)},
    ("torch", "Size"): _Global("torch.Size", _size),
    ("torch.storage", "UntypedStorage"): StorageType("UntypedStorage", None),
    **{("torch", name): StorageType(name, _DTYPES[dt]) for name, dt in _STORAGE_TYPES.items()},
    **{("torch", name): d for name, d in _DTYPES.items()},
}


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS` and turns the
    persistent ids of a torch file into :class:`_Storage` records.

    ``storages`` collects them by key; ``legacy`` says whether view metadata (the sixth
    field of a legacy id) is expected. ``label`` (the file name) starts every message.
    """

    def __init__(self, file, label: str, storages: dict | None = None, legacy=False):
        super().__init__(file, encoding="utf-8")   # torch's choice for Python 2 strings
        self.label, self.legacy = label, legacy
        self.storages = {} if storages is None else storages

    def find_class(self, module, name):
        # called for GLOBAL / STACK_GLOBAL / INST / OBJ / EXT*: the only door to code
        found = ALLOWED_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and (name in _NO_NUMPY_DTYPES or name in _NO_NUMPY_STORAGES):
            raise CheckpointFormatError(f"{self.label}: holds torch.{name} tensors, which "
                                        f"NumPy has no dtype for")
        raise UnsafeCheckpointError(f"{self.label}: refuses to load global '{module}.{name}' "
                                    f"(a state dict of tensors never needs it; loading it "
                                    f"could run code)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or _text(pid[0]) != "storage":
            raise CheckpointFormatError(f"unexpected persistent id {_short(pid)}")
        n = 6 if self.legacy else 5
        if len(pid) != n:
            raise CheckpointFormatError(f"a storage id has {len(pid)} fields, expected {n}: "
                                        f"{_short(pid)}")
        storage_type, key, _location, numel = pid[1], _text(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, StorageType):
            raise CheckpointFormatError(f"storage type {_short(storage_type)}")
        if not isinstance(key, str):
            raise CheckpointFormatError(f"storage key {_short(key)} is not a string")
        dtype, numel = storage_type.dtype, _int(numel, "storage size")
        if numel < 0:
            raise CheckpointFormatError(f"storage {key!r} has negative size {numel}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, dtype, numel)
        elif storage.dtype != dtype or storage.numel != numel:
            raise CheckpointFormatError(f"storage {key!r} is declared twice, differently")
        view = pid[5] if self.legacy else None
        if view is None:
            return storage
        # legacy: a storage that is a slice of another (torch < 0.4 wrote these)
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CheckpointFormatError(f"storage view metadata {_short(view)}")
        view_key, offset, size = _text(view[0]), _int(view[1], "view offset"), \
            _int(view[2], "view size")
        if offset < 0 or size < 0 or offset + size > numel:
            raise CheckpointFormatError(f"storage view {view_key!r} [{offset}, {offset + size})"
                                        f" lies outside storage {key!r} of {numel} elements")
        return _Storage(view_key, dtype, size, root=storage, root_offset=offset)


def _text(value):
    # Python 2 files carry bytes where Python 3 has str (torch's _maybe_decode_ascii)
    return value.decode("ascii") if isinstance(value, bytes) else value


def _short(value, n=80):
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


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


def _load_zip(f, label):
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


# ---- placeholders -> arrays ---------------------------------------------------------------
def _materialize(obj, data, byteorder):
    """Replace every :class:`_TensorRef` in ``obj`` (dicts, lists, tuples) by an array.

    ``data``: {storage key: bytearray of its raw bytes}."""
    order = "<" if byteorder == "little" else ">"
    arrays = {}                    # storage key -> native-order 1-D array of its elements
    done = {}                      # id(_TensorRef) -> array: one object read twice stays one

    def storage_array(storage, dtype):
        root, offset = storage, 0
        if storage.root is not None:
            root, offset = storage.root, storage.root_offset
        if root.key not in data:
            raise CheckpointFormatError(f"storage {root.key!r} has no data in the file")
        if root.key not in arrays:
            raw = np.frombuffer(data[root.key], dtype=np.dtype(dtype.numpy).newbyteorder(order),
                                count=len(data[root.key]) // dtype.itemsize)
            if dtype.name == "bfloat16":
                # the 16 bits of a bfloat16 are the high half of the float32 with its value
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            elif not raw.dtype.isnative:
                raw = raw.astype(raw.dtype.newbyteorder("="))
            arrays[root.key] = (dtype, raw)
        seen, full = arrays[root.key]
        if seen != dtype:                    # torch.save refuses to write this
            raise CheckpointFormatError(f"storage {root.key!r} is viewed as both {seen.name} "
                                        f"and {dtype.name}")
        if storage.root is not None:
            full = full[offset:offset + storage.numel]
        return full

    def array(ref):
        shape, stride, offset = ref.shape, ref.stride, ref.offset
        if len(shape) != len(stride):
            raise CheckpointFormatError(f"a tensor has size {shape} but stride {stride}")
        if any(n < 0 for n in shape) or any(s < 0 for s in stride) or offset < 0:
            raise CheckpointFormatError(f"a tensor has a negative size, stride or offset: "
                                        f"size {shape}, stride {stride}, offset {offset}")
        storage = storage_array(ref.storage, ref.dtype)
        if any(n == 0 for n in shape):
            return np.empty(shape, dtype=storage.dtype)
        # the last element the view reaches, in Python integers (no overflow), must lie
        # inside the storage: a hostile offset or stride cannot read past its end
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= len(storage):
            raise CheckpointFormatError(
                f"a tensor of size {shape}, stride {stride}, offset {offset} reaches element "
                f"{last} of a storage of {len(storage)} elements")
        item = storage.dtype.itemsize
        return np.ndarray(shape, dtype=storage.dtype, buffer=storage, offset=offset * item,
                          strides=tuple(s * item for s in stride))

    def walk(value):
        if isinstance(value, _TensorRef):
            if id(value) not in done:
                done[id(value)] = array(value)
            return done[id(value)]
        if isinstance(value, (_Storage, _Global, StorageType, DType)):
            raise CheckpointFormatError(f"holds a bare {_short(value)}, not inside a tensor")
        if isinstance(value, dict):          # OrderedDict stays OrderedDict (and its order)
            out = type(value)()
            for k, v in value.items():
                out[leaf(k)] = walk(v)
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, tuple):
            return tuple(walk(v) for v in value)
        if isinstance(value, (set, frozenset)):
            return type(value)(leaf(v) for v in value)
        return value

    def leaf(value):
        # dict keys and set members are hashable: never a tensor, storage or record
        if isinstance(value, (_TensorRef, _Storage, _Global, StorageType, DType)):
            raise CheckpointFormatError(f"holds a {type(value).__name__.strip('_')} as a "
                                        f"dict key or set member")
        if isinstance(value, tuple):
            for v in value:
                leaf(v)
        return value

    return walk(obj)
