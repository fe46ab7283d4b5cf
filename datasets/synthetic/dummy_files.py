"""The files of the builders' ``dummy_data/`` folders: deterministic drawn images in awkward
encodings (:data:`AWKWARD`), text files with chosen line ends, and the fresh folder with its
``README_SYNTHETIC.txt``.

Used by :mod:`fashion_keras_datasets.synthetic.dummy_data` (FashionAI, custom CSV, the CLI),
:mod:`fashion_keras_datasets.synthetic.deepfashion_dummy_data` and
``fashion_keras_datasets.fashionai_keypoints.make_dummy_data``. The images are drawn rectangles,
not garments.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

README = """SYNTHETIC DATA - NOT {what}.

Written by `python -m fashion_keras_datasets.synthetic.dummy_data` for the builder's tests.
The layout and the annotation formats are those of the real release; the images are drawn
rectangles, and some are broken or oddly encoded on purpose (see
fashion_keras_datasets/synthetic/dummy_data.py).
"""


# --- images ---------------------------------------------------------------------------------------


def drawing(seed: int, width: int = 36, height: int = 48) -> np.ndarray:
    """A deterministic RGB picture: a coloured "garment" rectangle on a noisy background."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (height, width, 3)).astype(np.uint8) + rng.integers(0, 150, 3).astype(
        np.uint8
    )
    y0, x0 = height // 5, width // 5
    img[y0 : height - y0, x0 : width - x0] = rng.integers(60, 255, 3)
    return img


def encode(array: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **kwargs) -> bytes:
    """Encodes an RGB uint8 array, optionally converted to a PIL ``mode`` first."""
    img = Image.fromarray(array)
    if mode is not None:
        img = img.convert(mode)
    if fmt == "JPEG":
        kwargs.setdefault("quality", 90)
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk (for 16-bit RGB, and headers that lie about the size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def png16_rgb(array: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG of an RGB uint8 array."""
    wide = array.astype(">u2") * 257
    rows = b"".join(b"\x00" + wide[i].tobytes() for i in range(wide.shape[0]))
    return raw_png(array.shape[1], array.shape[0], 16, 2, rows)


def png16_gray(array: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG (PIL mode ``I;16``) of an RGB uint8 array."""
    gray = np.asarray(Image.fromarray(array).convert("L"), np.uint16) * 257
    out = io.BytesIO()
    Image.fromarray(gray).save(out, format="PNG")
    return out.getvalue()


def bomb_png(side: int = 40_000) -> bytes:
    """A few hundred bytes whose header claims ``side`` x ``side`` pixels (never decoded)."""
    return raw_png(side, side, 8, 2, b"\x00" * 64)


def rgba_png(array: np.ndarray) -> bytes:
    """An RGBA PNG whose border is fully transparent."""
    rgba = np.dstack([array, np.full(array.shape[:2], 255, np.uint8)])
    rgba[:2, :, 3] = 0
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


#: Awkward encodings by name -> bytes from an RGB uint8 array.
AWKWARD: dict[str, Callable[[np.ndarray], bytes]] = {
    "jpeg": lambda a: encode(a),
    "gray_jpeg": lambda a: encode(a, mode="L"),
    "cmyk_jpeg": lambda a: encode(a, mode="CMYK"),
    "png": lambda a: encode(a, "PNG"),
    "rgba_png": rgba_png,
    "png16_gray": png16_gray,
    "png16_rgb": png16_rgb,
    "gif": lambda a: encode(a, "GIF", mode="P"),
    "bmp": lambda a: encode(a, "BMP"),
    "webp": lambda a: encode(a, "WEBP", quality=90),
    "one_by_one": lambda a: encode(a[:1, :1]),
    "empty": lambda a: b"",
    "truncated_jpeg": lambda a: encode(a)[:200],
    "not_an_image": lambda a: b"<html>404 Not Found</html>\n",
    "bomb": lambda a: bomb_png(),
}


def write_image(path: str, kind: str, seed: int) -> bytes:
    """Writes ``drawing(seed)`` encoded as ``kind`` (see :data:`AWKWARD`); returns the bytes."""
    data = AWKWARD[kind](drawing(seed))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return data


def write_row_image(path: str, kind: str, row: int, written: dict[int, bytes], seed: int) -> None:
    """Writes the image of row ``row``: ``copy:<n>`` repeats the bytes of row ``n``, ``missing``
    writes nothing, any other kind is drawn (see :func:`write_image`) and kept in ``written``."""
    if kind.startswith("copy:"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(written[int(kind[5:])])
    elif kind != "missing":
        written[row] = write_image(path, kind, seed=seed)


def write_text(path: str, lines: Sequence[str], newline: str = "\n") -> None:
    """Writes ``lines`` at ``path`` (UTF-8), each ended by ``newline``; creates the folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + newline for line in lines))


def fresh_folder(root: str, what: str) -> None:
    """Empties (or creates) ``root`` and writes its ``README_SYNTHETIC.txt`` saying it is NOT
    ``what``."""
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    with open(os.path.join(root, "README_SYNTHETIC.txt"), "w", encoding="utf-8") as f:
        f.write(README.format(what=what))
