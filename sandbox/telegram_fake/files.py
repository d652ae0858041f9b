"""Stored files (photos, documents) with Telegram-style ids and download paths."""

from __future__ import annotations

import io
import itertools
import mimetypes
import secrets
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from .errors import ApiError, bad_request

# Telegram's own limits.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# Telegram generates downscaled copies with these longest sides next to the original.
PHOTO_THUMBNAIL_SIDES = (90, 320, 800)

_FILE_ID_PREFIX = {"photo": "AgACAgIAAxkBAAI", "document": "BQACAgIAAxkBAAI"}
_IMAGE_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "photo" | "document"
    data: bytes
    file_path: str
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def file_size(self) -> int:
        return len(self.data)

    def photo_size_api(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
            "width": self.width,
            "height": self.height,
        }

    def document_api(self) -> dict[str, Any]:
        document = {"file_id": self.file_id, "file_unique_id": self.file_unique_id, "file_size": self.file_size}
        if self.file_name:
            document["file_name"] = self.file_name
        if self.mime_type:
            document["mime_type"] = self.mime_type
        return document

    def file_api(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.file_size,
            "file_path": self.file_path,
        }


@dataclass(frozen=True)
class PhotoVariant:
    data: bytes
    width: int
    height: int
    extension: str
    mime_type: str


def prepare_photo(data: bytes) -> list[PhotoVariant]:
    """Decode an uploaded photo and build its size variants, smallest first.

    The last variant is the original upload, byte for byte.  Pure function so the CPU work
    happens outside the state lock.
    """
    if len(data) > MAX_PHOTO_BYTES:
        raise ApiError(413, "Request Entity Too Large")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            image_format = image.format or "JPEG"
            if width + height > 10000 or max(width, height) > 20 * min(width, height):
                raise bad_request("PHOTO_INVALID_DIMENSIONS")
            variants = []
            for side in PHOTO_THUMBNAIL_SIDES:
                if max(width, height) <= side:
                    break
                thumbnail = image.convert("RGB")
                thumbnail.thumbnail((side, side))
                buffer = io.BytesIO()
                thumbnail.save(buffer, "JPEG", quality=80)
                variants.append(PhotoVariant(buffer.getvalue(), *thumbnail.size, ".jpg", "image/jpeg"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise bad_request("IMAGE_PROCESS_FAILED") from exc
    extension = _IMAGE_EXTENSIONS.get(image_format, ".jpg")
    mime_type = Image.MIME.get(image_format, "image/jpeg")
    variants.append(PhotoVariant(data, width, height, extension, mime_type))
    return variants


def guess_mime_type(file_name: str | None) -> str:
    guessed = mimetypes.guess_type(file_name or "")[0]
    return guessed or "application/octet-stream"


class FileStore:
    """All files known to the sandbox, addressable by file_id and by download path.

    Not thread-safe on its own: callers hold the sandbox state lock.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        # Any size's file_id maps to the whole photo so a photo can be re-sent by file_id.
        self._photo_sizes: dict[str, list[StoredFile]] = {}
        self._counter = itertools.count(1)

    def _store(self, kind: str, data: bytes, directory: str, extension: str, **details: Any) -> StoredFile:
        number = next(self._counter)
        stored = StoredFile(
            file_id=_FILE_ID_PREFIX[kind] + secrets.token_urlsafe(32),
            file_unique_id="AQAD" + secrets.token_urlsafe(9),
            kind=kind,
            data=data,
            file_path=f"{directory}/file_{number}{extension}",
            **details,
        )
        self._by_id[stored.file_id] = stored
        self._by_path[stored.file_path] = stored
        return stored

    def add_photo(self, variants: list[PhotoVariant]) -> list[StoredFile]:
        sizes = [
            self._store(
                "photo", v.data, "photos", v.extension, mime_type=v.mime_type, width=v.width, height=v.height
            )
            for v in variants
        ]
        for size in sizes:
            self._photo_sizes[size.file_id] = sizes
        return sizes

    def add_document(self, data: bytes, file_name: str | None, mime_type: str | None) -> StoredFile:
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        extension = mimetypes.guess_extension(mime_type or "") or ""
        if file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1]
        return self._store(
            "document",
            data,
            "documents",
            extension,
            file_name=file_name,
            mime_type=mime_type or guess_mime_type(file_name),
        )

    def get(self, file_id: str) -> StoredFile | None:
        return self._by_id.get(file_id)

    def by_path(self, file_path: str) -> StoredFile | None:
        return self._by_path.get(file_path)

    def photo_sizes(self, file_id: str) -> list[StoredFile] | None:
        return self._photo_sizes.get(file_id)

    def clear(self) -> None:
        self._by_id.clear()
        self._by_path.clear()
        self._photo_sizes.clear()
