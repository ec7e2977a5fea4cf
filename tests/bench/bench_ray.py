"""Benchmark: `--executor ray` against `--executor local` on the same cores and manifest, and work spread over nodes.

Run: python tests/bench/bench_ray.py [--docs 40] [--repeat 1] [--smoke]   (needs the extra: pip install '.[ray]')
Speaks one manifest of short documents (write_manifest, about 7 s of audio each) with --concurrency 2, each run in
its own `audiosum run` process, wall from process start:
  local        --executor local (two worker processes: the same-run baseline);
  ray joined   --executor ray --ray-address of a Ray this bench started first with 2 CPUs (a cluster is up before a
               run, so its start is not the run's cost);
  ray started  --executor ray with no address: the run starts Ray on this machine itself (a figure, no goal: Ray's
               start-up is a fixed 5-15 s here).
Then a simulated cluster (ray.cluster_utils.Cluster: a head node and a worker node of 1 CPU each, on this machine)
runs the same manifest joined by address, and the run's own `ray_pool` event says how many calls each node ran.
The API path (--provider openai against `audiosum serve --engine local`, the answers published as MP3 at -16 LUFS and
heard for caption times): --executor local (this process's threads) and ray joined, side by side, and the same run
on the simulated cluster, whose `ray_pool` event counts the steps (`align`, `publish`) and the nodes that ran them.
Goals: audio seconds per wall second, ray joined / local >= 0.9 (Ray's overhead on one machine must be small);
every node of the simulated cluster ran documents, the busiest at most 3x the other's count; every API answer's
hearing and publishing ran in the pool, on both nodes of the cluster (the API ratio is a figure: the server speaks
on the same two cores).
--smoke: 4 documents, one round; the ratio and the spread's evenness are not checked there (start-up dominates 4
documents); that both nodes ran documents is.
Without Ray installed the bench says so and checks nothing (it is not part of run_smoke's default set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, Goals, audiosum, child_env, parser, start_server, stop_server, write_manifest

GOAL_RATIO = 0.9
GOAL_SPREAD = 3.0


def run(manifest: Path, out: Path, executor: str, address: str | None = None,
        api: str | None = None) -> tuple[float, float, list[dict]]:
    """(wall seconds from process start, audio seconds, the run's JSON events) of one `audiosum run`; `api`: the
    base URL of a server to send the documents to (the answers published as MP3 and heard for captions)."""
    env = {k: v for k, v in child_env().items() if k != "RAY_ADDRESS"}
    if api:
        env.update(OPENAI_BASE_URL=api, OPENAI_API_KEY="sk-bench")
    command = audiosum("run", str(manifest), "-o", str(out), "--executor", executor, "--concurrency", "2",
                       "--log-format", "json", *(["--ray-address", address] if address else []),
                       *(["--provider", "openai", "--format", "mp3", "--loudness", "-16"] if api else []))
    log = out.with_name(out.name + ".events.jsonl")  # the JSON events come on stderr: all of them are kept
    with log.open("w") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, _ = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    lines = log.read_text().splitlines()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"audiosum run --executor {executor} exited {code}: " + "\n".join(lines[-20:]))
    report = json.loads((out / "report.json").read_text())
    if report["totals"]["failed"]:
        raise SystemExit(f"--executor {executor}: {report['totals']['failed']} documents failed")
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pass  # Ray's own note, not an event
    return wall, float(report["totals"]["audio_seconds"]), events


def _pool(events: list[dict]) -> dict:
    return next((event for event in events if event.get("event") == "ray_pool"), {})


def _line(label: str, wall: float, audio: float, note: str = "") -> None:
    print(f"{label:<16} wall {wall:6.1f} s  audio {audio:6.1f} s  {audio / wall:5.2f} audio s per wall s{note}",
          flush=True)


def main() -> int:
    args_parser = parser(__doc__)
    args_parser.add_argument("--docs", type=int, default=40)
    args_parser.add_argument("--api-docs", type=int, default=12)
    args_parser.add_argument("--repeat", type=int, default=1)
    args = args_parser.parse_args()
    goals = Goals("bench_ray", args.smoke)
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        goals.skipped("Ray is not installed (pip install '.[ray]'): nothing measured")
        return goals.finish()
    docs, api_docs, repeat = (4, 2, 1) if args.smoke else (args.docs, args.api_docs, args.repeat)
    rates: dict[str, float] = {}
    api_steps: dict[str, dict] = {}
    server = start_server("--engine", "local", "--workers", "1", key=None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = write_manifest(Path(tmp) / "docs.jsonl", docs, words=30)
            api_manifest = write_manifest(Path(tmp) / "api-docs.jsonl", api_docs, words=30)
            context = ray.init(num_cpus=2, log_to_driver=False, logging_level="ERROR")
            address = str(context.address_info["gcs_address"])
            try:
                for round_ in range(repeat):
                    for label, executor, joined, api in (
                            ("local", "local", None, None), ("ray joined", "ray", address, None),
                            ("api local", "local", None, server.base_url),
                            ("api ray joined", "ray", address, server.base_url)):
                        wall, audio, events = run(manifest if api is None else api_manifest,
                                                  Path(tmp) / f"out-{label.replace(' ', '-')}-{round_}", executor,
                                                  joined, api)
                        rates[label] = max(rates.get(label, 0.0), audio / wall)
                        if label == "api ray joined":
                            api_steps["joined"] = _pool(events)
                        _line(label, wall, audio)
            finally:
                ray.shutdown()
            if not args.smoke:
                wall, audio, _ = run(manifest, Path(tmp) / "out-ray-started", "ray")
                rates["ray started"] = audio / wall
                _line("ray started", wall, audio, " (Ray's own start included)")

            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
            try:
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
                wall, audio, events = run(manifest, Path(tmp) / "out-cluster", "ray", cluster.address)
                api_wall, api_audio, api_events = run(api_manifest, Path(tmp) / "out-api-cluster", "ray",
                                                      cluster.address, server.base_url)
                api_steps["cluster"] = _pool(api_events)
            finally:
                cluster.shutdown()
    finally:
        stop_server(server)
    per_node = sorted(_pool(events).get("calls_per_node", {}).values(), reverse=True)
    print(f"two nodes of 1 CPU: wall {wall:.1f} s, audio {audio:.1f} s, {audio / wall:.2f} audio s per wall s; "
          f"calls per node {per_node}", flush=True)
    api_per_node = sorted(api_steps["cluster"].get("calls_per_node", {}).values(), reverse=True)
    print(f"two nodes of 1 CPU, API answers: wall {api_wall:.1f} s, audio {api_audio:.1f} s; steps "
          f"{api_steps['cluster'].get('calls')}, per node {api_per_node}", flush=True)
    ratio = rates["ray joined"] / rates["local"]
    api_ratio = rates["api ray joined"] / rates["api local"]
    print(f"ray joined / local = {ratio:.2f}; API answers' steps, ray joined / local = {api_ratio:.2f} (audio seconds "
          f"per wall second, best of {repeat})")
    if args.smoke:
        goals.skipped(f"ray / local at {docs} documents (start-up dominates; it was {ratio:.2f})")
        goals.finite("audio seconds per wall second, local and ray joined", rates["local"], rates["ray joined"])
    else:
        goals.check("audio seconds per wall second, ray joined / local", ratio, ">=", GOAL_RATIO, fmt=".2f")
    goals.true("both nodes ran documents", len(per_node) == 2 and min(per_node) > 0, f"calls per node {per_node}")
    if args.smoke:
        goals.skipped("the spread's evenness at 4 documents (the first actor starts before the second)")
    elif len(per_node) == 2 and min(per_node) > 0:
        goals.check("busiest node / other node", per_node[0] / per_node[1], "<=", GOAL_SPREAD, fmt=".2f")
    expected = {"align": api_docs, "publish": api_docs}
    goals.true("every API answer was heard and published in the pool",
               all(api_steps[where].get("calls") == expected for where in ("joined", "cluster")),
               f"steps {api_steps['joined'].get('calls')} and {api_steps['cluster'].get('calls')}, wanted {expected}")
    goals.true("both nodes ran the API answers' steps", len(api_per_node) == 2 and min(api_per_node) > 0,
               f"steps per node {api_per_node}")
    return goals.finish()


if __name__ == "__main__":
    sys.exit(main())
