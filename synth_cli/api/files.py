"""`/files`: upload (streamed from disk), list, retrieve, content, delete.

The upload builds the `multipart/form-data` body itself, as a generator that reads the file in
1 MiB chunks, with an exact `Content-Length`: memory stays flat whatever the file size, the
server sees a plain (not chunked) request, and a progress callback sees every chunk leave.
Each retry re-opens the file and starts over; the same `Idempotency-Key` is sent every time,
so a retried upload never stores the file twice.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from synth_cli.api.client import ApiClient, new_idempotency_key, path_segment
from synth_cli.errors import UsageError

CHUNK_SIZE = 1024 * 1024
UPLOAD_READ_TIMEOUT = 600.0  # the server may checksum/validate a large file before answering

ProgressCallback = Callable[[int, int], None]  # (bytes sent, total bytes)


def _quote_filename(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")


class MultipartUpload:
    """A re-playable multipart body: `len(upload)` bytes, produced by iterating `upload.stream()`."""

    def __init__(self, path: Path, fields: dict[str, str], *, file_field: str = "file", filename: str | None = None,
                 content_type: str = "application/jsonl", chunk_size: int = CHUNK_SIZE,
                 progress: ProgressCallback | None = None):
        self.path = path
        self.size = path.stat().st_size
        self.boundary = f"synth-cli-{uuid.uuid4().hex}"
        self.chunk_size = chunk_size
        self.progress = progress
        parts = []
        for name, value in fields.items():
            parts.append(f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{_quote_filename(filename or path.name)}"\r\nContent-Type: {content_type}\r\n\r\n'
        )
        self.head = "".join(parts).encode("utf-8")
        self.tail = f"\r\n--{self.boundary}--\r\n".encode("ascii")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @staticmethod
    def fields_only(fields: dict[str, str]) -> FieldsForm:
        return FieldsForm(fields)

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def stream(self) -> Iterator[bytes]:
        sent = 0
        if self.progress:
            self.progress(0, self.size)
        yield self.head
        with open(self.path, "rb") as fh:
            # Never more than the announced size: a file still being written (a `filter` run, a
            # copy) must not overflow Content-Length, which would surface as a protocol error,
            # be retried and end as "connection cut". It is one clear error instead.
            while sent < self.size:
                chunk = fh.read(min(self.chunk_size, self.size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
                if self.progress:
                    self.progress(sent, self.size)
            grew = sent == self.size and fh.read(1) != b""
        if sent != self.size or grew:
            now = "more" if grew else f"{sent}"
            raise UsageError(f"{self.path} changed while it was being uploaded ({self.size} bytes when the upload "
                             f"started, {now} bytes read)", hint="upload it again once it is complete")
        yield self.tail


class FieldsForm:
    """A small multipart/form-data body of text fields only (Together's upload-URL request)."""

    def __init__(self, fields: dict[str, str]):
        self.boundary = f"synth-cli-{uuid.uuid4().hex}"
        parts = [f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                 for name, value in fields.items()]
        self.body = ("".join(parts) + f"--{self.boundary}--\r\n").encode("utf-8")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"


class Files:
    """The `/files` endpoints."""

    def __init__(self, client: ApiClient):
        self.client = client

    def upload(self, path: str | os.PathLike, *, purpose: str = "fine-tune", progress: ProgressCallback | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Upload one file (`purpose=fine-tune` by default); returns the File object."""
        import httpx

        path = Path(path)
        if path.is_dir():
            raise UsageError(f"{path} is a directory, not a file")
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        body = MultipartUpload(path, {"purpose": purpose}, progress=progress)
        base = self.client.timeout
        timeout = httpx.Timeout(base.write or 60.0, connect=base.connect, read=UPLOAD_READ_TIMEOUT)
        response = self.client.request(
            "POST", "files", content=body.stream,
            headers={"Content-Type": body.content_type, "Content-Length": str(len(body))},
            idempotency_key=idempotency_key or new_idempotency_key(), timeout=timeout,
        )
        return self.client._decode(response, "POST", "files")

    def list(self, *, purpose: str | None = None, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        return self.client.get("files", params={"purpose": purpose, "limit": limit, "after": after})

    def retrieve(self, file_id: str) -> dict[str, Any]:
        return self.client.get(f"files/{path_segment(file_id)}")

    def delete(self, file_id: str) -> dict[str, Any]:
        return self.client.delete(f"files/{path_segment(file_id)}")

    def content(self, file_id: str) -> bytes:
        return self.client.request("GET", f"files/{path_segment(file_id)}/content").content
