"""Decoding Bot API request parameters.

python-telegram-bot sends form fields (multipart when uploading) whose values are raw strings
for ``str`` parameters and JSON for everything else; other clients send a JSON body.  Like the
real server we treat every value as text and convert it by the type each method expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, overload
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.requests import Request

from .errors import bad_request


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str | None
    data: bytes

    def describe(self) -> dict[str, Any]:
        return {"file_name": self.filename, "mime_type": self.content_type, "size": len(self.data)}


_HEADER_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _header_params(value: str) -> dict[str, str]:
    params = {}
    for name, raw in _HEADER_PARAM.findall(value):
        unquoted = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw.startswith('"') else raw
        params[name.lower()] = unquoted.strip()
    if "filename*" in params and "''" in params["filename*"]:
        # RFC 5987: charset''percent-encoded
        charset, _, encoded = params["filename*"].partition("''")
        params["filename"] = unquote(encoded, encoding=charset or "utf-8")
    return params


def parse_multipart(body: bytes, boundary: str) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """Minimal multipart/form-data parser (python-multipart is not a project dependency)."""
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    # Prefixing CRLF lets the first delimiter match like all the others.
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        disposition = _header_params(headers.get("content-disposition", ""))
        field = disposition.get("name")
        if not field:
            continue
        if "filename" in disposition:
            content_type = headers.get("content-type")
            files[field] = UploadedFile(disposition["filename"] or field, content_type, content)
        else:
            fields[field] = content.decode("utf-8", "replace")
    return fields, files


async def read_request_values(request: Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    """Query string, then body (JSON, urlencoded or multipart) values of a request."""
    values: dict[str, Any] = dict(request.query_params)
    files: dict[str, UploadedFile] = {}
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    body = await request.body()
    if not body:
        return values, files
    if media_type == "application/json":
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_request("can't parse JSON encoded request") from exc
        if not isinstance(decoded, dict):
            raise bad_request("JSON object expected as request body")
        values.update(decoded)
    elif media_type == "multipart/form-data":
        boundary = _header_params(content_type).get("boundary")
        if not boundary:
            raise bad_request("multipart boundary is missing")
        fields, files = parse_multipart(body, boundary)
        values.update(fields)
    else:
        values.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return values, files


class Params:
    """Typed access to one request's parameters; remembers decoded values for the call log."""

    def __init__(self, values: dict[str, Any], files: dict[str, UploadedFile] | None = None):
        self._values = values
        self._files = files or {}
        self._decoded: dict[str, Any] = {}

    def has(self, name: str) -> bool:
        return self._values.get(name) not in (None, "") or name in self._files

    def _raw(self, name: str, missing: str | None) -> Any:
        value = self._values.get(name)
        if value is None and missing is not None:
            raise bad_request(missing)
        return value

    def _keep(self, name: str, value: Any) -> Any:
        if value is not None:
            self._decoded[name] = value
        return value

    def get_str(self, name: str, *, missing: str | None = None) -> str | None:
        value = self._raw(name, missing)
        if value is None:
            return None
        return self._keep(name, value if isinstance(value, str) else orjson.dumps(value).decode())

    @overload
    def get_int(self, name: str, *, missing: str, invalid: str | None = None) -> int: ...
    @overload
    def get_int(self, name: str, *, missing: None = None, invalid: str | None = None) -> int | None: ...
    def get_int(self, name: str, *, missing: str | None = None, invalid: str | None = None) -> int | None:
        """The integer parameter `name`; with `missing`, its absence is a Bad Request (never None)."""
        value = self._raw(name, missing)
        if value is None or value == "":
            if missing is not None:
                raise bad_request(missing)
            return None
        invalid_error = bad_request(invalid or f"invalid {name} specified")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise invalid_error
        try:
            return self._keep(name, int(value))
        except ValueError as exc:
            raise invalid_error from exc

    def get_float(self, name: str, *, missing: str | None = None) -> float | None:
        value = self._raw(name, missing)
        if value is None or value == "":
            return None
        try:
            return self._keep(name, float(value))
        except (TypeError, ValueError) as exc:
            raise bad_request(f"invalid {name} specified") from exc

    def get_bool(self, name: str) -> bool:
        value = self._values.get(name)
        if isinstance(value, str):
            value = value.strip().lower() in ("true", "1", "yes")
        return bool(self._keep(name, value))

    def get_json(self, name: str) -> Any:
        """An object/array parameter, sent either as JSON text or (JSON body) as a nested value."""
        value = self._values.get(name)
        if isinstance(value, str):
            if not value:
                return None
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise bad_request(f"can't parse {name} JSON object") from exc
        return self._keep(name, value)

    def file_or_id(self, name: str) -> UploadedFile | str | None:
        """An InputFile parameter: an uploaded part, an ``attach://`` reference, or a file_id/URL."""
        if name in self._files:
            return self._files[name]
        value = self._values.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            return self._files.get(value.removeprefix("attach://"))
        return value if isinstance(value, str) and value else None

    def for_record(self) -> dict[str, Any]:
        """Parameters for the call log: decoded where a handler read them, files summarised."""
        recorded = {**self._values, **self._decoded}
        for name, uploaded in self._files.items():
            recorded[name] = uploaded.describe()
        return recorded
