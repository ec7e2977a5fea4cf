"""Clean stops on SIGINT/SIGTERM, --grace running out, SIGKILL at chosen points, and two runs racing for one folder.

No clock decides an outcome here. A run talks to the test server through a Gate, a relay in the test that answers
the first N requests and holds the rest until the test releases them, so the test knows exactly where a run stands
when it signals or kills it; the run's own stderr says when it has taken a signal. Deadlines only guard against
hangs.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from loopback import LoopbackSite, Reply, Request
from peers import RunningServer, start_server, stop_server
from runs import child_env, no_partial_files, run_cli, until

DOCS = 12
CONCURRENCY = 2
HANG_S = 60.0  # only a guard against a hang: every wait below ends on an event long before it
# Sidecar fields that differ between two runs of the same input (ids and times the server or the run makes).
VOLATILE_SIDECAR_KEYS = {"audio_id", "audio_expires_at", "request_id", "created_at"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningServer]:
    """The tone engine answers at once, with bytes that depend on the text only: runs can be compared by hash."""
    server = start_server("--engine", "tone", key=None)
    yield server
    stop_server(server)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(DOCS):
        # Each document a different length, so each answer's tone (and WAV) is different too.
        (folder / f"doc{i:02d}.txt").write_text(
            f"Report {i}. The river authority measured water levels at {i + 3} stations this week. "
            + "Levels stayed close to the seasonal average. " * (i + 1) + "No flood warnings were issued.")
    return folder


class Gate(LoopbackSite):
    """A loopback relay to the test server: answers the first `answer_first` chat requests (in arrival order) and
    holds every later one until release(), or for ever (close() drops them unanswered)."""

    def __init__(self, upstream: RunningServer, answer_first: int = 0) -> None:
        self.upstream = upstream.base_url.removesuffix("/v1")
        self.answer_first = answer_first
        self.cond = threading.Condition()
        self.arrived = self.held = self.answered = 0
        self.held_docs: list[str] = []
        self.statuses: list[int] = []  # of the answers relayed
        self.released = self.closing = False
        super().__init__(self._relay)
        self.base_url = self.url("/v1")

    def _relay(self, request: Request) -> Reply | None:
        if request.method != "POST":
            # The run's model check (GET /v1/models/{id}) is passed through, never counted or held: the gate
            # counts and holds chat requests, one per document.
            passed = httpx.request(request.method, self.upstream + request.target, timeout=HANG_S,
                                   headers={"authorization": request.headers.get("authorization", "")})
            return Reply(passed.status_code, passed.content, passed.headers.get("content-type", "application/json"))
        if not self._admit(request.body):
            return None  # dropped unanswered: the client is gone or the test is over
        answer = httpx.post(self.upstream + request.target, content=request.body, timeout=HANG_S,
                            headers={"content-type": "application/json"})
        with self.cond:
            self.answered += 1
            self.statuses.append(answer.status_code)
            self.cond.notify_all()
        return Reply(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"),
                     headers={name: answer.headers[name] for name in ("retry-after", "retry-after-ms")
                              if name in answer.headers})

    def _admit(self, body: bytes) -> bool:
        """True to relay the request now; holds it first when it is past answer_first; False to drop it."""
        with self.cond:
            index = self.arrived
            self.arrived += 1
            if index >= self.answer_first and not self.released:
                self.held += 1
                found = re.search(rb"Report (\d+)\.", body)
                self.held_docs.append(f"doc{int(found.group(1)):02d}" if found else "?")
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.released or self.closing)
                self.held -= 1
            self.cond.notify_all()
            return not self.closing

    def wait(self, condition: Callable[[Gate], bool], what: str, run: Run) -> None:
        """Until condition(gate) holds; fails at once if the run exits first, and after HANG_S (a hang)."""
        deadline = time.monotonic() + HANG_S
        with self.cond:
            while not self.cond.wait_for(lambda: condition(self), timeout=0.1):
                state = f"arrived {self.arrived}, held {self.held}, answered {self.answered}: {self.statuses}"
                assert run.process.poll() is None, f"the run exited before {what} ({state}): {run.stderr}"
                assert time.monotonic() < deadline, f"no {what} within {HANG_S:g} s ({state})"

    def release(self) -> None:
        with self.cond:
            self.released = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        super().close()


@pytest.fixture()
def gate(upstream: RunningServer) -> Iterator[Callable[[int], Gate]]:
    gates: list[Gate] = []

    def make(answer_first: int) -> Gate:
        gates.append(Gate(upstream, answer_first))
        return gates[-1]

    yield make
    for made in gates:
        made.close()


class Run:
    """`audiosum run SOURCE -o OUT` as a child process; its stderr is read as it comes, so the test can wait for a
    line."""

    def __init__(self, source: Path | str, out: Path, base_url: str, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", str(source), "-o", str(out), "--concurrency",
             str(CONCURRENCY), *extra],
            env=child_env(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-test"), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.cond = threading.Condition()
        self.stderr_lines: list[str] = []
        self.stdout = ""
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.cond:
                self.stderr_lines.append(line)
                self.cond.notify_all()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()

    @property
    def stderr(self) -> str:
        with self.cond:
            return "".join(self.stderr_lines)

    def wait_for_line(self, text: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: any(text in line for line in self.stderr_lines)
                                      or self.process.poll() is not None, timeout=HANG_S), f"no {text!r} on stderr"
        assert text in self.stderr, self.stderr

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self) -> int:
        """Wait for the run to end (HANG_S guards a hang) and its output to be read; the exit code."""
        code = self.process.wait(timeout=HANG_S)
        for reader in self._readers:
            reader.join(timeout=HANG_S)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.finish()


def _env(server: RunningServer) -> dict[str, str]:
    return child_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")


def _sidecars(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("doc*.json"))



def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _documents(out: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """The state's documents: doc_id -> (status, main_name, main_sha256), read with sqlite3, not the product."""
    db = sqlite3.connect(f"file:{out / '.audiosum' / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return {doc_id: (status, main, sha) for doc_id, status, main, sha in
                db.execute("SELECT doc_id, status, main_name, main_sha256 FROM documents")}
    finally:
        db.close()


def _runs(out: Path) -> list[str]:
    db = sqlite3.connect(f"file:{out / '.audiosum' / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return [status for (status,) in db.execute("SELECT status FROM runs ORDER BY started_at")]
    finally:
        db.close()


def _deterministic_view(out: Path) -> dict[str, object]:
    """What two runs of the same inputs must agree on: every document file's bytes (a sidecar's without the ids and
    times it records), and the names of the run's own files (report, page, feed: they hold times)."""
    view: dict[str, object] = {}
    for path in sorted(p for p in out.iterdir() if p.is_file()):
        if path.name.startswith("doc") and path.suffix == ".json":
            view[path.name] = {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE_SIDECAR_KEYS}
        elif path.name.startswith("doc"):
            view[path.name] = _sha256(path)
        else:
            view[path.name] = "present"
    return view


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_a_rerun_finishes(upstream: RunningServer, gate: Callable[[int], Gate],
                                                   corpus: Path, tmp_path: Path, signum: int, code: int) -> None:
    """Three documents are done and both workers wait on a held answer when the signal comes: the two in flight
    finish within the grace, no third one starts, and exactly five are done."""
    out = tmp_path / "out"
    held = gate(3)
    run = Run(corpus, out, held.base_url)
    held.wait(lambda g: g.answered == 3 and g.held == CONCURRENCY, "two held requests after three answers", run)
    run.signal(signum)
    run.wait_for_line("stopping")  # the run has taken the signal: no document starts after this
    held.release()
    assert run.finish() == code, run.stderr
    assert "interrupted" in run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert report["totals"]["done"] == 3 + CONCURRENCY
    assert held.arrived == 3 + CONCURRENCY  # nothing was sent after the signal
    no_partial_files(out)

    rerun = run_cli("run", str(corpus), "-o", str(out), "--concurrency", "4", env=_env(upstream))
    assert rerun.exit_code == 0, rerun.stderr
    assert f"{DOCS - 5} done, 5 skipped, 0 failed" in rerun.stdout
    assert len(list(out.glob("*.wav"))) == DOCS


def test_second_sigint_stops_at_once(gate: Callable[[int], Gate], corpus: Path, tmp_path: Path) -> None:
    """Both requests are held for ever and the grace is ten minutes: only the second SIGINT can end the run."""
    out = tmp_path / "out"
    held = gate(0)
    run = Run(corpus, out, held.base_url, "--grace", "600")
    held.wait(lambda g: g.held == CONCURRENCY, "two held requests", run)
    run.signal(signal.SIGINT)
    run.wait_for_line("stopping")
    run.signal(signal.SIGINT)
    assert run.finish() == 130, run.stderr
    assert "stopping_now" in run.stderr
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"
    assert held.answered == 0
    no_partial_files(out)


def test_second_sigint_does_not_wait_for_a_slow_feed_page(upstream: RunningServer, tmp_path: Path) -> None:
    """The feed's only article page trickles a byte a second, so its fetch would last until the fetcher's 30 s
    deadline; the item is being pulled (its page fetched) when the signals come, and the second one must not wait
    for that fetch. The run's exit is waited for 20 s: a hang guard, and shorter than the fetch it must not wait for."""
    release = threading.Event()
    trickling = threading.Event()

    def trickle() -> Iterator[bytes]:
        yield b"<html><body><p>"
        trickling.set()
        while not release.wait(1.0):  # a byte a second: never idle long enough for the read timeout
            yield b"x"

    def page(request: Request) -> Reply:
        if request.path == "/feed.xml":
            return Reply(200, (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title><item>'
                               f'<title>Hangs</title><link>{web.url("/hang")}</link>'
                               f'</item></channel></rss>').encode(), "application/rss+xml")
        return Reply(200, content_type="text/html", chunks=trickle())

    web = LoopbackSite(page)
    try:
        out = tmp_path / "out"
        run = Run(web.url("/feed.xml"), out, upstream.base_url, "--allow-private-links",
                  "--grace", "600")
        assert trickling.wait(HANG_S), "the run never fetched the article page"
        run.signal(signal.SIGINT)
        run.wait_for_line("stopping")
        run.signal(signal.SIGINT)
        assert run.process.wait(timeout=20) == 130, run.stderr
        run.finish()
        assert json.loads((out / "report.json").read_text())["status"] == "interrupted"
    finally:
        release.set()
        web.close()


@pytest.mark.parametrize("answered", [0, 5, DOCS - 1], ids=["before-any-output", "mid-run", "near-the-end"])
def test_sigkill_loses_nothing_and_a_rerun_equals_a_clean_run(upstream: RunningServer, gate: Callable[[int], Gate],
                                                              corpus: Path, tmp_path: Path, answered: int) -> None:
    """Killed once `answered` answers have been relayed, their sidecars exist in OUT and every worker waits on a
    held request (so the kill never lands after the run's end). The state DB's rows may lag the files (they commit
    in batches); whatever they say must hold, and a rerun must give what a run that was never killed gives."""
    out = tmp_path / "out"
    held = gate(answered)
    run = Run(corpus, out, held.base_url)
    in_flight = min(CONCURRENCY, DOCS - answered)
    held.wait(lambda g: g.answered == answered and g.held == in_flight, f"{in_flight} held requests", run)
    until(lambda: len(_sidecars(out)) == answered, f"{answered} sidecars in OUT", process=run.process,
          deadline_s=HANG_S)
    run.kill()

    # The partial state, before anything repairs it.
    no_partial_files(out)
    assert len(list(out.glob("*.wav"))) == answered
    rows = _documents(out)
    done = {doc_id for doc_id, (status, _, _) in rows.items() if status == "done"}
    assert len(done) <= answered
    for doc_id in done:
        _, main_name, main_sha = rows[doc_id]
        assert main_name == f"{doc_id}.wav" and _sha256(out / main_name) == main_sha
        assert (out / f"{doc_id}.json").is_file()
    assert not set(held.held_docs) & done
    assert _runs(out) == ["running"]  # killed: nobody recorded its end

    rerun = run_cli("run", str(corpus), "-o", str(out), "--concurrency", "4", env=_env(upstream))
    assert rerun.exit_code == 0, rerun.stderr
    assert f"{DOCS - len(done)} done, {len(done)} skipped, 0 failed" in rerun.stdout
    clean = tmp_path / "clean" / "out"  # named as the killed run's OUT: its name is the podcast's (and tags') title
    result = run_cli("run", str(corpus), "-o", str(clean), "--concurrency", "4", env=_env(upstream))
    assert result.exit_code == 0, result.stderr

    no_partial_files(out)
    assert _deterministic_view(out) == _deterministic_view(clean)
    assert _documents(out) == _documents(clean)
    assert len({sha for _, _, sha in _documents(out).values()}) == DOCS  # the hashes do tell the documents apart
    assert _runs(out) == ["crashed", "finished"]  # the killed run is marked crashed by the next one
    assert " running " not in run_cli("status", str(out)).stdout


def test_grace_running_out_abandons_the_documents_in_flight(upstream: RunningServer, gate: Callable[[int], Gate],
                                                            corpus: Path, tmp_path: Path) -> None:
    """Two documents done, two requests held for ever, SIGTERM with --grace 0.5: the held answers never come, so
    the run can only end by giving up on them when the grace runs out. They are recorded as not done, and a rerun
    makes them."""
    out = tmp_path / "out"
    held = gate(2)
    run = Run(corpus, out, held.base_url, "--grace", "0.5", "--log-format", "json")
    held.wait(lambda g: g.answered == 2 and g.held == CONCURRENCY, "two held requests after two answers", run)
    abandoned = set(held.held_docs)
    run.signal(signal.SIGTERM)
    assert run.finish() == 143, run.stderr
    events = [json.loads(line) for line in run.stderr_lines if line.startswith("{")]
    stopping = next(e for e in events if e["event"] == "stopping")
    assert stopping["signal"] == "SIGTERM" and stopping["grace_s"] == 0.5
    end = next(e for e in events if e["event"] == "run_end")
    assert end["status"] == "interrupted" and end["done"] == 2
    assert held.answered == 2 and held.held == CONCURRENCY  # still held: the run did not wait for them

    rows = _documents(out)
    assert len(abandoned) == CONCURRENCY
    assert all(rows.get(doc_id, ("absent",))[0] != "done" for doc_id in abandoned), rows
    report = json.loads((out / "report.json").read_text())
    assert not {d["doc_id"] for d in report["documents"] if d["status"] == "done"} & abandoned
    no_partial_files(out)
    assert not [p for p in out.glob("*.wav") if p.stem in abandoned]

    rerun = run_cli("run", str(corpus), "-o", str(out), "--concurrency", "4", env=_env(upstream))
    assert rerun.exit_code == 0, rerun.stderr
    assert f"{DOCS - 2} done, 2 skipped, 0 failed" in rerun.stdout
    rows = _documents(out)
    for doc_id in abandoned:
        assert rows[doc_id][0] == "done" and _sha256(out / f"{doc_id}.wav") == rows[doc_id][2]


def test_two_runs_on_one_folder_one_proceeds(upstream: RunningServer, gate: Callable[[int], Gate], corpus: Path,
                                             tmp_path: Path) -> None:
    """The second run starts only once the first holds the lock (its first request is held at the gate), and the
    first is let go only after the second has been refused: the outcome does not depend on who starts faster."""
    out = tmp_path / "out"
    held = gate(0)
    first = Run(corpus, out, held.base_url)
    held.wait(lambda g: g.held >= 1, "a request from the first run", first)  # sent only under the lock
    second = run_cli("run", str(corpus), "-o", str(out), "--concurrency", str(CONCURRENCY), env=_env(upstream))
    assert second.exit_code == 75, second.stderr
    assert "another audiosum run holds" in second.stderr and f"pid {first.process.pid}" in second.stderr
    held.release()
    assert first.finish() == 0, first.stderr
    assert json.loads((out / "report.json").read_text())["totals"]["done"] == DOCS
