"""Your own images: a folder with one subfolder per class (torchvision's ImageFolder layout).

    DIR/train/<class>/*.png  and  DIR/test/<class>/*.png     a split made by you, or
    DIR/<class>/*.png                                         split here: seeded, stratified

    image_folder(DIR, resolution=32)  -> Splits (train, test), x (N, C, R, R), class names
    ImageTransform(...)               image file -> the array a trained model expects

Every image is decoded with Pillow (:func:`~tinymobilenet.data.open_image`), converted to
grayscale or RGB and resized to R x R with Pillow's bilinear filter (which averages over
the footprint when shrinking), then scaled to 0..1 and standardised per channel with the
mean and standard deviation of the *training* images. Input channels: 1 when every image
file is grayscale, else 3 (``in_channels`` forces either).

Nothing is skipped silently: a missing or empty folder, a single class, a class without
images, a file that is not an image (hidden files such as ``.DS_Store`` excepted) or an
unreadable, truncated image each raise one :class:`FolderError` or
:class:`~tinymobilenet.data.ImageError` naming the folder or file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .arrays import Dataset, Splits, resize
from .images import IMAGE_EXTENSIONS, ImageError, open_image

__all__ = ["FolderError", "ImageTransform", "image_folder", "scan_folder", "find_images",
           "split_files", "GRAY_MODES"]

#: Pillow modes that hold one channel of intensities
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class FolderError(ValueError):
    """An image folder that does not have the expected layout (the message names it)."""


class ImageTransform:
    """Image file -> float32 array, as the images a model was trained on were made:

        decode (Pillow), convert to ``mode`` ("L" gray or "RGB"), resize to ``size`` x
        ``size`` (Pillow's ``resample`` filter: "bilinear", or "box", the plain average
        over each output pixel's footprint), scale to 0..1, standardise: (x - mean) / std
        per channel, then optionally ``upsample`` to R x R (bilinear, :func:`resize`; the
        digits are 8 x 8 images upsampled) and ``flatten`` to a vector (the 1-D models).

    ``transform(path)`` -> (C, H, W) (or (C*H*W,) flattened); ``transform.load(paths)``
    -> (N, ...). ``to_dict()`` / ``ImageTransform.from_dict(d)`` store it in a checkpoint.
    """

    def __init__(self, mode="L", size=32, mean=(0.0,), std=(1.0,), upsample=None,
                 flatten=False, resample="bilinear"):
        if mode not in ("L", "RGB"):
            raise ValueError(f"ImageTransform: mode must be 'L' or 'RGB', got {mode!r}")
        if resample not in ("bilinear", "box"):
            raise ValueError(f"ImageTransform: resample must be 'bilinear' or 'box', "
                             f"got {resample!r}")
        self.resample = resample
        channels = 1 if mode == "L" else 3
        self.mode, self.size = mode, _side("size", size)
        self.mean = _per_channel("mean", mean, channels)
        self.std = _per_channel("std", std, channels)
        if not (self.std > 0).all():
            raise ValueError(f"ImageTransform: std must be > 0, got {self.std.tolist()}")
        self.upsample = None if upsample in (None, size) else _side("upsample", upsample)
        if flatten not in (True, False):
            raise ValueError(f"ImageTransform: flatten must be true or false, got {flatten!r}")
        self.flatten = bool(flatten)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    @property
    def output_shape(self) -> tuple:
        """(C, R, R), or (C*R*R,) when flattened."""
        r = self.upsample or self.size
        return (self.channels * r * r,) if self.flatten else (self.channels, r, r)

    def pixels(self, path) -> np.ndarray:
        """uint8 (size, size, C): decoded, converted and resized, not yet scaled."""
        from PIL import Image
        im = open_image(path, self.mode)
        if im.size != (self.size, self.size):
            im = im.resize((self.size, self.size),
                           Image.BOX if self.resample == "box" else Image.BILINEAR)
        return np.asarray(im).reshape(self.size, self.size, self.channels)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, C) -> float32 model input (N, ...)."""
        x = pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)   # (N, C, H, W)
        x = (x - self.mean[:, None, None]) / self.std[:, None, None]
        if self.upsample:
            x = resize(x, self.upsample)
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x.reshape(len(x), -1) if self.flatten else x

    def load(self, paths) -> np.ndarray:
        """The model input (N, C, R, R) (or (N, D)) of image files; ImageError names a bad one."""
        paths = list(paths)
        if not paths:
            return np.zeros((0,) + self.output_shape, np.float32)
        return self.normalize(np.stack([self.pixels(p) for p in paths]))

    def __call__(self, path) -> np.ndarray:
        return self.load([path])[0]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "size": self.size, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "upsample": self.upsample, "flatten": self.flatten,
                "resample": self.resample}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageTransform":
        """The transform :meth:`to_dict` gave; ValueError naming a missing or bad entry."""
        if not isinstance(d, dict):
            raise ValueError(f"ImageTransform: expected a dict, got {type(d).__name__}")
        missing = [k for k in ("mode", "size", "mean", "std") if k not in d]
        if missing:
            raise ValueError(f"ImageTransform: no {missing[0]!r} entry")
        return cls(d["mode"], d["size"], d["mean"], d["std"], d.get("upsample"),
                   d.get("flatten", False), d.get("resample", "bilinear"))

    def __repr__(self):
        return (f"ImageTransform(mode={self.mode!r}, size={self.size}, mean={self.mean.tolist()}, "
                f"std={self.std.tolist()}, upsample={self.upsample}, flatten={self.flatten}, "
                f"resample={self.resample!r})")


def _side(name, v) -> int:
    """An image side: an integer >= 1 (ValueError naming ``name`` otherwise)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"ImageTransform: {name} must be an integer >= 1, got {v!r}")
    return int(v)


def _per_channel(name, values, channels) -> np.ndarray:
    """float32 (channels,) from one finite number or one per channel (ValueError naming
    ``name`` otherwise)."""
    try:
        a = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim > 1 or a.size not in (1, channels) or not np.isfinite(a).all():
        what = "1 finite number" if channels == 1 else f"1 or {channels} finite numbers"
        raise ValueError(f"ImageTransform: {name} must be {what}, got {values!r}")
    return np.broadcast_to(a.astype(np.float32), (channels,)).copy()


# ---- the folder layout ---------------------------------------------------------------

def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_images(folder, min_classes: int = 2) -> dict[str, list[Path]]:
    """``{class name: [image paths]}`` of a folder with one subfolder per class (sorted by
    name, files sorted, subfolders of a class included). Raises FolderError for a missing
    folder, no class folders, fewer than ``min_classes`` classes (a classifier is trained on
    two or more; images to evaluate on may be of one class), a class without images, an
    image file beside the class folders, or a file that is not an image inside a class
    folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: no such folder" if not folder.exists()
                          else f"{folder}: not a folder")
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and _is_image_name(p.name))
    if stray:
        raise FolderError(f"{folder}: image file {stray[0]} beside the class folders; put "
                          f"every image in its class's subfolder ({folder}/<class>/{stray[0]})")
    classes = _subfolders(folder)
    if not classes:
        raise FolderError(f"{folder}: no class folders; expected one subfolder per class, "
                          f"e.g. {folder}/cat/1.png and {folder}/dog/1.png")
    if len(classes) < min_classes:
        raise FolderError(f"{folder}: only one class folder ({classes[0].name}); a classifier "
                          f"needs at least two")
    found = {}
    for c in classes:
        files = []
        for root, dirs, names in os.walk(c):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue                       # .DS_Store and the like
                path = Path(root) / name
                if not _is_image_name(name):
                    raise FolderError(f"{path}: not an image file name (expected "
                                      f"{', '.join(IMAGE_EXTENSIONS)}); move it out of {folder}")
                files.append(path)
        if not files:
            raise FolderError(f"{c}: class {c.name!r} has no images")
        found[c.name] = files
    return found


def split_files(found: dict, test_fraction: float = 0.2, seed: int = 0):
    """Split ``{class: [paths]}`` into (train, test) dicts of the same form: per class, a
    seeded permutation and ``round(test_fraction * n)`` images (at least 1, at most n - 1)
    for the test part, so every class is in both (stratified)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"split_files: test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for name, files in found.items():
        if len(files) < 2:
            raise FolderError(f"{files[0].parent}: class {name!r} has 1 image; splitting "
                              f"needs at least 2 per class (one to train, one to test)")
        order = rng.permutation(len(files))
        k = min(len(files) - 1, max(1, round(test_fraction * len(files))))
        test[name] = [files[i] for i in sorted(order[:k])]
        train[name] = [files[i] for i in sorted(order[k:])]
    return train, test


def scan_folder(root) -> tuple[dict, dict | None]:
    """``(train, test)`` of ``{class: [paths]}`` for a folder holding ``train/`` and
    ``test/`` (the same classes in both), or ``(all, None)`` for a folder of class folders
    (see :func:`find_images` for what is refused)."""
    root = Path(root)
    if not ((root / "train").is_dir() or (root / "test").is_dir()):
        return find_images(root), None
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FolderError(f"{root}: has {'train' if part == 'test' else 'test'}/ but "
                              f"no {part}/ folder; give both, or only class folders")
    train, test = find_images(root / "train"), find_images(root / "test")
    if list(train) != list(test):
        missing = sorted(set(train) - set(test))
        extra = sorted(set(test) - set(train))
        raise FolderError(f"{root / 'test'}: its classes differ from {root / 'train'}'s"
                          + (f"; missing {', '.join(missing)}" if missing else "")
                          + (f"; not in train: {', '.join(extra)}" if extra else ""))
    return train, test


def _image_mode(path) -> str:
    """The Pillow mode of an image file, from its header (no decoding)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return im.mode
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: cannot read the image ({e})") from None


def _flat(part: dict) -> tuple[list[Path], np.ndarray]:
    paths = [p for files in part.values() for p in files]
    labels = np.concatenate([np.full(len(f), i, np.int64) for i, f in enumerate(part.values())])
    return paths, labels


def image_folder(path, resolution: int = 32, in_channels: int | None = None,
                 test_fraction: float = 0.2, seed: int = 0, flatten: bool = False) -> Splits:
    """Load an image folder as ``(train, test)`` Datasets, x (N, C, R, R) float32
    (``flatten``: (N, C*R*R)), y (N,) int64, ``classes`` the sorted class folder names.

    ``path`` holds ``train/<class>/`` and ``test/<class>/`` (the same classes), or
    ``<class>/`` folders only, split here per class with ``test_fraction`` of the images
    for testing, drawn with ``seed``. ``info`` holds the ``root``, the ``split``
    (``{"train": [...], "test": [...]}`` file paths relative to the root, and how it was
    made) and the ``transform`` (:meth:`ImageTransform.to_dict`) that turns any image file
    into this input. ``in_channels`` None infers 1 (every file grayscale) or 3.
    """
    root = Path(path)
    if resolution < 1:
        raise ValueError(f"image_folder: resolution must be >= 1, got {resolution}")
    if in_channels not in (None, 1, 3):
        raise ValueError(f"image_folder: in_channels must be 1 or 3, got {in_channels!r}")
    train, test = scan_folder(root)
    if test is None:
        train, test = split_files(train, test_fraction, seed)
        how = {"kind": "stratified", "test_fraction": test_fraction, "seed": seed}
    else:
        how = {"kind": "folders"}
    (train_paths, y_train), (test_paths, y_test) = _flat(train), _flat(test)
    if in_channels is None:
        gray = all(_image_mode(p) in GRAY_MODES for p in train_paths + test_paths)
        in_channels = 1 if gray else 3
    mode = "L" if in_channels == 1 else "RGB"
    probe = ImageTransform(mode, resolution)
    train_pixels = np.stack([probe.pixels(p) for p in train_paths])   # (N, R, R, C) uint8
    test_pixels = np.stack([probe.pixels(p) for p in test_paths])
    mean = train_pixels.mean(axis=(0, 1, 2), dtype=np.float64) / 255       # (C,)
    std = train_pixels.std(axis=(0, 1, 2), dtype=np.float64) / 255
    # a constant channel (every image the same there) must not divide by 0
    transform = ImageTransform(mode, resolution, mean, np.maximum(std, 1e-3), flatten=flatten)
    classes = tuple(train)
    rel = lambda ps: [p.relative_to(root).as_posix() for p in ps]
    info = {"root": str(root), "transform": transform.to_dict(),
            "split": {**how, "train": rel(train_paths), "test": rel(test_paths)}}
    make = lambda pixels, y, part: Dataset(transform.normalize(pixels), y, classes,
                                           f"{root.name}-{part}", dict(info))
    return Splits(make(train_pixels, y_train, "train"), make(test_pixels, y_test, "test"))
