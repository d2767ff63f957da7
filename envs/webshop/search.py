"""BM25 product search configured as the original's Pyserini index, with ``bm25s`` and PyStemmer.

One document per product: ``lower(Title + " " + Description + " " + BulletPoints[0] + " " + option_text)`` with
``option_text = ", and ".join("name: v1, v2, ...")``. Scoring is Lucene's BM25 (``k1 = 0.9``, ``b = 0.4``, idf
``log(1 + (N - df + 0.5) / (df + 0.5))``); the analyzer approximates Lucene's EnglishAnalyzer on documents and
queries alike: standard tokenisation (letters/digits, keeping "3.5" and "don't" whole), possessive "'s" removed,
Lucene's 33 English stop words, Porter stemming. A query returns the products with a positive score, best first,
at most ``SEARCH_RETURN_N = 50``, ties broken by catalogue order (Lucene's doc-id order); a results page shows
``PRODUCT_WINDOW = 10`` of them. Repeated query terms count once per repeat (Anserini boosts by count).
Not reproduced: Lucene's lossy one-byte document-length norms, and the special ``<r>``/``<a>``/``<c>``/``<q>``
queries of the original's web app.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import bm25s
import numpy as np
import Stemmer

__all__ = [
    "K1",
    "LUCENE_STOP_WORDS",
    "PRODUCT_WINDOW",
    "SEARCH_RETURN_N",
    "B",
    "SearchEngine",
    "analyze",
    "page_of",
    "product_document",
]

K1 = 0.9
B = 0.4
SEARCH_RETURN_N = 50
PRODUCT_WINDOW = 10
LUCENE_STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    }
)
# Runs of letters/digits, joined across "." and "'" between word characters and "," between digits (UAX#29-like).
_TOKEN_RE = re.compile(r"[^\W_]+(?:(?:[.'\u2019]|(?<=\d),(?=\d))[^\W_]+)*")
_STEMMER = Stemmer.Stemmer("porter")
_bm25s_logger = logging.getLogger("bm25s")


def analyze(text: str) -> list[str]:
    """Lucene-EnglishAnalyzer-like tokens of ``text``: lowercase, possessives off, stop words out, Porter stems."""
    tokens = []
    for token in _TOKEN_RE.findall(text.lower()):
        if token.endswith(("'s", "\u2019s")):
            token = token[:-2]
        if token and token not in LUCENE_STOP_WORDS:
            tokens.append(token)
    stems: list[str] = _STEMMER.stemWords(tokens)
    return stems


def product_document(product: dict[str, Any]) -> str:
    """The indexed text of one product, as the original's ``convert_product_file_format`` builds it."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product["options"].items())
    bullet = product["BulletPoints"][0] if product["BulletPoints"] else ""
    return f"{product['Title']} {product['Description']} {bullet} {option_text}".lower()


def page_of(hits: Sequence[int], page: int) -> list[int]:
    """The hits shown on results page ``page`` (1-based; empty past the end, as in the original)."""
    if page < 1:
        return []
    return list(hits[(page - 1) * PRODUCT_WINDOW : page * PRODUCT_WINDOW])


class SearchEngine:
    """BM25 over the catalogue's product documents; :meth:`search` returns catalogue indices."""

    def __init__(self, products: Sequence[dict[str, Any]]) -> None:
        corpus = [analyze(product_document(p)) for p in products]
        self.num_documents = len(corpus)
        self._retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
        previous = _bm25s_logger.level
        _bm25s_logger.setLevel(logging.WARNING)
        try:
            self._retriever.index(corpus, show_progress=False)
        finally:
            _bm25s_logger.setLevel(previous)
        self._vocab: dict[str, int] = self._retriever.vocab_dict

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every product for ``query`` (float32, catalogue order)."""
        token_ids = [self._vocab[t] for t in analyze(query) if t in self._vocab]
        if not token_ids:
            return np.zeros(self.num_documents, dtype=np.float32)
        scores: np.ndarray = self._retriever.get_scores(token_ids)
        return scores

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[int]:
        """Catalogue indices of the top ``k`` products with a positive score; ties keep catalogue order."""
        scores = self.scores(query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [int(i) for i in order if scores[i] > 0]
