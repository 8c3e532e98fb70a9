"""Router registry: adding a router is one line here plus its own module."""
from __future__ import annotations

import importlib
from typing import Any

from routers.base import Router, RouterError

# name -> "module:Class"; imported lazily so the serving path loads only what it uses.
_ROUTERS: dict[str, str] = {
    "random": "routers.baselines:RandomRouter",
    "cheapest": "routers.baselines:CheapestRouter",
    "strongest": "routers.baselines:StrongestRouter",
    "fixed": "routers.baselines:FixedRouter",
    "knn": "routers.knn:KNNRouter",
    "cluster": "routers.cluster:ClusterRouter",
    "classifier": "routers.classifier:ClassifierRouter",
    "bandit": "routers.bandit:LinUCBRouter",
    "policy": "routers.rl_policy:PolicyRouter",
    "domain": "routers.domain:DomainRouter",
    "stacked": "routers.stacked:StackedRouter",
}


def available_routers() -> list[str]:
    """Names of every registered router."""
    return sorted(_ROUTERS)


def router_class(name: str) -> type[Router]:
    """The class registered under ``name``."""
    try:
        module_name, class_name = _ROUTERS[name].split(":")
    except KeyError:
        raise RouterError(f"unknown router type {name!r}; known: {', '.join(available_routers())}") from None
    return getattr(importlib.import_module(module_name), class_name)


def checked_class(name: str, params: dict[str, Any]) -> type[Router]:
    """The class registered under ``name``, after checking it takes every hyperparameter in ``params``."""
    cls = router_class(name)
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        raise RouterError(f"{name} has no hyperparameter(s) {unknown}; it takes {cls._param_names()}")
    return cls


def make_router(name: str, **params: Any) -> Router:
    """Instantiate the router registered under ``name`` with hyperparameters ``params``."""
    return checked_class(name, params)(**params)
