"""Static files of the site (the offline JupyterLite build or a plain page).

Content types are fixed here rather than taken from the host's ``mimetypes``
tables, which differ between systems: browsers refuse ES modules (``.mjs``) not
served as JavaScript, and ``WebAssembly.instantiateStreaming`` needs
``application/wasm``.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from aiohttp import hdrs, web
from yarl import URL

from ._access import reject

__all__ = [
    "CONTENT_TYPES",
    "IMMUTABLE",
    "REVALIDATE",
    "StaticSite",
    "cache_control_for",
]

CONTENT_TYPES = {
    ".css": "text/css",
    ".data": "application/octet-stream",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".ico": "image/x-icon",
    ".ipynb": "application/x-ipynb+json",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".mjs": "text/javascript",
    ".otf": "font/otf",
    ".png": "image/png",
    ".py": "text/x-python; charset=utf-8",
    ".svg": "image/svg+xml",
    ".tar": "application/x-tar",
    ".tgz": "application/gzip",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
    ".webmanifest": "application/manifest+json",
    ".whl": "application/zip",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".zip": "application/zip",
}
"""Content type by file suffix; other suffixes fall back to ``mimetypes``."""

_FALLBACK_CONTENT_TYPE = "application/octet-stream"
_INDEX_FILE = "index.html"

# Names that change with the content: a built asset with a hash before its
# suffix ("1031.b91a70b.js", "af6397503fcefbd61397.ttf"), or a wheel whose
# build tag is a hash, as asyncmachine.lite names the site's wheels.
_HASHED_NAME = re.compile(
    r"(?:(?:^|[.-])[0-9a-f]{7,}\.(?:js|mjs|css|map|wasm|svg|ttf|eot|woff2?)"
    r"|-0[0-9a-f]{12}-[^-]+-[^-]+-[^-]+\.whl)$"
)
# Files that a new build can change under the same name: pages, config,
# notebooks, the Pyodide lock and wheels without a hash. Pyodide's own files
# change only with its version, and revalidating its 9.6 MB of WebAssembly on
# every page load measured slower.
_CHANGING_SUFFIXES = frozenset({".html", ".json", ".ipynb", ".whl"})
IMMUTABLE = "public, max-age=31536000, immutable"
"""Cache-Control of files whose names contain a hash of their content."""
REVALIDATE = "no-cache"
"""Cache-Control of the files that change between builds under one name, so
that a browser never mixes a new Pyodide lock with an old wheel."""


def content_type_for(path: Path) -> str:
    """Return the Content-Type header value for a file, by its suffix."""
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is not None:
        return content_type
    guessed, _encoding = mimetypes.guess_type(path.name)
    return guessed or _FALLBACK_CONTENT_TYPE


def cache_control_for(path: Path) -> str | None:
    """Return the Cache-Control header value for a file, or None for none."""
    if _HASHED_NAME.search(path.name):
        return IMMUTABLE
    if path.suffix.lower() in _CHANGING_SUFFIXES:
        return REVALIDATE
    return None


class StaticSite:
    """Serves files below one directory, without directory listings.

    A directory URL serves the directory's ``index.html`` if there is one, and
    is 404 otherwise. Paths that leave the directory, including through
    symbolic links, get 403.

    Args:
        root: The site directory.
        index_url: Where ``/`` redirects (relative to the site, e.g.
            ``"notebooks/index.html?path=bar.ipynb"``), keeping the request's query
            parameters such as the token. None serves ``root/index.html`` at
            ``/``.

    Raises:
        NotADirectoryError: root is not a directory.
    """

    def __init__(self, root: Path, index_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"site directory {str(root)!r} is not a directory")
        self.index_url = index_url

    async def handle(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """Serve a file, a redirect or an error for a GET or HEAD request."""
        relative = request.path.lstrip("/")
        if not relative and self.index_url is not None:
            target = URL("/" + self.index_url.lstrip("/"))
            raise web.HTTPFound(target.extend_query(request.query))

        segments = relative.split("/")
        if any(segment == ".." for segment in segments) or "\\" in relative:
            return reject(request, request_id, 403, "path traversal")
        if "\x00" in relative:
            return reject(request, request_id, 403, "NUL byte in path")

        path = self.root.joinpath(*[segment for segment in segments if segment])
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            raise web.HTTPNotFound() from None
        if not resolved.is_relative_to(self.root):
            return reject(request, request_id, 403, "path leaves the site directory")

        if resolved.is_dir():
            if relative and not relative.endswith("/"):
                target = URL(request.path + "/").with_query(request.query)
                raise web.HTTPMovedPermanently(target)
            resolved = (resolved / _INDEX_FILE).resolve()
            if not resolved.is_relative_to(self.root):
                return reject(
                    request, request_id, 403, "path leaves the site directory"
                )
        if not resolved.is_file():
            raise web.HTTPNotFound()
        headers = {hdrs.CONTENT_TYPE: content_type_for(resolved)}
        cache_control = cache_control_for(resolved)
        if cache_control is not None:
            headers[hdrs.CACHE_CONTROL] = cache_control
        return web.FileResponse(resolved, headers=headers)
