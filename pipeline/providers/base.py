"""The one provider protocol: a document and the run's settings in, a verified spoken summary out.

Implementations raise only pipeline.errors classes; they never write files.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.models import Document, RunSettings, SpokenSummary


class Provider(Protocol):
    name: str

    async def summarise(self, document: Document, settings: RunSettings) -> SpokenSummary:
        """Summarise and speak one document; raise DocumentError or an ApiError subclass on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections or worker processes."""
        ...
