"""Speaking-model providers behind one interface; the runner picks one and never sees httpx or Piper."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.models import EventListener, RunSettings
from pipeline.providers.base import Provider

if TYPE_CHECKING:
    from pipeline.executors.ray_pool import RayCluster


def make_provider(settings: RunSettings, on_event: EventListener | None = None,
                  cluster: RayCluster | None = None) -> Provider:
    """The run's provider; `cluster`: the run's Ray pool (--executor ray), shared with its steps."""
    if settings.provider == "openai":
        from pipeline.providers.openai import OpenAIProvider

        # With --executor ray the requests still go from here (one event loop fills an account's rate limit); the
        # run's steps (publishing, caption hearing) take its answers to the cluster.
        return OpenAIProvider(settings, on_event=on_event, check_model=True)  # a run checks its model first
    if settings.executor == "ray":
        # Ray itself is imported by the pool's preflight: without it the run stops there (exit 2, the extra named).
        from pipeline.providers.ray_engine import RayProvider

        return RayProvider(settings, on_event=on_event, cluster=cluster)
    from pipeline.providers.local import LocalProvider

    return LocalProvider(settings, on_event=on_event)
