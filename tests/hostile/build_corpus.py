"""Build the hostile-input corpus (issue 7, part 4): every source kind fed files and lines meant to break it.

Everything is generated under a given folder (sparse files cost no disk); nothing here runs the pipeline or judges it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import re
import stat
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.audio import pcm16_to_wav

# The office documents and books (good and hostile) are made by the same builders as tests/sources' own tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sources"))
import hostile_office  # noqa: E402
import made_documents  # noqa: E402

Expect = Literal["done", "failed", "absent"]

# The strings an attacker would like to see executed in report.html; each must come out escaped.
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
# Words that exist only in files outside every input root: if one shows up in OUT, a confinement failed.
SECRET_WORD = "ZEBRASECRET7731"
GIB = 1024 ** 3
# Damaged audio fails in different places (hashing, probing, decoding), each with its own wording.
AUDIO_DAMAGE = r"truncat|empty|not .*(wav|mp3)|decode|invalid"


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile input and the outcome the run must give it.

    `source` is a regex that must fullmatch the `source` of exactly the report rows that belong to this case
    (for `absent`: of none of them); `reason` is searched (case-insensitively) in a failure's reason.
    """

    name: str
    kind: str  # folder | jsonl | csv | feed | single
    expect: Expect
    source: str
    reason: str | None = None
    doc_id: str | None = None  # exact id, when the id itself is what the case is about
    title: str | None = None  # exact title, when it must survive verbatim (formula text, markup)
    note: str = ""


@dataclass
class Corpus:
    """What build() made: the run's inputs, the file the driver deletes mid-run, and the cases to check."""

    root: Path
    inputs: tuple[str, ...]
    victim: Path
    cases: list[Case]
    # Paths that must never exist after the run: where an unsanitised id or path would have written.
    canaries: list[Path]
    # Cases that could not be built on this machine, with why (e.g. mknod not permitted).
    not_built: dict[str, str] = field(default_factory=dict)
    # Files the user already has in OUT before the run (name -> bytes): they must come out unchanged.
    in_out_before: dict[str, bytes] = field(default_factory=dict)


def _sparse(path: Path, size: int, tail: bytes = b"") -> None:
    """A file of `size` zero bytes (a hole, no disk used) followed by `tail`."""
    with path.open("wb") as handle:
        handle.truncate(size)
        handle.seek(size)
        handle.write(tail)


def sine_wav(seconds: float = 1.0, rate: int = 16000, hz: float = 440.0) -> bytes:
    """A valid mono 16-bit PCM WAV of a quiet sine."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * n / rate)))
                      for n in range(int(seconds * rate)))
    return pcm16_to_wav(frames, rate)


def _audio_files(folder: Path, rng: random.Random) -> None:
    folder.mkdir()
    whole = sine_wav()
    (folder / "sine.wav").write_bytes(whole)
    (folder / "truncated.wav").write_bytes(whole[:1000])  # header says 32,000 bytes of frames; 956 follow
    (folder / "zero-length.wav").write_bytes(b"")
    (folder / "text.wav").write_text("This is a plain text note that only pretends to be a WAV file.\n")
    (folder / "random.mp3").write_bytes(rng.randbytes(8192))


def _prose(topic: str) -> str:
    return (f"{topic} The harbour bridge reopened on Monday after six weeks of repairs. Traffic moved freely "
            "through the morning, and the council said the new deck should last for forty years.\n")


def _folder(corpus: Path, docs: Path, rng: random.Random, cases: list[Case], not_built: dict[str, str]) -> Path:
    """The folder input; returns the victim file (listed with its folder, deleted by the driver before it is read)."""
    def add(name: str, expect: Expect, reason: str | None = None, **extra: str) -> None:
        cases.append(Case(name=name, kind="folder", expect=expect, reason=reason, **extra))

    docs.mkdir(parents=True)
    # Sorted first: its result is the driver's cue to delete the victim.
    (docs / "aaa-first.txt").write_text(_prose("A plain first document."))
    add("plain text (first document, control)", "done", source=r"aaa-first\.txt")

    victim = docs / "zz-vanishes.txt"
    victim.write_text(_prose("This file is deleted after it was listed and before it is read."))
    add("file deleted between listing and reading", "failed", r"does not exist|no such file|disappeared",
        source=r"zz-vanishes\.txt")

    (docs / "binary.txt").write_bytes(rng.randbytes(4096))
    add("binary content named .txt", "failed", r"binary data, not text", source=r"binary\.txt")
    # Not UTF-8, and Windows-1252 reads every byte: decoded so (issue 26), the sidecar saying how sure it was.
    (docs / "invalid-utf8.txt").write_bytes(b"Broken \xc3 sequence and a lone \x80 continuation byte.\n")
    add("invalid UTF-8 that Windows-1252 reads", "done", source=r"invalid-utf8\.txt")
    (docs / "tiny-latin1.txt").write_bytes("Déjà vu.".encode("latin-1"))
    add("9 bytes of Latin-1: too little to tell its encoding", "failed",
        r"not valid UTF-8 \(byte 0x.*cannot be told.*under the 0\.\d+ floor", source=r"tiny-latin1\.txt")
    (docs / "utf16-bom.txt").write_bytes(_prose("Grüße aus Köln, UTF-16 LE with a mark.").encode("utf-16"))
    add("UTF-16 LE with BOM", "done", source=r"utf16-bom\.txt")
    (docs / "utf16-be-bom.txt").write_bytes(b"\xfe\xff" + _prose("Big-endian UTF-16 with a mark.").encode("utf-16-be"))
    add("UTF-16 BE with BOM", "done", source=r"utf16-be-bom\.txt")
    (docs / "latin1.txt").write_bytes("Crème brûlée à la carte, déjà vu, señor.\n".encode("latin-1"))
    add("Latin-1 bytes (not UTF-8), decoded by detection", "done", source=r"latin1\.txt")
    (docs / "zero-bytes.txt").write_bytes(b"")
    add("0-byte file", "failed", r"empty", source=r"zero-bytes\.txt")
    (docs / "whitespace-only.md").write_bytes(b"  \n\t\r\n   \n")
    add("whitespace-only Markdown", "failed", r"empty", source=r"whitespace-only\.md")
    _sparse(docs / "huge-500mb.txt", 500 * 1024 * 1024)
    add("500 MB file (sparse)", "failed", r"is \d+ bytes, over the \d+-byte limit", source=r"huge-500mb\.txt")
    # One 10 MB line of prose without a single newline (sentences, so the long-document split has ends to use).
    sentence = "The tide came in over the flats and the gulls rose all at once. "
    (docs / "one-10mb-line.txt").write_text(sentence * (10 * 1024 * 1024 // len(sentence)))
    add("single 10 MB line", "done", source=r"one-10mb-line\.txt", note="map-reduce over parts")
    (docs / "nul-bytes.txt").write_bytes(b"Text with\x00NUL bytes\x00inside it, otherwise readable.\n")
    add("NUL bytes in text", "failed", r"NUL", source=r"nul-bytes\.txt")
    (docs / "crlf.txt").write_bytes(_prose("Windows line ends.").replace("\n", "\r\n").encode() * 3)
    add("CRLF line ends", "done", source=r"crlf\.txt")
    (docs / "cr-only.txt").write_bytes(_prose("Classic Mac line ends.").replace("\n", "\r").encode() * 3)
    add("CR-only line ends", "done", source=r"cr-only\.txt")
    (docs / "ansi-escapes.txt").write_text("\x1b]0;pwned\x07\x1b[31mRed title\x1b[0m\n\n" + _prose("Escapes."))
    add("ANSI/OSC terminal escapes in text", "done", source=r"ansi-escapes\.txt")

    os.mkfifo(docs / "fifo.txt")
    add("FIFO named .txt", "failed", r"not a regular file", source=r"fifo\.txt")
    try:
        os.mknod(docs / "device.txt", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
        add("character device (1,3) named .txt", "failed", r"not a regular file", source=r"device\.txt")
    except OSError as exc:  # EPERM without CAP_MKNOD (a rootless container): only this case is left out
        not_built["character device (1,3) named .txt"] = f"mknod not permitted here: {exc.strerror or exc}"

    os.symlink("../outside/secret.txt", docs / "escape-file-link.txt")
    add("file symlink escaping the root", "failed", r"lies outside", source=r"escape-file-link\.txt")
    os.symlink(corpus / "outside", docs / "escape-dir-link", target_is_directory=True)
    add("directory symlink escaping the root", "absent", source=r"escape-dir-link/.*",
        note="os.walk does not follow directory links")
    os.symlink("aaa-first.txt", docs / "inside-link.txt")
    add("symlink staying inside the root", "done", source=r"inside-link\.txt")
    os.symlink("no-such-target.txt", docs / "dangling-link.txt")
    add("dangling symlink", "failed", r"does not exist", source=r"dangling-link\.txt")
    os.symlink("no-such-target.txt", docs / "esc-\x1b[2J\x1b]0;pwned\x07-link.txt")
    add("dangling symlink named with terminal escapes", "failed", r"does not exist",
        source="esc-\x1b\\[2J\x1b\\]0;pwned\x07-link\\.txt", note="the reason must carry no control characters")
    os.symlink("loop-link.txt", docs / "loop-link.txt")
    # The file is there, only unresolvable: "does not exist" would send the user looking for the wrong problem.
    add("symlink pointing at itself", "failed", r"symlink loop", source=r"loop-link\.txt")

    (docs / "not-a-pdf.pdf").write_text("Just a text note wearing a .pdf name.\n")
    add("PDF that is not a PDF", "failed", r"not a PDF", source=r"not-a-pdf\.pdf")
    (docs / "truncated.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R")
    add("truncated PDF", "failed", r"malformed PDF|no text layer", source=r"truncated\.pdf")
    (docs / "script.html").write_text(
        f"<!doctype html><html><head><title>{XSS_SCRIPT} {XSS_IMG}</title><script>alert('head')</script></head>"
        f"<body><article><h1>Bridge news</h1><p>{_prose('An HTML page with scripts.') * 3}</p>"
        f"<script>document.write('{XSS_IMG}')</script><img src=x onerror=alert(1)>"
        f"<p>{_prose('More body text.') * 2}</p></article></body></html>")
    add("HTML with <script> and markup in <title>", "done", source=r"script\.html")
    (docs / "heading-xss.md").write_text(f"# {XSS_SCRIPT} {XSS_IMG}\n\n{_prose('Markdown body.')}")
    add("Markdown heading with markup", "done", source=r"heading-xss\.md", title=f"{XSS_SCRIPT} {XSS_IMG}")
    (docs / "deep-nesting.html").write_text("<html><body>" + "<div>" * 20000 + _prose("Deep inside.")
                                            + "</div>" * 20000 + "</body></html>")
    # lxml stops at its depth limit, so no main text is left: a clean failure is the right outcome.
    add("HTML nested 20,000 <div>s deep", "failed", r"no main text found|could not be parsed",
        source=r"deep-nesting\.html")

    (docs / "report.txt").write_text(_prose("A file whose id would be the run's own report."))
    add("reserved id 'report' (folder)", "done", source=r"report\.txt", doc_id="report_")
    (docs / "dup.txt").write_text(_prose("The folder's copy of the duplicated id."))
    add("id 'dup' first seen in the folder", "done", source=r"dup\.txt", doc_id="dup")
    (docs / "new\nline.txt").write_text(_prose("A file name with a newline in it."))
    add("file name with a newline", "done", source=r"new\nline\.txt", doc_id="new_line")
    (Path(os.fsdecode(bytes(docs) + b"/caf\xe9-latin1-name.txt"))).write_text(_prose("A non-UTF-8 file name."))
    # The raw byte (a lone surrogate in Python) cannot be stored in SQLite or JSON, so it must arrive escaped.
    add("file name with non-UTF-8 bytes", "done", source=r"caf\\xe9-latin1-name\.txt")

    deep = docs.joinpath("deep", *(["d"] * 200))
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text(_prose("At the bottom of two hundred folders."))
    add("file 200 folders deep", "done", source=r"deep/(d/){200}bottom\.txt")

    (docs / ".hidden.txt").write_text(_prose("Hidden."))
    add("hidden file", "absent", source=r"\.hidden\.txt")
    (docs / "notes.docx").write_bytes(b"PK\x03\x04" + rng.randbytes(64))
    add(".docx of a zip header and random bytes", "failed", r"not a zip file", source=r"notes\.docx")
    (docs / "notes.pages").write_bytes(b"PK\x03\x04" + rng.randbytes(64))
    add("unknown extension (.pages)", "absent", source=r"notes\.pages")
    _office(docs / "office", add)
    (docs / "dir-named.txt").mkdir()
    (docs / "dir-named.txt" / "inner.md").write_text(_prose("Inside a folder named like a file."))
    add("folder named like a .txt file", "done", source=r"dir-named\.txt/inner\.md")

    _audio_files(docs / "audio", rng)
    for file_name in ("truncated.wav", "zero-length.wav", "text.wav", "random.mp3"):
        add(f"audio: {file_name} (damaged/mislabelled, folder)", "failed", AUDIO_DAMAGE,
            source=f"audio/{re.escape(file_name)}")
    add("audio: valid 1 s sine WAV (folder)", "done", source=r"audio/sine\.wav")
    _sparse(docs / "audio" / "huge-1.5gib.wav", 3 * GIB // 2)
    os.mkfifo(docs / "audio" / "fifo.wav")
    # (A WAV whose header promises hours over the 4-hour cap is left out: finding that out means decoding four
    # hours, 4-8 s here, which this suite cannot afford.)
    for file_name, reason, label in (("huge-1.5gib.wav", r"over the \d+-byte limit", "1.5 GiB .wav (sparse)"),
                                     ("fifo.wav", r"not a regular file", "FIFO named .wav")):
        add(f"audio: {label}", "failed", reason, source=f"audio/{re.escape(file_name)}")
    return victim


def _office(folder: Path, add: Callable[..., None]) -> None:
    """Office documents and books (issue 26): good ones are done, hostile ones fail alone, each with its reason."""
    folder.mkdir()
    made_documents.make_docx(folder / "harbour.docx")
    made_documents.make_epub(folder / "crossing.epub")
    made_documents.make_odt(folder / "island.odt")
    made_documents.make_pptx(folder / "ferries.pptx")
    made_documents.make_cp1252(folder / "windows-1252.txt")
    for name in ("harbour.docx", "crossing.epub", "island.odt", "ferries.pptx", "windows-1252.txt"):
        add(f"office: {name} (control)", "done", source=f"office/{re.escape(name)}")
    for name, reason in hostile_office.build(folder, large=False).items():
        add(f"office: {name}", "failed", reason, source=f"office/{re.escape(name)}")


def _jsonl(corpus: Path, manifests: Path, cases: list[Case]) -> tuple[Path, list[Path]]:
    abs_canary = corpus / "canary-abs-id"
    secret = corpus / "outside" / "secret.txt"
    lines: list[tuple[str, Expect, str | None, dict[str, str], bytes]] = []

    def line(name: str, expect: Expect, reason: str | None, raw: object, **extra: str) -> None:
        data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
        lines.append((name, expect, reason, extra, data))

    text = _prose("An inline manifest text.")
    line("JSONL title with <script>", "done", None, {"id": "m-script", "path": "notes/ok.txt", "title": XSS_SCRIPT},
         title=XSS_SCRIPT)
    line("JSONL title with <img onerror>", "done", None, {"id": "m-img", "text": text, "title": XSS_IMG},
         title=XSS_IMG)
    line("JSONL path ../ traversal", "failed", r"lies outside", {"id": "m-traversal", "path": "../outside/secret.txt"})
    line("JSONL absolute path (canary file)", "failed", r"lies outside", {"id": "m-abs-path", "path": str(secret)})
    line("JSONL absolute path /etc/passwd", "failed", r"lies outside", {"id": "m-etc", "path": "/etc/passwd"})
    line("JSONL id with ../ traversal", "done", None, {"id": "../../canary-jsonl", "text": text},
         doc_id="canary-jsonl")
    line("JSONL absolute id", "done", None, {"id": str(abs_canary), "text": text})
    line("JSONL id with ..\\ traversal", "done", None, {"id": "..\\..\\canary-backslash", "text": text},
         doc_id="canary-backslash")
    line("JSONL id of dots only", "failed", r"no usable characters", {"id": "../..", "text": text})
    line("JSONL line that is a JSON array", "failed", r"not a JSON object", ["m-array", "text"])
    line("JSONL line that is not JSON", "failed", r"not valid JSON", b'{"id": "m-broken", "text": ')
    line("JSONL line with invalid UTF-8", "failed", r"not valid JSON", b'{"id": "m-bad-utf8", "text": "\xff\xfe"}')
    line("JSONL item with neither path nor text", "failed", r"neither 'path' nor 'text'",
         {"id": "m-nothing", "title": "Nothing"})
    line("JSONL item with both path and text", "failed", r"both 'path' and 'text'",
         {"id": "m-both", "path": "notes/ok.txt", "text": text})
    line("JSONL duplicate of a folder id", "failed", r"duplicate document id 'dup'", {"id": "dup", "text": text})
    line("JSONL twin ids: first", "done", None, {"id": "twin", "text": text}, doc_id="twin")
    line("JSONL twin ids: second", "failed", r"duplicate document id 'twin'", {"id": "twin", "text": text})
    line("JSONL 300-character id", "done", None, {"id": "x" * 300, "text": text})
    line("JSONL reserved id 'podcast'", "done", None, {"id": "podcast", "text": text}, doc_id="podcast_")
    line("JSONL text with NUL", "failed", r"NUL", {"id": "m-nul", "text": "before\u0000after"})
    line("JSONL id that is an object", "failed", r"must be a string", {"id": {"x": 1}, "text": text})
    line("JSONL text that is a boolean", "failed", r"must be a string", {"id": "m-bool", "text": True})
    line("JSONL path naming the manifest's folder", "failed", r"not a regular file", {"id": "m-dir", "path": "."})
    line("JSONL path naming a FIFO", "failed", r"not a regular file", {"id": "m-fifo", "path": "pipe.txt"})
    (manifests / "folder.wav").mkdir()  # a recording's name on a folder: hashed, not read as text
    line("JSONL path naming a folder called .wav", "failed", r"not a regular file",
         {"id": "m-dir-wav", "path": "folder.wav"})
    line("JSONL path with CR and a fake log line", "failed", r"does not exist",
         {"id": "m-cr-path", "path": "missing\rDONE all documents fine.txt"},
         note="the reason must stay on one line")
    line("JSONL ids equal after sanitising: first", "done", None, {"id": "same id", "text": text}, doc_id="same_id")
    line("JSONL ids equal after sanitising: second", "failed", r"duplicate document id 'same_id'",
         {"id": "same_id", "text": text})
    line("JSONL voice with markup (server refuses it)", "failed", r"voice",
         {"id": "m-voice", "text": text, "voice": XSS_SCRIPT})
    line("JSONL 1 MB title", "done", None, {"id": "m-long-title", "text": text, "title": "T" * (1024 * 1024)})
    line("JSONL follow-up question with markup", "done", None,
         {"id": "m-followup-xss", "text": text, "followups": [f"{XSS_SCRIPT} What changed?"]})
    line("JSONL followups that is a number", "failed", r"must be a list",
         {"id": "m-followups-number", "text": text, "followups": 5})
    line("JSONL 21 follow-up questions", "failed", r"at most \d+", {"id": "m-followups-many", "text": text,
                                                                   "followups": ["Why?"] * 21})
    # fq's first answer is written as fq.q1.wav, exactly the audio file a document with id fq.q1 would get;
    # the id is moved off that name so neither overwrites the other.
    line("JSONL id 'fq' with a follow-up question", "done", None,
         {"id": "fq", "text": text, "followups": ["Why was it closed?"]}, doc_id="fq")
    line("JSONL id 'fq.q1', the name of fq's answer file", "done", None,
         {"id": "fq.q1", "text": _prose("Another document entirely.")}, doc_id="fq.q1_")
    # The OS cannot take such a name at all; it must fail this item alone, not the run.
    line("JSONL path with a NUL character", "failed", r"contains a NUL character",
         {"id": "m-nul-path", "path": "notes/ok\u0000.txt"})
    line("audio: valid sine WAV (manifest)", "done", None, {"id": "m-sine", "path": "audio/sine.wav"})
    line("audio: text.wav (manifest)", "failed", AUDIO_DAMAGE, {"id": "m-text-wav", "path": "audio/text.wav"})
    line("audio: truncated.wav (manifest)", "failed", AUDIO_DAMAGE,
         {"id": "m-trunc-wav", "path": "audio/truncated.wav"})

    manifest = manifests / "items.jsonl"
    manifest.write_bytes(b"".join(data + b"\n" for *_, data in lines))
    for number, (name, expect, reason, extra, _) in enumerate(lines, start=1):
        path_part = r"( \(.*\))?"
        cases.append(Case(name=name, kind="jsonl", expect=expect, reason=reason,
                          source=rf"items\.jsonl:{number}{path_part}", **extra))
    return manifest, [abs_canary.with_suffix(".wav"), abs_canary.with_suffix(".json"),
                      corpus.parent / "canary-jsonl.wav", corpus.parent / "canary-backslash.wav"]


def _csv(corpus: Path, manifests: Path, cases: list[Case]) -> Path:
    """rows.csv, written by the csv module so quoting is right and only the column counts are wrong on purpose."""
    text = _prose("A CSV manifest row.").strip()
    abs_canary = corpus / "canary-csv-abs-id"
    formula = "=cmd|' /C calc'!A0"
    rows: list[tuple[str, Expect, str | None, dict[str, str], list[str]]] = [
        ("CSV formula =cmd|' /C calc'!A0 in title and text", "done", None, {"title": formula},
         ["csv-formula-eq", formula, f"{formula} {text}", ""]),
        ("CSV formula + prefix", "done", None, {"title": "+SUM(1,2)"},
         ["csv-formula-plus", "+SUM(1,2)", f"+1 {text}", ""]),
        ("CSV formula - prefix", "done", None, {"title": "-2+3"}, ["csv-formula-minus", "-2+3", f"-2+3 {text}", ""]),
        ("CSV formula @ prefix", "done", None, {"title": "@SUM(A1)"},
         ["csv-formula-at", "@SUM(A1)", f"@SUM(A1) {text}", ""]),
        ("CSV row with more columns than the header", "failed", r"more columns", {},
         ["csv-more", "T", text, "", "surplus"]),
        ("CSV row with fewer columns than the header", "failed", r"fewer columns", {}, ["csv-fewer", "T"]),
        ("CSV id with ../ traversal", "done", None, {"doc_id": "canary-csv"}, ["../../canary-csv", "T", text, ""]),
        ("CSV absolute id", "done", None, {}, [str(abs_canary), "T", text, ""]),
        ("CSV path ../ traversal", "failed", r"lies outside", {}, ["csv-traversal", "", "", "../outside/secret.txt"]),
        ("CSV absolute path /etc/passwd", "failed", r"lies outside", {}, ["csv-abs", "", "", "/etc/passwd"]),
        ("CSV title with <script>", "done", None, {"title": XSS_SCRIPT}, ["csv-script", XSS_SCRIPT, text, ""]),
        ("CSV title with <img onerror>", "done", None, {"title": XSS_IMG}, ["csv-img", XSS_IMG, text, ""]),
    ]
    manifest = manifests / "rows.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "text", "path"])
        writer.writerows(cells for *_, cells in rows)
    for number, (name, expect, reason, extra, _) in enumerate(rows, start=2):
        cases.append(Case(name=name, kind="csv", expect=expect, reason=reason,
                          source=rf"rows\.csv:{number}( \(.*\))?", **extra))
    return manifest


def _same_stem(manifests: Path, cases: list[Case]) -> tuple[Path, Path]:
    """notes.jsonl and notes.csv, each with a bad line 2: both rejected lines are given the fallback id notes-line-2."""
    folder = manifests / "same-stem"
    folder.mkdir()
    jsonl = folder / "notes.jsonl"
    jsonl.write_text(json.dumps({"id": "stem-ok", "text": _prose("Same-stem manifests.")}) + "\n{broken\n")
    table = folder / "notes.csv"
    table.write_text("id,text\nstem-more,text,surplus\n")
    cases.append(Case(name="same-stem manifests: JSONL good line", kind="jsonl", expect="done",
                      source=r"notes\.jsonl:1"))
    cases.append(Case(name="same-stem manifests: JSONL bad line 2", kind="jsonl", expect="failed",
                      reason=r"not valid JSON", source=r"notes\.jsonl:2"))
    # A rejected line writes nothing, so its fallback id clashing with the JSONL's must not hide its own reason.
    cases.append(Case(name="same-stem manifests: CSV bad line 2", kind="csv", expect="failed",
                      reason=r"more columns", source=r"notes\.csv:2"))
    return jsonl, table


def _huge_line(manifests: Path, cases: list[Case]) -> Path:
    """A JSONL whose first line is 1 GiB of zero bytes (a hole), then one good item that must still be done."""
    manifest = manifests / "huge-line.jsonl"
    good = json.dumps({"id": "after-huge-line", "text": _prose("The item after a 1 GiB line.")})
    _sparse(manifest, GIB, b"\n" + good.encode() + b"\n")
    cases.append(Case(name="JSONL 1 GiB line (sparse)", kind="jsonl", expect="failed",
                      reason=r"longer than \d+ bytes", source=r"huge-line\.jsonl:1"))
    cases.append(Case(name="JSONL valid item after the 1 GiB line", kind="jsonl", expect="done",
                      source=r"huge-line\.jsonl:2", doc_id="after-huge-line"))
    return manifest


_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>Bomb</title>
<item><title>&lol9;</title><guid>urn:bomb:1</guid><description>&lol9;</description></item>
</channel></rss>
"""

_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<rss version="2.0"><channel><title>XXE</title>
<item><title>Leak</title><guid>urn:xxe:1</guid><description>&xxe;</description></item>
</channel></rss>
"""


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _feeds(feeds: Path, secret: Path, rng: random.Random, cases: list[Case]) -> list[Path]:
    feeds.mkdir()
    (feeds / "bomb.xml").write_bytes(_BOMB)
    cases.append(Case(name="feed: billion laughs", kind="feed", expect="failed", reason=r"XML entity 'lol'",
                      source=r".*/bomb\.xml", doc_id="bomb"))
    (feeds / "xxe.xml").write_bytes(_XXE)
    cases.append(Case(name="feed: external entity file:///etc/passwd", kind="feed", expect="failed",
                      reason=r"external entity 'xxe'", source=r".*/xxe\.xml", doc_id="xxe"))
    (feeds / "parameter-entity.xml").write_bytes(
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [ <!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe; ]>\n'
        b'<rss version="2.0"><channel><title>PE</title><item><guid>urn:pe:1</guid><description>x</description>'
        b'</item></channel></rss>\n')
    cases.append(Case(name="feed: parameter entity SYSTEM file:///etc/passwd", kind="feed", expect="failed",
                      reason=r"entity 'pe'", source=r".*/parameter-entity\.xml"))
    (feeds / "utf7.xml").write_bytes(b'<?xml version="1.0" encoding="UTF-7"?>\n<rss version="2.0"><channel>'
                                     b'<title>+ADw-script+AD4-</title></channel></rss>\n')
    cases.append(Case(name="feed: declared encoding UTF-7", kind="feed", expect="failed",
                      reason=r"not an RSS/Atom feed", source=r".*/utf7\.xml"))
    body = _esc(_prose("Feed entry text."))
    (feeds / "xss.rss").write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{_esc(XSS_SCRIPT)} feed</title><link>https://example.invalid/</link>
<item><title>{_esc(XSS_SCRIPT)}</title><guid isPermaLink="false">urn:hostile:script</guid>
  <description>{body}</description><author>a@b.invalid ({_esc(XSS_IMG)})</author></item>
<item><title>{_esc(XSS_IMG)}</title><link>javascript:alert(1)</link><description>{body}</description></item>
<item><title>XInclude</title><guid isPermaLink="false">urn:hostile:xinclude</guid><description>{body}</description>
  <xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{secret}" parse="text"/></item>
<item><title>Local file link</title><guid isPermaLink="false">urn:hostile:file</guid>
  <link>file:///etc/passwd</link></item>
<item><title><![CDATA[{XSS_SCRIPT}]]></title><guid isPermaLink="false">urn:hostile:cdata</guid>
  <description><![CDATA[<p>{_prose("CDATA description.")}</p><script>alert(1)</script>]]></description></item>
</channel></rss>
""")
    cases.append(Case(name="feed entry title with <script>", kind="feed", expect="done",
                      source=r".*/xss\.rss#urn:hostile:script", title=XSS_SCRIPT))
    cases.append(Case(name="feed entry title with <img onerror>, javascript: link", kind="feed", expect="done",
                      source=r"javascript:alert\(1\)", title=XSS_IMG))
    cases.append(Case(name="feed entry with an XInclude of a local file", kind="feed", expect="done",
                      source=r".*/xss\.rss#urn:hostile:xinclude", note="the file's words must not reach OUT"))
    cases.append(Case(name="feed entry linking file:///etc/passwd, no content", kind="feed", expect="failed",
                      reason=r"not http\(s\)", source=r"file:///?etc/passwd"))  # feedparser drops a slash
    cases.append(Case(name="feed entry CDATA title with <script>", kind="feed", expect="done",
                      source=r".*/xss\.rss#urn:hostile:cdata", title=XSS_SCRIPT))
    (feeds / "xss.atom").write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title type="html">{_esc(XSS_IMG)}</title><id>urn:hostile-atom</id>
<updated>2026-01-01T00:00:00Z</updated>
<entry><title type="html">{_esc(XSS_SCRIPT + " " + XSS_IMG)} Atom</title><id>urn:hostile:atom</id>
<updated>2026-01-01T00:00:00Z</updated><content type="html">{body}</content></entry>
</feed>
""")
    cases.append(Case(name="Atom type=html title with markup", kind="feed", expect="done",
                      source=r"(.*#)?urn:hostile:atom"))
    (feeds / "not-a-feed.xml").write_text("<html><body><p>Just a page.</p></body></html>")
    cases.append(Case(name="feed: .xml that is HTML", kind="feed", expect="failed", reason=r"not an RSS/Atom feed",
                      source=r".*/not-a-feed\.xml"))
    (feeds / "garbage.rss").write_bytes(rng.randbytes(2048))
    cases.append(Case(name="feed: random bytes named .rss", kind="feed", expect="failed",
                      reason=r"not an RSS/Atom feed|not well-formed", source=r".*/garbage\.rss"))
    _sparse(feeds / "huge.xml", 50 * 1024 * 1024)
    cases.append(Case(name="feed: 50 MB file (sparse)", kind="feed", expect="failed",
                      reason=r"over the \d+-byte limit", source=r".*/huge\.xml"))
    return sorted(feeds.iterdir())


def build(root: Path) -> Corpus:
    """Create the corpus in root/corpus (root/corpus must not exist yet); returns its inputs and cases."""
    rng = random.Random(7)  # fixed bytes, so a failing case can be reproduced
    corpus = root / "corpus"
    cases: list[Case] = []
    not_built: dict[str, str] = {}
    (corpus / "outside").mkdir(parents=True)
    (corpus / "outside" / "secret.txt").write_text(f"{SECRET_WORD} lives outside every input root.\n")

    victim = _folder(corpus, corpus / "docs", rng, cases, not_built)

    manifests = corpus / "manifests"
    (manifests / "notes").mkdir(parents=True)
    (manifests / "notes" / "ok.txt").write_text(_prose("A manifest item read from a file."))
    os.mkfifo(manifests / "pipe.txt")
    _audio_files(manifests / "audio", rng)
    jsonl, canaries = _jsonl(corpus, manifests, cases)
    csv_manifest = _csv(corpus, manifests, cases)
    same_stem = _same_stem(manifests, cases)
    huge = _huge_line(manifests, cases)
    feed_files = _feeds(corpus / "feeds", corpus / "outside" / "secret.txt", rng, cases)

    single = corpus / "single"
    single.mkdir()
    (single / "title-xss.html").write_text(
        f"<html><head><title>{_esc(XSS_SCRIPT)}{_esc(XSS_IMG)}</title></head><body><article>"
        f"<p>{_prose('A single HTML document given by name.') * 3}</p></article></body></html>")
    cases.append(Case(name="single HTML file, escaped markup in <title>", kind="single", expect="done",
                      source=r".*/single/title-xss\.html", title=XSS_SCRIPT + XSS_IMG))

    owners, in_out_before = _ownership(manifests, cases)

    canaries += [corpus / "canary-csv.wav", root / "canary-csv.wav", corpus / "canary-csv-abs-id.wav",
                 Path("/canary-jsonl.wav"), Path("/canary-csv.wav")]
    inputs = (str(corpus / "docs"), str(jsonl), str(csv_manifest), *map(str, same_stem), str(huge),
              *map(str, feed_files), str(single / "title-xss.html"), str(owners))
    return Corpus(root=corpus, inputs=inputs, victim=victim, cases=cases, canaries=canaries, not_built=not_built,
                  in_out_before=in_out_before)


def _ownership(manifests: Path, cases: list[Case]) -> tuple[Path, dict[str, bytes]]:
    """Items whose outputs meet a file the user already keeps in OUT, and ids that differ only in case."""
    owners = manifests / "owners.jsonl"
    items = [{"id": "users-wav", "text": _prose("Its audio file name is taken by the user's own file.")},
             {"id": "users-txt", "text": _prose("Its podcast transcript name is taken by the user's notes.")},
             {"id": "Casefold", "text": _prose("An id in title case.")},
             {"id": "casefold", "text": _prose("The same id in lower case.")}]
    owners.write_text("".join(json.dumps(item) + "\n" for item in items))
    for line, (doc_id, name) in enumerate((("users-wav", "users-wav.wav"), ("users-txt", "users-txt.txt")), 1):
        cases.append(Case(name=f"{name} already in OUT, not made by audiosum", kind="jsonl", expect="failed",
                          source=rf"owners\.jsonl:{line}", doc_id=doc_id, reason="not made by audiosum"))
    cases.append(Case(name="ids differing only in case (first)", kind="jsonl", expect="done",
                      source=r"owners\.jsonl:3", doc_id="Casefold"))
    cases.append(Case(name="ids differing only in case (second gets its own names)", kind="jsonl", expect="done",
                      source=r"owners\.jsonl:4", doc_id="casefold-" + hashlib.sha256(b"casefold").hexdigest()[:6]))
    return owners, {"users-wav.wav": b"the user's own recording", "users-txt.txt": b"the user's own notes"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="an empty or new folder to build the corpus in")
    args = parser.parse_args()
    corpus = build(args.root)
    print("| case | source | expected | reason |\n| --- | --- | --- | --- |")
    for case in corpus.cases:
        print(f"| {case.name} | {case.kind} | {case.expect} | {case.reason or ''} |")
    for name, why in corpus.not_built.items():
        print(f"| {name} | folder | not built | {why} |")
    print("\ninputs:", *corpus.inputs, sep="\n  ")


if __name__ == "__main__":
    main()
