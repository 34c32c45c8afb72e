"""The manipulations behind `synthesize`: splicing, copy-move, removal and face blending.

Every function takes an authentic RGB uint8 image and a `numpy.random.Generator` and returns
`(image, mask)`: the manipulated image and the exact binary mask of the pixels it changed.
Blending is feathered: pixels up to `feather` pixels outside the mask (Chebyshev distance) may
change too, never farther; inside the mask they may change little where the content is similar.

The photographs are those scikit-image ships (`skimage.data`), so nothing is downloaded.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Colour photographs of natural scenes; grey ones (converted to RGB) add variety.
PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera", "coins", "moon",
    "clock", "brick", "grass", "gravel",
)
# Photographs with a frontal face for the face-blending manipulation.
FACE_PHOTOS: tuple[str, ...] = ("astronaut",)
DEFAULT_FEATHER = 3


class NoFaceFound(LookupError):
    """The face detector found no face in the image."""


@functools.cache
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as uint8 HxWx3 RGB (read-only, cached)."""
    import skimage.data  # why: heavy, only for sample photos

    array = np.asarray(getattr(skimage.data, name)())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    array = np.ascontiguousarray(array[..., :3], dtype=np.uint8)
    array.flags.writeable = False
    return array


def random_crop(rng: np.random.Generator, image: np.ndarray, size: int,
                box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A random square crop (30-100% of the short side), maybe mirrored, resized to `size`.

    With `box` = (x, y, w, h), the crop contains that box and is at most 3.5 times its size.
    """
    h, w = image.shape[:2]
    short = min(h, w)
    if box is None:
        side = int(short * rng.uniform(0.3, 1.0))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
    else:
        bx, by, bw, bh = box
        low = max(bw, bh) * 1.6
        side = int(min(short, rng.uniform(low, max(low, max(bw, bh) * 3.5))))
        x0 = int(rng.integers(max(0, bx + bw - side), min(bx, w - side) + 1))
        y0 = int(rng.integers(max(0, by + bh - side), min(by, h - side) + 1))
    crop = image[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp)
    return np.ascontiguousarray(out[:, ::-1]) if rng.random() < 0.5 else out


def camera_jpeg(rng: np.random.Generator, image: np.ndarray, prob: float,
                quality: tuple[int, int]) -> np.ndarray:
    """The photo as a camera or an earlier save left it: JPEG-compressed at a random quality in
    `quality` with probability `prob`, else unchanged. Manipulations made afterwards break its
    8x8 block grid where they paste, move or fill (the trace double-JPEG detectors look for)."""
    if rng.random() >= prob:
        return image
    q = int(rng.integers(quality[0], quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise OSError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def blob(rng: np.random.Generator, size: int, area: tuple[float, float] = (0.02, 0.2),
         center: tuple[float, float] | None = None) -> np.ndarray:
    """An object-like random shape: a smoothed star polygon, uint8 {0, 1} `size` x `size`."""
    frac = rng.uniform(*area)
    radius = np.sqrt(frac * size * size / np.pi)
    if center is None:
        margin = radius * 0.8
        center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    count = int(rng.integers(7, 16))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = radius * rng.uniform(0.55, 1.35, count)
    aspect = rng.uniform(0.6, 1.6)
    points = np.stack(
        [center[0] + radii * np.cos(angles) * aspect, center[1] + radii * np.sin(angles) / aspect],
        axis=1,
    )
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 255)
    # Rounds the polygon's corners so the shape looks like an object, not a star.
    k = max(3, int(radius * 0.3) | 1)
    smooth = cv2.GaussianBlur(canvas, (k, k), 0)
    shape = (smooth > 127).astype(np.uint8)
    if shape.sum() < 16:  # a degenerate draw: fall back to a disc
        shape[:] = 0
        cv2.circle(shape, (int(center[0]), int(center[1])), max(3, int(radius)), 1, -1)
    return shape


def _alpha(mask: np.ndarray, feather: int) -> np.ndarray:
    """Blend weights: the mask blurred by a (2*feather+1)^2 kernel, so alpha is zero farther
    than `feather` pixels (Chebyshev) from the mask."""
    alpha = mask.astype(np.float32)
    if feather > 0:
        k = 2 * feather + 1
        alpha = cv2.GaussianBlur(alpha, (k, k), feather / 2.0, borderType=cv2.BORDER_CONSTANT)
    return alpha[..., None]


def _blend(base: np.ndarray, top: np.ndarray, mask: np.ndarray, feather: int) -> np.ndarray:
    alpha = _alpha(mask, feather)
    out = base.astype(np.float32) * (1 - alpha) + top.astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _match_colour(src: np.ndarray, ref: np.ndarray, where: np.ndarray, strength: float) -> np.ndarray:
    """Moves `src`'s per-channel mean/std inside `where` towards `ref`'s (Reinhard-style)."""
    sel = where.astype(bool)
    if sel.sum() < 4:
        return src
    s, r = src[sel].astype(np.float32), ref[sel].astype(np.float32)
    mu_s, sd_s = s.mean(0), s.std(0) + 1e-3
    mu_r, sd_r = r.mean(0), r.std(0) + 1e-3
    moved = (src.astype(np.float32) - mu_s) / sd_s * sd_r + mu_r
    out = src.astype(np.float32) * (1 - strength) + moved * strength
    return np.clip(out, 0, 255).astype(np.uint8)


def splice(rng: np.random.Generator, base: np.ndarray, donor: np.ndarray,
           feather: int = DEFAULT_FEATHER) -> tuple[np.ndarray, np.ndarray]:
    """Pastes an object-like region of `donor` (same size as `base`) into `base`."""
    size = base.shape[0]
    mask = blob(rng, size)
    colour = _match_colour(donor, base, mask, rng.uniform(0.4, 1.0))
    return _blend(base, colour, mask, feather), mask


def copy_move(rng: np.random.Generator, base: np.ndarray,
              feather: int = DEFAULT_FEATHER) -> tuple[np.ndarray, np.ndarray]:
    """Copies a region of `base` elsewhere in it, scaled (0.7-1.3) and rotated (+-35 deg)."""
    size = base.shape[0]
    for _ in range(20):
        source = blob(rng, size, area=(0.02, 0.12))
        ys, xs = np.nonzero(source)
        cx, cy = xs.mean(), ys.mean()
        scale, angle = rng.uniform(0.7, 1.3), rng.uniform(-35, 35)
        tx, ty = rng.uniform(0.15, 0.85, 2) * size
        matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), float(scale))
        matrix[:, 2] += (tx - cx, ty - cy)
        moved = cv2.warpAffine(base, matrix, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        target = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_NEAREST,
                                borderValue=0)
        overlap = (target & source).sum() / max(1, target.sum())
        # The pasted region must be mostly in the image and not sit on its own source.
        if target.sum() >= 0.7 * source.sum() * scale**2 and overlap < 0.3:
            return _blend(base, moved, target, feather), target
    return splice(rng, base, moved, feather)  # pragma: no cover - 20 failed draws


def removal(rng: np.random.Generator, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Removes an object-like region by OpenCV inpainting (Telea or Navier-Stokes)."""
    mask = blob(rng, base.shape[0], area=(0.01, 0.08))
    method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    out = cv2.inpaint(base, mask * 255, float(rng.integers(3, 8)), method)
    # cv2.inpaint only writes masked pixels; the explicit copy makes that a guarantee.
    result = base.copy()
    result[mask.astype(bool)] = out[mask.astype(bool)]
    return result, mask


@functools.cache
def _face_detector():
    """OpenCV's Haar cascade when this OpenCV has one, else scikit-image's LBP face cascade
    (an OpenCV-trained cascade file scikit-image ships; OpenCV 5 dropped CascadeClassifier)."""
    xml = getattr(getattr(cv2, "data", None), "haarcascades", "") + "haarcascade_frontalface_default.xml"
    if hasattr(cv2, "CascadeClassifier"):
        cascade = cv2.CascadeClassifier(xml)
        if not cascade.empty():
            return "opencv-haar", cascade
    import skimage.data  # why: heavy, only for sample photos
    from skimage.feature import Cascade  # why: heavy, only for sample photos

    return "skimage-lbp", Cascade(skimage.data.lbp_frontal_face_cascade_filename())


def detect_faces(image: np.ndarray, min_size: int = 24) -> list[tuple[int, int, int, int]]:
    """Frontal faces in an RGB image as (x, y, w, h) boxes, largest first."""
    kind, detector = _face_detector()
    max_side = min(image.shape[:2])
    if kind == "opencv-haar":
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        found = detector.detectMultiScale(grey, 1.1, 5, minSize=(min_size, min_size))
        boxes = [tuple(int(v) for v in box) for box in found]
    else:
        found = detector.detect_multi_scale(
            img=image, scale_factor=1.2, step_ratio=1, min_size=(min_size, min_size),
            max_size=(max_side, max_side),
        )
        boxes = [(int(f["c"]), int(f["r"]), int(f["width"]), int(f["height"])) for f in found]
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b))


@functools.cache
def face_box(name: str) -> tuple[int, int, int, int] | None:
    """The largest face in a sample photograph (cached), or None."""
    image = photo(name)
    boxes = detect_faces(image, min_size=max(24, min(image.shape[:2]) // 10))
    return boxes[0] if boxes else None


def face_blend(rng: np.random.Generator, base: np.ndarray,
               feather: int = DEFAULT_FEATHER) -> tuple[np.ndarray, np.ndarray]:
    """Finds a face, changes its colour and geometry a little and blends it back.

    Raises `NoFaceFound` when the detector finds none (the caller falls back and counts it).
    """
    size = base.shape[0]
    boxes = detect_faces(base, min_size=max(24, size // 6))
    if not boxes:
        raise NoFaceFound("no frontal face found")
    x, y, w, h = boxes[0]
    mask = np.zeros((size, size), np.uint8)
    centre = (int(x + w / 2), int(y + h * 0.55))
    axes = (max(2, int(w * rng.uniform(0.36, 0.44))), max(2, int(h * rng.uniform(0.45, 0.55))))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    matrix = cv2.getRotationMatrix2D(
        (float(centre[0]), float(centre[1])), float(rng.uniform(-6, 6)), float(rng.uniform(0.94, 1.08))
    )
    matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * (w, h)
    warped = cv2.warpAffine(base, matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.9, 1.1)
    shifted = np.clip(warped.astype(np.float32) * gain + rng.uniform(-12, 12), 0, 255)
    return _blend(base, shifted.astype(np.uint8), mask, feather), mask
