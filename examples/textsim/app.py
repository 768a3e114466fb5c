"""textsim: compare texts by the cosine similarity of their tf-idf vectors.

POST /similarity with {"texts": ["...", "..."]} answers {"similarity": [[...], ...]},
the pairwise matrix. The service the first wheelbarrow seed was written for.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

MAX_TEXTS = 1000
MAX_CHARS = 1_000_000

app = Flask(__name__)


def similarity_matrix(texts: list[str]) -> list[list[float]]:
    """The pairwise cosine similarity of the texts' tf-idf vectors, rounded to 6 places."""
    vectors = TfidfVectorizer().fit_transform(texts)
    matrix = cosine_similarity(vectors)
    return [[round(float(x), 6) for x in row] for row in matrix]


def _bad_request(message: str) -> tuple[Any, int]:
    return jsonify({"error": message}), 400


@app.post("/similarity")
def similarity() -> Any:
    """Answer the similarity matrix of the posted texts, or a 400 with a JSON error."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or "texts" not in payload:
        return _bad_request('send a JSON object like {"texts": ["first text", "second text"]}')
    texts = payload["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return _bad_request('"texts" must be a list of strings')
    if not 2 <= len(texts) <= MAX_TEXTS:
        return _bad_request(f'"texts" must hold between 2 and {MAX_TEXTS} texts')
    if sum(len(t) for t in texts) > MAX_CHARS:
        return _bad_request(f"the texts must hold at most {MAX_CHARS} characters in all")
    try:
        matrix = similarity_matrix(texts)
    except ValueError:
        # TfidfVectorizer refuses texts with no words at all.
        return _bad_request("the texts contain no words to compare")
    return jsonify({"similarity": matrix})


@app.get("/")
def index() -> Any:
    """A health check that says how to use the service."""
    return jsonify({"service": "textsim", "usage": 'POST /similarity {"texts": [...]}'})


@app.errorhandler(404)
@app.errorhandler(405)
def not_found(error: Any) -> tuple[Any, int]:
    """JSON errors for unknown paths and methods too."""
    return jsonify({"error": str(error)}), error.code
