"""Audio checks and conversions: is this a WAV that parses, what does any audio file decode to, how loud is it.

Never writes outside a private temp folder (outputs.py writes OUT/) and never talks to the network.

The code lives in wav.py (WAV in memory), containers.py (which container bytes hold), ffmpeg.py (the bundled ffmpeg
and pydub) and decode.py (decode, stream, duration, loudness); this file re-exports what other packages use from them.
recordings.py, stitch.py, strip.py, plausible.py and publish.py are imported as modules.
"""

from __future__ import annotations

from pipeline.audio.containers import demuxer_for, id3_tag_size, sniff_container
from pipeline.audio.decode import (
    SILENCE_LUFS,
    AudioMeasurement,
    Loudness,
    decode_to_pcm,
    duration_of,
    measure,
    measure_loudness,
    pcm_stream,
)
from pipeline.audio.ffmpeg import ffmpeg_command, ffmpeg_environment, ffmpeg_exe, import_pydub
from pipeline.audio.wav import WavInfo, pcm16_to_wav, wav_frames, wav_info

__all__ = [
    "SILENCE_LUFS",
    "AudioMeasurement",
    "Loudness",
    "WavInfo",
    "decode_to_pcm",
    "demuxer_for",
    "duration_of",
    "ffmpeg_command",
    "ffmpeg_environment",
    "ffmpeg_exe",
    "id3_tag_size",
    "import_pydub",
    "measure",
    "measure_loudness",
    "pcm16_to_wav",
    "pcm_stream",
    "sniff_container",
    "wav_frames",
    "wav_info",
]
