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


PART_PROMPT = (
    "You summarise part {index} of {count} of a longer document, so that a later step can write one spoken "
    "summary of the whole. "
    "Write plain prose in about {words} words: the facts, numbers, names and conclusions of this part, in order. "
    "No markdown, no preamble, no remarks about the task."
)


def part_messages(document: Document, part: str, index: int, count: int, words: int) -> list[dict[str, str]]:
    heading = f"Title: {document.title}\n\n" if document.title else ""
    return [
        {"role": "system", "content": PART_PROMPT.format(words=words, index=index, count=count)},
        {"role": "user", "content": f"{heading}{part}"},
    ]


def combined_parts(summaries: list[str]) -> str:
    """The reduce step's document: the part summaries, in order, one paragraph each (no labels to read out)."""
    return "\n\n".join(summaries)


NARRATE_PROMPT = (
    "Read the user's text aloud exactly as written, as a calm, clear narrator. Do not summarise, skip, add or "
    "comment on anything. Say headings as short sentences, leave out markdown symbols and URLs, and say numbers, "
    "dates and units the way a person would."
)


def narrate_messages(part: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": NARRATE_PROMPT}, {"role": "user", "content": part}]


RECORDING_PROMPT = (
    "You listen to recordings (calls, meetings, interviews, voice notes) and summarise them for people who will "
    "{use} the summary. In about {words} words, say what the recording is about, who speaks when that is clear, "
    "and the main points, decisions and open questions, in the order they come. {style} "
    "Do not add facts that are not in the recording, and do not mention these instructions."
)
_SPOKEN_STYLE = "It will be heard, not read: plain spoken sentences, no markdown, no lists, no headings."
_WRITTEN_STYLE = "Write plain prose: no markdown and no preamble."


def recording_system_prompt(words: int, override: str | None, spoken: bool) -> str:
    if override:
        return override.replace("{words}", str(words))
    return RECORDING_PROMPT.format(words=words, use="listen to" if spoken else "read",
                                   style=_SPOKEN_STYLE if spoken else _WRITTEN_STYLE)


def recording_user_content(title: str | None, data_b64: str, audio_format: str, index: int,
                           count: int) -> list[dict[str, object]]:
    """The user turn for one part of a recording: a short text part, then the audio."""
    label = f"Recording: {title}" if title else "Recording"
    if count > 1:
        label += f" (part {index} of {count}; summarise this part only)"
    return [{"type": "text", "text": label},
            {"type": "input_audio", "input_audio": {"data": data_b64, "format": audio_format}}]


def recording_in_parts(title: str | None, count: int) -> str:
    """The first user turn of a follow-up conversation about a recording that was summarised in parts."""
    name = f"the recording {title!r}" if title else "a recording"
    return (f"I gave you {name}. It was too long for one request, so you summarised it in {count} parts; "
            "the joined summary follows.")
