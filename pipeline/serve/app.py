"""`audiosum serve`: the Starlette app — its routes over the endpoints (chat.py: /v1/chat/completions; speech.py:
/v1/audio/speech; files.py: /v1/files; batches.py: /v1/batches; models.py: /v1/models; admin.py: /stats, /faults;
feed.py: /feed/), the guard in front of them and the worker pool's life — and serve(), the entry the CLI calls.

The peer the test suite talks to over loopback; it never calls out to any network. The event loop only moves bytes:
all summarising, speaking and hearing runs in the worker pool (server_work), parsing a body and encoding an answer
run in a thread, and what a request may send is bounded in front of the app (server_guard). This module wires only:
it checks no request and builds no answer beyond the 404/405 for a route it does not have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sys
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.errors import UsageError
from pipeline.serve import work as server_work
from pipeline.serve.admin import AdminEndpoints
from pipeline.serve.chat import ChatServer
from pipeline.serve.config import ServerConfig
from pipeline.serve.errors import error_response, quoted
from pipeline.serve.faults import ConnectionExposingProtocol
from pipeline.serve.feed import FeedFolder
from pipeline.serve.guard import HEADER_BYTES, RequestGuard, connection_limit, guarded_protocol
from pipeline.serve.models import parse_shutdowns

# What the CLI (ServerConfig, parse_shutdowns, serve) and the tests (ChatServer, create_app) import from here.
__all__ = ["ChatServer", "ServerConfig", "create_app", "parse_shutdowns", "serve"]


def create_app(config: ServerConfig) -> Starlette:
    chat = ChatServer(config)
    admin = AdminEndpoints(chat)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not config.feed_only:
            chat.pool = server_work.WorkerPool(config.engine, config.workers)
            await chat.pool.warm()  # before the port is bound, for the engines that want it
        what = "the podcast feed only" if config.feed_only else f"/v1 (engine {config.engine})"
        print(f"audiosum serve: http://{_url_host(config.host)}:{config.port} serves {what}",
              file=sys.stderr, flush=True)
        try:
            yield
        finally:
            chat.batches.shutdown()
            if chat.pool is not None:
                chat.pool.shutdown()

    async def not_found(request: Request, exc: Exception) -> Response:
        where = quoted(request.url.path)
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return error_response(405, f"Method {request.method} is not allowed on {where}.")
        return error_response(404, f"Unknown request URL: {request.method} {where}.", code="unknown_url")

    feed = ([Route("/feed/{name}", FeedFolder(config.feed_dir).handler, methods=["GET", "HEAD"])]
            if config.feed_dir else [])
    api = [
        Route("/v1/chat/completions", chat.chat_completions, methods=["POST"]),
        Route("/v1/models", chat.models.handle, methods=["GET"]),
        Route("/v1/models/{model:path}", chat.models.handle, methods=["GET"]),
        Route("/v1/audio/speech", chat.speech.handle, methods=["POST"]),
        Route("/v1/files", chat.files.create, methods=["POST"]),
        Route("/v1/files", chat.files.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", chat.files.retrieve, methods=["GET"]),
        Route("/v1/files/{file_id}", chat.files.delete, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", chat.files.content, methods=["GET"]),
        Route("/v1/batches", chat.batches.create, methods=["POST"]),
        Route("/v1/batches", chat.batches.list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", chat.batches.retrieve, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", chat.batches.cancel, methods=["POST"]),
        Route("/stats", admin.stats, methods=["GET"]),
        Route("/stats/reset", admin.stats_reset, methods=["POST"]),
        Route("/faults", admin.set_faults, methods=["POST"]),
    ]
    app = Starlette(
        routes=feed if config.feed_only else [*api, *feed],
        middleware=[Middleware(RequestGuard, limits=config.limits, hosts=config.allowed_hosts,
                               multipart_paths=("/v1/files",), keyed=config.api_key is not None)],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    app.state.chat = chat
    return app


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before anything is said or started: a port in use is a UsageError
    (exit 2) with the reason, never a line claiming to serve followed by uvicorn's own error."""
    bare = host.strip("[]")
    # IPPROTO_TCP named: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP; with proto 0
    # every small answer waited out the peer's delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {_url_host(host)}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(config: ServerConfig) -> None:
    import uvicorn

    sock = listening_socket(config.host, config.port)
    config = dataclasses.replace(config, port=int(sock.getsockname()[1]))  # --port 0: the port the OS chose
    limits = config.limits
    # The protocol is uvicorn's own (h11 or httptools), plus the connection in the scope for socket-level faults,
    # plus server_guard's header deadline, lingering close and OpenAI-shaped answer to the connection limit.
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), log_level="warning", access_log=False,
        http=guarded_protocol(ConnectionExposingProtocol, limits),
        limit_concurrency=connection_limit(limits), timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=HEADER_BYTES, ws="none"))  # no WebSocket, even if a library is there
    with sock:
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn hands Ctrl-C back after its clean stop; uvicorn.run() ends quietly too
            pass
