"""Speaking-model providers behind one interface; the runner picks one and never sees httpx or Piper."""

from __future__ import annotations

from pipeline.models import EventListener, RunSettings
from pipeline.providers.base import Provider


def make_provider(settings: RunSettings, on_event: EventListener | None = None) -> Provider:
    if settings.provider == "openai":
        from pipeline.providers.openai import OpenAIProvider

        return OpenAIProvider(settings, on_event=on_event, check_model=True)  # a run checks its model first
    from pipeline.providers.local import LocalProvider

    return LocalProvider(settings, on_event=on_event)
