"""Extractive summaries: TextRank over TF-IDF sentence similarity, with a light lead prior.

Chooses sentences of the document itself, so the summary never says what the document does not.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from pipeline.engine.text import Sentence, as_spoken_sentence, sentences, speakable

# TextRank's graph is quadratic in sentences; beyond this, pre-select by centroid similarity.
MAX_GRAPH_SENTENCES = 400
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
""".split())


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1]


def _tfidf_matrix(docs: list[list[str]]) -> np.ndarray:
    vocabulary: dict[str, int] = {}
    for terms in docs:
        for term in terms:
            vocabulary.setdefault(term, len(vocabulary))
    matrix = np.zeros((len(docs), max(1, len(vocabulary))), dtype=np.float32)
    document_frequency = Counter(term for terms in docs for term in set(terms))
    n = len(docs)
    for row, terms in enumerate(docs):
        for term, count in Counter(terms).items():
            matrix[row, vocabulary[term]] = (1 + math.log(count)) * math.log((1 + n) / (1 + document_frequency[term]))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def textrank_scores(vectors: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Stationary scores of a PageRank walk over the cosine-similarity graph, teleporting by prior."""
    similarity = vectors @ vectors.T
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
    term_lists = [_terms(s.text) for s in candidates]
    vectors = _tfidf_matrix(term_lists)
    pool = list(range(len(candidates)))
    if len(pool) > MAX_GRAPH_SENTENCES:
        centroid = vectors.mean(axis=0)
        centrality = vectors @ centroid
        pool = sorted(np.argsort(-centrality)[:MAX_GRAPH_SENTENCES].tolist())
    sub = vectors[pool]
    # Half uniform, half a lead prior: openings carry more of a document's point, but not all of it.
    lead = 1.0 / np.sqrt(np.arange(1, len(pool) + 1, dtype=np.float64))
    prior = 0.5 / len(pool) + 0.5 * lead / lead.sum()
    scores = textrank_scores(sub.astype(np.float64), prior)
    selected: list[int] = []
    total = 0
    for local in np.argsort(-scores):
        index = pool[int(local)]
        length = len(candidates[index].text.split())
        if selected and total + length > words * 1.15:
            continue
        if any(float(vectors[index] @ vectors[other]) > REDUNDANCY for other in selected):
            continue
        selected.append(index)
        total += length
        if total >= words * 0.9:
            break
    return [candidates[i] for i in sorted(selected)]


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


def answer(question: str, context: str, words: int) -> list[str]:
    """Sentences of the context that best match a question (TF-IDF cosine), in document order."""
    # The context may repeat itself (earlier answers quote the document): each sentence counts once.
    unique = {s.text: s for s in sentences(context) if not s.is_heading}
    candidates = list(unique.values())
    if not candidates:
        return []
    vectors = _tfidf_matrix([_terms(s.text) for s in candidates] + [_terms(question)])
    relevance = vectors[:-1] @ vectors[-1]
    selected: list[int] = []
    total = 0
    for index in np.argsort(-relevance, kind="stable"):
        length = len(candidates[int(index)].text.split())
        if selected and total + length > words * 1.15:
            continue
        selected.append(int(index))
        total += length
        if total >= words * 0.9:
            break
    return [as_spoken_sentence(candidates[i].text) for i in sorted(selected)]
