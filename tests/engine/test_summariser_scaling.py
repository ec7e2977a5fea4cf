"""The offline summariser and follow-up answerer stay linear: a page-cap document of short random sentences
summarises in bounded memory, each run in a fresh process so its peak RSS is its own.

No timing asserts (the machine is shared); tests/bench/bench_summariser_scaling.py measures time.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from runs import REPO, SAMPLE_INPUTS, child_env

from pipeline.engine import extractive, text
from pipeline.engine.text import Sentence
from pipeline.sources.fetch import FetchLimits

PAGE_CAP_BYTES = FetchLimits().max_page_bytes
PEAK_RSS_LIMIT_MB = 300
# The page cap takes 10-20 s a step on a busy 2-core machine: `slow`; 1 MB keeps the default suite honest.
SIZES = [pytest.param(1024 * 1024, id="1MB"), pytest.param(PAGE_CAP_BYTES, id="page-cap", marks=pytest.mark.slow)]
# The default step keeps one of each kind; the rest of the sizes and shapes run in the slow step.
QUICK_LAYOUTS = ("list", "html comment", "fenced code")


def _quick_first(layouts: list[str]) -> list[object]:
    return [layout if layout in QUICK_LAYOUTS else pytest.param(layout, marks=pytest.mark.slow) for layout in layouts]
QUESTION = "What happened to the harbour bridge after the storm?"

# Runs in the child: makes the document itself (so the parent never holds it), runs one step, and reports the
# process's own high-water mark of resident memory (VmHWM) with the step's own seconds.
_CHILD = r"""
import json, random, string, sys, time

def random_sentences(size: int, separator: str, seed: int = 11) -> str:
    rng = random.Random(seed)
    letters = string.ascii_lowercase
    parts, total = [], 0
    while total < size:
        words = ["".join(rng.choices(letters, k=rng.randint(3, 8))) for _ in range(4)]
        sentence = " ".join(words).capitalize() + "."
        parts.append(sentence)
        total += len(sentence) + len(separator)
    return separator.join(parts)[:size]

INLINE_MARKUP = ("one inline-heavy line", "emphasis run")  # its sentences lose their markup

def shaped(size: int, layout: str) -> str:
    # `size` bytes of random sentences laid out as `layout`: plain prose, or a shape that once defeated the
    # piece cutter (each opens with ordinary paragraphs, so a summary has something to choose).
    if layout in ("run-on", "paragraphs"):
        return random_sentences(size, " " if layout == "run-on" else "\n\n")
    said = random_sentences(size, "\n").split("\n")
    opening = "\n\n".join(said[:40]) + "\n\n"
    rest = said[40:]
    body = {
        "indented list": lambda: "".join(f" - {s}\n" for s in rest),
        "cr paragraphs": lambda: "\r\r".join(rest),
        "crlf paragraphs": lambda: "\r\n\r\n".join(rest),
        "cr list": lambda: "".join(f"- {s}\r" for s in rest),
        "unclosed fence": lambda: "```\n" + "\n\n".join(rest),
        "unclosed html comment": lambda: "<!--\n" + "\n\n".join(rest),
        "one inline-heavy line": lambda: " ".join(f"*{s[:4]}*{s[4:8]}`{s[8:10]}`[{s[10:]}](#a)" for s in rest),
        "nested list": lambda: "- Top.\n" + "".join("  " * (1 + i % 12) + f"- {s}\n" for i, s in enumerate(rest)),
        "nested quotes": lambda: "".join(">" * (1 + i % 12) + f" {s}\n" for i, s in enumerate(rest)),
        "table": lambda: "| Site | Note |\n|---|---|\n" + "".join(f"| {s[:6]} | {s} |\n" for s in rest),
        "indented table": lambda: " | Site | Note |\n |---|---|\n" + "".join(f" | {s[:6]} | {s} |\n" for s in rest),
        "rules": lambda: "---\n" * (size // 4),
        "short indented items": lambda: " - Ab\n" * (size // 6),
        "short indented rows": lambda: " |a|b|\n |-|-|\n" + " |a|b|\n" * (size // 7),
        "emphasis run": lambda: "*a*" * (size // 3),
    }[layout]()
    return (opening + body)[:size]

mode, size, layout, question = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
from pipeline.engine import extractive, text as text_module
document = shaped(size, layout)
started = time.perf_counter()
if mode == "summarise":
    chosen = extractive.summarise(document, 150)
elif mode == "answer":
    chosen = extractive.answer(question, document, 30)
else:
    chosen = [s.text for s in text_module.sentences(document)]
seconds = time.perf_counter() - started
from_document = layout in INLINE_MARKUP or all(s.rstrip(".") in document for s in chosen[:50])
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024, "chosen": len(chosen),
                  "words": sum(len(s.split()) for s in chosen), "from_document": from_document}))
"""


def measure_in_child(mode: str, size: int, layout: str = "run-on",
                     question: str = QUESTION) -> dict[str, float | int | bool]:
    """One step ("summarise", "answer" or "split") over `size` bytes of 4-word random sentences, run on in one
    paragraph or one a paragraph ("paragraphs"), in a fresh interpreter:
    {"seconds", "peak_mb", "chosen", "words", "from_document"}."""
    result = subprocess.run([sys.executable, "-c", _CHILD, mode, str(size), layout, question], cwd=REPO,
                            env=child_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_bounded(measured: dict[str, float | int | bool], *, max_words: int) -> None:
    assert measured["peak_mb"] <= PEAK_RSS_LIMIT_MB, measured
    assert measured["chosen"] > 0 and measured["from_document"], measured
    assert measured["words"] <= max_words * 1.15 + 8, measured


@pytest.mark.parametrize("size", SIZES)
def test_summary_of_random_short_sentences_stays_in_bounded_memory(size: int) -> None:
    _assert_bounded(measure_in_child("summarise", size), max_words=150)


@pytest.mark.slow  # the summary's test above covers the same bound in the default step
@pytest.mark.parametrize("size", SIZES)
def test_follow_up_answer_over_random_short_sentences_stays_in_bounded_memory(size: int) -> None:
    _assert_bounded(measure_in_child("answer", size), max_words=30)


@pytest.mark.slow
def test_summary_of_a_page_of_one_sentence_paragraphs_stays_in_bounded_memory() -> None:
    # markdown-it holds a token per block: parsed whole, this page alone took 326 MB to split.
    _assert_bounded(measure_in_child("summarise", PAGE_CAP_BYTES, "paragraphs"), max_words=150)


# Shapes that once defeated the piece cutter, so one parse held the page (peak RSS at 5 MB before the fix:
# indented list 453 MB, \r\r paragraphs 394, \r list 469, one inline-heavy line 585, indented table 539,
# rules 490, two-letter indented items 391, tiny indented table rows 458).
SHAPES = ["indented list", "cr paragraphs", "crlf paragraphs", "cr list", "unclosed fence", "unclosed html comment",
          "one inline-heavy line", "nested list", "nested quotes", "table", "indented table", "rules",
          "short indented items", "short indented rows", "emphasis run"]


def _shaped(size: int, layout: str) -> str:
    namespace: dict[str, object] = {}
    exec(_CHILD.split("mode, size, layout")[0], namespace)
    return namespace["shaped"](size, layout)  # type: ignore[operator]


@pytest.mark.parametrize("layout", _quick_first(SHAPES[:3]) + [pytest.param(s, marks=pytest.mark.slow)
                                                                 for s in SHAPES[3:]])
def test_no_shape_keeps_the_cutter_from_cutting(layout: str) -> None:
    document = text._normalise_newlines(_shaped(1024 * 1024, layout))
    pieces = list(text._pieces(document))
    assert len(pieces) > 1
    assert max(len(p.text) for p in pieces) <= text._FORCED_CHARS + 2 * text._PIECE_CHARS
    assert max(p.text.count("\n") for p in pieces) <= 2 * text._FORCED_LINES + 1


@pytest.mark.slow
@pytest.mark.parametrize("layout", SHAPES)
def test_summary_of_a_page_in_a_shape_that_defeated_the_cutter_stays_in_bounded_memory(layout: str) -> None:
    measured = measure_in_child("summarise", PAGE_CAP_BYTES, layout)
    assert measured["peak_mb"] <= PEAK_RSS_LIMIT_MB, measured
    assert measured["chosen"] > 0 and measured["from_document"], measured


def _numbered(count: int) -> list[Sentence]:
    return [Sentence(i, f"Sentence {i} mentions topic{i % 7} and item{i} today.", False) for i in range(count)]


def test_the_pool_is_capped_before_vectors_and_keeps_the_opening() -> None:
    candidates = _numbered(extractive.MAX_GRAPH_SENTENCES * 5)
    corpus = extractive._Corpus(s.text for s in candidates)
    pool = extractive._pool(candidates, corpus)
    assert len(pool) == extractive.MAX_GRAPH_SENTENCES
    assert pool == sorted(set(pool))
    assert pool[:extractive.LEAD_POOL] == list(range(extractive.LEAD_POOL))


def test_a_short_document_is_pooled_whole() -> None:
    candidates = _numbered(extractive.MAX_GRAPH_SENTENCES)
    corpus = extractive._Corpus(s.text for s in candidates)
    assert extractive._pool(candidates, corpus) == list(range(extractive.MAX_GRAPH_SENTENCES))


def test_the_similarity_graph_refuses_an_unpooled_document() -> None:
    candidates = _numbered(extractive.MAX_GRAPH_SENTENCES + 1)
    corpus = extractive._Corpus(s.text for s in candidates)
    vectors = extractive._tfidf_rows([s.text for s in candidates], corpus)
    with pytest.raises(ValueError):
        extractive._similarity(vectors)


def test_sparse_rows_are_unit_length_cosines() -> None:
    texts = ["The harbour bridge reopened on Tuesday.", "Ferries ran all winter.", "The bridge, the bridge!"]
    vectors = extractive._tfidf_rows(texts, extractive._Corpus(texts))
    similarity = extractive._similarity(vectors)
    assert np.allclose(np.diag(similarity), 1.0)
    assert similarity[0, 1] == 0.0 and similarity[0, 2] > 0.0


def test_the_answer_prefers_sentences_sharing_the_question_terms() -> None:
    context = " ".join([*(f"Filler sentence number {i} says nothing new." for i in range(2000)),
                        "The harbour bridge reopened after the storm on Tuesday."])
    assert extractive.answer(QUESTION, context, 10) == ["The harbour bridge reopened after the storm on Tuesday."]


def _read_whole(document: str) -> list[tuple[str, bool]]:
    """The blocks as one markdown-it parse of the whole text reads them (what text.py did for every size)."""
    return list(text._piece_blocks(text._markdown.parse(document), False))


def _samples() -> list[str]:
    return [path.read_text() for path in sorted(SAMPLE_INPUTS.rglob("*")) if path.suffix in (".txt", ".md")]


@pytest.mark.parametrize("layout", _quick_first(["documents", "table", "fenced code", "html comment", "list", "links",
                                                 "indented list", "crlf paragraphs", "cr paragraphs", "cr list",
                                                 "unclosed fence"]))
def test_a_long_text_read_in_pieces_reads_as_a_whole(layout: str) -> None:
    rows = 12000
    document = {
        "documents": "\n\n".join(_samples() * 30),
        "table": "| Site | Homes |\n|---|---|\n" + "".join(f"| site {i} | {i * 3} homes |\n" for i in range(rows)),
        "fenced code": "Intro.\n\n```\n" + "code()\n\n" * rows + "```\n\nAfter the fence.\n\n" * 3000,
        "html comment": "<!--\n" + "hidden\n\n" * 30000 + "-->\n\nVisible text.\n",
        "list": "".join(f"- item {i} is here.\n" for i in range(rows * 3 // 2)),
        "links": "[guide]: https://example.org/guide\n\n" + "See the [manual][guide] now.\n\n" * rows,
        "indented list": "".join(f" - item {i} is here.\n" for i in range(rows * 3 // 2)),
        "crlf paragraphs": "".join(f"Paragraph {i} is here.\r\n\r\n" for i in range(rows)),
        "cr paragraphs": "".join(f"Paragraph {i} is here.\r\r" for i in range(rows)),
        "cr list": "".join(f"- item {i} is here.\r" for i in range(rows * 3 // 2)),
        "unclosed fence": "Intro.\n\n```\n" + "code()\n\n" * rows * 3,
    }[layout]
    pieces = list(text._pieces(document))
    assert len(pieces) > 1 and max(len(p.text) for p in pieces) <= 3 * text._PIECE_CHARS
    assert list(text._blocks(document)) == _read_whole(document)


def test_a_normal_document_is_parsed_whole() -> None:
    for document in _samples():
        assert [p.text for p in text._pieces(document)] == [document]


@pytest.mark.slow  # a long random text
def test_pieces_cover_the_text_in_order() -> None:
    rng = random.Random(5)
    document = "".join(rng.choice(["Words here. ", "\n", "\n\n", "- item\n", "```\n", "> quoted\n", "<!--", "-->"])
                       for _ in range(120_000))
    pieces = list(text._pieces(document))
    assert len(pieces) > 1 and not any(p.repeats_table_header for p in pieces)
    assert "".join(p.text[len(p.carried):] for p in pieces) == document
    assert list(text._blocks(document)) == _read_whole(document)
