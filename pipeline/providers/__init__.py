"""Speaking-model providers behind one interface; the runner picks one and never sees httpx or Piper."""

from __future__ import annotations

from pipeline.models import EventListener, RunSettings
from pipeline.providers.base import Provider


def make_provider(settings: RunSettings, on_event: EventListener | None = None) -> Provider:
    if settings.provider == "openai":
        from pipeline.providers.openai import OpenAIProvider

        if settings.executor == "ray" and on_event is not None:
            on_event("warning", {"kind": "executor_ray_api_in_driver", "option": "--executor", "requested": "ray",
                                 "message": "--executor ray moves the offline engine's work to Ray; the API path "
                                            "(--provider openai) stays in this process, whose event loop already "
                                            "fills an account's rate limit"})
        return OpenAIProvider(settings, on_event=on_event, check_model=True)  # a run checks its model first
    if settings.executor == "ray":
        # Ray itself is imported by the provider's preflight: without it the run stops there (exit 2, the extra named).
        from pipeline.providers.ray_engine import RayProvider

        return RayProvider(settings, on_event=on_event)
    from pipeline.providers.local import LocalProvider

    return LocalProvider(settings, on_event=on_event)
