"""The bundled ffmpeg (its path, how every command starts, the environment it runs in) and pydub imported quietly.

Reads and writes no audio: decode.py, recordings.py and publish.py run their commands from these.
"""

from __future__ import annotations

import functools
import os

from pipeline.errors import AudioToolFailed


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg bundled by imageio-ffmpeg (or $IMAGEIO_FFMPEG_EXE when set)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError) as exc:  # no package, no binary for this platform, not runnable
        raise AudioToolFailed(f"no usable ffmpeg: {exc}") from exc


def import_pydub():  # -> the pydub module, with pydub.silence loaded
    """pydub, imported without its "no ffmpeg on PATH" RuntimeWarning: audiosum reads only WAV/PCM with it, and
    that warning on stderr would corrupt --log-format json."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        import pydub
        import pydub.silence
    return pydub


def ffmpeg_command(loglevel: str, *, protocols: str = "file,pipe") -> list[str]:
    """The start of every ffmpeg command audiosum runs: the bundled binary, no stdin, no banner or progress, this
    -loglevel, and only these protocols (so a crafted input cannot make ffmpeg open a URL)."""
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", loglevel,
            "-protocol_whitelist", protocols]


def ffmpeg_environment() -> dict[str, str]:
    """The environment ffmpeg runs in: no FFREPORT (it would write a log file), no colour codes to parse."""
    env = {k: v for k, v in os.environ.items() if k not in ("FFREPORT", "AV_LOG_FORCE_COLOR")}
    env["AV_LOG_FORCE_NOCOLOR"] = "1"
    return env
