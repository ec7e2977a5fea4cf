"""--executor ray for the offline engine: the local provider with the run's Ray pool behind its executor seam.

Everything but where the engine's calls run is LocalProvider's (summarise, hear, narrate, follow-ups); the calls go
to pipeline.executors.ray_pool's actors, which load the voice as they start. See that module for sizing,
backpressure and faults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.errors import DocumentError
from pipeline.executors.ray_pool import RayCluster
from pipeline.models import EventListener, RunSettings
from pipeline.providers.local import LocalProvider


class RayProvider(LocalProvider):
    name = "local"  # the same engine, the same outputs: sidecars and the report name the engine, not the executor
    executor = "ray"

    def __init__(self, settings: RunSettings, on_event: EventListener | None = None,
                 cluster: RayCluster | None = None) -> None:
        self._own_cluster = cluster is None  # a run hands over its own (shared with its steps); else one of ours
        self._ray = cluster or RayCluster(settings, on_event, voice=True, work="the offline engine")
        self.cluster = self._ray  # the contract's name for it: the run's steps share this pool
        super().__init__(settings, on_event=on_event)

    def _start_workers(self, settings: RunSettings) -> None:
        return None  # the actors start with the pool, at preflight

    async def preflight(self) -> None:
        """Connect (or start a local Ray) before the first document: no Ray, or no cluster, is exit 2 here."""
        await self._ray.open()

    async def _in_pool(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self._ray.call(function, *args)
        except DocumentError:  # InvalidAudio, AudioToolFailed, an actor that kept dying: what the runner records
            raise
        except Exception as exc:  # the engine is this provider's boundary: classify as the local executor does
            raise DocumentError(f"offline engine failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._own_cluster:
            await self._ray.aclose()
