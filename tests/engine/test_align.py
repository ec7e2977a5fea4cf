"""Caption times from the audio: a known transcript aligned to the offline engine's own speech, whose sentence times
are known from synthesis (Narration.cues), as if it were API audio that came with a transcript and no timing.

The speech is made once per module (Piper, a few seconds); recognition runs the bundled Whisper tiny.en. The
matching and interpolation are also checked on hand-made word lists, with no model at all.
"""

from __future__ import annotations

import pytest

from pipeline.audio import pcm16_to_wav
from pipeline.engine import align, listen
from pipeline.errors import UsageError

SAID = ["The harbour bridge reopened to cars and buses on Tuesday morning.",
        "More than a thousand cyclists crossed it before eight o'clock.",
        "The council says the bridge will need no major repairs for thirty years."]
UNRELATED = ("Preheat the oven to two hundred degrees. Knead the dough for ten minutes until it is smooth. "
             "Leave it to rise in a warm kitchen overnight.")


@pytest.mark.slow  # synthesis, then recognition twice: 10-20 s on two shared cores (one test: one synthesis)
def test_sentence_boundaries_match_the_synthesis_times_and_a_wrong_transcript_is_estimated() -> None:
    from pipeline.engine import speech
    from pipeline.engine.narrate import Narration

    spoken = Narration(transcript=" ".join(SAID), audio=speech.speak(SAID), sentences=tuple(SAID))
    result = align.align(spoken.audio.wav, spoken.transcript)  # the transcript only, as the API gives it
    assert result.method == "aligned" and result.reason is None and result.matched >= 0.8
    known = spoken.cues()
    assert [text for _, _, text in result.sentence_cues] == SAID
    for (start, end, _), (known_start, known_end, _) in zip(result.sentence_cues, known):
        assert abs(start - known_start) <= 0.6 and abs(end - known_end) <= 0.6
    # Word cues: one per word of the transcript, in order, never overlapping, inside the audio.
    words = result.word_cues
    assert [word for _, _, word in words] == " ".join(SAID).split()
    assert all(0.0 <= a <= b <= spoken.audio.duration_s + 0.05 for a, b, _ in words)
    assert all(b1 <= a2 for (_, b1, _), (a2, _, _) in zip(words, words[1:]))

    # Unrelated text: too few of its words are heard, so the estimate is used and the reason given.
    result = align.align(spoken.audio.wav, UNRELATED)
    assert result.method == "estimated" and result.word_cues == ()
    assert "words were heard" in (result.reason or "")
    # The estimate: the transcript's sentences, end to end, over the whole recording.
    assert len(result.sentence_cues) == 3 and result.sentence_cues[0][0] == 0.0
    assert abs(result.sentence_cues[-1][1] - spoken.audio.duration_s) < 0.01


def test_another_language_is_refused_by_the_recogniser_and_estimated_by_align() -> None:
    wav = pcm16_to_wav(bytes(2 * 16000 * 3), 16000)  # 3 s of silence: the language is refused before any hearing
    with pytest.raises(UsageError, match="English only.*tiny.en"):
        listen.transcribe(wav, language="fr")
    result = align.align(wav, " ".join(SAID), language="fr")
    assert result.method == "estimated" and "English only" in (result.reason or "")
    assert [text for _, _, text in result.sentence_cues] == SAID and result.sentence_cues[-1][1] == 3.0


def test_unheard_words_are_timed_between_their_heard_neighbours() -> None:
    heard = [(0.5, 0.8, "Hello"), (0.8, 1.2, "there."), (2.0, 2.4, "Orders"), (3.4, 3.9, "Thursday.")]
    result = align.align_words(["Hello there.", "Orders ship on Thursday."], heard, 4.5)
    assert result.method == "aligned" and result.matched == pytest.approx(4 / 6)
    times = {word: (a, b) for a, b, word in result.word_cues}
    assert times["Orders"] == (2.0, 2.4) and times["Thursday."] == (3.4, 3.9)
    # "ship on" share the second between "Orders" and "Thursday." by length: ship 4 letters, on 2.
    assert times["ship"] == pytest.approx((2.4, 3.067)) and times["on"] == pytest.approx((3.067, 3.4))
    assert result.sentence_cues == ((0.0, 1.9, "Hello there."), (1.9, 4.5, "Orders ship on Thursday."))


def test_regroup_times_another_sentence_split_without_hearing_again() -> None:
    heard = [(0.1, 0.4, "one"), (0.5, 0.9, "two."), (1.5, 1.9, "three"), (2.0, 2.5, "four.")]
    result = align.align_words(["One two.", "Three four."], heard, 3.0)
    assert align.regroup(result, ["One two. Three four."]) == ((0.0, 3.0, "One two. Three four."),)
    assert align.regroup(result, ["Other words."]) == ()


def test_the_estimate_is_proportional_to_sentence_length() -> None:
    assert align.estimated_cues(["ab.", "abcdef."], 10.0) == ((0.0, 3.0, "ab."), (3.0, 10.0, "abcdef."))
    assert align.estimated_transcript_cues("ab. abcdef.", 10.0) == align.estimated_cues(["ab.", "abcdef."], 10.0)


def test_audio_far_longer_than_its_transcript_is_refused_before_anything_is_heard() -> None:
    """Ten minutes of audio for five words: one decode says so (InvalidAudio), not ten minutes of Whisper. The
    bound is the transcript's longest plausible speech (pipeline/audio/plausible.py)."""
    from pipeline.errors import InvalidAudio

    ten_minutes = pcm16_to_wav(b"\x00\x00" * (8_000 * 600), 8_000)
    with pytest.raises(InvalidAudio, match="longer than"):
        align.align(ten_minutes, "The ferry runs at eight.")
