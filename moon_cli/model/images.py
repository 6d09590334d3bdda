"""Loading product photos safely: every failure becomes a one-line error naming the item and field."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from moon_cli.errors import MoonError


class InputError(MoonError):
    """A product or query that cannot be encoded; callers decide whether to skip the row."""


def load_image(source, owner: str, field: str) -> Image.Image:
    """An RGB image from a path, bytes (an upload) or a PIL image; EXIF rotation applied; bombs, truncation,
    junk refused."""
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray)):
            name, opener = "(uploaded)", io.BytesIO(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise InputError(f"{owner}: {field} '{path}' does not exist")
            name, opener = str(path), path
        try:
            with warnings.catch_warnings():
                # PIL only warns between 1x and 2x its pixel limit; a product photo that large is refused
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(opener)
                img.load()  # decode now: truncated and corrupt files fail here, not later
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(f"{owner}: {field} '{name}' exceeds PIL's pixel limit "
                             f"({Image.MAX_IMAGE_PIXELS} px): refusing a possible decompression bomb") from None
        except UnidentifiedImageError:
            raise InputError(f"{owner}: {field} '{name}' is not a decodable image") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{owner}: {field} '{name}' cannot be decoded ({exc})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the photo
        pass
    if img.width < 1 or img.height < 1:
        raise InputError(f"{owner}: {field} has no pixels")
    return to_rgb(img)


def has_alpha(img: Image.Image) -> bool:
    """Whether ``img`` has transparent areas to fill: an alpha band, or a palette / colour key marked
    transparent."""
    return img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB at 8 bits. Transparent areas are composited on white: product cut-outs are RGBA, and dropping the
    alpha band would leave whatever colour the transparent pixels hold (often black). PIL's own convert
    clips 16-bit and 32-bit greyscale to 255 (a white picture); these are rescaled to 0..255 instead: I;16*
    by their 16-bit range, I by 16-bit when it fits, else by its maximum, F by 0..1 when it fits, else by
    its maximum."""
    if has_alpha(img):
        rgba = img.convert("RGBA")  # (premultiplied, palette and colour-key transparency become one alpha band)
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif img.mode == "F" and top <= 1.0:
            scale = 255.0
        elif img.mode == "I" and top <= 65535:
            scale = 255.0 / 65535.0 if top > 255 else 1.0
        else:
            scale = 255.0 / top if top > 0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).round().astype(np.uint8), "L")
    return img.convert("RGB")


def crop_box(img: Image.Image, bbox, owner: str) -> Image.Image:
    """The core-product crop for ``bbox`` (x0, y0, x1, y1 in pixels), clamped to the image."""
    try:
        x0, y0, x1, y1 = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(f"{owner}: bbox {bbox!r} is not four numbers x0, y0, x1, y1") from None
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(img.width), x1), min(float(img.height), y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return img  # a degenerate box: fall back to the full photo
    return img.crop((int(x0), int(y0), int(round(x1)), int(round(y1))))


def magnify(crop: Image.Image, like: Image.Image) -> Image.Image:
    """``crop`` scaled (aspect kept) to the pixel area of ``like`` — its photo; never shrunk."""
    scale = (like.width * like.height / max(1, crop.width * crop.height)) ** 0.5
    if scale <= 1.0:
        return crop
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    return crop.resize(size, Image.Resampling.BICUBIC)
