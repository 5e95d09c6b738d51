"""What an upload really is: its type from its first bytes, and for images their size, a
thumbnail and the original without its EXIF metadata. `process` is blocking (Pillow): it runs
on the media thread pool."""

import os
from dataclasses import dataclass

from PIL import Image, ImageOps

IMAGES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
MAX_PIXELS = 50_000_000
THUMB_SIDE = 320
THUMB_MIME = "image/jpeg"
SNIFF_BYTES = 512  # how much of the start of a file sniff wants
_MAGIC = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif")]
_HTML = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<svg",
         b"<?xml")


class BadImage(Exception):
    """A corrupt image, or one with more than MAX_PIXELS pixels."""


@dataclass(frozen=True)
class Processed:
    """An upload ready for the store: its file (the original, or a copy without metadata),
    size, and for an image width, height and a thumbnail file."""
    path: str
    size: int
    width: int = 0
    height: int = 0
    thumb: str | None = None


def sniff(head: bytes) -> str | None:
    """The image type that `head` starts with, "text/html" for markup a browser would run,
    or None."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.lstrip()[:14].lower().startswith(_HTML):
        return "text/html"
    return None


def contradicts(mime: str, head: bytes) -> bool:
    """Whether the first bytes say the file is not what its slot declared: an image type
    must be that image, and markup is allowed only as text."""
    found = sniff(head)
    if mime in IMAGES:
        return found != mime
    return found == "text/html" and not mime.startswith("text/")


def process(path: str, mime: str) -> Processed:
    """Measure an image, apply its orientation, write it again without metadata and make its
    thumbnail (files beside `path`); other files pass as they are. BadImage for a bomb or a
    corrupt file."""
    if mime not in IMAGES:
        return Processed(path, os.path.getsize(path))
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise BadImage("too many pixels")
            image.load()
            return _rewrite(image, path, IMAGES[mime])
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImage(str(e)) from e


def _rewrite(image: Image.Image, path: str, kind: str) -> Processed:
    clean = path + ".clean"
    if kind == "GIF":
        os.replace(path, clean)  # GIF carries no EXIF: its bytes are kept as they are
        upright = image
    elif getattr(image, "is_animated", False):
        image.save(clean, kind, save_all=True)  # every frame, without the metadata
        os.unlink(path)
        upright = image
    else:
        upright = ImageOps.exif_transpose(image) or image
        _save(upright, clean, kind)
        os.unlink(path)
    thumb = path + ".thumb"
    small = upright.convert("RGBA")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    flat = Image.new("RGB", small.size, "white")  # transparency on white: JPEG has none
    flat.paste(small, mask=small)
    flat.save(thumb, "JPEG", quality=85)
    return Processed(clean, os.path.getsize(clean), upright.width, upright.height, thumb)


def _save(image: Image.Image, path: str, kind: str) -> None:
    """Write without `exif=` (nor XMP): Pillow then drops the metadata."""
    if kind == "JPEG":
        image.save(path, "JPEG", quality=92, icc_profile=image.info.get("icc_profile"))
    else:
        image.save(path, kind)
