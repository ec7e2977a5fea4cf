"""`audiosum serve` says it serves only once its port is bound: a port in use is one line on stderr and exit 2,
with nothing claiming to serve before it."""

from __future__ import annotations

import socket
import subprocess
import sys

from runs import child_env


def test_a_port_in_use_is_exit_2_with_one_line_and_no_claim_to_serve() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "pipeline", "serve", "--engine", "tone", "--port", str(port)],
                                env=child_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "serves" not in result.stderr and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_listening_socket_says_it_is_tcp_so_answers_are_not_held_by_nagle() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only when the socket's proto is IPPROTO_TCP; with proto 0
    every small answer waited ~40 ms for the peer's delayed ACK (bench_serve_hostile saw /v1/models at 44 ms)."""
    from pipeline.serve.app import listening_socket

    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
