"""Bag-of-words scorers learned from candidates alone: the style leaks a benchmark can carry.

If the words of a candidate (never its context) tell the better one from the worse, a benchmark
measures style, not grounding. Two learners fit on (better, worse) pairs and return a scorer of a
single candidate's text, so that any pair, of any item, can be judged with it:

- `fit_pairwise_logistic`: logistic regression on the difference of the two candidates' word and
  bigram counts, with both orientations of each pair (x_b - x_w labelled 1, x_w - x_b labelled 0)
  and no intercept, so neither display slot is favoured: P(first better) = sigmoid(w . (x_1 - x_2))
  and a candidate's score is w . x.
- `fit_naive_bayes`: multinomial naive Bayes (add-one smoothing) with the better candidates as
  one class and the worse as the other; a candidate's score is its log-likelihood ratio
  sum_g count(g) * (log P(g | better) - log P(g | worse)) (the class priors are equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from scipy.sparse import vstack
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB

from longrm.bench.pairs import Pair

#: a learned candidate scorer: the text of one candidate in, a number out (higher is better)
TextScorer = Callable[[str], float]
Learner = Callable[[Sequence[Pair]], TextScorer]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Return a text's lower-cased words and punctuation marks, in order."""
    return _TOKEN.findall(text.lower())


def _vectorizer() -> CountVectorizer:
    """Return a counter of words and word bigrams (punctuation marks count as words)."""
    return CountVectorizer(tokenizer=words, lowercase=False, token_pattern=None, ngram_range=(1, 2))


def _linear_scorer(vectorizer: CountVectorizer, weights: np.ndarray) -> TextScorer:
    def score(text: str) -> float:
        return float((vectorizer.transform([text]) @ weights)[0])

    return score


def fit_pairwise_logistic(pairs: Sequence[Pair], c: float = 1.0) -> TextScorer:
    """Return w . counts(text), w fitted on the pairs' count differences (L2, strength 1/c)."""
    if not pairs:
        raise ValueError("no pairs to learn from")
    vectorizer = _vectorizer().fit([t for p in pairs for t in p.texts])
    better = vectorizer.transform([p.texts[0] for p in pairs])
    worse = vectorizer.transform([p.texts[1] for p in pairs])
    diffs = vstack([better - worse, worse - better])
    labels = np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000).fit(diffs, labels)
    return _linear_scorer(vectorizer, model.coef_[0])


def fit_naive_bayes(pairs: Sequence[Pair], alpha: float = 1.0) -> TextScorer:
    """Return the log-likelihood ratio better / worse of a text's word and bigram counts."""
    if not pairs:
        raise ValueError("no pairs to learn from")
    texts = [p.texts[0] for p in pairs] + [p.texts[1] for p in pairs]
    labels = np.r_[np.ones(len(pairs)), np.zeros(len(pairs))]
    vectorizer = _vectorizer().fit(texts)
    model = MultinomialNB(alpha=alpha).fit(vectorizer.transform(texts), labels)
    log_prob = model.feature_log_prob_  # rows in model.classes_ order: [worse (0), better (1)]
    return _linear_scorer(vectorizer, log_prob[1] - log_prob[0])


LEARNERS: dict[str, Learner] = {
    "bag-of-words logistic": fit_pairwise_logistic,
    "bag-of-words naive Bayes": fit_naive_bayes,
}
