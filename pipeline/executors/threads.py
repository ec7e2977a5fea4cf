"""The local executor's steps: publishing on the event loop's default thread pool, hearing on one dedicated thread
(one summary at a time: Whisper already uses both cores). Never on the event loop itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pipeline.executors.ray_pool import RayCluster

T = TypeVar("T")
_HEARING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audiosum-align")


class ThreadExecutor:
    cluster: RayCluster | None = None  # threads of this process: no pool to share
    async def preflight(self) -> None:
        return None

    def documents_in_flight(self, default: int) -> int:
        return default

    async def publish(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    async def hear(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(_HEARING, function, *args)

    async def aclose(self) -> None:
        return None
