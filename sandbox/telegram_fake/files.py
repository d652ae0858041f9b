"""Stored files (photos, documents) with Telegram-style ids and download paths.

Telegram keeps a file for as long as anyone may send it again by its file_id, and the bot keeps
those ids in Postgres. So the fake can keep its files in a directory (``FileStore(directory)``:
``.run/telegram-fake/files`` for ``python -m sandbox.telegram_fake``), and a restarted fake on the
same directory still knows every file_id it handed out; without one, files live in memory only.
On disk: each file's bytes at its ``file_path`` under the directory, and ``index.jsonl``, one line
per stored file (and one per photo's group of sizes), appended after the bytes are written.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import mimetypes
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
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


logger = logging.getLogger("sandbox.telegram_fake")

INDEX_FILE = "index.jsonl"


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "photo" | "document"
    file_path: str
    file_size: int
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    # The bytes: kept here by an in-memory store, read from `disk` by one that has a directory.
    content: bytes | None = field(default=None, repr=False, compare=False)
    disk: Path | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        if self.content is not None:
            return self.content
        assert self.disk is not None, "a stored file has its bytes in memory or on disk"
        return self.disk.read_bytes()

    def index_entry(self) -> dict[str, Any]:
        entry = asdict(self)
        del entry["content"], entry["disk"]
        return entry

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
    """All files known to the sandbox, addressable by file_id and by download path; kept in
    ``directory`` when one is given (so they outlive a restart), else in memory.

    Not thread-safe on its own: callers hold the sandbox state lock.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        # Any size's file_id maps to the whole photo so a photo can be re-sent by file_id.
        self._photo_sizes: dict[str, list[StoredFile]] = {}
        self._counter = itertools.count(1)
        if self.directory is not None:
            self._load()

    # ------------------------------------------------------------------ on disk

    def _load(self) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        index = self.directory / INDEX_FILE
        if not index.exists():
            return
        highest = 0
        for line in index.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its file was never handed out
            if "photo_sizes" in entry:
                sizes = [self._by_id[file_id] for file_id in entry["photo_sizes"] if file_id in self._by_id]
                for size in sizes:
                    self._photo_sizes[size.file_id] = sizes
                continue
            disk = self.directory / entry["file_path"]
            if not disk.is_file():
                continue
            stored = StoredFile(**entry, disk=disk)
            self._by_id[stored.file_id] = stored
            self._by_path[stored.file_path] = stored
            number = re.search(r"file_(\d+)", stored.file_path)
            highest = max(highest, int(number.group(1)) if number else 0)
        self._counter = itertools.count(highest + 1)
        logger.info("Telegram fake: %d stored files from %s", len(self._by_id), self.directory)

    def _append_index(self, entry: dict[str, Any]) -> None:
        assert self.directory is not None
        with (self.directory / INDEX_FILE).open("a", encoding="utf-8") as index:
            index.write(json.dumps(entry, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------ storing

    def _store(self, kind: str, data: bytes, directory: str, extension: str, **details: Any) -> StoredFile:
        number = next(self._counter)
        file_path = f"{directory}/file_{number}{extension}"
        disk = None
        if self.directory is not None:
            disk = self.directory / file_path
            disk.parent.mkdir(parents=True, exist_ok=True)
            disk.write_bytes(data)  # the bytes first: the index never names a missing file
        stored = StoredFile(
            file_id=_FILE_ID_PREFIX[kind] + secrets.token_urlsafe(32),
            file_unique_id="AQAD" + secrets.token_urlsafe(9),
            kind=kind,
            file_path=file_path,
            file_size=len(data),
            content=None if disk is not None else data,
            disk=disk,
            **details,
        )
        if self.directory is not None:
            self._append_index(stored.index_entry())
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
        if self.directory is not None:
            self._append_index({"photo_sizes": [size.file_id for size in sizes]})
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
        """Forget every file (and delete them from the directory, if any)."""
        self._by_id.clear()
        self._by_path.clear()
        self._photo_sizes.clear()
        if self.directory is not None:
            for name in ("photos", "documents"):
                shutil.rmtree(self.directory / name, ignore_errors=True)
            (self.directory / INDEX_FILE).unlink(missing_ok=True)
