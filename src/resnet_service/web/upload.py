"""Read the images out of a request body while it streams in, with the byte limit enforced as it arrives.

Three bodies carry images: multipart/form-data with ``image`` file fields (the Flask + Keras tutorial's), the
image file itself as the body (``Content-Type: image/jpeg`` and friends), and JSON ``{"image": "<base64>"}`` (or a
list of them, or data: URLs, as a browser's FileReader makes them). FastAPI's ``UploadFile`` would spool the whole
body to disk before the handler could look at its size; parsing the stream here refuses an oversize upload after at
most ``max_bytes`` plus one chunk, keeps the image in memory, and needs no thread hops.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request

from resnet_service.core.errors import (
    ClientClosedRequest,
    InvalidImage,
    MalformedRequest,
    MissingImageField,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from resnet_service.web.url_fetch import UrlPolicy, fetch_image

__all__ = ["read_body", "read_file_fields", "read_images", "MULTIPART_OVERHEAD_BYTES", "MAX_PART_HEADER_BYTES"]

# Room for boundaries, part headers and small extra fields on top of the files themselves.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# A part's headers are a Content-Disposition and a Content-Type: a few hundred bytes. Far more is an attack on
# the parser's memory, refused as it arrives.
MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass
class _Part:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    name: str = ""
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Collector:
    """python-multipart callbacks that keep the named field's parts and count every byte."""

    field_name: str
    max_bytes: int
    parts: list[bytes] = field(default_factory=list)
    _current: _Part = field(default_factory=_Part)
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _header_bytes: int = 0

    def on_part_begin(self) -> None:
        self._current = _Part()
        self._header_bytes = 0

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise MalformedRequest(f"a multipart part's headers are over {MAX_PART_HEADER_BYTES} bytes")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header_bytes(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._current.headers.append((bytes(self._header_name).lower(), bytes(self._header_value)))
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        for name, value in self._current.headers:
            if name == b"content-disposition":
                _, options = parse_options_header(value)
                self._current.name = options.get(b"name", b"").decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current.name != self.field_name:
            return
        self._current.data += data[start:end]
        if len(self._current.data) > self.max_bytes:
            raise PayloadTooLarge(f"the {self.field_name} file is over the {self.max_bytes}-byte limit")

    def on_part_end(self) -> None:
        if self._current.name == self.field_name:
            self.parts.append(bytes(self._current.data))

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        shown = content_type.decode("latin-1") or "no Content-Type"
        raise UnsupportedMediaType(f"send multipart/form-data with an image file field, not {shown}")
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedRequest("the multipart/form-data Content-Type has no boundary")
    return boundary


async def _limited_chunks(request: Request, body_limit: int, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, refused as soon as the declared or received size passes ``body_limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {max_bytes} bytes of image")
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise PayloadTooLarge(f"the request body is over the limit of {max_bytes} bytes of image")
            yield chunk
    except ClientDisconnect as exc:
        raise ClientClosedRequest("the client disconnected during the upload") from exc


async def read_file_fields(request: Request, field_name: str, max_bytes: int) -> list[bytes]:
    """Every ``field_name`` part of a multipart body, in order; refuses the body as soon as it is too large."""
    boundary = _boundary(request)
    collector = _Collector(field_name=field_name, max_bytes=max_bytes)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in _limited_chunks(request, max_bytes + MULTIPART_OVERHEAD_BYTES, max_bytes):
            parser.write(chunk)
    except MultipartParseError as exc:
        raise MalformedRequest(f"the multipart body could not be parsed: {exc}") from exc
    if parser.state != MultipartState.END:
        raise MalformedRequest("the multipart body ended before its closing boundary")
    if not collector.parts:
        raise MissingImageField(f"the multipart body has no '{field_name}' field: send it as -F {field_name}=@FILE")
    return collector.parts


async def _limited_body(request: Request, body_limit: int, max_bytes: int) -> bytes:
    return b"".join([chunk async for chunk in _limited_chunks(request, body_limit, max_bytes)])


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body (a v2 infer request), refused as soon as it passes the same limit as a multipart upload."""
    return await _limited_body(request, max_bytes + MULTIPART_OVERHEAD_BYTES, max_bytes)


def _base64_size(max_bytes: int) -> int:
    return 4 * ((max_bytes + 2) // 3)


def _decoded(value: object, field_name: str, max_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise MalformedRequest(f'"{field_name}" must be a base64 string, or a list of them')
    if value.startswith("data:"):
        # A data: URL, as FileReader.readAsDataURL makes it: the base64 follows the first comma.
        header, _, value = value.partition(",")
        if not header.endswith(";base64"):
            raise InvalidImage(f'"{field_name}" is a data: URL that is not base64')
    if len(value) > _base64_size(max_bytes) + 4:
        raise PayloadTooLarge(f"the {field_name} file is over the {max_bytes}-byte limit")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f'"{field_name}" is not valid base64 ({exc})') from exc
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the {field_name} file is over the {max_bytes}-byte limit")
    return data


def _listed(document: dict[str, object], key: str) -> list[object]:
    value = document[key]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise MissingImageField(f'the JSON body\'s "{key}" list is empty')
    return values


async def _json_images(body: bytes, field_name: str, max_bytes: int, urls: UrlPolicy) -> list[bytes]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequest(f"the JSON body could not be parsed: {exc}") from exc
    if isinstance(document, dict) and field_name in document:
        return [_decoded(item, field_name, max_bytes) for item in _listed(document, field_name)]
    if isinstance(document, dict) and "url" in document:
        values = _listed(document, "url")
        if not all(isinstance(value, str) for value in values):
            raise MalformedRequest('"url" must be a string, or a list of them')
        return list(await asyncio.gather(*(fetch_image(str(value), urls) for value in values)))
    raise MissingImageField(
        f'the JSON body has no "{field_name}" field: send {{"{field_name}": "<the image file in base64>"}}'
    )


async def read_images(request: Request, field_name: str, max_bytes: int, urls: UrlPolicy) -> list[bytes]:
    """The request's image files, whichever of the three bodies carries them; each at most ``max_bytes``.

    JSON may name the images by URL instead, which ``urls`` allows or refuses.
    """
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        return await read_file_fields(request, field_name, max_bytes)
    if content_type.startswith(b"image/") or content_type == b"application/octet-stream":
        # The body is the file: nothing but the image counts against the limit.
        return [await _limited_body(request, max_bytes, max_bytes)]
    if content_type == b"application/json":
        body = await _limited_body(request, _base64_size(max_bytes) + MULTIPART_OVERHEAD_BYTES, max_bytes)
        return await _json_images(body, field_name, max_bytes, urls)
    shown = content_type.decode("latin-1") or "no Content-Type"
    raise UnsupportedMediaType(
        f"send multipart/form-data with an {field_name} file field, the image itself as image/* or "
        f'application/octet-stream, or JSON {{"{field_name}": "<base64>"}}; not {shown}'
    )
