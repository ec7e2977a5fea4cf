"""Where a run's CPU work runs: `local` (this machine) or `ray` (an actor pool on a Ray cluster).

Two kinds of CPU work: the offline engine's (summary and speech, recognising recordings: the local provider's
process pool, or the Ray pool behind providers.ray_engine) and the steps the runner takes on every finished spoken
summary, whichever provider made it (an `Executor`'s steps): publishing (loudness, encode, tags) and hearing the
API's audio for caption times. They run on threads of this process with the local executor, and in the Ray pool
with `--executor ray`, so an API run's encodes and recognition spread over the cluster while its requests stay in
this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipeline.models import EventListener, RunSettings

if TYPE_CHECKING:
    from pipeline.executors.ray_pool import RayCluster

T = TypeVar("T")


class Executor(Protocol):
    """Where the runner's CPU steps on finished audio run. Each call returns what function(*args) returns or raises
    what it raises (a lost Ray actor is retried elsewhere; one that keeps dying is a DocumentError)."""

    @property
    def cluster(self) -> RayCluster | None:
        """The Ray actor pool the steps run on (--executor ray), for the offline engine to share; else None."""
        ...

    async def preflight(self) -> None: ...

    def documents_in_flight(self, default: int) -> int:
        """How many documents the run keeps in flight, decided at preflight (a Ray pool may size it)."""
        ...

    async def publish(self, function: Callable[..., T], *args: Any) -> T: ...

    async def hear(self, function: Callable[..., T], *args: Any) -> T: ...

    async def aclose(self) -> None: ...


def make_executor(settings: RunSettings, on_event: EventListener | None = None,
               cluster: RayCluster | None = None) -> Executor:
    """The run's steps; `cluster`: a Ray pool a caller's provider already has (the steps then share it)."""
    if settings.executor == "ray":
        from pipeline.executors.ray_pool import RayExecutor  # Ray itself is imported at preflight (exit 2 without it)

        return RayExecutor(settings, on_event=on_event, cluster=cluster)
    from pipeline.executors.threads import ThreadExecutor

    return ThreadExecutor()
