"""What `audiosum serve` was started with: the options the CLI parsed, as one frozen ServerConfig.

Declares the options and their defaults only; it checks nothing and serves nothing (the CLI parses, app.py builds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.serve.batches import BatchSettings
from pipeline.serve.guard import LOOPBACK_NAMES, GuardLimits

MAX_REMEMBERED_AUDIO = 10_000


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    engine: Literal["local", "tone"] = "local"
    api_key: str | None = field(default=None, repr=False)
    audio_ttl_s: int = 3600
    audio_memory: int = MAX_REMEMBERED_AUDIO              # ids kept; the oldest are forgotten (0: forget at once)
    workers: int = 2
    rpm: int = 0                                          # 0 = no limit
    tpm: int = 0                                          # 0 = no limit
    burst_s: float = 1.0                                  # bucket capacity, in seconds of refill
    latency_s: tuple[float, float] = (0.0, 0.0)           # extra wait before each 200 answer, uniform in range
    faults: tuple[tuple[str, float], ...] = ()            # (kind, probability), see server_faults.FAULT_KINDS
    seed: int = 0
    fault_retry_after_s: tuple[float, float] = (0.05, 0.5)  # the wait an injected `429` fault announces
    feed_dir: Path | None = None                          # serve this output folder's podcast files at /feed/
    feed_only: bool = False                               # serve nothing but the feed (no API, no /stats)
    limits: GuardLimits = field(default_factory=GuardLimits)
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES       # Host header values answered (server_guard.allowed_hosts)
    record: Path | None = None                            # append each API request (method, path, body) here
    shutdowns: tuple[tuple[str, str], ...] = ()           # (model, YYYY-MM-DD): the shutdown_date GET models shows
    batches: BatchSettings = field(default_factory=BatchSettings)  # --batch-delay, --batch-expire
