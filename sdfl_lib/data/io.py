"""Reading images and masks the same way everywhere: RGB uint8 images, binary {0, 1} masks
(every non-zero mask pixel is tampered).

What gets normalised on the way is counted in an optional `stats` counter (keys in `NORMALISED`),
so that a validation report can say how many CMYK, 16-bit, palette, RGBA or grey images a data set
holds, how many masks were not binary and how many had another size than their image.

EXIF orientation is deliberately not applied, anywhere: the data sets' masks are aligned with the
stored pixel grid, not with the displayed orientation. A rotating tag is counted
(`exif_orientation`) so that validation and `predict` say so.

The decompression-bomb limit is PIL's (`PIL.Image.MAX_IMAGE_PIXELS`) unless `SDFL_MAX_PIXELS` is set
in the environment (every command and worker process reads it) or a call passes `max_pixels`.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from sdfl_lib.errors import DataError, OutputError

# Keys counted in `stats`.
NORMALISED = ("cmyk", "16bit", "float", "palette", "rgba", "grey", "other_mode", "exif_orientation")
MAX_PIXELS_ENV = "SDFL_MAX_PIXELS"
_BOMB_HINT = (f"if you trust the file, raise the limit: {MAX_PIXELS_ENV}=N in the environment "
              "(any command), or --max-pixels of `sdfl data validate`")
_ORIENTATION = 0x0112  # the EXIF tag
MASK_EVENTS = ("mask_non_binary", "mask_rgba", "mask_resized", "mask_skipped")
MASK_POLICIES = ("resize", "skip", "fail")


class ImageReadError(DataError, OSError):
    """An image or mask that cannot be used; says which file and why."""

    def __init__(self, path: str | os.PathLike, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"cannot read {self.path}: {cause}")


class MaskSizeError(ImageReadError):
    """A mask whose size differs from its image, under the mask policy "fail"."""

    def __init__(self, path: str | os.PathLike, mask_size: tuple, image_size: tuple) -> None:
        self.mask_size = tuple(mask_size)
        self.image_size = tuple(image_size)
        super().__init__(
            path, f"mask is {mask_size[0]}x{mask_size[1]} (HxW) but its image is "
            f"{image_size[0]}x{image_size[1]}"
        )


def _count(stats: MutableMapping[str, int] | None, key: str) -> None:
    if stats is not None:
        stats[key] = stats.get(key, 0) + 1


def _is_16bit(img: Image.Image) -> bool:
    if img.mode.startswith("I;16") or img.mode == "I":
        return True
    # 16-bit RGB PNG/TIFF are opened as 8-bit "RGB"; only the raw mode of the tile tells.
    for tile in getattr(img, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def pixel_limit(max_pixels: int | None = None) -> int | None:
    """The decompression-bomb limit: `max_pixels`, else $SDFL_MAX_PIXELS, else PIL's."""
    if max_pixels is not None:
        return max_pixels
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return Image.MAX_IMAGE_PIXELS
    if not text.isdigit() or int(text) < 1:
        from sdfl_lib.errors import UsageError

        raise UsageError(f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 1, got {text!r}")
    return int(text)


def _open(path: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    """Opens and decodes a file fully; every failure becomes an ImageReadError."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file not found")
    limit, wanted = Image.MAX_IMAGE_PIXELS, pixel_limit(max_pixels)
    try:
        Image.MAX_IMAGE_PIXELS = wanted
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit; a bomb is an error here at 1x.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            # The tile (raw mode) is gone after decoding: look at the bit depth first.
            sixteen = _is_16bit(img)
            img.load()
            img.info["sdfl_16bit"] = sixteen
            img.info["sdfl_orientation"] = _orientation(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(path, f"decompression bomb refused ({err}); {_BOMB_HINT}") from None
    except (OSError, SyntaxError, ValueError) as err:
        cause = str(err) or type(err).__name__
        if "truncated" in cause.lower():
            cause = f"truncated file ({cause})"
        raise ImageReadError(path, cause) from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return img


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored, also when there is none or it is unreadable)."""
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block says nothing about the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(path: str | os.PathLike) -> int:
    """A file's EXIF orientation tag, from its header (1 when none)."""
    try:
        with Image.open(path) as img:
            return _orientation(img)
    except (OSError, SyntaxError, ValueError):
        return 1


def orientation_note(orientation: int) -> str:
    """What a file's EXIF orientation means for the outputs ("" for none)."""
    if orientation in (0, 1):
        return ""
    return (f"EXIF orientation {orientation} not applied: the image is read, and its mask and map "
            "are given, on the stored pixel grid, not as a photo viewer displays it")


def _scale_grey(img: Image.Image, path: str | os.PathLike,
                stats: MutableMapping[str, int] | None) -> np.ndarray:
    """HxWx3 uint8 from a 16/32-bit integer or a float grey image."""
    array = np.asarray(img).astype(np.float64)
    if img.mode == "F":
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= 255):
            raise ImageReadError(path, f"float image with values in [{low:g}, {high:g}]: expected "
                                       "[0, 1] or [0, 255]")  # fmt: skip
        _count(stats, "float")
        top = 1.0 if high <= 1.0 else 255.0  # [0, 1] is the usual float convention
    else:
        # 16-bit grey: full range 0..65535 -> 0..255 (not PIL's clipping).
        top = 65535.0 if array.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
    grey = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def load_image(
    path: str | os.PathLike,
    stats: MutableMapping[str, int] | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Reads an image as uint8 HxWx3 RGB, normalising CMYK/16-bit/palette/RGBA/grey modes.

    `stats` (a dict or Counter) counts what was normalised; `max_pixels` overrides PIL's
    decompression-bomb limit (default `PIL.Image.MAX_IMAGE_PIXELS`).
    """
    img = _open(path, max_pixels)
    if img.info.get("sdfl_16bit"):
        _count(stats, "16bit")
    if img.info.get("sdfl_orientation", 1) != 1:
        _count(stats, "exif_orientation")
    mode = img.mode
    if mode == "RGB":
        pass
    elif mode == "CMYK":
        _count(stats, "cmyk")
        img = img.convert("RGB")
    elif mode == "P":
        _count(stats, "palette")
        img = img.convert("RGBA" if "transparency" in img.info else "RGB").convert("RGB")
    elif mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        # The colour is kept as stored; transparency carries no meaning for forensics.
        _count(stats, "rgba")
        img = img.convert("RGBA" if mode.startswith("RGB") or mode == "PA" else "LA").convert("RGB")
    elif mode in ("L", "1"):
        _count(stats, "grey")
        img = img.convert("RGB")
    elif mode.startswith("I") or mode == "F":
        _count(stats, "grey")
        return _scale_grey(img, path, stats)
    else:
        _count(stats, "other_mode")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def image_hw(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image from its header, without decoding the pixels."""
    if not Path(path).is_file():
        raise ImageReadError(path, "file not found")
    limit, wanted = Image.MAX_IMAGE_PIXELS, pixel_limit()
    try:
        Image.MAX_IMAGE_PIXELS = wanted
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.height, img.width
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(path, f"decompression bomb refused ({err}); {_BOMB_HINT}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, str(err) or type(err).__name__) from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def binarize(array: np.ndarray, stats: MutableMapping[str, int] | None = None) -> np.ndarray:
    """{0, 1} uint8 from a grey mask by the one mask rule: every non-zero pixel is tampered.

    The same rule serves validation, training and evaluation, and is the authors' evaluation's
    (which counts every non-zero ground-truth pixel). Masks with more than two levels are counted
    as `mask_non_binary`: their grey levels, however faint, count as tampered.
    """
    # Cheaper than np.unique on large masks: a mask is two-level when every non-zero pixel
    # equals the maximum.
    nonzero = array > 0
    top = array.max()
    if top != 0 and np.any(nonzero & (array != top)):
        _count(stats, "mask_non_binary")
    return nonzero.astype(np.uint8)


def load_mask(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    policy: str = "resize",
    stats: MutableMapping[str, int] | None = None,
) -> np.ndarray | None:
    """Reads a mask as uint8 {0, 1} HxW by the one mask rule: a pixel is tampered when it is not
    zero (see `binarize`).

    Colour masks: a pixel counts when any channel is non-zero. RGBA masks whose colour is
    constant but alpha varies use the alpha channel. When `size` = (H, W) differs from
    the mask: "resize" (nearest neighbour, counted), "skip" (returns None, counted) or "fail"
    (raises `MaskSizeError`).
    """
    if policy not in MASK_POLICIES:
        raise ValueError(f"mask policy must be one of {MASK_POLICIES}, got {policy!r}")
    img = _open(path, None)
    if img.mode == "P":
        img = img.convert("RGBA")
    array = np.asarray(img)
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        _count(stats, "mask_rgba")
        colour, alpha = array[..., :-1], array[..., -1]
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            array = alpha
        else:
            array = colour
    if img.mode == "CMYK":
        array = np.asarray(img.convert("RGB"))
    if array.ndim == 3:
        # Channel-wise maximum; np.maximum on slices is ~20x faster than max(axis=2) here.
        array = np.maximum.reduce([array[..., c] for c in range(array.shape[2])])
    if array.dtype.kind == "i":
        # PIL's "I" mode (32-bit) holds 16-bit masks; scale to 16-bit range semantics.
        array = np.clip(array, 0, 65535).astype(np.uint16)
    mask = binarize(array, stats)
    if size is not None and tuple(mask.shape) != tuple(size):
        if policy == "fail":
            raise MaskSizeError(path, mask.shape, size)
        if policy == "skip":
            _count(stats, "mask_skipped")
            return None
        _count(stats, "mask_resized")
        mask = cv2.resize(mask, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    return mask


def write_image(path: str | os.PathLike, array: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    """Writes an image (BGR or grey, as OpenCV takes it; the format from the file name). Encoded
    in memory and written by Python, so that a full disk or a read-only folder raises
    `OutputError` naming the file and the reason (cv2.imwrite only returns False)."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", array, list(params))
    if not ok:
        raise ValueError(f"cannot encode an image of shape {array.shape} as {path.suffix}")
    try:
        with open(path, "wb") as handle:
            handle.write(encoded.tobytes())
    except OSError as err:
        path.unlink(missing_ok=True)  # never a cut file that reads as an image
        raise OutputError(path, err) from err
    return path


def new_stats() -> Counter:
    """An empty counter for `load_image` / `load_mask`'s `stats`."""
    return Counter()
