"""The restricted unpickler of :mod:`tinymobilenet.models.pth` and what it builds: torch's
dtypes and storage types as inert records, tensors as placeholders, then arrays.

Read :mod:`.pth` first: it says what a ``.pth`` is and why unpickling needs care. This
file is the machinery: :class:`Unpickler` resolves only :data:`ALLOWED_GLOBALS`, each to a
function here that records its arguments; :func:`_materialize` turns the records into
NumPy arrays once the raw bytes of the storages are read.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass

import numpy as np

__all__ = ["Unpickler", "ALLOWED_GLOBALS", "CheckpointFormatError", "UnsafeCheckpointError"]


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
