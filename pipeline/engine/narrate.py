"""One call a worker process runs: text → summary sentences → speech.

Kept picklable and free of asyncio so both the local provider and the server can hand it to a process pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.engine import extractive, speech, tone


@dataclass(frozen=True, slots=True)
class Narration:
    transcript: str
    audio: speech.SpeechAudio
    sentences: tuple[str, ...] = ()
    basis: extractive.AnswerBasis | None = None  # a follow-up answer: matched to the question, or the lead

    def cues(self) -> tuple[tuple[float, float, str], ...]:
        """(start, end, sentence) from the real synthesis times of each sentence."""
        starts = self.audio.sentence_starts_s
        if len(starts) != len(self.sentences):
            return ()
        ends = (*starts[1:], self.audio.duration_s)
        return tuple((round(a, 3), round(b, 3), text) for a, b, text in zip(starts, ends, self.sentences))


def narrate(text: str, words: int, title: str | None = None, engine: str = "local") -> Narration:
    """engine: "local" (TextRank + neural voice), "tone" (lead sentences + tone), "text" (TextRank + tone:
    for text-only answers, where the audio is thrown away)."""
    if engine == "tone":
        spoken = extractive.lead(text, words, title)
        audio = tone.tone(spoken)
    elif engine == "text":
        spoken = extractive.summarise(text, words, title)
        audio = tone.tone(spoken)
    else:
        spoken = extractive.summarise(text, words, title)
        audio = speech.speak(spoken)
    return Narration(transcript=" ".join(spoken), audio=audio, sentences=tuple(spoken))


def read_aloud(text: str, engine: str = "local") -> Narration:
    """Every sentence of the text, in order (for --mode narrate), headings made into sentences."""
    from pipeline.engine.text import as_spoken_sentence, sentences

    spoken = [as_spoken_sentence(s.text) for s in sentences(text)]
    audio = tone.tone(spoken) if engine == "tone" else speech.speak(spoken)
    return Narration(transcript=" ".join(spoken), audio=audio, sentences=tuple(spoken))


def hear(data: bytes | Path, suffix: str | None, words: int, title: str | None = None,
         engine: str = "local", language: str = "en") -> tuple[str, float, Narration | None]:
    """A recording → (what was heard, its length in seconds, a narration of the summary or None if no speech).

    engine as for narrate(); "text" when only the transcript will be kept. language: what it is heard as.
    """
    from pipeline.engine import listen

    heard = listen.transcribe(data, suffix=suffix, language=language)
    if not heard.utterances:
        return "", heard.duration_s, None
    return heard.text, heard.duration_s, narrate(heard.text, words, None, engine)


ANSWER_WORDS = 30  # an extractive answer is the sentence or two that match the question best, not another summary


def answer(question: str, context: str, words: int, engine: str = "local", conversation: str = "") -> Narration:
    """A follow-up question answered from the document (or what was heard of it); conversation (the earlier
    questions and answers) only reorders what the question matched. The narration says whether it fell back to
    the lead because nothing matched."""
    spoken, basis = extractive.answer_with_basis(question, context, words, conversation)
    # "text": the audio is thrown away, so make the shortest there is.
    audio = speech.speak(spoken) if engine == "local" else tone.tone(spoken if engine == "tone" else [])
    return Narration(transcript=" ".join(spoken), audio=audio, sentences=tuple(spoken), basis=basis)
