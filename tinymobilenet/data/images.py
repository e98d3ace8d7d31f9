"""Image files in: decoding and resizing with Pillow, the ecosystem's standard.

    load_image(path, mode="RGB")   -> uint8 (H, W, 3) for "RGB", (H, W) for "L"
    to_chw(image)                  uint8 (H, W[, C]) -> float32 (C, H, W) in 0..1

Decoding an image by hand teaches nothing about MobileNets and gets the edge cases wrong
(EXIF rotation, palettes, CMYK JPEGs), so Pillow does it. Every failure becomes one
:class:`ImageError` that names the file.

Pixels always come out with 8 bits per channel, 0..255. One case needs care: Pillow
decodes a 16-bit *grayscale* PNG, TIFF or PGM into an integer mode ("I;16", "I;16B", or
"I" for PNG and PGM, whose values are 0..65535), and its ``convert("L")`` *clips* those
values at 255 instead of scaling them: a 16-bit image would become white. Here they are
scaled, 8-bit value = round(v / 257) (65535 -> 255, the inverse of the usual v8 * 257).
(16-bit RGB and RGBA PNGs Pillow already decodes to 8 bits.) Pixels whose range cannot be
known -- 32-bit integers ("I" from a TIFF) and floating point ("F": 0..1? 0..255?) -- are
refused with an ImageError that says to save the image as an 8- or 16-bit PNG.
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


#: Pillow's modes of 16-bit unsigned gray pixels
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")
#: formats whose mode "I" holds 16-bit values 0..65535 (PNG: 16-bit gray; PGM with a
#: maxval above 255, which Pillow stretches to 0..65535)
_FORMATS_16 = ("PNG", "PPM")


def _to_8bit(im, fmt, path):
    """``im`` with its 16-bit gray pixels scaled to an 8-bit "L" image (see the module
    docstring; ``fmt``: the file's format, "PNG"); ImageError for pixels of an unknown
    range; other modes as they are."""
    from PIL import Image
    if im.mode in _MODES_16 or (im.mode == "I" and fmt in _FORMATS_16):
        v = np.asarray(im).astype(np.int64)
        if v.min(initial=0) < 0 or v.max(initial=0) > 65535:
            raise ImageError(f"{path}: 16-bit pixels outside 0..65535")
        return Image.fromarray(((v + 128) // 257).astype(np.uint8), "L")
    if im.mode in ("I", "F"):
        kind = "32-bit integer" if im.mode == "I" else "floating-point"
        raise ImageError(f"{path}: {kind} pixels (Pillow mode {im.mode}), whose range "
                         f"(0..1? 0..255? 0..65535?) cannot be known; save the image as an "
                         f"8- or 16-bit PNG")
    return im


def _convert(im, mode: str):
    """A PIL image in ``mode``; in "RGB" or "L" its transparent pixels (alpha, or a
    palette's transparent entry) lie on white, as a viewer shows them, so that a file gives
    the same picture in either mode."""
    from PIL import Image
    if im.mode == mode:
        return im
    if im.mode in ("RGBA", "LA", "P", "PA") and mode in ("RGB", "L"):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat if mode == "RGB" else flat.convert("L")
    return im.convert(mode)


def open_image(path, mode: str | None = "RGB"):
    """A fully decoded ``PIL.Image`` of ``path`` in ``mode`` ("RGB", "L", or None to keep
    the file's own mode), turned upright by its EXIF orientation, 8 bits per channel
    (16-bit gray scaled to "L", see the module docstring), in "RGB" and "L" transparent
    pixels on white."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..files import input_problem

    path = os.fspath(path)
    problem = input_problem(path, "image")
    if problem:
        raise ImageError(problem)
    try:
        with Image.open(path) as im:
            im.load()                  # decode now: a truncated file fails here, not later
            im = _to_8bit(ImageOps.exif_transpose(im), im.format, path)
            if mode is not None:
                im = _convert(im, mode)
            return im.copy()
    except ImageError:
        raise
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
