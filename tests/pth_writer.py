"""A minimal ``torch.save`` without torch, for the tests only.

It writes NumPy arrays as torch tensors with the pickle opcodes ``torch.save`` emits
(protocol 2: ``_rebuild_tensor_v2`` calls, ``BINPERSID`` storage ids), in the zip layout
or the legacy stream, so the reader can be tested (and a file served for the download
tests) on a machine without torch. With torch installed, ``test_pth.py`` checks that
``torch.load(weights_only=True)`` reads what this writes.

    write(path, {"w": array, "v": View(base, offset=2, shape=(3,), stride=(2,))})
"""

import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

STORAGE_NAMES = {"float32": "FloatStorage", "float64": "DoubleStorage",
                 "float16": "HalfStorage", "int64": "LongStorage", "int32": "IntStorage",
                 "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
                 "bool": "BoolStorage"}
MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


@dataclass
class View:
    """A tensor viewing the 1-D array ``base`` (its storage; Views of one base object
    share it) from element ``offset`` with ``shape`` and ``stride`` (in elements).
    ``storage_view=(offset, numel)``: legacy layout only, the storage is that slice of
    ``base`` (view metadata), and ``offset`` counts from the slice's start."""
    base: np.ndarray
    offset: int
    shape: tuple
    stride: tuple
    storage_view: tuple | None = None


class _Pickler:
    """Emits protocol-2 opcodes by hand: ``pickle.Pickler`` would import torch to check
    the globals it writes."""

    def __init__(self, legacy):
        self.out, self.legacy = bytearray(b"\x80\x02"), legacy      # PROTO 2
        self.storages = {}         # id(base) -> (key, base)

    def global_(self, module, name):
        self.out += b"c" + f"{module}\n{name}\n".encode()

    def dump(self, value):
        if isinstance(value, View):
            self.tensor(value)
        elif isinstance(value, np.ndarray):
            c = np.array(value, order="C")      # (np.ascontiguousarray makes 0-d arrays 1-d)
            self.tensor(View(c.ravel(), 0, c.shape, tuple(s // c.itemsize for s in c.strides)))
        elif isinstance(value, OrderedDict):
            self.global_("collections", "OrderedDict")
            self.out += b")R"                                  # EMPTY_TUPLE, REDUCE
            self.items(value)
        elif isinstance(value, dict):
            self.out += b"}"                                   # EMPTY_DICT
            self.items(value)
        elif isinstance(value, list):
            self.out += b"]("                                  # EMPTY_LIST, MARK
            for v in value:
                self.dump(v)
            self.out += b"e"                                   # APPENDS
        elif isinstance(value, tuple):
            self.out += b"("
            for v in value:
                self.dump(v)
            self.out += b"t"                                   # TUPLE
        elif value is None:
            self.out += b"N"
        elif isinstance(value, bool):
            self.out += b"\x88" if value else b"\x89"          # NEWTRUE / NEWFALSE
        elif isinstance(value, int):
            if 0 <= value < 256:
                self.out += b"K" + bytes([value])              # BININT1
            elif -2**31 <= value < 2**31:
                self.out += b"J" + struct.pack("<i", value)    # BININT
            else:
                raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
                self.out += b"\x8a" + bytes([len(raw)]) + raw   # LONG1
        elif isinstance(value, float):
            self.out += b"G" + struct.pack(">d", value)        # BINFLOAT
        elif isinstance(value, str):
            raw = value.encode()
            self.out += b"X" + struct.pack("<I", len(raw)) + raw   # BINUNICODE
        else:
            raise TypeError(f"pth_writer: cannot write a {type(value).__name__}")

    def items(self, mapping):
        self.out += b"("                                       # MARK
        for k, v in mapping.items():
            self.dump(k)
            self.dump(v)
        self.out += b"u"                                       # SETITEMS

    def tensor(self, view):
        base = view.base
        if id(base) not in self.storages:
            self.storages[id(base)] = (str(len(self.storages)), base)
        key, _ = self.storages[id(base)]
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"(("                                      # args, then the storage id
        self.dump("storage")
        self.global_("torch", STORAGE_NAMES[base.dtype.name])
        self.dump(key)
        self.dump("cpu")
        self.dump(base.size)
        if self.legacy:
            sv = view.storage_view
            self.dump(None if sv is None else (f"{key}.view{sv[0]}", sv[0], sv[1]))
        self.out += b"tQ"                                      # TUPLE, BINPERSID
        self.dump(int(view.offset))
        self.dump(tuple(int(n) for n in view.shape))
        self.dump(tuple(int(s) for s in view.stride))
        self.out += b"\x89"                                    # requires_grad False
        self.dump(OrderedDict())                               # backward hooks
        self.out += b"tR"                                      # TUPLE, REDUCE

    def finish(self):
        return bytes(self.out + b".")                          # STOP


def _raw(base, order="<"):
    return np.ascontiguousarray(base, dtype=base.dtype.newbyteorder(order)).tobytes()


def to_bytes(obj, legacy=False, archive="archive", byteorder="little"):
    """The bytes ``torch.save(obj, f)`` would write (``legacy``:
    ``_use_new_zipfile_serialization=False``), tensors given as arrays or :class:`View`.
    ``byteorder="big"``: a zip archive as a big-endian machine writes it."""
    p = _Pickler(legacy)
    p.dump(obj)
    data = p.finish()
    storages = sorted(p.storages.values())
    if legacy:
        info = {"protocol_version": PROTOCOL, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
        out = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC, PROTOCOL, info))
        out += data + pickle.dumps([k for k, _ in storages], protocol=2)
        for _, base in storages:
            out += struct.pack("<q", base.size) + _raw(base)
        return out
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", data)
        z.writestr(f"{archive}/byteorder", byteorder)
        for key, base in storages:
            z.writestr(f"{archive}/data/{key}", _raw(base, "<" if byteorder == "little" else ">"))
        z.writestr(f"{archive}/version", "3\n")
    return buf.getvalue()


def write(path, obj, legacy=False):
    """Write :func:`to_bytes` to ``path`` and return ``path``."""
    with open(path, "wb") as f:
        f.write(to_bytes(obj, legacy))
    return path
