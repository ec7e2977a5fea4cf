"""--executor ray: a run's CPU work on a Ray actor pool; the driver stays the one writer.

One pool a run (`RayCluster`), used by two callers: providers.ray_engine.RayProvider sends the offline engine's
calls (narrate.narrate, read_aloud, hear, answer) there instead of to local worker processes, and `RayExecutor` sends
the runner's steps on finished audio (publishing: loudness, encode, tags; hearing the API's audio for caption times)
there instead of to this process's threads. Results (WAV or encoded bytes and metadata) come back to this process,
where the runner writes every file and records state exactly as with the local executor. So resume, skip-unchanged,
the lock, signals, the report and the feed are the runner's, unchanged. The API's requests stay in this process: its
event loop already fills an account's rate limit; what a cluster adds to an API run is the CPU work on its answers.

Why a hand-sized actor pool and not Ray Data's map_batches: the runner hands over one document at a time, keeps at
most --concurrency in flight and must be able to stop (a signal, a full disk) between any two documents; a Ray
Data pipeline wants the whole input as a dataset and owns the loop. Here the driver awaits each call's ObjectRef on
its own event loop, and Ray sees at most --concurrency calls at once (never the manifest in the object store): a
document's calls (its summary, then its hearing, then its publishing) follow one another, each holding one slot
(narrate's parts are the exception: they go together, and --concurrency bounds the documents, not those parts).

Actor sizing: CPUS_PER_ACTOR CPU each with as many onnxruntime / CTranslate2 threads: measured on 2 cores, two
one-thread speakers beat one two-thread speaker (see the note on CPUS_PER_ACTOR). An actor of an offline run loads
the voice as it starts (as a local worker process does); every actor loads the recogniser at its first recording or
caption hearing. Bounds: --ray-actors MIN,MAX, default 1 to the cluster's CPUs over CPUS_PER_ACTOR, never more than
--concurrency; MIN actors start with the run, more start while calls wait for an actor, and an actor idle for IDLE_S
(checked every IDLE_S / 2) leaves while the pool has more than MIN.

Faults: an actor that dies (OOM killer, a lost node, ray.kill), or whose call Ray loses (an object lost, a full
object store), costs only that call, which is sent again to another actor (the first is killed, a replacement starts
if needed); a call that meets this ATTEMPTS times fails its document alone (DocumentError). What the called function
raises is raised here, as if it had run in this process.

Ray is imported here only, and only when this executor is asked for; without it the run stops before any document
with a UsageError naming the extra.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pipeline
from pipeline.engine import listen, speech
from pipeline.errors import DocumentError, UsageError
from pipeline.models import MAX_CONCURRENCY, EventListener, RunSettings

T = TypeVar("T")
EXTRA = "pip install 'audiosum[ray]' (in a checkout: pip install '.[ray]')"
# Token auth (RAY_AUTH_MODE=token, README's cluster recipe) came in Ray 2.52: an older Ray ignores the variable and
# runs a cluster anyone who reaches it can use. The ray extra in pyproject.toml has the same floor (a test holds them).
RAY_FLOOR = (2, 52)
# Measured on 2 cores (Piper, joe-medium; 1 thread vs 2 per speaker): 1 process x 1 thread 4.2-8.1x real time,
# 1 x 2 threads 3.2x, 2 x 1 thread 4.5-4.8x, 2 x 2 threads 2.5-3.0x (a noisy shared machine; the order held in every
# round). onnxruntime's intra-op threads do not pay for themselves on this small voice: one CPU, one thread an actor.
CPUS_PER_ACTOR = 1
ATTEMPTS = 3  # actors a single call may lose before its document fails alone
START_FAILURES = 3  # actors in a row that die as they start: the pool cannot work (say why, per document)
# An actor idle this long leaves a pool larger than its lower bound: its CPU goes back to the cluster (and an
# autoscaling cluster can let the node go). Long enough that the gaps of a steady run (a document's publishing and
# writing in the driver, a feed page's fetch) never cost an actor's start (a voice loads in 1-3 s).
IDLE_S = 30.0


def runtime_env() -> dict[str, Any]:
    """The job's runtime environment: this process's own pipeline/ is shipped to every node and comes first on the
    actors' path, so they never run an older copy installed there (the nodes need audiosum's dependencies; a Ray
    initialised by someone else, a test, passes this to ray.init itself)."""
    return {"py_modules": [str(Path(pipeline.__file__).parent)]}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {EXTRA}") from exc
    version = str(getattr(ray, "__version__", ""))
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is not None and (int(found[1]), int(found[2])) < RAY_FLOOR:
        raise UsageError(f"--executor ray needs Ray {RAY_FLOOR[0]}.{RAY_FLOOR[1]} or later, the first with token auth "
                         f"(an older Ray ignores RAY_AUTH_MODE=token); this is Ray {version}: {EXTRA}")
    return ray


class EngineActor:
    """One Ray actor: the engine's calls and the runner's steps, one at a time. With `voice`, the voice is loaded as
    it starts (speech.init_worker, as a local worker process); the recogniser loads at its first use."""

    def __init__(self, threads: int, voice: bool) -> None:
        if voice:
            speech.init_worker(threads)
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when to stop (as init_worker does)
            listen.use_threads(threads)

    def node_id(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)


class _Connection:
    """ray.init on a thread of its own that lives until close(): Ray ties the processes a local start spawns to the
    thread that started them (they die when it ends), and ray.init on the event loop's thread would block the loop
    and replace its SIGTERM handler. A Ray already initialised in this process (a test's) is used and left up."""

    def __init__(self, ray: Any, address: str | None) -> None:
        self.ray = ray
        self.address = address
        self.started_here = False
        self.context: Any = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="ray-driver", daemon=True)

    def _hold(self) -> None:
        try:
            if self.ray.is_initialized():
                self.context = None
            else:
                # The actors' output stays in Ray's logs and Ray's own notes below errors (the run's events say what
                # matters): this process's stdout and stderr stay the CLI's, a JSON log stays parseable.
                self.context = self.ray.init(address=self.address, log_to_driver=False, logging_level="ERROR",
                                             runtime_env=runtime_env())
                self.started_here = True
        except BaseException as exc:  # handed to the event loop's side, which classifies it
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        self._stop.wait()
        if self.started_here:
            self.ray.shutdown()

    async def open(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self.error is not None:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a Ray started on this machine"
            raise UsageError(f"--executor ray: could not start or reach {where}: "
                             f"{type(self.error).__name__}: {self.error}") from self.error

    async def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)


class _Pool:
    """Actors of one run: handed out one call at a time (an actor runs one call; the others wait here, in the
    driver, not in Ray's queues), started up to `high` while calls wait, replaced when they die, retired down to
    `low` when idle for IDLE_S (the longest idle first: the most recently used actor is handed out first)."""

    def __init__(self, ray: Any, low: int, high: int, threads: int, voice: bool) -> None:
        self._ray = ray
        self._actor_class = ray.remote(EngineActor).options(
            num_cpus=CPUS_PER_ACTOR, max_restarts=0, max_task_retries=0)
        self.low, self.high, self._threads, self._voice = low, high, threads, voice
        self._idle: list[Any] = []
        self._nodes: dict[Any, str] = {}  # live actor -> its node id
        self._pending: set[Any] = set()  # started, not ready yet
        self._idle_since: dict[Any, float] = {}
        self.clock: Callable[[], float] = time.monotonic
        self._starting = 0
        self._waiting = 0
        self._start_failures = 0
        self.broken: str | None = None
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls_per_node: collections.Counter[str] = collections.Counter()
        self.calls_per_step: collections.Counter[str] = collections.Counter()  # by function name
        self.actors_started = 0
        self.actors_lost = 0
        self.actors_retired = 0

    def start_retiring(self) -> None:
        task = asyncio.create_task(self._retire_idle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_S / 2)
            retired = []
            async with self._changed:
                now = self.clock()
                for actor in list(self._idle):  # the longest idle first
                    if len(self._nodes) <= self.low:
                        break
                    if now - self._idle_since.get(actor, now) >= IDLE_S:
                        self._idle.remove(actor)
                        self._nodes.pop(actor, None)
                        self._idle_since.pop(actor, None)
                        self.actors_retired += 1
                        retired.append(actor)
            for actor in retired:
                with contextlib.suppress(Exception):
                    self._ray.kill(actor)

    def start(self, count: int) -> None:
        for _ in range(count):
            self._starting += 1
            self.actors_started += 1
            actor = self._actor_class.remote(self._threads, self._voice)
            self._pending.add(actor)
            task = asyncio.create_task(self._when_ready(actor))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _when_ready(self, actor: Any) -> None:
        try:
            node = await actor.node_id.remote()
        except self._ray.exceptions.RayError as exc:
            self._pending.discard(actor)
            async with self._changed:
                self._starting -= 1
                self._start_failures += 1
                if self._start_failures >= START_FAILURES and not self._nodes:
                    self.broken = f"{self._start_failures} Ray actors died as they started ({exc})"
                self._changed.notify_all()
            return
        self._pending.discard(actor)
        async with self._changed:
            self._starting -= 1
            self._start_failures = 0
            self._nodes[actor] = node
            self._idle.append(actor)
            self._idle_since[actor] = self.clock()
            self._changed.notify_all()

    async def acquire(self) -> tuple[Any, str]:
        async with self._changed:
            self._waiting += 1
            try:
                while not self._idle:
                    if self.broken is not None:
                        raise DocumentError(f"the Ray actor pool cannot start: {self.broken}")
                    if self._starting < self._waiting and len(self._nodes) + self._starting < self.high:
                        self.start(1)
                    await self._changed.wait()
                actor = self._idle.pop()
                return actor, self._nodes[actor]
            finally:
                self._waiting -= 1

    async def release(self, actor: Any) -> None:
        async with self._changed:
            if actor in self._nodes:
                self._idle.append(actor)
                self._idle_since[actor] = self.clock()
                self._changed.notify_all()  # not notify(): on 3.11 a wake-up given to a cancelled waiter is lost

    async def lose(self, actor: Any, *, died: bool, replace: bool = True) -> None:
        """An actor leaves the pool, killed (harmless if it died; one whose call was lost or abandoned may still
        run, holding its CPU); `died`: counted as lost. A replacement starts if the pool fell below its lower bound
        (not while the run is stopping: replace=False)."""
        async with self._changed:
            self._idle_since.pop(actor, None)
            if self._nodes.pop(actor, None) is not None and died:
                self.actors_lost += 1
            if replace and len(self._nodes) + self._starting < self.low:
                self.start(self.low - len(self._nodes) - self._starting)
            self._changed.notify_all()
        with contextlib.suppress(Exception):
            self._ray.kill(actor)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for actor in [*self._nodes, *self._pending]:  # the ones still starting too
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        self._nodes.clear()
        self._pending.clear()
        self._idle.clear()


def _name(function: Callable[..., Any]) -> str:
    """A call's name for the `ray_pool` event: the function's (a partial's underlying one)."""
    inner = getattr(function, "func", function)
    return str(getattr(inner, "__name__", None) or type(inner).__name__)


def _cluster_size(ray: Any) -> tuple[int, int]:
    """(CPUs, live nodes) of the cluster (blocking calls to Ray's control store)."""
    return int(ray.cluster_resources().get("CPU", 0)), sum(1 for node in ray.nodes() if node.get("Alive"))




class RayCluster:
    """A run's connection and actor pool, opened at the run's preflight and closed at its end (the `ray_pool` event
    says how the calls spread over the nodes). `call` runs function(*args) on an actor."""

    def __init__(self, settings: RunSettings, on_event: EventListener | None, *, voice: bool, work: str) -> None:
        self._settings = settings
        self._on_event = on_event
        self._voice = voice
        self._work = work  # what the actors do, for the cluster line
        self.concurrency = max(1, settings.concurrency)  # documents in flight; sized to the pool at open()
        self._slots: asyncio.Semaphore | None = None  # Ray never sees more calls than `concurrency`
        self._connection: _Connection | None = None
        self._actors: _Pool | None = None
        self._open_lock: asyncio.Lock | None = None

    def _event(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, fields)

    async def open(self) -> _Pool:
        """Connect (or start a local Ray) and start the pool's first actors; a missing Ray or an unreachable cluster
        is a UsageError (exit 2), raised before any document when called from a preflight."""
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._actors is None:
                ray = _import_ray()
                connection = _Connection(ray, self._settings.ray_address)
                self._connection = connection
                await connection.open()
                cpus, nodes = await asyncio.to_thread(_cluster_size, ray)
                self._actors = self._sized_pool(ray, cpus, nodes)
                self._slots = asyncio.Semaphore(self.concurrency)
                self._actors.start(self._actors.low)
                self._actors.start_retiring()
            return self._actors

    def _sized_pool(self, ray: Any, cpus: int, nodes: int) -> _Pool:
        fits = max(1, cpus // CPUS_PER_ACTOR)
        low, high = self._settings.ray_actors or (1, fits)
        if not self._settings.concurrency_given and self._voice:
            # The offline engine's default (--workers, this machine's cores) would leave a cluster idle: one
            # document in flight per actor the pool may have (within --concurrency's own bound). The API's default
            # comes from its rate limit.
            self.concurrency = min(high, MAX_CONCURRENCY)
        concurrency = self.concurrency
        context = self._connection.context if self._connection is not None else None
        dashboard = getattr(context, "dashboard_url", None) or None
        if dashboard and not str(dashboard).startswith("http"):
            dashboard = f"http://{dashboard}"
        address = context.address_info.get("address") if context is not None else None
        self._event("ray_cluster", address=address, work=self._work,
                    dashboard_url=dashboard, nodes=nodes, cpus=cpus, actors_min=low, actors_max=high,
                    cpus_per_actor=CPUS_PER_ACTOR, concurrency=concurrency,
                    message=f"Ray: {nodes} node(s), {cpus} CPUs; {low}-{high} actors of {CPUS_PER_ACTOR} CPU for "
                            f"{self._work}" + (f"; dashboard {dashboard}" if dashboard else ""))
        if high > concurrency and self._voice:  # an API run's concurrency follows its rate limit: capped, no advice
            self._event("warning", kind="ray_actors_over_concurrency", option="--concurrency",
                        requested=str(concurrency),
                        message=f"--concurrency {concurrency} keeps at most {concurrency} documents in flight, so at "
                                f"most {concurrency} of the Ray pool's {high} actors work at once: give --concurrency "
                                f"{high} to use them all")
        return _Pool(ray, min(low, concurrency), min(high, concurrency), CPUS_PER_ACTOR, self._voice)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        pool = await self.open()
        ray = self._connection.ray if self._connection is not None else _import_ray()
        assert self._slots is not None  # made by open()
        # A recording is read here: the actor may be on a machine that cannot see this one's files.
        sent = [await asyncio.to_thread(arg.read_bytes) if isinstance(arg, Path) else arg for arg in args]
        async with self._slots:
            lost = 0
            while True:
                actor, node = await pool.acquire()
                try:
                    result: T = await actor.call.remote(function, *sent)
                except asyncio.CancelledError:
                    # The call may still run there: that actor must not take another (the run is stopping anyway).
                    await pool.lose(actor, died=False, replace=False)
                    raise
                except ray.exceptions.RayTaskError as exc:  # the function raised: raise it here, as a thread would
                    await pool.release(actor)
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
                        raise cause from None
                    raise DocumentError(f"{type(exc).__name__}: {exc}") from exc  # a cause Ray could not unpickle
                except ray.exceptions.RayError as exc:  # the actor died (OOM killer, node lost, ray.kill), or Ray
                    died = isinstance(exc, ray.exceptions.RayActorError)  # lost the call (object lost, store full)
                    await pool.lose(actor, died=died)
                    lost += 1
                    self._event("ray_actor_lost" if died else "ray_call_lost", node_id=node, attempt=lost,
                                error=type(exc).__name__)
                    if lost >= ATTEMPTS:
                        what = "the Ray actor running this document died" if died else "Ray lost this document's call"
                        raise DocumentError(f"{what} {lost} times (last: {type(exc).__name__})") from exc
                    continue
                except Exception as exc:  # refused before it left (an argument Ray cannot serialise): not the actor's
                    await pool.release(actor)
                    raise DocumentError(f"could not send the call to Ray: {type(exc).__name__}: {exc}") from exc
                pool.calls_per_node[node] += 1
                pool.calls_per_step[_name(function)] += 1
                await pool.release(actor)
                return result

    async def aclose(self) -> None:
        pool, self._actors = self._actors, None
        if pool is not None:
            self._event("ray_pool", calls_per_node=dict(pool.calls_per_node), calls=dict(pool.calls_per_step),
                        actors_started=pool.actors_started, actors_lost=pool.actors_lost,
                        actors_retired=pool.actors_retired)
            await pool.close()
        if self._connection is not None:
            await self._connection.close()


class RayExecutor:
    """The runner's steps on finished audio (publish, hear for captions) in the run's Ray pool. The offline engine's
    calls share the same pool (`cluster`, handed to providers.ray_engine.RayProvider, or taken from a provider a
    caller made). What a step raises comes back as a thread's would; what only a cluster can raise (a module missing
    on a node, its disk or memory) fails the document (DocumentError), never the run."""

    def __init__(self, settings: RunSettings, on_event: EventListener | None = None,
                 cluster: RayCluster | None = None) -> None:
        offline = settings.provider != "openai"
        self._own = cluster is None
        self.cluster = cluster or RayCluster(settings, on_event, voice=offline,
                                             work="the offline engine, publishing and caption hearing" if offline
                                             else "publishing and caption hearing of the API's answers")

    async def preflight(self) -> None:
        await self.cluster.open()

    def documents_in_flight(self, default: int) -> int:
        return self.cluster.concurrency

    async def publish(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await self.cluster.call(function, *args)
        except (DocumentError, ValueError):  # bad audio, a refused tag: what the runner records, as with threads
            raise
        except Exception as exc:
            raise DocumentError(f"publishing on Ray failed: {type(exc).__name__}: {exc}") from exc

    async def hear(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await self.cluster.call(function, *args)
        except DocumentError:
            raise
        except Exception as exc:  # captions fall back to estimates, with this reason
            raise DocumentError(f"hearing on Ray failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._own:
            await self.cluster.aclose()
