"""Uploads private to the page that sent them: `UploadGuard`, an ASGI middleware in front of Gradio.

Gradio stores an upload in a folder named by its content hash, answers the upload with that
path and serves it back at `/gradio_api/file=<path>`: anyone who uploads the same bytes lands in
the same folder and can try another visitor's file names there (a name that exists answers
differently from one that does not). The guard
- moves each file of an upload's answer into a folder of its own, `upload-<128 random bits>/`
  of the page cache, and answers that path instead: only the page that uploaded a file knows it;
- serves no upload back by URL: a request of Gradio's file routes for anything in an upload
  folder is answered as for a file that does not exist (same status, same body), whoever asks.
The handlers accept only such paths (`pictures.uploaded_paths`) and delete them when done.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import unquote

from medart.ui import pictures

_FILE_ROUTES = ("/file=", "/file/")
_NOWHERE = "upload-none/none"  # a path in the cache that never exists (no 32-digit folder name)


def private_folders(paths: list) -> list:
    """Move each uploaded file into a random folder of its own; the new paths, in order."""
    cache = pictures.page_cache()
    out = []
    for path in paths:
        source = Path(str(path)).resolve()
        if source.parent.parent != cache or source.parent.name.startswith(pictures.UPLOAD_PREFIX):
            out.append(path)
            continue
        folder = cache / f"{pictures.UPLOAD_PREFIX}{secrets.token_hex(16)}"
        folder.mkdir(mode=0o700)
        target = folder / source.name
        os.rename(source, target)
        try:
            source.parent.rmdir()  # Gradio's content-named folder, once empty
        except OSError:
            pass
        out.append(str(target))
    return out


def _target(path: str) -> tuple[str, str] | None:
    """(route prefix, file path) of a request of one of Gradio's file routes, else None."""
    for route in _FILE_ROUTES:
        at = path.find(route)
        if at >= 0:
            file = path[at + len(route):]
            for _ in range(3):  # doubly encoded paths too
                file = unquote(file)
            return path[:at + len(route)], file
    return None


def names_an_upload(path: str) -> bool:
    """Whether a request path asks one of Gradio's file routes for something in an upload folder."""
    found = _target(path)
    if found is None:
        return False
    file = found[1].replace("\\", "/")
    if file.startswith("file://"):
        file = file[len("file://"):]
    try:
        real = Path(os.path.normpath(os.path.abspath(file))).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    cache = pictures.page_cache()
    if not real.is_relative_to(cache) or real == cache:
        return False
    return real.relative_to(cache).parts[0].startswith(pictures.UPLOAD_PREFIX)


class UploadGuard:
    """ASGI middleware: uploads into random folders of their own, and none of them served back."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if names_an_upload(path):
            prefix = _target(path)[0]
            nowhere = f"{prefix}{pictures.page_cache()}/{_NOWHERE}"
            scope = {**scope, "path": nowhere, "raw_path": nowhere.encode(), "query_string": b""}
            return await self.app(scope, receive, send)
        if scope.get("method") == "POST" and path.rstrip("/").endswith("/upload"):
            return await self._upload(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _upload(self, scope, receive, send):
        start, body = None, []

        async def keep(message):
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(scope, receive, keep)  # Gradio's background moves are done when it returns
        data = b"".join(body)
        if start["status"] != 200:
            await send(start)
            await send({"type": "http.response.body", "body": data})
            return
        status, kind = 200, b"application/json"
        try:
            data = json.dumps(private_folders(json.loads(data))).encode()
        except (OSError, ValueError, TypeError, AttributeError):
            status, kind, data = 409, b"text/plain; charset=utf-8", b"the upload was interrupted: upload the files again"
        headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-length", str(len(data)).encode()), (b"content-type", kind)]
        await send({**start, "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
