"""The shapes the API gives the values audiosum keeps: object ids (put in URLs and state) and a batch's statuses.

A server's word is checked against these before it is stored or used in a path; nothing here sends or stores.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# Ids as the API makes them (file-…, batch_…, audio_…): letters, digits, '_' and '-'. No '/', '.', '%' or space, so
# an id can never climb out of the path it is put in (`batches/../../x`), nor carry a query.
_API_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# Batch.status's enum (openai-openapi: Batch): the only statuses stored from a server.
BATCH_STATUSES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                  "cancelled")
BATCH_FINISHED = ("completed", "failed", "expired", "cancelled")
# BatchRequestCounts: the only counts stored from a batch.
BATCH_COUNTS = ("total", "completed", "failed")


def api_id(value: object) -> str | None:
    """value when it has the shape of an API object id, else None."""
    return value if isinstance(value, str) and _API_ID.fullmatch(value) else None


def in_path(value: str) -> str:
    """An id as one URL path segment: checked, and percent-encoded all the same (belt and braces)."""
    if api_id(value) is None:
        raise ValueError("not an API object id")
    return quote(value, safe="")
