"""--executor ray on a local Ray: the local executor's outputs, an actor killed mid-run costs no document, a document
that kills every actor it meets fails alone, and a SIGINT drains and a rerun finishes.

One local Ray serves the module (`ray.init(num_cpus=2)`, shut down at the end): the runs in this process use it (the
provider finds Ray initialised and leaves it up); a run in a child process joins it by address. Without Ray the
module is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers import RunningServer
from runs import SAMPLE_INPUTS, child_env, no_partial_files, run_cli

ray = pytest.importorskip("ray")

from pipeline import runner  # noqa: E402
from pipeline.audio import duration_of  # noqa: E402
from pipeline.audio.publish import PublishOptions, publish  # noqa: E402
from pipeline.engine import narrate  # noqa: E402
from pipeline.errors import DocumentError, InvalidAudio  # noqa: E402
from pipeline.executors import ray_pool  # noqa: E402
from pipeline.executors.ray_pool import RayExecutor  # noqa: E402
from pipeline.models import RunSettings  # noqa: E402
from pipeline.providers import ray_engine  # noqa: E402

pytestmark = pytest.mark.ray

# Piper's voice samples noise (VITS): two renderings of one text differ in their last bits and their timing by a few
# per cent, whichever executor makes them (two local runs differ too). So the audio itself is compared by presence and
# length; everything that says what was spoken, and how it is filed, must be identical.
# What differs between two syntheses of the same text (times, the audio's bytes): compared apart or not at all. The
# feed's MP3 copy is encoded from that audio, so its bytes, hash and measures differ with it (its name is compared).
TIMED_SIDECAR_KEYS = {"created_at", "audio_sha256", "duration_s", "cues", "chapters", "feed_audio"}
FILLER = ("The district council reviewed the budget for bridges, ferries and cycle lanes, and agreed to publish the "
          "figures next week. ")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    # As the provider starts its own: this checkout's pipeline/ in the actors, their output kept out of ours.
    context = ray.init(num_cpus=2, log_to_driver=False, logging_level="WARNING",
                       runtime_env=ray_pool.runtime_env())
    try:
        yield str(context.address_info["gcs_address"])
    finally:
        ray.shutdown()


def _manifest(path: Path, count: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"doc-{i:03d}", "text": f"Item {i}. " + FILLER * 2}) + "\n")
    return path


def _view(out: Path) -> dict[str, Any]:
    """What two executors must agree on: the file set; each sidecar without its times (its cues' and chapters' texts
    kept); every text file; and the report's totals without the wall time and audio seconds (compared apart)."""
    view: dict[str, Any] = {}
    for path in sorted(p for p in out.iterdir() if p.is_file()):
        if path.name in ("report.json", "report.html", "podcast.xml", "podcast-cover.png") or path.suffix in (
                ".wav", ".mp3", ".vtt"):
            view[path.name] = "present"
        elif path.suffix == ".json":
            sidecar = json.loads(path.read_text())
            view[path.name] = {k: v for k, v in sidecar.items() if k not in TIMED_SIDECAR_KEYS}
            view[path.name]["cue_texts"] = [cue[-1] for cue in sidecar.get("cues") or []]
            view[path.name]["feed_audio_file"] = (sidecar.get("feed_audio") or {}).get("file")
            view[path.name]["chapter_labels"] = [chapter[-1] for chapter in sidecar.get("chapters") or []]
        else:
            view[path.name] = path.read_bytes()
    totals = json.loads((out / "report.json").read_text())["totals"]
    view["totals"] = {k: v for k, v in totals.items() if k not in ("wall_seconds", "audio_seconds")}
    return view


def _audio_seconds(out: Path) -> float:
    return float(json.loads((out / "report.json").read_text())["totals"]["audio_seconds"])



def test_same_outputs_as_the_local_executor(ray_address: str, tmp_path: Path) -> None:
    """sample_inputs/, its recording included (heard by an actor from bytes the driver read)."""
    # Both OUT folders have the same name: it is the podcast's default title, so it is in the MP3 copy's album tag.
    local_out, ray_out = tmp_path / "local" / "out", tmp_path / "ray" / "out"
    local = run_cli("run", str(SAMPLE_INPUTS), "-o", str(local_out), "--executor", "local")
    assert local.exit_code == 0, local.stderr
    on_ray = run_cli("run", str(SAMPLE_INPUTS), "-o", str(ray_out), "--executor", "ray")
    assert on_ray.exit_code == 0, on_ray.stderr
    local_view, ray_view = _view(local_out), _view(ray_out)
    assert sorted(ray_view) == sorted(local_view)
    for name, value in local_view.items():
        assert ray_view[name] == value, name
    assert local_view["totals"]["done"] >= 8 and local_view["totals"]["failed"] == 0
    heard = [name for name, value in ray_view.items()
             if isinstance(value, dict) and (value.get("input") or {}).get("kind") == "recording"]
    assert heard and ray_view[heard[0]]["input"]["heard"], "the recording was not heard"
    assert _audio_seconds(ray_out) == pytest.approx(_audio_seconds(local_out), rel=0.1)


def test_an_actor_killed_mid_run_costs_no_document(ray_address: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[ray_pool._Pool] = []
    original = ray_pool._Pool.__init__

    def remember(self: ray_pool._Pool, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        pools.append(self)

    monkeypatch.setattr(ray_pool._Pool, "__init__", remember)
    killed: list[object] = []

    def kill_a_busy_actor(result: object) -> None:
        if killed:
            return
        busy = [actor for actor in pools[0]._nodes if actor not in pools[0]._idle]
        for actor in busy[:1]:  # the other document's actor, in the middle of its call
            ray.kill(actor, no_restart=True)
            killed.append(actor)

    events: list[tuple[str, dict[str, Any]]] = []
    settings = RunSettings(inputs=(str(_manifest(tmp_path / "in" / "docs.jsonl", 6)),), out_dir=tmp_path / "out",
                           concurrency=2, executor="ray")
    outcome = runner.run(settings, on_result=kill_a_busy_actor, on_event=lambda e, f: events.append((e, f)))
    assert killed, "no actor was busy when a document finished"
    assert outcome.totals["done"] == 6 and outcome.totals["failed"] == 0, outcome.totals
    lost = [f for e, f in events if e == "ray_actor_lost"]
    assert len(lost) == 1 and lost[0]["attempt"] == 1
    (pool_event,) = [f for e, f in events if e == "ray_pool"]
    assert pool_event["actors_lost"] == 1 and pool_event["actors_started"] >= 3  # two, and one in its place
    no_partial_files(tmp_path / "out")


def test_a_document_that_kills_every_actor_fails_alone(ray_address: str) -> None:
    settings = RunSettings(inputs=("unused",), out_dir=Path("unused"), concurrency=2, executor="ray")
    events: list[tuple[str, dict[str, Any]]] = []
    provider = ray_engine.RayProvider(settings, on_event=lambda e, f: events.append((e, f)))

    async def scenario() -> narrate.Narration:
        try:
            with pytest.raises(DocumentError, match=f"died {ray_pool.ATTEMPTS} times"):
                await provider._in_pool(os._exit, 1)  # kills the actor that runs it, every time
            # The pool recovers: the next document is spoken by a fresh actor.
            return await provider._in_pool(narrate.narrate, "One sentence here. And another one.", 20, None, "tone")
        finally:
            await provider.aclose()

    spoken = asyncio.run(scenario())
    assert spoken.transcript
    assert [f["attempt"] for e, f in events if e == "ray_actor_lost"] == list(range(1, ray_pool.ATTEMPTS + 1))


def test_an_engine_failure_is_the_documents_as_with_the_local_executor(ray_address: str) -> None:
    settings = RunSettings(inputs=("unused",), out_dir=Path("unused"), concurrency=1, executor="ray")
    provider = ray_engine.RayProvider(settings)

    async def scenario() -> None:
        try:
            with pytest.raises(DocumentError, match="offline engine failed: ValueError"):
                await provider._in_pool(int, "not a number")
        finally:
            await provider.aclose()

    asyncio.run(scenario())


def test_ctrl_c_drains_and_a_rerun_on_the_local_executor_finishes(tmp_path: Path) -> None:
    """A real `audiosum run --executor ray` starting its own Ray, in a process group of its own: SIGINT to the whole
    group (a Ctrl-C in a terminal, which reaches Ray's processes too) after the first document; the in-flight ones
    finish, exit 130, nothing partial; a rerun (another executor: the state does not care) makes only the rest."""
    docs = 8
    manifest = _manifest(tmp_path / "in" / "docs.jsonl", docs)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(manifest), "-o", str(out), "--executor", "ray",
         "--concurrency", "2", "--log-format", "json"],
        env={k: v for k, v in child_env().items() if k != "RAY_ADDRESS"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        assert process.stderr is not None  # the JSON events
        deadline = time.monotonic() + 180
        for line in process.stderr:
            seen.append(line)
            if '"event": "document"' in line and '"status": "done"' in line:
                break
            assert time.monotonic() < deadline, "no document done in time"
        else:
            pytest.fail("the run ended before a document was done: " + "".join(seen))
        os.killpg(process.pid, signal.SIGINT)
        _, rest = process.communicate(timeout=120)
        stderr = "".join(seen) + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert '"event": "stopping"' in rest and "interrupted" in rest
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    done = report["totals"]["done"]
    assert 1 <= done < docs, report["totals"]
    no_partial_files(out)
    assert len(list(out.glob("doc-*.wav"))) == done

    rerun = run_cli("run", str(manifest), "-o", str(out), "--executor", "local")
    assert rerun.exit_code == 0, rerun.stderr
    assert f"{docs - done} done, {done} skipped, 0 failed" in rerun.stdout
    assert len(list(out.glob("doc-*.wav"))) == docs


def _api_run(server: RunningServer, folder: Path, out: Path, executor: str) -> tuple[Any, list[tuple[str, Any]]]:
    events: list[tuple[str, Any]] = []
    settings = RunSettings(inputs=(str(folder),), out_dir=out, provider="openai", api_key=server.key,
                           api_base=server.base_url, executor=executor, concurrency=2, audio_format="mp3",
                           loudness_lufs=-16.0)
    return runner.run(settings, on_event=lambda e, f: events.append((e, f))), events


def test_an_api_run_publishes_and_hears_its_answers_on_the_pool(ray_address: str, local_server: RunningServer,
                                                                 tmp_path: Path) -> None:
    """--provider openai --executor ray: the requests go from this process; each answer's caption hearing (Whisper,
    aligned to its transcript) and its publishing (loudness, MP3) run in the Ray pool, and the files are the local
    executor's (same names, transcripts, cue texts and caption method)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in (("ferry", "The ferry to the island runs twice a day this winter. Tickets cost four pounds. "
                                 "The first boat leaves at eight in the morning."),
                       ("library", "The library opens a new reading room on Monday. It has forty seats and late "
                                   "hours on Thursdays. Children's books move to the ground floor.")):
        (folder / f"{name}.txt").write_text(text + "\n")
    local, _ = _api_run(local_server, folder, tmp_path / "local", "local")
    on_ray, events = _api_run(local_server, folder, tmp_path / "ray", "ray")
    assert local.totals["done"] == on_ray.totals["done"] == 2 and on_ray.totals["failed"] == 0, on_ray.totals
    (pool_event,) = [f for e, f in events if e == "ray_pool"]
    assert pool_event["calls"] == {"align": 2, "publish": 2}, pool_event  # every step of both answers, nothing else
    assert sum(pool_event["calls_per_node"].values()) == 4
    (cluster,) = [f for e, f in events if e == "ray_cluster"]
    assert cluster["work"] == "publishing and caption hearing of the API's answers"
    assert not [f["kind"] for e, f in events if e == "warning" and "ray" in f["kind"]]  # a supported setup
    names = {run: sorted(p.name for p in (tmp_path / run).iterdir()) for run in ("ray", "local")}
    assert names["ray"] == names["local"]
    for name in ("ferry", "library"):
        ours, theirs = (json.loads((tmp_path / run / f"{name}.json").read_text()) for run in ("ray", "local"))
        assert ours["cues_method"] == theirs["cues_method"] == "aligned", ours["cues_reason"]
        assert ours["transcript"] == theirs["transcript"]
        assert [c[-1] for c in ours["cues"]] == [c[-1] for c in theirs["cues"]]
        assert ours["audio_file"] == f"{name}.mp3"
        assert duration_of((tmp_path / "ray" / f"{name}.mp3").read_bytes()) == pytest.approx(ours["duration_s"],
                                                                                              abs=0.1)
    no_partial_files(tmp_path / "ray")


def test_a_step_raises_here_what_it_raised_there(ray_address: str) -> None:
    """The runner tells a refused publish (ValueError) from a bad audio (InvalidAudio) as with threads: the pool
    hands back the function's own exception. What only a cluster raises (a node's disk, a module missing there) is
    the document's failure (DocumentError), never the run's."""
    settings = RunSettings(inputs=("unused",), out_dir=Path("unused"), provider="openai", concurrency=1,
                           executor="ray")
    steps = RayExecutor(settings)

    async def scenario() -> None:
        try:
            await steps.preflight()
            with pytest.raises(InvalidAudio):
                await steps.publish(publish, b"not audio at all", PublishOptions(format="mp3"))
            with pytest.raises(ValueError, match="invalid literal"):
                await steps.publish(int, "not a number")
            with pytest.raises(DocumentError, match="publishing on Ray failed: FileNotFoundError"):
                await steps.publish(os.listdir, "/no/such/folder/here")
            with pytest.raises(DocumentError, match="hearing on Ray failed: ValueError"):
                await steps.hear(int, "not a number")
        finally:
            await steps.aclose()

    asyncio.run(scenario())


def test_without_concurrency_an_offline_run_keeps_every_actor_busy(ray_address: str, tmp_path: Path) -> None:
    """The offline default (--workers) would leave a cluster idle: not given, --concurrency becomes the pool's size."""
    events: list[tuple[str, dict[str, Any]]] = []
    settings = RunSettings(inputs=(str(_manifest(tmp_path / "in" / "docs.jsonl", 4)),), out_dir=tmp_path / "out",
                           concurrency=1, concurrency_given=False, executor="ray")
    outcome = runner.run(settings, on_event=lambda e, f: events.append((e, f)))
    assert outcome.totals["done"] == 4, outcome.totals
    (cluster,) = [f for e, f in events if e == "ray_cluster"]
    assert cluster["actors_max"] == 2 and cluster["concurrency"] == 2, cluster  # the module's Ray has 2 CPUs
    assert "ray_actors_over_concurrency" not in [f.get("kind") for e, f in events if e == "warning"]
    (pool_event,) = [f for e, f in events if e == "ray_pool"]
    assert pool_event["actors_started"] == 2  # two documents waited at once: one worker would never start a second
    assert json.loads((tmp_path / "out" / "report.json").read_text())["settings"]["concurrency"] == 2


def test_an_idle_actor_leaves_a_pool_above_its_lower_bound(ray_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calls at once start a second actor; idle past IDLE_S (made tiny here) it leaves, down to MIN, and the pool
    still works."""
    monkeypatch.setattr(ray_pool, "IDLE_S", 0.2)
    settings = RunSettings(inputs=("unused",), out_dir=Path("unused"), provider="openai", concurrency=2,
                           executor="ray", ray_actors=(1, 2))
    cluster = ray_pool.RayCluster(settings, None, voice=False, work="a test")

    async def scenario() -> tuple[int, int, int, float]:
        try:
            pool = await cluster.open()
            await asyncio.gather(cluster.call(time.sleep, 0.5), cluster.call(time.sleep, 0.5))
            assert pool.actors_started == 2
            deadline = time.monotonic() + 30
            while len(pool._nodes) > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            left, retired = len(pool._nodes), pool.actors_retired
            return left, retired, pool.actors_lost, await cluster.call(abs, -1.5)
        finally:
            await cluster.aclose()

    left, retired, lost, answer = asyncio.run(scenario())
    assert (left, retired, lost, answer) == (1, 1, 0, 1.5)
