"""Photos in: each set of pretrained weights' preprocessing, and ImageNet's class names.

A network trained on ImageNet only gives its published accuracy on inputs prepared exactly
as in its training pipeline's evaluation: the same resize, crop and normalisation. Two
recipes cover the weights this library mirrors:

    imagenet_transform(resize=256, crop=224, interpolation="bilinear", mean, std)
        torchvision's ``weights.transforms()``: resize the *shorter* side to ``resize``
        (Pillow, antialiased), center-crop ``crop`` x ``crop``, scale to 0..1, subtract
        ``mean`` and divide by ``std`` per channel
    lite_transform(size=224)
        TensorFlow's EfficientNet-Lite evaluation: center-crop the central
        size/(size + 32) of the shorter side, resize that square to ``size`` (bicubic),
        then ``(x - 127) / 128`` on the 0..255 pixels
    transform_for_weights(entry)
        the transform of a weights entry ({"resize", "crop", "interpolation", "mean",
        "std"} as in torchvision's metadata, or {"recipe": "lite", "crop": size})

Each returns a callable: ``t(image) -> (3, S, S) float32`` for a file path, a PIL image or
a uint8 (H, W, 3) array (:func:`tinymobilenet.data.load_image`'s output), and
``t.batch(images) -> (N, 3, S, S)``. :data:`IMAGENET_CLASSES` holds the 1000 class names
in index order (``IMAGENET_CLASSES[logits.argmax()]``).

Resizing is Pillow's, as torchvision does it for PIL images (so the same photo gives
torchvision's numbers): the new long side is ``int(resize * long / short)`` (truncated),
the filters antialias when shrinking. TensorFlow's own bicubic resize is a different
filter (no antialiasing), so :func:`lite_transform` is close to, not bit-equal with,
TensorFlow's pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .images import _convert, _to_8bit, open_image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGENET_CLASSES", "INTERPOLATIONS",
           "ImageNetTransform", "LiteTransform", "imagenet_transform", "lite_transform",
           "transform_for_weights", "resize_shorter", "center_crop"]

#: torchvision's ImageNet channel statistics (RGB, on 0..1 pixels)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the 1000 ImageNet-1K class names in index order (torchvision's weights metadata)
IMAGENET_CLASSES = tuple(
    (Path(__file__).parent / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines())

#: interpolation names -> Pillow's resampling filters (torchvision's InterpolationMode names)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")

# TensorFlow's EfficientNet evaluation crops the central 87.5 % (224 of 256)
_CROP_FRACTION = 0.875


def _resample(interpolation: str):
    from PIL import Image
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    return getattr(Image.Resampling, interpolation.upper())


def _to_pil(image):
    """A path, a PIL image or a uint8 (H, W[, 3]) array -> an RGB PIL image (8 bits per
    channel, see :mod:`.images`)."""
    from PIL import Image
    if isinstance(image, (str, os.PathLike)):
        return open_image(image, "RGB")          # EXIF rotation, transparency on white
    if isinstance(image, Image.Image):
        if image.mode == "RGB":
            return image
        # 16-bit gray scaled to 8 bits, not clipped; pixels of unknown range refused;
        # transparency on white, as for a file
        return _convert(_to_8bit(image, image.format, "the PIL image"), "RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and
                                                                 image.shape[2] == 3)):
            raise ValueError(f"expected a uint8 image (H, W, 3) or (H, W) as load_image "
                             f"returns, got {image.dtype} {image.shape}")
        return Image.fromarray(image).convert("RGB")
    raise TypeError(f"expected an image file path, a PIL image or a uint8 array, "
                    f"got {type(image).__name__}")


def _chw(im) -> np.ndarray:
    """RGB PIL image (W x H) -> its pixels as a C-contiguous float32 (3, H, W), 0..255."""
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1),
                                dtype=np.float32)


def _check_size(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def resize_shorter(im, size: int, interpolation: str = "bilinear"):
    """Resize a PIL image so that its shorter side is ``size`` (torchvision's
    ``Resize(size)`` on a PIL image): the long side becomes ``int(size * long / short)``;
    an image already of that size is returned as it is."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) == (w, h):
        return im
    return im.resize((new_w, new_h), _resample(interpolation))


def center_crop(im, size: int):
    """The central ``size`` x ``size`` of a PIL image, torchvision's ``center_crop``:
    top = ``int(round((H - size) / 2))`` (and the same for left); an image smaller than
    ``size`` is first padded with zeros around it, the extra row/column at the bottom/right."""
    from PIL import Image
    w, h = im.size
    if size > w or size > h:
        pw, ph = max(size - w, 0), max(size - h, 0)
        padded = Image.new(im.mode, (w + pw, h + ph), 0)
        padded.paste(im, (pw // 2, ph // 2))
        im, (w, h) = padded, padded.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


class _Transform:
    """Base of the recipes: ``t(image) -> (3, S, S)`` float32, ``t.batch(images)``."""

    size: int   # the side S of the output; subclasses define _pixels(RGB PIL image)

    def __call__(self, image) -> np.ndarray:
        """(3, S, S) float32 network input of one image (a path, PIL image or uint8 array)."""
        return self._pixels(_to_pil(image))

    def batch(self, images) -> np.ndarray:
        """(N, 3, S, S) float32 from a sequence of N images (paths, PIL images, arrays)."""
        images = list(images)
        out = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        for i, image in enumerate(images):
            out[i] = self(image)
        return out


class ImageNetTransform(_Transform):
    """torchvision's ImageNet evaluation transform; see :func:`imagenet_transform`."""

    def __init__(self, resize=256, crop=224, interpolation="bilinear", mean=IMAGENET_MEAN,
                 std=IMAGENET_STD):
        self.resize, self.crop = _check_size("resize", resize), _check_size("crop", crop)
        _resample(interpolation)                       # refuse a bad name now
        self.interpolation = interpolation
        m, s = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        # checked before any reshape, which would fail with a message that names neither
        if m.size != 3 or s.size != 3 or not (np.isfinite(m).all() and np.isfinite(s).all()
                                              and (s > 0).all()):
            raise ValueError(f"mean and std must be 3 numbers (RGB), finite, std > 0; got "
                             f"{mean}, {std}")
        self._given = (tuple(m.ravel().tolist()), tuple(s.ravel().tolist()))
        self.mean = m.astype(np.float32).reshape(3, 1, 1)
        self.std = s.astype(np.float32).reshape(3, 1, 1)
        self.size = self.crop

    def __repr__(self):
        return (f"imagenet_transform(resize={self.resize}, crop={self.crop}, "
                f"interpolation={self.interpolation!r}, mean={self._given[0]}, "
                f"std={self._given[1]})")

    def _pixels(self, im):
        im = center_crop(resize_shorter(im, self.resize, self.interpolation), self.crop)
        # uint8 (S, S, 3) -> (3, S, S) in 0..1, then per channel (x - mean) / std, in float32
        # as torchvision's ToTensor / convert_image_dtype and Normalize compute it
        x = _chw(im)
        x /= np.float32(255)
        x -= self.mean
        x /= self.std
        return x


class LiteTransform(_Transform):
    """TensorFlow's EfficientNet(-Lite) evaluation transform; see :func:`lite_transform`."""

    def __init__(self, size=224, interpolation="bicubic"):
        self.size = _check_size("size", size)
        _resample(interpolation)
        self.interpolation = interpolation
        # TensorFlow's rule: crop_padding = round(size * (1 / 0.875 - 1)), 32 for 224
        self.crop_padding = round(self.size * (1 / _CROP_FRACTION - 1))

    def __repr__(self):
        return f"lite_transform(size={self.size}, interpolation={self.interpolation!r})"

    def crop_box(self, width: int, height: int):
        """(left, top, side) of the square TensorFlow crops from a width x height image:
        side = int(size / (size + crop_padding) * min(H, W)) (in float32, as TensorFlow
        computes it), offsets ((H - side) + 1) // 2 and ((W - side) + 1) // 2."""
        ratio = np.float32(self.size / (self.size + self.crop_padding))
        side = int(ratio * np.float32(min(width, height)))
        return ((width - side) + 1) // 2, ((height - side) + 1) // 2, side

    def _pixels(self, im):
        left, top, side = self.crop_box(*im.size)
        im = im.crop((left, top, left + side, top + side))
        im = im.resize((self.size, self.size), _resample(self.interpolation))
        x = _chw(im)
        # TensorFlow's MEAN_RGB 127 and STDDEV_RGB 128: pixels land in [-127/128, 1]
        x -= np.float32(127)
        x /= np.float32(128)
        return x


def imagenet_transform(resize=256, crop=224, interpolation="bilinear", mean=IMAGENET_MEAN,
                       std=IMAGENET_STD) -> ImageNetTransform:
    """torchvision's evaluation preprocessing: the callable ``t(image) -> (3, crop, crop)``.

    Resize the shorter side to ``resize`` with Pillow's ``interpolation`` ("bilinear",
    "bicubic", ...), take the central ``crop`` x ``crop``, scale to 0..1, subtract ``mean``
    and divide by ``std`` (RGB). The defaults are torchvision's classic recipe (256 / 224,
    bilinear, ImageNet statistics); each weights entry has its own (e.g. EfficientNet-B0:
    256 / 224 bicubic). ``t.batch(images) -> (N, 3, crop, crop)``.
    """
    return ImageNetTransform(resize, crop, interpolation, mean, std)


def lite_transform(size=224) -> LiteTransform:
    """TensorFlow's EfficientNet-Lite evaluation preprocessing, ``t(image) -> (3, size, size)``.

    Crop the central square of side ``int(size / (size + 32) * min(H, W))`` (the padding
    is ``round(size / 7)``: 32 for 224), resize it to ``size`` x ``size`` bicubic, and map
    the 0..255 pixels by ``(x - 127) / 128``. ``t.batch(images) -> (N, 3, size, size)``.
    """
    return LiteTransform(size)


def transform_for_weights(entry: dict) -> _Transform:
    """The preprocessing of a weights entry.

    ``entry``: a dict with torchvision's keys ``resize``, ``crop``, ``interpolation``,
    ``mean``, ``std`` (an entry of ``pretrained_weights.json``) -> :func:`imagenet_transform`;
    or ``{"recipe": "lite", "crop": size}`` (TensorFlow's EfficientNet-Lite) ->
    :func:`lite_transform`. A missing key raises an error naming it.
    """
    if not isinstance(entry, dict):
        raise TypeError(f"transform_for_weights: expected a dict, got {type(entry).__name__}")
    if entry.get("recipe") == "lite":
        return lite_transform(entry.get("crop", 224))
    keys = ("resize", "crop", "interpolation", "mean", "std")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise KeyError(f"transform_for_weights: the weights entry has no {missing[0]!r} "
                       f"(needs {', '.join(keys)}, or recipe='lite')")
    return imagenet_transform(*(entry[k] for k in keys))
