"""Image files in: decoding and resizing with Pillow, the ecosystem's standard.

    load_image(path, mode="RGB")   -> uint8 (H, W, 3) for "RGB", (H, W) for "L"
    to_chw(image)                  uint8 (H, W[, C]) -> float32 (C, H, W) in 0..1

Decoding an image by hand teaches nothing about MobileNets and gets the edge cases wrong
(EXIF rotation, palettes, 16-bit PNGs, CMYK JPEGs), so Pillow does it. Every failure
becomes one :class:`ImageError` that names the file.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["ImageError", "IMAGE_EXTENSIONS", "load_image", "open_image", "to_chw"]

#: file name endings treated as images (lower case), as torchvision's ImageFolder does
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")


class ImageError(ValueError):
    """A file that is missing, unreadable, truncated or not an image (the message names it)."""


def open_image(path, mode: str | None = "RGB"):
    """A fully decoded ``PIL.Image`` of ``path`` in ``mode`` ("RGB", "L", or None to keep
    the file's own mode), turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()                  # decode now: a truncated file fails here, not later
            im = ImageOps.exif_transpose(im)
            if mode is not None and im.mode != mode:
                if im.mode in ("RGBA", "LA", "P", "PA") and mode == "RGB":
                    # transparent pixels onto white, as a viewer shows them
                    rgba = im.convert("RGBA")
                    im = Image.new("RGB", rgba.size, (255, 255, 255))
                    im.paste(rgba, mask=rgba.getchannel("A"))
                else:
                    im = im.convert(mode)
            return im.copy()
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as e:   # truncated, corrupt, unsupported
        raise ImageError(f"{path}: cannot read the image ({e})") from None


def load_image(path, mode: str | None = "RGB") -> np.ndarray:
    """The pixels of an image file as uint8: (H, W, 3) for ``mode="RGB"`` (the default),
    (H, W) for ``"L"`` (grayscale). Raises :class:`ImageError` naming the file."""
    return np.asarray(open_image(path, mode))


def to_chw(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) or (H, W) -> float32 (C, H, W) scaled to 0..1 (torchvision's
    ``ToTensor``)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"to_chw: expected an image (H, W) or (H, W, C), got {image.shape}")
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)
