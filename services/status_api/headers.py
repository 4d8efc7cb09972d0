"""Security headers on every answer of the API, and a Content Security Policy on the board's pages.

``nosniff`` keeps a browser from running a download as a script, ``X-Frame-Options`` and
``frame-ancestors`` keep the board out of another site's frames (click-jacking), and
``Referrer-Policy`` keeps study links out of other sites' logs. The board's policy allows scripts
and styles from the API itself only (styles also inline: the lights' colours), images from the API,
``blob:`` (thumbnails fetched with the token) and the MinIO origin that signs the thumbnail links.
Written as a plain ASGI middleware so that streamed answers (SSE, WADO-RS) pass through untouched.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings

COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
BOARD_PREFIX = "/board"


def is_board_page(path: str) -> bool:
    """The board's own pages (its list at ``/``, its study pages and static files under ``/board``)."""
    return path == "/" or path.startswith(BOARD_PREFIX)


def board_policy(settings: Settings) -> str:
    """The Content Security Policy of the board's pages."""
    images = ["'self'", "blob:", "data:"]
    if settings.minio_public_url:
        parts = urlsplit(settings.minio_public_url)
        images.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join((
        "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", f"img-src {' '.join(images)}",
        "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
    ))


class SecurityHeaders:
    """Adds :data:`COMMON_HEADERS` to every HTTP answer, and the board's policy to the board's pages."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.policy = board_policy(settings).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(COMMON_HEADERS)
        if is_board_page(str(scope.get("path", ""))):
            extra.append((b"content-security-policy", self.policy))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)
