"""What every endpoint shares: the one JSON error form, and bodies read with a size limit."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BODY = 64 * 1024


def error(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one JSON error form: {"error": code, "detail": text}."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None once it passes `limit` (counted as it streams, chunked or not)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
