"""Streaming `multipart/form-data` uploads straight to disk (python-multipart's push parser).

The request body is fed to the parser chunk by chunk as it arrives; the `file` part is written to
a temporary file in the data dir (hashed on the way) and the small text fields are kept in
memory (capped). Nothing holds the whole upload in memory, whatever its size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

MAX_FIELD_BYTES = 64 * 1024


class UploadError(ValueError):
    """The body is not a usable multipart upload (message is for the client)."""


class UploadTooLarge(UploadError):
    """The file part is larger than the server accepts (a 413)."""


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0
    sha256: str = ""
    file_field_seen: bool = False


async def receive_upload(chunks: AsyncIterator[bytes], content_type: str, tmp_dir: Path, file_field: str = "file",
                         *, max_file_bytes: int | None = None, max_fields: int | None = None) -> Upload:
    """Parse the body; the file part lands in `tmp_dir` (the caller moves or deletes it).

    Stops at the first byte past `max_file_bytes` in the file part (:class:`UploadTooLarge`) and
    at the part after `max_fields` text fields (:class:`UploadError`); each field is capped at
    MAX_FIELD_BYTES. What was written so far is removed.
    """
    from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        raise UploadError("expected a multipart/form-data body with fields `file` and `purpose`")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError("the multipart/form-data Content-Type has no boundary")

    upload = Upload()
    state: dict = {"headers": {}, "field": b"", "value": b"", "name": None, "fh": None, "buffer": None,
                   "hasher": None}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["name"] = None
        state["buffer"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"] = b""
        state["value"] = b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get("content-disposition"))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == file_field and b"filename" in disp:
            if upload.file_field_seen:
                raise UploadError(f"more than one `{file_field}` part")
            upload.file_field_seen = True
            raw = disp.get(b"filename", b"")
            upload.filename = os.path.basename(raw.decode("utf-8", "replace").replace("\\", "/")) or "upload.jsonl"
            fd_path = tmp_dir / f"upload-{os.getpid()}-{id(upload)}-{os.urandom(4).hex()}"
            state["fh"] = open(fd_path, "wb")  # noqa: SIM115 - closed in on_part_end / on error
            upload.path = fd_path
            state["hasher"] = hashlib.sha256()
        else:
            state["fields"] = state.get("fields", 0) + 1
            if max_fields is not None and state["fields"] > max_fields:
                raise UploadError(f"too many form fields: this server accepts up to {max_fields} besides "
                                  f"`{file_field}` (serve --max-form-fields)")
            state["buffer"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["fh"] is not None:
            if max_file_bytes is not None and upload.size + len(chunk) > max_file_bytes:
                raise UploadTooLarge(f"File too large: more than {max_file_bytes:,} bytes; this server accepts "
                                     f"files up to {max_file_bytes:,} bytes (serve --max-upload-bytes).")
            state["fh"].write(chunk)
            state["hasher"].update(chunk)
            upload.size += len(chunk)
        elif state["buffer"] is not None:
            if len(state["buffer"]) + len(chunk) > MAX_FIELD_BYTES:
                raise UploadError(f"form field `{state['name']}` is too large")
            state["buffer"] += chunk

    def on_part_end() -> None:
        if state["fh"] is not None:
            state["fh"].close()
            state["fh"] = None
            upload.sha256 = state["hasher"].hexdigest()
        elif state["buffer"] is not None and state["name"]:
            upload.fields[state["name"]] = bytes(state["buffer"]).decode("utf-8", "replace")
        state["buffer"] = None

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    })
    try:
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        discard(upload, state)
        raise UploadError(f"malformed multipart body: {exc}") from exc
    except BaseException:
        discard(upload, state)
        raise
    if state["fh"] is not None:  # the body ended inside the file part
        discard(upload, state)
        raise UploadError("the upload ended before the file part was complete")
    return upload


def discard(upload: Upload, state: dict | None = None) -> None:
    if state and state.get("fh") is not None:
        try:
            state["fh"].close()
        except OSError:  # pragma: no cover
            pass
        state["fh"] = None
    if upload.path is not None:
        try:
            upload.path.unlink()
        except FileNotFoundError:
            pass
