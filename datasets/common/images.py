"""Images: reading and checking them, converting them to JPEG, hashing, cross-split duplicates.

An unusable image is not an error: :func:`prepare_image` raises
:class:`~fashion_keras_datasets.common.errors.ImageProblem` (missing, empty, undecodable, over
the pixel cap, checked before decoding, or under the minimum side), which the builders count as
a skipped row. Images TensorFlow's JPEG decoder cannot read as they are (PNG, 16-bit PNG, GIF,
BMP, WebP, CMYK JPEG) are converted to RGB JPEG. Byte-identical images (md5) in two splits stay
in the first split (:class:`CrossSplitDuplicates`, :func:`find_duplicates`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from etils import epath

from fashion_keras_datasets.common.errors import (
    EMPTY_IMAGE,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    ImageProblem,
)

#: Default image limits: 40 megapixels (a decompression-bomb guard far above any garment
#: photo) and a shorter side of at least 8 pixels (1x1 "images" carry nothing).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MIN_IMAGE_SIDE = 8
JPEG_REENCODE_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the image header says."""

    width: int
    height: int
    format: str  # PIL format name, e.g. "JPEG", "PNG"
    mode: str  # PIL mode, e.g. "RGB", "L", "CMYK"


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """Size limits an image must meet (checked from the header, before decoding)."""

    #: Images with more pixels are skipped (``image_too_large``): decompression bombs.
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    #: Images whose shorter side is below this are skipped (``image_too_small``), e.g. 1x1.
    min_side: int = DEFAULT_MIN_IMAGE_SIDE


def read_image(
    path: str | epath.PathLike, *, decode: bool = True, limits: ImageLimits | None = None
) -> tuple[bytes, ImageInfo]:
    """Reads an image's bytes once and checks them with PIL.

    Args:
      path: the image file.
      decode: also decode the pixels, which catches truncated or corrupt files whose header is
        fine (JPEGs are decoded at reduced scale, which still reads every byte).
      limits: size limits checked from the header (default :class:`ImageLimits`).

    Returns:
      The file's bytes, unchanged, and its :class:`ImageInfo`.

    Raises:
      ImageProblem: ``missing_image``, ``empty_image``, ``unreadable_image``,
        ``image_too_large`` or ``image_too_small``.
    """
    p = epath.Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageProblem(MISSING_IMAGE, p, "image file not found") from None
    except IsADirectoryError:
        raise ImageProblem(MISSING_IMAGE, p, "is a folder, not an image file") from None
    except OSError as e:
        raise ImageProblem(UNREADABLE_IMAGE, p, f"cannot read: {e}") from None
    return data, check_image_bytes(data, p, decode=decode, limits=limits)


def check_image(
    path: str | epath.PathLike, *, decode: bool = True, limits: ImageLimits | None = None
) -> ImageInfo:
    """Checks that ``path`` is a readable image and returns its size (see :func:`read_image`)."""
    return read_image(path, decode=decode, limits=limits)[1]


def check_image_bytes(
    data: bytes,
    path: str | epath.PathLike = "<bytes>",
    *,
    decode: bool = True,
    limits: ImageLimits | None = None,
) -> ImageInfo:
    """Checks encoded image bytes with PIL; raises :class:`ImageProblem` if unusable.

    The size limits are checked from the header, so an oversized image is never decoded.
    """
    from PIL import Image, UnidentifiedImageError

    limits = limits or ImageLimits()
    if not data:
        raise ImageProblem(EMPTY_IMAGE, path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageProblem(IMAGE_TOO_LARGE, path, f"{e}") from None
    except UnidentifiedImageError:
        raise ImageProblem(UNREADABLE_IMAGE, path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot decode: {e}") from None
    with img:
        info = ImageInfo(int(img.width), int(img.height), str(img.format), str(img.mode))
        if info.width <= 0 or info.height <= 0:
            raise ImageProblem(UNREADABLE_IMAGE, path, f"image size {img.size}")
        if info.width * info.height > limits.max_pixels:
            raise ImageProblem(
                IMAGE_TOO_LARGE,
                path,
                f"{info.width}x{info.height} = {info.width * info.height} pixels, over the cap "
                f"of {limits.max_pixels} (possible decompression bomb)",
            )
        if min(info.width, info.height) < limits.min_side:
            raise ImageProblem(
                IMAGE_TOO_SMALL,
                path,
                f"{info.width}x{info.height} pixels, a side below {limits.min_side}",
            )
        if decode:
            try:
                if info.format == "JPEG":
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot decode: {e}") from None
    return info


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """An image ready to store: JPEG bytes TensorFlow decodes to RGB."""

    data: bytes  # the original bytes when already an RGB/grayscale JPEG, else a re-encoding
    info: ImageInfo  # of the original file
    md5: str  # of the original file's bytes
    reencoded: bool


def prepare_image(path: str | epath.PathLike, limits: ImageLimits | None = None) -> PreparedImage:
    """Reads, checks and (only when needed) converts an image for a ``jpeg`` TFDS Image feature.

    RGB and grayscale JPEGs are kept byte for byte. Anything else is converted to an RGB JPEG:
    PNG (including 16-bit and transparent ones), GIF (first frame), BMP, WebP, TIFF, and CMYK
    or YCCK JPEGs (which ``tf.io.decode_jpeg`` cannot read).

    Raises:
      ImageProblem: see :func:`read_image`.
    """
    data, info = read_image(path, limits=limits)
    md5 = hashlib.md5(data).hexdigest()
    if info.format == "JPEG" and info.mode in ("RGB", "L"):
        return PreparedImage(data, info, md5, reencoded=False)
    try:
        jpeg = to_jpeg(data)
    except (OSError, ValueError) as e:
        raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot convert to JPEG: {e}") from None
    return PreparedImage(jpeg, info, md5, reencoded=True)


def to_rgb(img: Any) -> Any:
    """A PIL image in any mode as 8-bit RGB: 16/32-bit values rescaled (not clipped), alpha
    composited on white, palettes and CMYK converted."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grayscale
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) <= 65535):
            a = a / 257.0  # 0..65535 -> 0..255
        elif mode == "I":
            a = a / max(1.0, a.max(initial=0)) * 255.0
        gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_jpeg(data: bytes, quality: int = JPEG_REENCODE_QUALITY) -> bytes:
    """Re-encodes any image PIL reads (first frame) as an RGB JPEG."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        out = io.BytesIO()
        to_rgb(img).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def file_md5(path: str | epath.PathLike) -> str | None:
    """The md5 of a file's bytes, or None when it cannot be read (reported later)."""
    try:
        return hashlib.md5(epath.Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def hash_files(paths: Iterable[epath.Path], workers: int = 8) -> dict[str, str | None]:
    """``{str(path): md5 or None}`` for every distinct path, read in parallel threads."""
    unique = sorted({str(p) for p in paths})
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(unique, pool.map(file_md5, unique), strict=True))


def hash_bucket(text: str, buckets: int = 100) -> int:
    """A stable bucket in ``[0, buckets)`` for ``text`` (e.g. an image path -> val or train)."""
    return int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % buckets


# --- duplicates across splits -------------------------------------------------------------------


class CrossSplitDuplicates:
    """Finds byte-identical images (same md5) in more than one split.

    Splits are ranked by ``order`` (training first, then the evaluation splits): an image is
    kept in the first split it appears in and every row of a later split that holds the same
    bytes is a duplicate, so no evaluation split holds an image seen in training.
    """

    def __init__(self, order: Sequence[str]) -> None:
        self.order = tuple(order)
        self._first: dict[str, tuple[int, str]] = {}  # md5 -> (rank, where)
        self._rows: list[tuple[int, str, Any, str]] = []

    def add(self, split: str, key: Any, md5: str | None, where: str) -> None:
        """Registers one row (``where`` is its ``file:line``); unreadable images pass None."""
        if md5 is None:
            return
        rank = self.order.index(split) if split in self.order else len(self.order)
        self._rows.append((rank, split, key, md5))
        first = self._first.get(md5)
        if first is None or rank < first[0]:
            self._first[md5] = (rank, where)

    def duplicates(self) -> dict[tuple[str, Any], str]:
        """``{(split, key): where the image appears in an earlier split}``."""
        out = {}
        for rank, split, key, md5 in self._rows:
            first_rank, first_where = self._first[md5]
            if rank > first_rank:
                out[(split, key)] = first_where
        return out


class ImageRow(Protocol):
    """A parsed annotation row that names one image, as the shared build loop reads it."""

    @property
    def key(self) -> str:
        """The example key, unique in its split (also the row's key among duplicates)."""

    @property
    def name(self) -> str:
        """The image as the annotation names it (for messages)."""

    @property
    def image(self) -> epath.Path:
        """The image file."""

    @property
    def where(self) -> str:
        """``file:line`` of the row."""


def find_duplicates(
    rows: Mapping[str, Sequence[ImageRow]], order: Sequence[str]
) -> dict[tuple[str, str], str]:
    """``{(split, key): where}`` of the rows whose image bytes appear in an earlier split.

    Args:
      rows: the rows of each split.
      order: the splits, training first (see :class:`CrossSplitDuplicates`).
    """
    hashes = hash_files(r.image for split_rows in rows.values() for r in split_rows)
    finder = CrossSplitDuplicates(order)
    for split, split_rows in rows.items():
        for r in split_rows:
            finder.add(split, r.key, hashes[str(r.image)], r.where)
    return finder.duplicates()
