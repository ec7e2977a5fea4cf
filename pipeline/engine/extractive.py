"""Extractive summaries: TextRank over TF-IDF sentence similarity, with a light lead prior.

Chooses sentences of the document itself, so the summary never says what the document does not. Time and memory
are linear in the text: candidates are cut to at most MAX_GRAPH_SENTENCES by a one-pass score before any vector
is built, vectors are sparse, and only the capped pool meets the quadratic similarity graph.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
from scipy import sparse

from pipeline.engine.text import Sentence, as_spoken_sentence, sentences, speakable

# TextRank's graph is quadratic in sentences (400² float64 is 1.3 MB); beyond this, pre-select cheaply.
MAX_GRAPH_SENTENCES = 400
# The opening always reaches the graph, so the lead prior can still pick a lede that shares few words.
LEAD_POOL = 20
DAMPING = 0.85
REDUNDANCY = 0.5

_WORD = re.compile(r"[a-z0-9']+")
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off
on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves one two may might must shall
""".split())  # noqa: SIM905 - a word list reads best as words


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1]


class _Corpus:
    """Document frequencies of one document's sentences, with idf looked up by frequency (a short table)."""

    __slots__ = ("_idf", "_terms", "documents", "frequency")

    def __init__(self, texts: Iterable[str], terms: Callable[[str], list[str]] = _terms) -> None:
        self._terms = terms
        self.frequency: Counter[str] = Counter()
        self.documents = 0
        for text in texts:
            self.frequency.update(set(terms(text)))
            self.documents += 1
        highest = max(self.frequency.values(), default=0)
        self._idf = [math.log((1 + self.documents) / (1 + df)) for df in range(highest + 1)]

    def weights(self, text: str) -> dict[str, float]:
        """Unnormalised TF-IDF weights of a text's terms (sublinear tf)."""
        return {term: (1 + math.log(count)) * self._idf[self.frequency[term]]
                for term, count in Counter(self._terms(text)).items()}

    def centroid_weight(self, term: str) -> float:
        """A term's share of the TF-IDF centroid, up to a constant: how often it recurs times how telling it is."""
        df = self.frequency[term]
        return df * self._idf[df]


def _tfidf_rows(texts: Sequence[str], corpus: _Corpus) -> sparse.csr_matrix:
    """L2-normalised TF-IDF rows for just these texts; idf comes from the whole document."""
    vocabulary: dict[str, int] = {}
    data: list[float] = []
    indices: list[int] = []
    indptr = [0]
    for text in texts:
        weights = corpus.weights(text)
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        for term, weight in weights.items():
            indices.append(vocabulary.setdefault(term, len(vocabulary)))
            data.append(weight / norm)
        indptr.append(len(indices))
    shape = (len(texts), max(1, len(vocabulary)))
    return sparse.csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                              np.asarray(indptr, dtype=np.int64)), shape=shape)


def _centrality(text: str, corpus: _Corpus) -> float:
    """How much of the document's recurring vocabulary a sentence carries: a one-sentence-at-a-time stand-in
    for its cosine to the TF-IDF centroid, so no vector of the whole document is ever built."""
    norm2 = 0.0
    dot = 0.0
    for term, weight in corpus.weights(text).items():
        norm2 += weight * weight
        dot += weight * corpus.centroid_weight(term)
    return dot / math.sqrt(norm2) if norm2 else 0.0


def _pool(candidates: Sequence[Sentence], corpus: _Corpus) -> list[int]:
    """Indices (in document order) of at most MAX_GRAPH_SENTENCES candidates: the opening, then the most
    central of the rest, scored one sentence at a time so nothing quadratic or vocabulary-wide is held."""
    if len(candidates) <= MAX_GRAPH_SENTENCES:
        return list(range(len(candidates)))
    rest = ((_centrality(candidates[i].text, corpus), -i) for i in range(LEAD_POOL, len(candidates)))
    central = heapq.nlargest(MAX_GRAPH_SENTENCES - LEAD_POOL, rest)
    return [*range(LEAD_POOL), *sorted(-negative for _, negative in central)]


def _similarity(vectors: sparse.csr_matrix) -> np.ndarray:
    """Cosine similarity of the pooled rows, dense: the pool is capped, so this is at most 400 × 400."""
    if vectors.shape[0] > MAX_GRAPH_SENTENCES:
        raise ValueError(f"{vectors.shape[0]} rows would make a quadratic graph; pool them first")
    return np.asarray((vectors @ vectors.T).toarray(), dtype=np.float64)


def textrank_scores(similarity: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Stationary scores of a PageRank walk over a cosine-similarity graph, teleporting by prior."""
    similarity = similarity.copy()
    np.fill_diagonal(similarity, 0.0)
    similarity[similarity < 0] = 0.0
    out_weight = similarity.sum(axis=1, keepdims=True)
    dangling = out_weight[:, 0] == 0
    out_weight[out_weight == 0] = 1.0
    transition = similarity / out_weight
    transition[dangling] = prior
    scores = prior.copy()
    for _ in range(100):
        updated = (1 - DAMPING) * prior + DAMPING * (transition.T @ scores)
        if np.abs(updated - scores).sum() < 1e-6:
            return updated
        scores = updated
    return scores


def summarise(text: str, words: int, title: str | None = None) -> list[str]:
    """Sentences (in document order) that best cover the text in about `words` words."""
    all_sentences = sentences(text)
    candidates = [s for s in all_sentences if not s.is_heading and len(s.text.split()) >= 4]
    if not candidates:
        candidates = all_sentences
    if not candidates:
        return []
    chosen = _choose(candidates, words)
    spoken = [as_spoken_sentence(s.text) for s in chosen]
    heading = speakable(title) if title else ""
    if heading:
        spoken.insert(0, as_spoken_sentence(heading))
    return spoken


def _choose(candidates: list[Sentence], words: int) -> list[Sentence]:
    corpus = _Corpus(s.text for s in candidates)
    pool = _pool(candidates, corpus)
    vectors = _tfidf_rows([candidates[i].text for i in pool], corpus)
    similarity = _similarity(vectors)
    # Half uniform, half a lead prior: openings carry more of a document's point, but not all of it.
    lead = 1.0 / np.sqrt(np.arange(1, len(pool) + 1, dtype=np.float64))
    prior = 0.5 / len(pool) + 0.5 * lead / lead.sum()
    scores = textrank_scores(similarity, prior)
    selected: list[int] = []
    total = 0
    for local in (int(i) for i in np.argsort(-scores)):
        length = len(candidates[pool[local]].text.split())
        if selected and total + length > words * 1.15:
            continue
        if any(similarity[local, other] > REDUNDANCY for other in selected):
            continue
        selected.append(local)
        total += length
        if total >= words * 0.9:
            break
    return [candidates[pool[i]] for i in sorted(selected)]


def lead(text: str, words: int, title: str | None = None) -> list[str]:
    """The opening sentences up to about `words` words: a cheap summary for load tests."""
    spoken: list[str] = [as_spoken_sentence(speakable(title))] if title and speakable(title) else []
    total = 0
    for sentence in sentences(text):
        if sentence.is_heading:
            continue
        spoken.append(as_spoken_sentence(sentence.text))
        total += len(sentence.text.split())
        if total >= words:
            break
    return spoken


# -- follow-up answers -------------------------------------------------------------------------------------------

AnswerBasis = Literal["matched", "lead"]  # chosen for the question, or the opening because nothing matched
# An answer keeps only sentences scoring at least this share of the best match: the fact asked for, not a summary.
ANSWER_RELATIVE = 0.5
# How much the conversation so far (earlier questions and answers) reorders the sentences the question matched.
CONVERSATION_WEIGHT = 0.25
# How much a match on a word's stem alone counts against a match on the word itself.
STEM_WEIGHT = 0.3
# Added to a sentence's score for each time expression (up to two) when the question asks when.
TIME_BONUS = 0.1

_ASKS_WHEN = re.compile(r"\b(?:when|what (?:time|day|date)|how long|how soon|until)\b", re.IGNORECASE)
_TIME_WORDS = frozenset("""
monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
january february march april june july august september october november december jan feb mar apr jun jul aug
sep sept oct nov dec today tonight tomorrow yesterday morning afternoon evening noon midnight week weekend weekly
month monthly year daily hour hours minute minutes day days weeks months years o'clock am pm eod eow
""".split())  # noqa: SIM905 - a word list reads best as words
_TIME_TOKEN = re.compile(r"\d{1,2}(?::\d\d)?(?:am|pm)|(?:19|20)\d\d|\d{1,2}(?:st|nd|rd|th)|\d{1,2}:\d\d")


def _stem(word: str) -> str:
    """A light suffix strip so "needs", "needed" and "need" meet; only for matching questions to sentences."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def _stems(text: str) -> list[str]:
    return [_stem(w) for w in _terms(text)]


def _time_expressions(text: str) -> int:
    words = _WORD.findall(text.lower())
    return sum(1 for w in words if w in _TIME_WORDS or _TIME_TOKEN.fullmatch(w))


def _ranked_for(question: str, candidates: Sequence[Sentence], conversation: str = "") -> list[tuple[float, int]]:
    """(score, candidate index) of the sentences that match the question, best first, ties in document order.

    A sentence matches by sharing a term (or its stem) with the question, scored by TF-IDF cosine; a question asking
    when also rewards time expressions, matches them alone when no sentence shares a term, and takes the time named
    next to a best match that names none. The conversation so far (earlier questions and answers) adds a little of
    its own cosine, so a follow-up keeps to its subject. Only matching sentences get vectors, and the query rows meet
    them in sparse products: linear in the context."""
    asked = set(_stems(question))
    asks_when = bool(_ASKS_WHEN.search(question))
    sharing = [i for i, s in enumerate(candidates) if asked.intersection(_stems(s.text))]
    times: dict[int, int] = {}
    if asks_when:
        times = {i: n for i, s in enumerate(candidates) if (n := min(2, _time_expressions(s.text)))}
        if not sharing:
            sharing = sorted(times)
    if not sharing:
        return []
    queries = [*(candidates[i].text for i in sharing), question, conversation]
    relevance = np.zeros(len(sharing))
    # Exact terms count fully and stems (needs ~ need) a little, so a word's inflections do not outweigh it.
    for terms, weight in ((_terms, 1.0), (_stems, STEM_WEIGHT)):
        corpus = _Corpus((*(s.text for s in candidates), question), terms=terms)
        rows = _tfidf_rows(queries, corpus)
        relevance += weight * (rows[:-2] @ rows[-2].T).toarray().ravel()
        if conversation:
            relevance += weight * CONVERSATION_WEIGHT * (rows[:-2] @ rows[-1].T).toarray().ravel()
    relevance = relevance + TIME_BONUS * np.asarray([times.get(i, 0) for i in sharing], dtype=np.float64)
    order = np.argsort(-relevance, kind="stable")
    ranked = [(float(relevance[k]), sharing[int(k)]) for k in order if relevance[int(k)] > 0]
    if asks_when and ranked and ranked[0][1] not in times:
        # The best match names no time: the time asked for is often in the sentence next to it.
        best_score, best = ranked[0]
        neighbour = next((i for i in (best + 1, best - 1) if i in times), None)
        if neighbour is not None:
            ranked = [(s, i) for s, i in ranked if i != neighbour]
            ranked.insert(1, (best_score * ANSWER_RELATIVE, neighbour))
    return ranked


def answer_with_basis(question: str, context: str, words: int,
                      conversation: str = "") -> tuple[list[str], AnswerBasis]:
    """Sentences of the context (in document order) that best match the question, about `words` words at most,
    and "matched"; or the context's opening and "lead" when no sentence matches it. conversation: the earlier
    questions and answers, which only reorder what the question matched."""
    # The context may repeat itself (a recording's parts, quoted answers): each sentence counts once.
    unique = {s.text: s for s in sentences(context) if not s.is_heading}
    candidates = list(unique.values())
    ranked = _ranked_for(question, candidates, conversation) if candidates else []
    if not ranked:
        return lead(context, words), "lead"
    best = ranked[0][0]
    selected: list[int] = []
    total = 0
    for score, index in ranked:
        if score < ANSWER_RELATIVE * best:
            break
        length = len(candidates[index].text.split())
        if selected and total + length > words * 1.15:
            continue
        selected.append(index)
        total += length
        if total >= words * 0.9:
            break
    return [as_spoken_sentence(candidates[i].text) for i in sorted(selected)], "matched"


def answer(question: str, context: str, words: int, conversation: str = "") -> list[str]:
    """The sentences of answer_with_basis, without saying whether they matched or are the lead."""
    return answer_with_basis(question, context, words, conversation)[0]
