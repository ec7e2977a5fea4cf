"""Everything audiosum writes into OUT/, written atomically: temp file in the same folder, fsync, rename.

The only module that opens output files for writing; it refuses any name that would leave OUT/.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator
from typing import Any, BinaryIO

from pipeline import __version__
from pipeline.models import Document, RunSettings, SpokenSummary

TEMP_PREFIX = ".audiosum-tmp-"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs get the permissions an ordinary open() would give them.
FILE_MODE = 0o666 & ~_current_umask()


def confined_path(out_dir: Path, name: str) -> Path:
    """out_dir / name, refusing any name that is not a plain file name inside out_dir."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"refusing to write {name!r}: not a plain file name")
    path = out_dir / name
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"refusing to write {name!r}: it would land outside {out_dir}")
    return path


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A handle whose content replaces path only when the block ends without error (temp, fsync, rename)."""
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace path with data so readers see the old file or the whole new one, never a part."""
    with atomic_writer(path) as handle:
        handle.write(data)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def sidecar(document: Document, summary: SpokenSummary, settings: RunSettings, wav_name: str,
            wav_sha256: str) -> dict[str, Any]:
    return {
        "id": document.id,
        "source": document.source,
        "title": document.title,
        "input_sha256": document.sha256,
        "transcript": summary.transcript,
        "provider": summary.provider,
        "model": summary.model,
        "voice": summary.voice,
        "engine": summary.engine,
        "format": settings.audio_format,
        "audio_file": wav_name,
        "audio_sha256": wav_sha256,
        "sample_rate": summary.sample_rate,
        "duration_s": round(summary.duration_s, 3),
        "audio_id": summary.audio_id,
        "audio_expires_at": summary.audio_expires_at,
        "usage": summary.usage.as_dict(),
        "request_id": summary.request_id,
        "attempts": len(summary.attempts),
        "words_target": settings.words,
        "instructions": document.instructions or settings.instructions,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "audiosum_version": __version__,
    }


@dataclass(frozen=True, slots=True)
class WrittenFile:
    name: str
    sha256: str
    size: int
    mtime_ns: int


def _write_recorded(path: Path, data: bytes) -> WrittenFile:
    atomic_write(path, data)
    info = os.stat(path)
    return WrittenFile(path.name, hashlib.sha256(data).hexdigest(), info.st_size, info.st_mtime_ns)


def write_document_outputs(out_dir: Path, document: Document, summary: SpokenSummary,
                           settings: RunSettings) -> tuple[WrittenFile, WrittenFile]:
    """Write <id>.wav then <id>.json; the sidecar lands last, so its presence means the WAV is whole."""
    wav_path = confined_path(out_dir, f"{document.id}.wav")
    sidecar_path = confined_path(out_dir, f"{document.id}.json")
    wav = _write_recorded(wav_path, summary.wav)
    body = sidecar(document, summary, settings, wav.name, wav.sha256)
    written = _write_recorded(sidecar_path, (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return wav, written


def remove_stale_temp_files(out_dir: Path) -> int:
    """Delete temp files a killed run left behind; call only while holding the run lock."""
    removed = 0
    for path in out_dir.glob(TEMP_PREFIX + "*"):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
