"""The provider contract, whole on one page: everything the runner asks of a provider (its checks before the first
document, the summary, a Batch API when it has one, the Ray pool it runs on, closing).

Implementations raise only pipeline.errors classes and never write files. A provider subclasses Provider to inherit
the defaults (no checks, no batches, no pool); the runner names no concrete provider and needs no isinstance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pipeline.clock import Clock
from pipeline.models import Document, RunSettings, SpokenSummary, Usage

if TYPE_CHECKING:
    from pipeline.executors.ray_pool import RayCluster
    from pipeline.providers.openai.batch import BatchApi


class BatchService(Protocol):
    """What --batch needs of a provider with a Batch API: the API itself, its clock (a batch's deadline), and a way
    to speak an answer the batch wrote."""

    clock: Clock

    def batch_api(self) -> BatchApi:
        """The Batch API calls (files, batches, output files), over the provider's client and retry policy."""
        ...

    async def speak_batch_answer(self, document: Document, settings: RunSettings, text: str, *, usage: Usage,
                                 request_id: str | None, batch_id: str | None) -> SpokenSummary:
        """Speak `text` (a batch's answer for `document`) and ask the document's follow-ups, as a summary would be."""
        ...


class Provider(Protocol):
    name: str
    # The Ray actor pool this provider runs its work on (--executor ray), for the run's steps to share; else None.
    cluster: RayCluster | None = None

    async def preflight(self) -> None:
        """Checks once before the first document. UsageError: the run cannot work (an unknown model, no Ray: exit 2);
        AuthenticationFailed: the key is refused; any other ApiError is left for the documents to meet."""
        return None

    async def summarise(self, document: Document, settings: RunSettings) -> SpokenSummary:
        """Summarise and speak one document; raise DocumentError or an ApiError subclass on failure."""
        ...

    def batches(self) -> BatchService | None:
        """The provider's Batch API for --batch, or None when it has none (the run then makes the documents now)."""
        return None

    async def aclose(self) -> None:
        """Release connections or worker processes."""
        ...
