"""Domain router (MoDEM / "Composition of Experts"): a domain classifier on embeddings plus a
domain -> expert quality map.

Two ways to get the map:
- trained on a table: ``fit(X, Y, domains=labels)`` learns per-domain expert quality (shrunk toward
  each expert's global mean); without labels, k-means pseudo-domains stand in for them;
- from experts.yaml: ``from_domain_map(X, labels, experts, expert_domains)`` trains the classifier on
  labelled prompts (e.g. ../shared/data/domain/) and scores an expert ``listed_quality`` on the
  domains it lists, ``other_quality`` elsewhere.
Scores are ``P(domain | x) @ domain_quality``. The classifier is multinomial logistic regression
(scikit-learn at fit time); its coefficients are stored as arrays and applied in numpy.
"""
from __future__ import annotations

import numpy as np

from routers._common import expert_means, kmeans, softmax
from routers.base import Router, RouterError, check_xy


class DomainRouter(Router):
    """P(domain | prompt) from logistic regression, times per-domain expert quality."""

    router_type = "domain"
    state_attrs = ("coef_", "intercept_", "domain_quality_", "domains_")
    takes_domains = True

    def __init__(self, C: float = 4.0, n_pseudo_domains: int = 20, prior_strength: float = 5.0,
                 listed_quality: float = 0.8, other_quality: float = 0.4, seed: int = 0):
        self.C = C
        self.n_pseudo_domains = n_pseudo_domains
        self.prior_strength = prior_strength
        self.listed_quality = listed_quality
        self.other_quality = other_quality
        self.seed = seed

    def fit(self, X, Y, cost=None, experts=None, domains=None) -> "DomainRouter":
        """As ``Router.fit``, plus ``domains``: one label per prompt (e.g. the table's task column)."""
        self._labels = None if domains is None else np.asarray([str(d) for d in domains])
        try:
            return super().fit(X, Y, cost=cost, experts=experts)
        finally:
            self._labels = None

    def _fit(self, X, Y, cost):
        labels = self._labels
        if labels is None:
            _, ids = kmeans(X, int(self.n_pseudo_domains), seed=int(self.seed))
            labels = np.asarray([f"cluster-{i}" for i in ids])
        if len(labels) != X.shape[0]:
            raise RouterError(f"{len(labels)} domain labels for {X.shape[0]} prompts")
        self._fit_classifier(X, labels)
        onehot = (labels[:, None] == self.domains_[None, :]).astype(np.float64)
        seen = ~np.isnan(Y)
        sums, counts = onehot.T @ np.where(seen, Y, 0.0), onehot.T @ seen
        g = expert_means(Y)[None, :]
        s = float(self.prior_strength)
        self.domain_quality_ = np.clip((sums + s * g) / np.maximum(counts + s, 1e-12), 0.0, 1.0)

    def _fit_classifier(self, X: np.ndarray, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.domains_ = np.unique(labels)
        if len(self.domains_) == 1:   # one domain: a constant classifier
            self.coef_ = np.zeros((1, X.shape[1]))
            self.intercept_ = np.zeros(1)
            return
        clf = LogisticRegression(C=float(self.C), max_iter=500)
        clf.fit(np.asarray(X, dtype=np.float64), labels)
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:   # sklearn's binary case has one row: expand to two logits
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        self.domains_ = np.asarray(clf.classes_).astype(str)
        self.coef_, self.intercept_ = coef, intercept

    def domain_probabilities(self, X: np.ndarray) -> np.ndarray:
        """P(domain | x), shape (n, n_domains), columns in ``domains_`` order."""
        X = self.check_X(X).astype(np.float64)
        return softmax(X @ self.coef_.T + self.intercept_, axis=1)

    def predict_domain(self, X: np.ndarray) -> list[str]:
        return [str(d) for d in self.domains_[self.domain_probabilities(X).argmax(axis=1)]]

    def predict_scores(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self.domain_probabilities(X) @ self.domain_quality_, 0.0, 1.0)

    @classmethod
    def from_domain_map(cls, X: np.ndarray, labels, experts: list[str], expert_domains: dict[str, list[str]],
                        **params) -> "DomainRouter":
        """Train the domain classifier on labelled prompts; map domains to the experts that list them.

        An expert that lists no domains is a generalist: it scores the mean of the two levels everywhere.
        """
        router = cls(**params)
        labels = np.asarray([str(d) for d in labels])
        X, _ = check_xy(X, np.zeros((len(labels), 1)))
        router.experts_ = list(experts)
        router.n_features_in_ = X.shape[1]
        router._fit_classifier(X, labels)
        unknown = sorted({d for e in experts for d in expert_domains.get(e, [])} - set(router.domains_))
        if unknown:
            raise RouterError(f"domains {unknown} in experts.yaml have no labelled prompts "
                              f"(known: {', '.join(router.domains_)})")
        hi, lo = float(router.listed_quality), float(router.other_quality)
        q = np.empty((len(router.domains_), len(experts)))
        for j, e in enumerate(experts):
            listed = expert_domains.get(e) or []
            q[:, j] = [(hi if d in listed else lo) if listed else (hi + lo) / 2 for d in router.domains_]
        router.domain_quality_ = q
        return router
