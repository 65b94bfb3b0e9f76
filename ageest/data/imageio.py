"""Decoding an image file as a viewer shows it: the one way ageest turns a file into RGB pixels.

The cache (`ageest prepare`), training's plain pipeline, `predict`, `align-preview` and the
manifest's decode check all come here (through `load_rgb`), so a photo is never seen one way
by training and another way by prediction. What a viewer does and PIL's `convert("RGB")` does not:

- **EXIF orientation** is applied: a phone photo stored rotated (Orientation = 6) comes out upright.
- **Wide pixel types are scaled by their type's range** to 8 bits, never clipped (clipping turns
  a 16-bit photo into a white square):
    - `I;16`, `I;16B`, `I;16L` (16-bit, e.g. 16-bit greyscale PNG): v8 = round(v * 255 / 65535),
      so a 16-bit copy of an 8-bit image (v * 257) decodes to the very same pixels;
    - `I` (signed 32-bit integer, e.g. 32-bit TIFF): 0 .. 2**31 - 1 -> 0 .. 255, negative values
      (no image has them) black;
    - `F` (32-bit float): 0.0 .. 1.0 -> 0 .. 255, the float-image convention; values outside it
      are clipped (a float has no range of its own) and NaN is black.
- **Transparency** (RGBA, LA, PA, a palette or greyscale image with a transparent colour) is
  composited on neutral grey (128), the background that biases a face's brightness least; a
  transparent corner must not become black or white skin.
- **CMYK** and the other colour modes go through PIL's conversion to RGB.

A file that cannot be decoded, or that has more than MAX_PIXELS pixels, is refused with a
DataError naming it (one line, exit status 2 from the CLI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ageest.errors import AgeestError, DataError, first_line
from ageest.io import write_bytes_atomic

# Why a limit: a small compressed file can declare a huge image (a "decompression bomb": a 100 kB
# PNG of 14000 x 14000 pixels decodes to 600 MB of RGB, more as 16-bit or float), and the cache
# decodes several images at once in threads. 64 megapixels (8192 x 8192) is far beyond any face
# photo (FG-NET's are under 1 megapixel, a phone's 12-50) and decodes in under 1 GB at any depth.
MAX_PIXELS = 64 * 2**20
# PIL's own guard (89 megapixels, then an exception with a traceback from Image.open) is replaced by
# the check below, which comes first and is stricter; only this module opens images.
Image.MAX_IMAGE_PIXELS = None

GREY = 128  # the background transparent pixels are composited on
_INT_RANGE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 2**31 - 1}


def load_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), upright and 8-bit as a viewer shows it (see above).

    A missing, corrupt, truncated or non-image file, or one with more than `max_pixels` pixels,
    raises DataError naming it.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise DataError(f"{p}: {w} x {h} pixels is more than the limit of {max_pixels / 2**20:.0f} "
                                "megapixels (a guard against decompression bombs, which would fill the memory)")
            im.load()  # decode fully now so truncation is caught here, not mid-training
            return to_rgb8(ImageOps.exif_transpose(im))
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: cannot decode image ({first_line(e)})") from None


def to_rgb8(im: Image.Image) -> np.ndarray:
    """A decoded PIL image of any mode -> RGB uint8 (H, W, 3), by the rules of the module docstring."""
    if im.mode in _INT_RANGE or im.mode == "F":
        return np.repeat(scale_to_8bit(np.asarray(im), im.mode)[..., None], 3, axis=2)
    if "A" in im.mode or "a" in im.mode or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[..., 3:]
        # Rounded integer compositing: opaque pixels keep their exact values.
        return ((rgba[..., :3] * alpha + GREY * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def scale_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """One channel of a wide mode (`I;16*`, `I`, `F`) -> uint8, scaled by the mode's range."""
    if mode == "F":
        v = np.nan_to_num(values.astype(np.float64), nan=0.0)
        top = 1.0
    else:
        v = values.astype(np.float64)
        top = _INT_RANGE[mode]
    return np.rint(np.clip(v / top, 0.0, 1.0) * 255).astype(np.uint8)


def save_bgr(path: str | Path, bgr: np.ndarray) -> None:
    """Write an OpenCV (BGR) image, encoded by the name's suffix, atomically: a full disk or an
    unwritable folder is one line naming the file and the OS's reason (cv2.imwrite says only False)."""
    import cv2

    p = Path(path)
    try:
        ok, data = cv2.imencode(p.suffix or ".jpg", bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise AgeestError(f"cannot write {p}: no image format for the suffix '{p.suffix}' (use .jpg or .png)")
    write_bytes_atomic(p, data.tobytes())
