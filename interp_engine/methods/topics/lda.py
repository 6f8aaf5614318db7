"""Topics of Dong et al. (CVPR 2017; docs/algorithms.md §6, docs/topics.md):
a topic vector ``s`` (T proportions summing to 1) per sample, from LDA over
human descriptions (:func:`extract_topics`, scikit-learn's
``LatentDirichletAllocation``) or given by the user
(:func:`validate_topic_matrix`).  Needs numpy, and scikit-learn for LDA; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import numpy as np

from ...engine.checks import check_dense_tensor, check_real, describe

__all__ = ["Topics", "extract_topics", "validate_topic_matrix"]


def _check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def validate_topic_matrix(matrix: Any, *, n_rows: Optional[int] = None, n_topics: Optional[int] = None,
                          name: str = "topics", atol: float = 1e-3) -> np.ndarray:
    """Check a topic matrix and return it as float64 (N, T).

    Accepted: a numpy array, torch tensor or nested sequence of real numbers,
    2-dimensional with N >= 1 rows (samples) and T >= 1 columns (topics),
    finite, non-negative, each row summing to 1 within ``atol`` (absolute;
    default 1e-3, so float16-rounded proportions pass).  Rows are not
    renormalized.

    Raises:
        TypeError: not numeric (strings, bool, complex).
        ValueError: wrong number of dimensions, empty, a row or column count
            other than ``n_rows`` / ``n_topics`` when given, NaN/inf, negative
            entries, rows not summing to 1; the message names ``name``, what
            was expected and what arrived (the first offending row).
    """
    atol = check_real(atol, "atol", minimum=0.0, allow_inf=False, what="a finite number >= 0")
    if hasattr(matrix, "detach") and hasattr(matrix, "cpu"):  # a torch tensor
        check_dense_tensor(matrix, name)
        arr = matrix.detach().cpu().double().numpy() if matrix.is_floating_point() or \
            not matrix.dtype.is_complex and str(matrix.dtype) != "torch.bool" else None
        if arr is None:
            raise TypeError(f"{name} must hold real numbers, got {describe(matrix)}")
    else:
        try:
            arr = np.asarray(matrix)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a 2-D array of topic proportions, got "
                            f"{type(matrix).__name__} ({exc})") from None
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers (topic proportions), got {describe(matrix)}"
                            + (f" of {arr.dtype}" if not isinstance(matrix, np.ndarray) else ""))
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (samples, topics), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one topic, got shape {arr.shape}")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows (one per sample), got shape {arr.shape}")
    if n_topics is not None and arr.shape[1] != n_topics:
        raise ValueError(f"{name} must have n_topics={n_topics} columns, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} must be finite, found NaN or inf (first in row {r})")
    if (arr < 0).any():
        r, c = (int(v) for v in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name} must be non-negative topic proportions, found {arr[r, c]!r} at row {r}, "
                         f"column {c}")
    sums = arr.sum(1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise ValueError(f"{name} rows must sum to 1 (within {atol}), row {r} sums to {sums[r]:.6g} "
                         f"({int(off.sum())} of {arr.shape[0]} rows off)")
    return arr


@dataclass
class Topics:
    """A topic model's output.

    Attributes:
        matrix: float64 (N, T), the topic vector of every description (rows
            sum to 1).
        top_words: per topic, its ``n_top_words`` most probable words, most
            probable first (empty lists for a user-given matrix without words).
        word_weights: per topic, the probabilities of those words in the topic.
        vocabulary: the words (LDA only; else empty).
        components: float64 (T, V) topic-word distributions (rows sum to 1),
            or None for a user-given matrix.
    """

    matrix: np.ndarray
    top_words: List[List[str]]
    word_weights: List[List[float]] = field(default_factory=list)
    vocabulary: List[str] = field(default_factory=list)
    components: Optional[np.ndarray] = None
    _vectorizer: Any = field(default=None, repr=False)
    _lda: Any = field(default=None, repr=False)

    @property
    def n_topics(self) -> int:
        return int(self.matrix.shape[1])

    def names(self, n_words: int = 3) -> List[str]:
        """A short name per topic: ``"t3: sole heel strap"`` (its first
        ``n_words`` words), or ``"t3"`` without words."""
        return [f"t{t}: " + " ".join(w[:n_words]) if w else f"t{t}"
                for t, w in enumerate(self.top_words or [[] for _ in range(self.n_topics)])]

    def transform(self, descriptions: Sequence[str]) -> np.ndarray:
        """Topic vectors float64 (M, T) of new descriptions under the fitted
        LDA (rows sum to 1).  ValueError for a user-given matrix (no model)."""
        if self._lda is None:
            raise ValueError("transform needs topics fitted by LDA (this Topics came from a user-given matrix)")
        docs = _check_texts(descriptions)
        return _normalize_rows(self._lda.transform(self._vectorizer.transform(docs)))

    def __repr__(self) -> str:
        return f"Topics(n_samples={self.matrix.shape[0]}, n_topics={self.n_topics}, top_words={self.names()})"


def _check_texts(descriptions: Any) -> List[str]:
    if isinstance(descriptions, (str, bytes)):
        raise TypeError("descriptions must be a sequence of str (one per sample) or an (N, T) topic "
                        "matrix, got a single str")
    docs = list(descriptions)
    if not docs:
        raise ValueError("descriptions must not be empty")
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise TypeError(f"descriptions[{i}] must be a str, got {type(d).__name__}")
    return docs


def _normalize_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return m / m.sum(1, keepdims=True)


def _looks_numeric(x: Any) -> bool:
    if isinstance(x, np.ndarray) or (hasattr(x, "detach") and hasattr(x, "dtype")):
        return True
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple, np.ndarray)):
        return True
    return False


def extract_topics(descriptions: Any, n_topics: Optional[int] = None, seed: int = 0, *,
                   n_top_words: int = 8, max_iter: int = 50, stop_words: Optional[str] = "english",
                   dedupe: bool = True, topic_words: Optional[Sequence[Sequence[str]]] = None,
                   atol: float = 1e-3) -> Topics:
    """Topic vectors of samples from their descriptions (LDA) or a given matrix.

    Args:
        descriptions: a sequence of N str (one document per sample), or an
            (N, T) topic matrix (numpy, torch, nested lists) used as is after
            :func:`validate_topic_matrix` (``atol``).
        n_topics: T; required for texts; for a matrix, its column count when
            given.
        seed: LDA's ``random_state`` (same texts and seed: same topics).
        n_top_words: words kept per topic.
        max_iter: LDA iterations (``learning_method="batch"``).
        stop_words: scikit-learn ``CountVectorizer``'s (``"english"`` or None).
        dedupe: fit LDA on the distinct documents only (each counted once)
            and give every sample its document's topic vector: identical
            documents (class descriptions shared by many images) would
            otherwise only reweight the fit, at a cost linear in N.
        topic_words: for a matrix, optional words per topic (for display).

    Returns:
        :class:`Topics`; ``matrix`` float64 (N, T), rows sum to 1.

    Raises:
        ImportError: texts given and scikit-learn is not installed.
        TypeError / ValueError: bad arguments (an empty corpus, a corpus
            without any word left after stop words, an invalid matrix).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    n_top_words = _check_int(n_top_words, "n_top_words")
    if _looks_numeric(descriptions):
        if n_topics is not None:
            n_topics = _check_int(n_topics, "n_topics")
        mat = validate_topic_matrix(descriptions, n_topics=n_topics, name="descriptions (a topic matrix)",
                                    atol=atol)
        words: List[List[str]] = []
        if topic_words is not None:
            words = [list(map(str, w)) for w in topic_words]
            if len(words) != mat.shape[1]:
                raise ValueError(f"topic_words must have one list per topic ({mat.shape[1]}), got {len(words)}")
        return Topics(matrix=mat, top_words=words)
    docs = _check_texts(descriptions)
    if n_topics is None:
        raise ValueError("n_topics is required when descriptions are texts")
    n_topics = _check_int(n_topics, "n_topics")
    max_iter = _check_int(max_iter, "max_iter")
    try:
        from sklearn.decomposition import LatentDirichletAllocation
        from sklearn.feature_extraction.text import CountVectorizer
    except ImportError as exc:
        raise ImportError("extract_topics needs scikit-learn for LDA (`pip install scikit-learn`), or pass "
                          f"an (N, T) topic matrix instead of texts. Import failed with: {exc}") from exc
    if dedupe:
        uniq, inverse = np.unique(np.asarray(docs, dtype=object).astype(str), return_inverse=True)
        fit_docs = list(uniq)
    else:
        fit_docs, inverse = docs, np.arange(len(docs))
    vec = CountVectorizer(stop_words=stop_words)
    try:
        counts = vec.fit_transform(fit_docs)
    except ValueError as exc:  # empty vocabulary
        raise ValueError(f"descriptions contain no words to model ({exc})") from None
    lda = LatentDirichletAllocation(n_components=n_topics, random_state=int(seed), learning_method="batch",
                                    max_iter=max_iter)
    doc_topic = _normalize_rows(lda.fit_transform(counts))
    vocab = [str(w) for w in vec.get_feature_names_out()]
    comp = _normalize_rows(lda.components_)
    order = np.argsort(-comp, axis=1, kind="stable")[:, :n_top_words]
    return Topics(matrix=doc_topic[np.asarray(inverse).reshape(-1)], top_words=[[vocab[j] for j in row] for row in order],
                  word_weights=[[float(comp[t, j]) for j in row] for t, row in enumerate(order)],
                  vocabulary=vocab, components=comp, _vectorizer=vec, _lda=lda)
