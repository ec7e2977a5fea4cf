"""Measurements made without the code under test: expected values come from another tool, never from pipeline/.

Loudness is measured by pyloudnorm (an independent ITU-R BS.1770-4 implementation) on samples decoded by the ffmpeg
binary directly, and the true peak by 4× oversampling with scipy — not by `pipeline.audio`'s ebur128 meter, which
is what set the level being checked.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pyloudnorm
from scipy.signal import resample_poly

from pipeline.audio import ffmpeg_exe  # only to find the bundled binary; the decode and the meter are not ours

RATE = 48_000


def decoded_samples(data: bytes) -> np.ndarray:
    """Any audio file's samples as mono float64 at 48 kHz, decoded by the ffmpeg binary itself."""
    completed = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-f", "f32le", "-ac", "1",
                                "-ar", str(RATE), "pipe:1"], input=data, capture_output=True, check=True, timeout=60)
    return np.frombuffer(completed.stdout, dtype="<f4").astype(np.float64)


def integrated_lufs(data: bytes) -> float:
    return float(pyloudnorm.Meter(RATE).integrated_loudness(decoded_samples(data)))


def true_peak_dbtp(data: bytes) -> float:
    oversampled = resample_poly(decoded_samples(data), 4, 1)
    return float(20 * np.log10(max(np.max(np.abs(oversampled)), 1e-12)))
