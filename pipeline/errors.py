"""The one error hierarchy: retry, report and exit codes all read it.

Nobody matches on message strings; classify at the boundary that sees the failure, and chain with `from exc`
unless the lower error can carry a secret (then `from None`, with the reason beside it).

    AudiosumError
    ├── UsageError               bad options, job or configuration: the run cannot start (exit 2)
    │   └── StateSchemaMismatch  a read-only command met a state database of another schema (not migrated)
    ├── DocumentError            one document fails, permanently; the runner records it (class name and message)
    │   ├── OutputClash          a file audiosum did not make stands where an output would go
    │   ├── InvalidAudio         bytes that are not audio audiosum can read
    │   ├── AudioToolFailed      the bundled ffmpeg failed (not the input's fault)
    │   └── FetchError           a feed or page could not be fetched within the limits
    │       └── AddressRefused   its host is, or reached, an address it may not reach
    ├── ApiError                 a request to the speaking model failed
    │   ├── TransientError       worth retrying: network, 429, 5xx, a broken answer
    │   └── PermanentApiError    retrying cannot fix it: 400/401/403/404/422, insufficient_quota
    │       └── AuthenticationFailed   the key was refused (401): the run stops
    ├── DiskFull                 no space in OUT: the run stops sending
    └── LockHeld                 another run writes to the same OUT (exit 75)

`audiosum serve` answers with its own `serve.errors.ApiFailure` (an HTTP error body), not with these.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterable, Iterator


class AudiosumError(Exception):
    """Base of every error audiosum raises on purpose."""


class UsageError(AudiosumError):
    """Bad options, job or configuration: the run cannot start (exit 2)."""


class StateSchemaMismatch(UsageError):
    """The state database is an older or newer schema: a read-only command (status) reports it, not migrates it."""


class DocumentError(AudiosumError):
    """One document cannot be processed; the reason is permanent and goes to the report.

    `attempts` holds requests already made for the document when it failed after some (the runner records them).
    """

    attempts: tuple[object, ...] = ()


class ApiError(AudiosumError):
    """A request to the speaking model failed.

    `cause` is a short stable label for reports (http_500, http_429_rate_limit_exceeded, timeout, connection,
    broken_answer); `param` is the request field an error body names; `retry_after_s` is the server's own hint,
    when it gave one; `attempts` is filled in by the
    retry policy with every attempt made for the document.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None, cause: str | None = None,
                 retry_after_s: float | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param  # the request field the error body names (e.g. "messages[2].audio.id")
        self.request_id = request_id
        self.cause = cause or (f"http_{status}" if status else type(self).__name__)
        self.retry_after_s = retry_after_s
        self.attempts: tuple[object, ...] = ()


class TransientError(ApiError):
    """A failure worth retrying: network trouble, 429 rate limit, 5xx, a broken answer."""


class PermanentApiError(ApiError):
    """A failure retrying cannot fix: 400/401/403/404/422 or insufficient_quota."""


class AuthenticationFailed(PermanentApiError):
    """The key was refused (401); every further request would be refused too, so the run stops."""


class OutputClash(DocumentError):
    """A file that audiosum did not make stands where an output would go; it is left as it is."""


class InvalidAudio(DocumentError):
    """Bytes that are not audio audiosum can read: not a playable PCM WAV, damaged, mislabelled, empty, too long."""


class AudioToolFailed(DocumentError):
    """ffmpeg is missing, or failed on input already checked: not the input's fault, yet the document fails."""


class FetchError(DocumentError):
    """A feed or page could not be fetched within the limits; the message is the one-line reason."""


class AddressRefused(FetchError):
    """A fetch was refused because its host is, resolves to, or connected to an address it may not reach."""


class DiskFull(AudiosumError):
    """A write into OUT (a file or the state database) found no space (ENOSPC/EDQUOT): the run stops sending."""


class LockHeld(AudiosumError):
    """Another run is writing to the same output folder (exit 75, EX_TEMPFAIL: try again later)."""


@contextlib.contextmanager
def keeping_attempts(made_so_far: Callable[[], Iterable[object]]) -> Iterator[None]:
    """A document that fails after some requests: put those (made_so_far(), read at the failure) in front of the
    error's own attempts, since the runner records a failed document's requests from its error."""
    try:
        yield
    except (ApiError, DocumentError) as error:
        error.attempts = tuple(made_so_far()) + tuple(error.attempts)
        raise


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none): what a one-line reason quotes."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """True for an OSError that says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS
