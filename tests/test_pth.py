"""The torch-free ``.pth`` reader: both layouts torch writes, every dtype, views and shared
storages, hostile pickles refused without running anything, truncated and corrupt files
named, out-of-bounds views refused.

Without torch: the committed fixtures in tests/data (written once by torch.save) and files
from tests/pth_writer.py. With torch: files written by torch.save right here.
"""

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from tinymobilenet import models
from tinymobilenet.models import pth

import pth_writer
from pth_writer import View

# the chapters these tests back (select with: pytest -m ch10)
pytestmark = [pytest.mark.ch10]


DATA = Path(__file__).parent / "data"
FIXTURES = [DATA / "pth_zip.pth", DATA / "pth_legacy.pth"]
LAYOUTS = ["zip", "legacy"]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def same_array(got, want):
    """Same dtype, shape and bytes (element by element in C order)."""
    return got.dtype == want.dtype and got.shape == want.shape \
        and got.tobytes() == want.tobytes()


# ---- committed fixtures (no torch needed) -------------------------------------------------
@pytest.mark.parametrize("path", FIXTURES, ids=LAYOUTS)
def test_fixture_matches_what_torch_gave(path):
    state = pth.load(path)
    with np.load(DATA / "pth_expected.npz", allow_pickle=False) as f:
        expected = {k: f[k] for k in f.files}
    assert isinstance(state, OrderedDict)
    assert list(state) == list(expected)                     # the file's order
    for key, want in expected.items():
        assert same_array(state[key], want), key
    # the views are views of the one storage, as in torch, not copies
    assert np.shares_memory(state["transposed"], state["float32"])
    assert np.shares_memory(state["sliced"], state["float32"])
    assert not state["transposed"].flags.c_contiguous
    assert all(a.flags.writeable for a in state.values())


@pytest.mark.parametrize("path", FIXTURES, ids=LAYOUTS)
def test_read_state_dict_reads_fixture(path):
    state = models.read_state_dict(path)
    assert type(state) is dict and "bfloat16" in state
    assert state["bfloat16"].dtype == np.float32


# ---- files from the test writer -----------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
def test_nested_objects_round_trip(tmp_path, legacy):
    base = np.arange(12, dtype=np.float32)
    obj = {"epoch": 3, "lr": 0.5, "note": "x", "flags": [True, None, -7, 2 ** 40],
           "pair": (1, "a"),
           "state_dict": OrderedDict([("w", View(base, 2, (2, 3), (1, 4))),
                                      ("all", View(base, 0, (12,), (1,))),
                                      ("i", np.arange(6, dtype=np.int16).reshape(3, 2))])}
    got = pth.load(pth_writer.write(tmp_path / "c.pth", obj, legacy))
    assert {k: got[k] for k in ("epoch", "lr", "note", "flags", "pair")} == \
        {k: obj[k] for k in ("epoch", "lr", "note", "flags", "pair")}
    sd = got["state_dict"]
    assert same_array(sd["w"], np.lib.stride_tricks.as_strided(
        base[2:], (2, 3), (4, 16)).copy())
    assert same_array(sd["i"], obj["state_dict"]["i"])
    sd["all"][3] = -1.0                        # one storage: a write shows through the view
    assert sd["w"][1, 0] == -1.0


def test_big_endian_archive(tmp_path):
    """A zip written on a big-endian machine says so in its byteorder record."""
    state = {"f": np.linspace(-2, 3, 7, dtype=np.float32), "i": np.arange(-3, 3),
             "h": np.array([1.5, -0.25], np.float16)}
    path = tmp_path / "big.pth"
    path.write_bytes(pth_writer.to_bytes(state, byteorder="big"))
    got = pth.load(path)
    for key, want in state.items():
        assert got[key].dtype.isnative and same_array(got[key], want), key


def test_legacy_storage_view_metadata(tmp_path):
    """A legacy persistent id's sixth field makes the storage a slice of another."""
    base = np.arange(12, dtype=np.float64)
    obj = {"v": View(base, 1, (2, 2), (2, 1), storage_view=(4, 6))}
    got = pth.load(pth_writer.write(tmp_path / "v.pth", obj, legacy=True))
    assert same_array(got["v"], base[4:10][1:5].reshape(2, 2))


@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
def test_our_model_through_a_pth_file_gives_identical_outputs(tmp_path, legacy):
    a = models.mobilenet_v3_small(0.5, num_classes=4, seed=1).eval()
    path = pth_writer.write(tmp_path / "v3s.pth", OrderedDict(a.state_dict()), legacy)
    b = models.load_weights(models.mobilenet_v3_small(0.5, num_classes=4, seed=2), path)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(a(x), b.eval()(x))        # same weights, same computation


# ---- hostile pickles -----------------------------------------------------------------------
def _global_call(module, name, arg, protocol_4=False):
    """A pickle that calls ``module.name(arg)``: GLOBAL (or STACK_GLOBAL) then REDUCE."""
    a = arg.encode()
    call = b"X" + struct.pack("<I", len(a)) + a + b"\x85R"        # (arg,) then REDUCE
    if protocol_4:
        m, n = module.encode(), name.encode()
        return (b"\x80\x04\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n
                + b"\x93" + call + b".")                           # STACK_GLOBAL
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + call + b"."


def _zip_with(data_pkl):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _legacy_with(obj_pkl, header=None):
    heads = [pickle.dumps(x, protocol=2) for x in
             (pth_writer.MAGIC, pth_writer.PROTOCOL, {"little_endian": True})]
    if header is not None:
        heads[2] = header                               # the attack in the sys-info pickle
    return b"".join(heads) + obj_pkl + pickle.dumps([], protocol=2)


class Reduce:
    """What an attacker pickles: ``__reduce__`` says "call fn(*args) when loading"."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


ATTACKS = {
    "os.system": lambda cmd: _global_call("os", "system", cmd),
    "posix.system": lambda cmd: pickle.dumps(Reduce(os.system, cmd), protocol=2),
    "builtins.eval": lambda cmd: _global_call("builtins", "eval",
                                              f"__import__('os').system({cmd!r})"),
    "subprocess.Popen": lambda cmd: _global_call("subprocess", "Popen", cmd),
    "os.system stack_global": lambda cmd: _global_call("os", "system", cmd, protocol_4=True),
}
WRAPS = {
    "zip": _zip_with,
    "legacy": _legacy_with,
    "legacy header": lambda p: _legacy_with(pickle.dumps(0, protocol=2), header=p),
}


def test_attack_payload_is_real(tmp_path):
    """Control: plain pickle.loads of the same bytes does run the command, so the tests
    below show the reader refusing something that works."""
    marker = tmp_path / "ran"
    pickle.loads(ATTACKS["os.system"](f"touch {marker}"))
    assert marker.exists()


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("attack", ATTACKS)
def test_hostile_pickle_refused_and_nothing_runs(tmp_path, attack, wrap):
    pwned = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    path.write_bytes(WRAPS[wrap](ATTACKS[attack](f"touch {pwned}")))
    name = attack.split()[0]
    with pytest.raises(pth.UnsafeCheckpointError,
                       match=rf"^{path}: refuses to load global '{name}'"):
        pth.load(path)
    assert not pwned.exists()
    with pytest.raises(pth.UnsafeCheckpointError):          # also through the public API
        models.load_weights(models.mobilenet_v2(0.25), path)
    assert not pwned.exists()


def test_hostile_value_inside_a_valid_state_dict(tmp_path):
    pwned = tmp_path / "pwned"
    good = pth_writer.to_bytes({"w": np.ones(3, np.float32)})
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        data = z.read("archive/data.pkl")
    evil = pickle.dumps(Reduce(os.system, f"touch {pwned}"), protocol=2)[2:-1]
    # insert "b": os.system(...) before the dict's final SETITEMS + STOP
    patched = data[:-2] + b"X\x01\x00\x00\x00b" + evil + data[-2:]
    path = tmp_path / "sd.pth"
    path.write_bytes(_zip_with(patched))
    with pytest.raises(pth.UnsafeCheckpointError, match="'posix.system'"):
        pth.load(path)
    assert not pwned.exists()


def test_build_cannot_modify_the_allowed_records(tmp_path):
    """BUILD sets attributes on the object below it: on the records the allow-list hands
    out it fails, so no file can change what a later file's globals do."""
    path = tmp_path / "b.pth"
    path.write_bytes(_zip_with(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
                               b"N}X\x02\x00\x00\x00fnN s\x86b."))        # (None, {fn: None})
    with pytest.raises(pth.CheckpointFormatError, match=str(path)):
        pth.load(path)
    assert pth.load(FIXTURES[0])["int8"].dtype == np.int8


def test_numpy_pickle_refused(tmp_path):
    """A pickled NumPy array would need numpy's own reconstructor: not a state dict."""
    path = tmp_path / "np.pth"
    path.write_bytes(_zip_with(pickle.dumps({"w": np.ones(2)}, protocol=2)))
    with pytest.raises(pth.UnsafeCheckpointError, match="refuses to load global 'numpy"):
        pth.load(path)


def test_dtype_without_numpy_equivalent_named(tmp_path):
    path = tmp_path / "f8.pth"
    path.write_bytes(_zip_with(b"\x80\x02ctorch\nfloat8_e4m3fn\n."))
    with pytest.raises(pth.CheckpointFormatError,
                       match=r"holds torch.float8_e4m3fn tensors, which NumPy has no dtype"):
        pth.load(path)


def test_allow_list_hands_out_only_the_readers_own_records():
    """Each allowed global resolves to OrderedDict or to a record of the reader itself (a
    dtype, a storage type, a callable around one of its own functions): a builtin there
    (getattr, or tuple standing in for torch.Size) would hand every file a callable of
    Python's own to reach code with."""
    from tinymobilenet.models import _pth_pickle
    for (module, name), value in pth.ALLOWED_GLOBALS.items():
        assert module in ("collections", "torch", "torch._utils", "torch.storage"), name
        if value is OrderedDict:
            continue
        owner = getattr(value, "fn", value)
        assert type(value).__module__ == _pth_pickle.__name__, (module, name, value)
        assert not callable(owner) or owner.__module__ == _pth_pickle.__name__, (module, name)


@pytest.mark.parametrize("pickled, message", [
    (b"ctorch\nfloat32\n.", "holds a bare"),
    (b"ctorch._utils\n_rebuild_tensor_v2\n.", "holds a bare"),
    (b"]ctorch\nFloatStorage\na.", "holds a bare"),
    (b"}ctorch\nint64\nK\x01s.", "as a dict key"),
], ids=["dtype", "rebuild-function", "storage-type-in-a-list", "dtype-as-key"])
def test_records_outside_a_tensor_refused(tmp_path, pickled, message):
    """The allow-list's records mean something only inside a tensor's rebuild call; handed
    back on their own they would give the caller the reader's internals."""
    path = tmp_path / "records.pth"
    path.write_bytes(_zip_with(b"\x80\x02" + pickled))
    with pytest.raises(pth.CheckpointFormatError, match=rf"^{path}: .*{message}"):
        pth.load(path)


# ---- truncated and corrupt files ----------------------------------------------------------
@pytest.mark.parametrize("source", FIXTURES, ids=LAYOUTS)
def test_truncated_file_one_error_naming_it(tmp_path, source):
    data = source.read_bytes()
    cuts = sorted({1, 2, 16, len(data) - 1, *range(0, len(data), max(1, len(data) // 9))})
    path = tmp_path / "cut.pth"
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(pth.CheckpointFormatError) as info:
            pth.load(path)
        assert str(info.value).startswith(f"{path}: "), (cut, str(info.value))


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n",
                                     bytes(np.random.default_rng(0).integers(0, 256, 3000,
                                                                             np.uint8)),
                                     b"PK\x03\x04" + bytes(200), b"\x80\x02K\x05.",
                                     _zip_with(b"\x80\x02" + b"]" * 10 ** 5
                                               + b"a" * (10 ** 5 - 1) + b"."),
                                     pth_writer.to_bytes({"w": np.ones(2, np.float32)},
                                                         archive="archive/inner")],
                         ids=["empty", "text", "random", "zip-head", "other-pickle",
                              "nested-too-deeply", "archive-folder-too-deep"])
def test_garbage_one_error_naming_the_file(tmp_path, content):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(pth.CheckpointFormatError, match=rf"^{path}: "):
        pth.load(path)
    with pytest.raises(ValueError, match=str(path)):          # one error, a ValueError
        models.read_state_dict(path)


def test_flipped_byte_in_a_zip_storage_is_caught(tmp_path):
    data = bytearray(FIXTURES[0].read_bytes())
    with zipfile.ZipFile(FIXTURES[0]) as z:
        info = z.getinfo(next(n for n in z.namelist() if n.endswith("/data/0")))
    # the local header's name and extra-field lengths (torch pads the extra field so the
    # data is 64-byte aligned; the central directory's copy of it can differ)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                    info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + 5] ^= 0xFF
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(pth.CheckpointFormatError, match="CRC"):
        pth.load(path)


def test_old_tar_layout_named(tmp_path):
    import tarfile
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w") as t:
        t.add(FIXTURES[1], arcname="pickle")
    with pytest.raises(pth.CheckpointFormatError, match="tar archive: the layout of torch < 0.4"):
        pth.load(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        pth.load("/nonexistent/model.pth")


# ---- views that reach outside their storage ------------------------------------------------
BASE = np.arange(12, dtype=np.float32)


@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
@pytest.mark.parametrize("view, message", [
    (View(BASE, 10, (3,), (1,)), "reaches element 12 of a storage of 12"),
    (View(BASE, 0, (4, 4), (4, 1)), "reaches element 15 of a storage of 12"),
    (View(BASE, 0, (2,), (2 ** 62,)), "of a storage of 12"),
    (View(BASE, 2 ** 70, (1,), (1,)), "of a storage of 12"),
    (View(BASE, -1, (2,), (1,)), "negative size, stride or offset"),
    (View(BASE, 4, (2,), (-1,)), "negative size, stride or offset"),
    (View(BASE, 0, (2, 2), (1,)), r"size \(2, 2\) but stride \(1,\)"),
], ids=["offset", "shape", "stride", "huge-offset", "negative-offset", "negative-stride",
        "rank"])
def test_out_of_bounds_view_refused(tmp_path, legacy, view, message):
    path = pth_writer.write(tmp_path / "oob.pth", {"w": view}, legacy)
    with pytest.raises(pth.CheckpointFormatError, match=message):
        pth.load(path)


def _zip_edited(obj, edits):
    """``obj`` as torch.save writes it, with entries of the archive replaced or added:
    ``edits`` maps an entry name (after ``archive/``) to a function of its old content
    (None when new) giving the new one."""
    good = pth_writer.to_bytes(obj)
    edits = {f"archive/{name}": edit for name, edit in edits.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for name in src.namelist():
            content = src.read(name)
            dst.writestr(name, edits.pop(name, lambda c: c)(content))
        for name, edit in edits.items():
            dst.writestr(name, edit(None))
    return buf.getvalue()


STORED = np.ones(8, np.float32)          # storage "0", of STORED.nbytes bytes


def _legacy_ids(c):
    """The archive's pickle with the legacy stream's six-field storage ids."""
    p = pth_writer._Pickler(legacy=True)
    p.dump({"w": STORED, "v": STORED[:4].copy()})
    return p.finish()


@pytest.mark.parametrize("edits, message", [
    ({"data/0": lambda c: c[:16]}, f"has 16 bytes, its tensors need {STORED.nbytes}"),
    ({"data/0": lambda c: c + c[:16]},
     f"has {STORED.nbytes + 16} bytes, its tensors need {STORED.nbytes}"),
    ({"byteorder": lambda c: b"middle"}, "byteorder record says 'middle'"),
    ({"constants.pkl": lambda c: pickle.dumps((), protocol=2)},
     r"a TorchScript archive \(torch.jit.save\)"),
    ({"data.pkl": _legacy_ids}, "a storage id has 6 fields, expected 5"),
    ({"data.pkl": lambda c: c.replace(b"X\x01\x00\x00\x001", b"X\x01\x00\x00\x000")},
     "storage '0' is declared twice, differently"),                 # v's key "1" -> "0"
], ids=["storage-short", "storage-long", "byteorder", "torchscript", "legacy-ids",
        "storage-redeclared"])
def test_archive_entries_that_do_not_fit_refused(tmp_path, edits, message):
    """A storage's bytes must be exactly what its tensors declare (a longer entry is a
    different file, not one to read the start of), the byte order one torch writes, each
    storage id the archive's own layout and each storage one size; a TorchScript archive
    is named as such."""
    path = tmp_path / "edited.pth"
    path.write_bytes(_zip_edited({"w": STORED, "v": STORED[:4].copy()}, edits))
    with pytest.raises(pth.CheckpointFormatError, match=rf"^{path}: .*{message}"):
        pth.load(path)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_storage_larger_than_its_file_can_hold_is_one_error(tmp_path, compression):
    """A zip's directory states each entry's size: a small file claiming a petabyte entry
    (its pickle agreeing) is one error naming it, given before the storage is allocated;
    the same file with the directory's true sizes loads, stored or deflated."""
    huge = 2 ** 50
    good = pth_writer.to_bytes({"w": np.ones(8, np.uint8)})
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        data = z.read("archive/data.pkl")
    numel = b"X\x03\x00\x00\x00cpuK\x08"                # the storage id's "cpu", 8
    assert data.count(numel) == 1

    def write(name, pickled, claim):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression) as z:
            z.writestr("archive/data.pkl", pickled)
            z.writestr("archive/data/0", bytes(8))
            z.getinfo("archive/data/0").file_size = claim   # what the directory will state
        (tmp_path / name).write_bytes(buf.getvalue())
        return tmp_path / name

    assert pth.load(write("true.pth", data, 8))["w"].shape == (8,)
    path = write("claims.pth", data.replace(numel, numel[:-2] + b"\x8a\x07"
                                            + huge.to_bytes(7, "little")), huge)   # LONG1
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("archive/data/0").file_size == huge
    with pytest.raises(pth.CheckpointFormatError, match=rf"^{path}: .*claims {huge} bytes"):
        pth.load(path)


def _v3_pickle(storage, numel, dtypes):
    """``{"t0": ..., "t1": ...}``, one tensor of 2 elements per dtype name, each a
    ``_rebuild_tensor_v3`` call (the dtype given explicitly) on the one storage "0"."""
    p = pth_writer._Pickler(legacy=False)
    p.out += b"}("                                               # EMPTY_DICT, MARK
    for i, dtype in enumerate(dtypes):
        p.dump(f"t{i}")
        p.global_("torch._utils", "_rebuild_tensor_v3")
        p.out += b"(("
        p.dump("storage")
        p.global_("torch.storage" if storage == "UntypedStorage" else "torch", storage)
        for field in ("0", "cpu", numel):
            p.dump(field)
        p.out += b"tQ"                                           # TUPLE, BINPERSID
        for arg in (0, (2,), (1,), False, OrderedDict()):
            p.dump(arg)
        p.global_("torch", dtype)
        p.out += b"tR"                                           # TUPLE, REDUCE
    p.out += b"u"                                                # SETITEMS
    return p.finish()


@pytest.mark.parametrize("storage, numel, dtypes, message", [
    ("UntypedStorage", STORED.nbytes, ["float32"], None),
    ("FloatStorage", STORED.size, ["int64"], "a int64 tensor on a float32 storage"),
    ("UntypedStorage", STORED.nbytes, ["float32", "int32"],
     "storage '0' is viewed as both float32 and int32"),
], ids=["untyped", "dtype-not-the-storages", "two-dtypes-on-one-storage"])
def test_rebuild_v3_dtype_must_fit_the_storage(tmp_path, storage, numel, dtypes, message):
    """torch's rebuild with an explicit dtype reads an untyped storage; a typed storage of
    another dtype, or one storage read as two dtypes, is a damaged file (its bytes would
    come back reinterpreted, silently)."""
    path = tmp_path / "v3.pth"
    path.write_bytes(_zip_edited({"w": STORED}, {"data.pkl": lambda c: _v3_pickle(
        storage, numel, dtypes)}))
    if message is None:
        assert same_array(pth.load(path)["t0"], STORED[:2])
        return
    with pytest.raises(pth.CheckpointFormatError, match=rf"^{path}: {message}"):
        pth.load(path)


@pytest.mark.parametrize("storage_view, view, message", [
    ((8, 6), View(BASE, 0, (2,), (1,)), r"storage view .*\[8, 14\) lies outside storage "
                                         rf"'0' of {BASE.size} elements"),
    ((4, 6), View(BASE, 0, (8,), (1,)), "reaches element 7 of a storage of 6"),
], ids=["view-outside-its-storage", "tensor-outside-its-view"])
def test_legacy_storage_view_outside_its_bounds_refused(tmp_path, storage_view, view, message):
    """A legacy storage that is a slice of another must lie inside it, and a tensor on
    that slice inside the slice, not in the rest of the storage around it."""
    view.storage_view = storage_view
    path = pth_writer.write(tmp_path / "v.pth", {"w": view}, legacy=True)
    with pytest.raises(pth.CheckpointFormatError, match=message):
        pth.load(path)


@pytest.mark.parametrize("keys, records, message", [
    ([], 0, "storage '0' has no data in the file"),
    (["0", "0"], 2, "storage key '0' in the key list does not match the pickle"),
], ids=["storage-left-out", "storage-twice"])
def test_legacy_key_list_must_match_the_pickle(tmp_path, keys, records, message):
    """The key list after the pickle names each storage's data once: one it leaves out,
    or names twice, is a damaged file."""
    w = np.ones(8, np.float32)
    data = pth_writer.to_bytes({"w": w}, legacy=True)
    record = struct.pack("<q", w.size) + w.tobytes()
    key_list = pickle.dumps(["0"], protocol=2) + record
    assert data.endswith(key_list)
    path = tmp_path / "keys.pth"
    path.write_bytes(data[:-len(key_list)] + pickle.dumps(keys, protocol=2) + record * records)
    with pytest.raises(pth.CheckpointFormatError, match=rf"^{path}: {message}"):
        pth.load(path)


def test_legacy_element_count_must_match(tmp_path):
    data = bytearray(pth_writer.to_bytes({"w": np.ones(8, np.float32)}, legacy=True))
    data[-32 - 8:-32] = struct.pack("<q", 9)           # the count before the 32 data bytes
    path = tmp_path / "count.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(pth.CheckpointFormatError, match="holds 9 elements, its tensors need 8"):
        pth.load(path)
    data[-32 - 8:-32] = struct.pack("<q", 8)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(pth.CheckpointFormatError, match="is truncated"):
        pth.load(path)


# ---- read_state_dict: nested training checkpoints ------------------------------------------
@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_nested_checkpoint_unwrapped(tmp_path, key):
    sd = OrderedDict([("a.weight", np.ones((2, 2), np.float32))])
    path = pth_writer.write(tmp_path / "ckpt.pth", {"epoch": 5, key: sd, "best": 0.9})
    assert list(models.read_state_dict(path)) == ["a.weight"]


def test_not_a_state_dict_named(tmp_path):
    path = pth_writer.write(tmp_path / "list.pth", [np.ones(2, np.float32)])
    with pytest.raises(pth.CheckpointFormatError, match="holds a list, not a state dict"):
        models.read_state_dict(path)
    path = pth_writer.write(tmp_path / "mixed.pth", {"w": np.ones(2, np.float32), "epoch": 3})
    with pytest.raises(pth.CheckpointFormatError, match="entry 'epoch' is a int, not a tensor"):
        models.read_state_dict(path)


def test_an_expanded_tensor_is_checked_without_materializing(tmp_path):
    """Every value must be a finite number; a tensor expanded from one element (stride 0,
    as torch saves ``expand``) holds one element to check, not the 2**40 of its shape (a
    small file must not make the check ask for a terabyte), and a NaN there is named."""
    shape = (2 ** 20, 2 ** 20)
    path = pth_writer.write(tmp_path / "ones.pth", {"w": View(np.ones(1, np.float32), 0,
                                                                shape, (0, 0))})
    w = models.read_state_dict(path)["w"]
    assert w.shape == shape and w.strides == (0, 0)              # the view, not a copy
    path = pth_writer.write(tmp_path / "nan.pth", {"w": View(np.full(1, np.nan, np.float32),
                                                             0, shape, (0, 0))})
    with pytest.raises(pth.CheckpointFormatError,
                       match=rf"^{path}: entry 'w' has .*NaN or infinite values"):
        models.read_state_dict(path)


# ---- against torch.save itself --------------------------------------------------------------
TORCH_DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16",
                "int8", "uint8", "bool", "uint16", "uint32", "uint64", "complex64",
                "complex128"]


def _numpy(t):
    return (t.float() if str(t.dtype) == "torch.bfloat16" else t).detach().numpy()


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
def test_every_dtype_against_torch_save(torch, tmp_path, legacy):
    g = torch.Generator().manual_seed(0)
    state = {}
    for name in TORCH_DTYPES:
        dtype = getattr(torch, name)
        x = torch.randn(3, 5, generator=g) * 50
        if name.startswith("complex"):
            state[name] = torch.complex(x, -x).to(dtype)
        elif name.startswith(("uint", "bool")):
            state[name] = x.abs().to(dtype)
        else:
            state[name] = x.to(dtype)
    path = tmp_path / "dtypes.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    got = pth.load(path)
    for name, t in state.items():
        assert same_array(got[name], _numpy(t)), name


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
def test_views_and_shared_storage_against_torch_save(torch, tmp_path, legacy):
    w = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
    state = {"w": w, "t": w.transpose(0, 2), "s": w[1:3, 2:5, ::2], "p": w.permute(2, 0, 1),
             "e": w[0, 0, :1].expand(3, 4), "own": torch.arange(5), "empty": w[:, :0]}
    path = tmp_path / "views.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    got = pth.load(path)
    for key, t in state.items():
        want = t.numpy()
        assert same_array(got[key], want), key
        assert got[key].strides == want.strides, key          # the stored layout, not a copy
    for key in ("t", "s", "p", "e"):
        assert np.shares_memory(got[key], got["w"]), key


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
def test_nested_checkpoint_against_torch_save(torch, tmp_path, legacy):
    net = torch.nn.Linear(3, 2)
    ckpt = {"epoch": 7, "state_dict": net.state_dict(), "history": [0.5, 0.25],
            "meta": {"name": "x", "sizes": (1, 2)}, "step": torch.tensor(11)}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    got = pth.load(path)
    assert got["epoch"] == 7 and got["history"] == [0.5, 0.25]
    assert got["meta"] == {"name": "x", "sizes": (1, 2)}
    assert same_array(got["step"], ckpt["step"].numpy())
    state = models.read_state_dict(path)
    assert list(state) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert same_array(state[k], v.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("legacy", [False, True], ids=LAYOUTS)
def test_torch_module_state_dict(torch, tmp_path, legacy):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    net(torch.randn(2, 3, 3, 3))                   # train mode: BN statistics move
    sd = net.state_dict()
    path = tmp_path / "net.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    got = pth.load(path)
    assert isinstance(got, OrderedDict) and list(got) == list(sd)
    for k, v in sd.items():
        assert same_array(got[k], v.numpy()), k
    assert got["1.num_batches_tracked"].dtype == np.int64


@pytest.mark.torch
def test_torch_reads_the_test_writer(torch, tmp_path):
    """The writer that stands in for torch.save elsewhere writes files torch accepts with
    weights_only=True, and the reader gives the same arrays as torch.load."""
    base = np.arange(20, dtype=np.float32)
    obj = OrderedDict([("a", np.arange(6, dtype=np.int64).reshape(2, 3)),
                       ("v", View(base, 3, (2, 4), (1, 5))), ("b", View(base, 0, (20,), (1,))),
                       ("nested", {"h": np.ones(3, np.float16), "k": [1, "x"]})])
    for legacy in (False, True):
        path = pth_writer.write(tmp_path / f"w{legacy}.pth", obj, legacy)
        theirs = torch.load(path, weights_only=True)
        ours = pth.load(path)
        for key in ("a", "v", "b"):
            assert same_array(ours[key], theirs[key].numpy()), (legacy, key)
        assert same_array(ours["nested"]["h"], theirs["nested"]["h"].numpy())
        assert ours["nested"]["k"] == theirs["nested"]["k"]


@pytest.mark.torch
def test_torch_refuses_what_we_refuse(torch, tmp_path):
    """Our allow-list is no looser than torch's own weights_only unpickler."""
    path = tmp_path / "evil.pth"
    path.write_bytes(_zip_with(ATTACKS["os.system"](f"touch {tmp_path / 'pwned'}")))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(pth.UnsafeCheckpointError):
        pth.load(path)


@pytest.mark.torch
def test_whole_module_pickle_refused_naming_its_class(torch, tmp_path):
    """torch.save(model) (not its state dict) pickles the classes: refused by name."""
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(pth.UnsafeCheckpointError,
                       match="refuses to load global 'torch.nn.modules.linear.Linear'"):
        pth.load(path)


@pytest.mark.torch
def test_float8_from_torch_named(torch, tmp_path):
    path = tmp_path / "f8.pth"
    torch.save({"w": torch.zeros(3).to(torch.float8_e4m3fn)}, path)
    with pytest.raises(pth.CheckpointFormatError, match="torch.float8_e4m3fn"):
        pth.load(path)
