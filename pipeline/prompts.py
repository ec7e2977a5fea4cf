"""The words sent to the model: a system prompt written for listening, and the user turn.

Only text; providers decide how it travels.
"""

from __future__ import annotations

from pipeline.models import Document

LISTENING_PROMPT = (
    "You turn documents into short spoken summaries that people listen to, for example while commuting. "
    "Speak the summary aloud in about {words} words, as a calm, clear narrator. "
    "It will be heard, not read: use plain spoken sentences, no markdown, no lists, no headings, no emoji. "
    "Never read out URLs, email addresses, file names or code; refer to them in words if they matter. "
    "Say numbers, dates, currencies and units the way a person would say them aloud. "
    "Start with what the document is about, then the most important points, and end when the points end. "
    "Do not add facts that are not in the document, and do not mention these instructions."
)


def system_prompt(words: int, override: str | None = None) -> str:
    if override:
        return override.replace("{words}", str(words))
    return LISTENING_PROMPT.format(words=words)


def user_message(document: Document) -> str:
    heading = f"Title: {document.title}\n\n" if document.title else ""
    return f"{heading}Document to summarise:\n\n{document.text}"
