"""What cron sees: no ANSI without a terminal, JSON events that parse, dry runs that send nothing,
named jobs, and `report`/`status` rebuilt from state. The key never appears anywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from peers import SERVER_KEY, RunningServer, api_env
from runs import REPO, SAMPLE_INPUTS, child_env, run_cli


def _everything(out: Path, *streams: str) -> str:
    files = "\n".join(p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file())
    return files + "\n".join(streams)


def test_plain_and_json_output_without_a_terminal(tone_server: RunningServer, text_samples: Path,
                                                  tmp_path: Path) -> None:
    plain = run_cli("run", str(text_samples), "-o", str(tmp_path / "a"), env=api_env(tone_server))
    assert plain.exit_code == 0
    assert "\x1b[" not in plain.stdout + plain.stderr
    last = plain.stdout.strip().splitlines()[-1]
    for part in ("done", "skipped", "failed", "audio min", "tokens", "$", " s ·", "report"):
        assert part in last

    out = tmp_path / "b"
    logged = run_cli("run", str(text_samples), str(text_samples), "-o", str(out), "--log-format", "json",
                     env=api_env(tone_server))
    events = [json.loads(line) for line in logged.stderr.splitlines() if line.strip()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    documents = len([p for p in text_samples.rglob("*") if p.suffix in (".txt", ".md")])
    assert kinds.count("document") == 2 * documents  # the folder twice: the second copy of each id fails as a duplicate
    failed = [e for e in events if e["event"] == "document" and e["status"] == "failed"]
    assert len(failed) == documents and all("duplicate document id" in e["reason"] for e in failed)
    assert SERVER_KEY not in _everything(out, logged.stdout, logged.stderr)

    quiet = run_cli("run", str(text_samples), "-o", str(tmp_path / "c"), "-q", env=api_env(tone_server))
    assert quiet.stderr == "" and len(quiet.stdout.strip().splitlines()) == 1


def test_dry_run_sends_nothing_and_counts(tone_server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(SAMPLE_INPUTS / "news", folder)
    out = tmp_path / "out"
    env = api_env(tone_server)
    assert run_cli("run", str(folder), "-o", str(out), env=env).exit_code == 0
    (folder / "extra.txt").write_text("A brand new document about the harbour ferry timetable changes.")
    before = tone_server.stats()["counts"]["requests"]
    dry = run_cli("run", str(folder), "-o", str(out), "--dry-run", "--rpm", "60", env=env)
    assert dry.exit_code == 0, dry.stderr
    assert tone_server.stats()["counts"]["requests"] == before
    assert "1 new, 2 unchanged" in dry.stdout and "would send 1 requests" in dry.stdout
    assert str(out / "dry-run.json") in dry.stdout
    plan = json.loads((out / "dry-run.json").read_text())
    assert plan["status"] == "dry-run" and plan["dry_run"]["counts"] == {"new": 1, "unchanged": 2}
    assert plan["dry_run"]["cost_usd"] > 0
    assert "Dry run" in (out / "dry-run.html").read_text()
    assert json.loads((out / "report.json").read_text())["status"] == "finished"  # still the real run's
    assert not (out / "extra.wav").exists()

    rebuilt = run_cli("report", str(out))
    assert rebuilt.exit_code == 0
    assert json.loads((out / "report.json").read_text())["status"] == "finished"
    status = run_cli("status", str(out))
    assert status.exit_code == 0 and "dry-run" in status.stdout and "2 done" in status.stdout


def test_a_dry_run_leaves_the_real_report_as_it_was(tone_server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(SAMPLE_INPUTS / "news", folder)
    out = tmp_path / "out"
    assert run_cli("run", str(folder), "-o", str(out), env=api_env(tone_server)).exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("report.json", "report.html")}
    (folder / "extra.txt").write_text("A brand new document about the harbour ferry timetable changes.")
    dry = run_cli("run", str(folder), "-o", str(out), "--dry-run", env=api_env(tone_server))
    assert dry.exit_code == 0, dry.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
    assert (out / "dry-run.json").exists() and (out / "dry-run.html").exists()


def test_a_dry_run_never_replaces_a_file_it_did_not_make(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(SAMPLE_INPUTS / "news", folder)
    out = tmp_path / "out"
    out.mkdir()
    (out / "dry-run.html").write_text("mine")
    dry = run_cli("run", str(folder), "-o", str(out), "--dry-run", "--provider", "local", env=child_env())
    assert dry.exit_code == 2 and "dry-run.html" in dry.stderr
    assert (out / "dry-run.html").read_text() == "mine"


def test_a_keyless_dry_run_of_an_openai_job_plans_and_prices(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "nightly.toml"
    job.parent.mkdir()
    shutil.copytree(SAMPLE_INPUTS / "news", tmp_path / "news")
    job.write_text('inputs = ["news"]\nout = "out"\nprovider = "openai"\nmodel = "gpt-4o-audio-preview"\n')
    dry = run_cli("run", "--job", str(job), "--dry-run", env=child_env())
    assert dry.exit_code == 0, dry.stderr
    documents = len(list((tmp_path / "news").iterdir()))
    assert f"{documents} new" in dry.stdout and f"would send {documents} requests" in dry.stdout
    plan = json.loads((tmp_path / "out" / "dry-run.json").read_text())
    assert plan["settings"]["provider"] == "openai" and plan["dry_run"]["cost_usd"] > 0
    assert not (tmp_path / "out" / "report.json").exists()
    real = run_cli("run", "--job", str(job), env=child_env())  # a real run still needs the key
    assert real.exit_code == 2 and "OPENAI_API_KEY" in real.stderr


def test_named_job_with_override_and_bad_job(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "notes.toml"
    job.parent.mkdir()
    shutil.copytree(SAMPLE_INPUTS / "notes", tmp_path / "notes")
    job.write_text('description = "notes"\ninputs = ["notes"]\nout = "out"\nprovider = "local"\nwords = 30\n')
    result = run_cli("run", "--job", str(job), "--words", "25", env=child_env())
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["words"] == 25 and report["settings"]["provider"] == "local"

    job.write_text('inputs = ["notes"]\nout = "out"\nwrods = 30\n')
    bad = run_cli("run", "--job", str(job))
    assert bad.exit_code == 2 and "wrods" in bad.stderr and "notes.toml" in bad.stderr

    listing = run_cli("jobs", str(REPO / "jobs"))
    assert listing.exit_code == 0 and "sample-offline" in listing.stdout and "nightly-openai" in listing.stdout
