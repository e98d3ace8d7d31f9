"""Saving and loading weights: .npz round trip, mismatches named by their first key,
no pickles."""

import sys

import numpy as np
import pytest

from tinymobilenet import models

from conftest import randn


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


def test_architecture_mismatch_across_families(tmp_path):
    path = models.save_weights(models.mobilenet_v3_small(0.5), tmp_path / "s.npz")
    with pytest.raises(models.WeightsMismatchError, match="mobilenet_v3_large: key 'features"):
        models.load_weights(models.mobilenet_v3_large(0.5), path)


def test_files_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"features.0.0.weight": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        models.load_weights(models.mobilenet_v2(0.5), path)


def test_bad_sources(tmp_path):
    model = models.mobilenet_v2(0.5)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        models.load_weights(model, tmp_path / "nope.npz")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        models.load_weights(model, tmp_path / "w.txt")
    with pytest.raises(TypeError, match="path or a mapping"):
        models.load_weights(model, 42)


def test_pth_without_torch_says_so(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)      # as if not installed
    with pytest.raises(ImportError, match="needs PyTorch"):
        models.load_weights(models.mobilenet_v2(0.5), path)
