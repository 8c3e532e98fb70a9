"""Domain router: trained on a labelled table, and built from experts.yaml's domain lists."""
from __future__ import annotations

import numpy as np
import pytest

from routers.base import RouterError
from routers.domain import DomainRouter
from tests.support.router_data import EXPERTS, synthetic


def test_fit_with_domain_labels():
    X, Y, cost, topic = synthetic()
    labels = np.where(topic == 0, "math", "chat")
    router = DomainRouter().fit(X, Y, cost=cost, experts=EXPERTS, domains=labels)
    assert set(router.domains_) == {"math", "chat"}
    Xt, _, _, tt = synthetic(n=300, seed=1)
    assert np.mean(np.array(router.predict_domain(Xt)) == np.where(tt == 0, "math", "chat")) > 0.8
    s = router.predict_scores(Xt)
    assert s[tt == 0, 0].mean() > s[tt == 1, 0].mean() + 0.2


def test_from_domain_map():
    X, _, _, topic = synthetic()
    labels = np.where(topic == 0, "math", "chat")
    router = DomainRouter.from_domain_map(X, labels, ["mathy", "chatty", "general"],
                                          {"mathy": ["math"], "chatty": ["chat"]})
    Xt, _, _, tt = synthetic(n=300, seed=1)
    best = router.predict_scores(Xt).argmax(axis=1)
    assert np.mean(best == np.where(tt == 0, 0, 1)) > 0.8
    with pytest.raises(RouterError, match="no labelled prompts"):
        DomainRouter.from_domain_map(X, labels, ["a"], {"a": ["law"]})


def test_stacked_hands_domain_labels_to_its_domain_base():
    from routers.stacked import StackedRouter

    X, Y, cost, topic = synthetic()
    labels = np.where(topic == 0, "math", "chat")
    router = StackedRouter(inner_folds=2, knn_k=10).fit(X, Y, cost=cost, experts=EXPERTS, domains=labels)
    domain_base = router.bases_[router._base_names().index("domain")]
    assert set(domain_base.domains_) == {"math", "chat"}
    assert router.predict_scores(X).shape == (len(X), 3)
