"""Saving and loading weights: .npz round trip, mismatches named by their first key,
no pickles."""

import re
import sys

import numpy as np
import pytest

from tinymobilenet import models

from conftest import randn

# the chapters these tests back (select with: pytest -m ch10)
pytestmark = [pytest.mark.ch10]



def test_npz_round_trip_same_outputs(tmp_path):
    a = models.mobilenet_v3_small(0.5, num_classes=4, seed=1).eval()
    path = models.save_weights(a, tmp_path / "v3s")
    assert path.endswith("v3s.npz")
    with np.load(path, allow_pickle=False) as f:
        assert f.files == list(a.state_dict())                        # state-dict order
    b = models.load_weights(models.mobilenet_v3_small(0.5, num_classes=4, seed=2), path).eval()
    x = randn(2, 3, 32, 32).astype(np.float32)
    assert np.array_equal(a(x), b(x))       # same weights, same computation, same process


def test_load_from_dict_casts_dtype_and_num_batches_tracked_optional():
    a = models.mobilenet_v2(0.25, num_classes=3, seed=1)
    state = {k: v.astype(np.float64) for k, v in a.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    b = models.load_weights(models.mobilenet_v2(0.25, num_classes=3, seed=2), state)
    assert b.features[0][0].weight.data.dtype == np.float32
    # float32 -> float64 -> float32 is exact: a copy of the same numbers
    assert np.array_equal(b.features[0][0].weight.data, a.features[0][0].weight.data)


@pytest.fixture
def state():
    return models.mobilenet_v2(0.5, num_classes=10).state_dict()


def test_wrong_shape_named(state):
    """A width-1.0 model cannot take width-0.5 weights: the first differing key is named."""
    with pytest.raises(models.WeightsMismatchError,
                       match=r"mobilenet_v2: key 'features.0.0.weight' has shape \(16, 3, 3, 3\) "
                             r"in the weights, the model expects \(32, 3, 3, 3\)"):
        models.load_weights(models.mobilenet_v2(1.0, num_classes=10), state)


def test_missing_and_unexpected_named(state):
    model = models.mobilenet_v2(0.5, num_classes=10)
    del state["features.3.conv.1.1.running_var"]
    with pytest.raises(models.WeightsMismatchError,
                       match=r"key 'features.3.conv.1.1.running_var' \(96,\) is missing"):
        models.load_weights(model, state)
    state["features.3.conv.1.1.running_var"] = np.ones(96, np.float32)
    state["fc.weight"] = np.zeros((10, 1280), np.float32)
    with pytest.raises(models.WeightsMismatchError, match="unexpected key 'fc.weight'"):
        models.load_weights(model, state)
    models.load_weights(model, state, strict=False)                     # ignored
    state["classifier.1.weight"] = np.zeros((5, 1280), np.float32)
    with pytest.raises(ValueError, match=r"'classifier.1.weight' has shape \(5, 1280\)"):
        models.load_weights(model, state, strict=False)                 # shapes always checked


@pytest.mark.parametrize("key", ["classifier.1.bias", "features.2.conv.3.bias",
                                 "features.17.conv.0.1.running_mean"])
def test_every_kind_of_missing_entry_is_named(state, key):
    """A missing bias, BatchNorm beta or running statistic is as much an error as a
    missing weight (skipped, it would keep the model's random values)."""
    del state[key]
    with pytest.raises(models.WeightsMismatchError, match=rf"key '{re.escape(key)}' .* is missing"):
        models.load_weights(models.mobilenet_v2(0.5, num_classes=10, seed=1), state)


def test_architecture_mismatch_across_families(tmp_path):
    path = models.save_weights(models.mobilenet_v3_small(0.5), tmp_path / "s.npz")
    with pytest.raises(models.WeightsMismatchError,
                       match=rf"^{path}: mobilenet_v3_large: key 'features"):   # the file too
        models.load_weights(models.mobilenet_v3_large(0.5), path)


def test_files_never_unpickled(tmp_path):
    import os
    from test_pth import Reduce            # what an attacker pickles
    pwned = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    payload = np.array([Reduce(os.system, f"touch {pwned}")], dtype=object)
    np.savez(path, **{"features.0.0.weight": payload})
    with pytest.raises(ValueError, match=rf"^{path}: .*entry 'features.0.0.weight' holds "
                                         r"pickled Python objects, which are never loaded"):
        models.load_weights(models.mobilenet_v2(0.5), path)
    assert not pwned.exists()


def test_bad_sources(tmp_path):
    model = models.mobilenet_v2(0.5)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        models.load_weights(model, tmp_path / "nope.npz")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        models.load_weights(model, tmp_path / "w.txt")
    with pytest.raises(TypeError, match="path or a mapping"):
        models.load_weights(model, 42)


def test_pth_read_without_torch(tmp_path, monkeypatch):
    """A .pth state dict loads with torch made unimportable: the reader never needs it."""
    import pth_writer
    monkeypatch.setitem(sys.modules, "torch", None)      # as if not installed
    a = models.mobilenet_v2(0.25, num_classes=3, seed=1).eval()
    path = pth_writer.write(tmp_path / "w.pth", a.state_dict())
    b = models.load_weights(models.mobilenet_v2(0.25, num_classes=3, seed=2), path).eval()
    x = randn(2, 3, 32, 32).astype(np.float32)
    assert np.array_equal(a(x), b(x))       # same weights, same computation, same process


def test_trainer_checkpoint_loads(tmp_path):
    from tinymobilenet import optim, train
    a = models.mobilenet_v1(0.25, num_classes=10, seed=1)
    path = tmp_path / "checkpoint.npz"
    train.save_checkpoint(path, a, optim.SGD(a.parameters(), lr=0.1), epoch=1)
    b = models.load_weights(models.mobilenet_v1(0.25, num_classes=10, seed=2), path)
    assert list(models.read_state_dict(path)) == list(a.state_dict())
    x = randn(2, 3, 32, 32).astype(np.float32)
    assert np.array_equal(a.eval()(x), b.eval()(x))   # same weights, same computation


def test_save_is_atomic(tmp_path, monkeypatch):
    """An interrupted save leaves neither a partial file nor a temporary one."""
    model = models.mobilenet_v2(0.25, num_classes=3)
    path = tmp_path / "w.npz"

    def broken_savez(f, **arrays):
        f.write(b"PK half a file")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        models.save_weights(model, path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    models.save_weights(model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


# ---- porting another implementation's names -------------------------------------------------
def _renamed(state):
    """The same tensors under other names, as another implementation would call them."""
    return {f"net.{i:03d}." + k.rsplit(".", 1)[1]: v for i, (k, v) in enumerate(state.items())}


@pytest.fixture
def source():
    model = models.mobilenet_v2(0.25, num_classes=5, seed=3).eval()
    return model, model.state_dict()


def _same_outputs(a, b):
    # the same architecture with the same weights: the same computation, repeated in one
    # process, so bit for bit (any difference is a weight that did not arrive)
    x = randn(2, 3, 32, 32, seed=4).astype(np.float32)
    return np.array_equal(a.eval()(x), b.eval()(x))


def test_port_by_explicit_map(source):
    a, state = source
    theirs = _renamed(state)
    name_map = dict(zip(theirs, state))                       # their name -> ours
    target = models.mobilenet_v2(0.25, num_classes=5, seed=9)
    ported = models.port_state_dict(theirs, target, name_map)
    assert set(ported) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert _same_outputs(a, models.load_weights(target, ported))


def test_port_by_callable_and_partial_map(source):
    a, state = source
    theirs = {k.replace("classifier.1.", "fc."): v for k, v in state.items()}
    b = models.load_weights(models.mobilenet_v2(0.25, num_classes=5, seed=9), theirs,
                            name_map=lambda k: k.replace("fc.", "classifier.1."))
    assert _same_outputs(a, b)
    c = models.load_weights(models.mobilenet_v2(0.25, num_classes=5, seed=9), theirs,
                            name_map={"fc.weight": "classifier.1.weight",
                                      "fc.bias": "classifier.1.bias"})  # the rest kept
    assert _same_outputs(a, c)


def test_port_by_order(source, tmp_path):
    import pth_writer
    a, state = source
    # as another implementation saves it: other names, no num_batches_tracked, in a .pth
    theirs = {k: v for k, v in _renamed(state).items() if "num_batches" not in k}
    path = pth_writer.write(tmp_path / "theirs.pth", theirs)
    b = models.load_weights(models.mobilenet_v2(0.25, num_classes=5, seed=9), path,
                            by_order=True)
    assert _same_outputs(a, b)


def test_port_by_order_names_first_shape_mismatch(source):
    _, state = source
    target = models.mobilenet_v2(0.5, num_classes=5)
    theirs = _renamed(state)
    first = next(iter(theirs))
    ours = next(iter(target.state_dict()))
    with pytest.raises(models.WeightsMismatchError, match=re.escape(
            f"entry #0 differs: source '{first}' {theirs[first].shape} vs mobilenet_v2 "
            f"'{ours}' {target.state_dict()[ours].shape}")):
        models.port_state_dict(theirs, target, by_order=True)


def test_port_by_order_names_first_entry_without_partner(source):
    _, state = source
    target = models.mobilenet_v2(0.25, num_classes=5)
    theirs = _renamed({k: v for k, v in state.items() if "num_batches" not in k})
    last_theirs = list(theirs)[-1]
    del theirs[last_theirs]
    last_ours = [k for k in target.state_dict() if "num_batches" not in k][-1]
    with pytest.raises(models.WeightsMismatchError,
                       match=rf"the first without a partner is #{len(theirs)}, "
                             rf"mobilenet_v2 '{re.escape(last_ours)}'"):
        models.port_state_dict(theirs, target, by_order=True)
    theirs[last_theirs] = state[last_ours]
    theirs["extra"] = np.zeros(3, np.float32)
    with pytest.raises(models.WeightsMismatchError,
                       match=rf"first without a partner is #{len(theirs) - 1}, source 'extra'"):
        models.port_state_dict(theirs, target, by_order=True)


def test_port_map_errors_name_both_keys(source):
    _, state = source
    target = models.mobilenet_v2(0.25, num_classes=5)
    stem, bias = state["features.0.0.weight"].shape, state["classifier.1.bias"].shape
    with pytest.raises(models.WeightsMismatchError, match=re.escape(
            f"source 'features.0.0.weight' {stem} does not fit mobilenet_v2 "
            f"'classifier.1.bias' {bias}")):
        models.port_state_dict(state, target, {"features.0.0.weight": "classifier.1.bias",
                                               "classifier.1.bias": None})
    with pytest.raises(models.WeightsMismatchError,
                       match="'fc.w' is sent to 'fc.weight', which mobilenet_v2 does not have"):
        models.port_state_dict({"fc.w": np.zeros(1)}, target, {"fc.w": "fc.weight"})
    with pytest.raises(models.WeightsMismatchError,
                       match="both 'a' and 'b' are sent to mobilenet_v2 key 'classifier.1.bias'"):
        models.port_state_dict({"a": np.zeros(5), "b": np.zeros(5)}, target,
                               lambda k: "classifier.1.bias")


def test_port_needs_exactly_one_way(source):
    _, state = source
    target = models.mobilenet_v2(0.25, num_classes=5)
    with pytest.raises(TypeError, match="either name_map or by_order"):
        models.port_state_dict(state, target)
    with pytest.raises(TypeError, match="either name_map or by_order"):
        models.port_state_dict(state, target, {}, by_order=True)
