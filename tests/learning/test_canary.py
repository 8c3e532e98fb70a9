"""Canary promotion: the candidate serves a share of the profile's traffic first and goes live only
when the canary check on realised grades confirms; revert stops it (real routers, SQLite, fakes)."""
from __future__ import annotations

import numpy as np

from router_gateway.domain.config import Profile, ProfileCanary
from router_gateway.learning.canary import CanaryCheck
from router_gateway.learning.loop import LearningLoop
from router_gateway.learning.promote import ArtifactPromoter, read_pointer
from router_gateway.learning.service import canary_router_name, overlay
from router_gateway.learning.settings import (
    CanarySettings,
    GateSettings,
    LearningSettings,
    PromoteSettings,
    RetrainSettings,
)
from router_gateway.learning.store import LabelStore
from router_gateway.routing.service import canary_arm
from routers.baselines import StrongestRouter
from tests.support.learning_data import EXPERTS, NORM_COST, fill, topic_data


def canary_loop(tmp_path, store, share=0.2):
    swaps = []
    settings = LearningSettings(
        retrain=RetrainSettings(router="knn", params={"k": 10}, every_labels=50, min_labels=50, folds=5),
        promote=PromoteSettings(gate=GateSettings(min_rows=20, z=1.0, confirm=1), artifacts=str(tmp_path / "art"),
                                canary=CanarySettings(share=share, min_graded=5)))
    baseline = StrongestRouter.from_priors(EXPERTS, [0.3, 0.3, 0.4], 16)
    promoter = ArtifactPromoter(tmp_path / "art", EXPERTS, {"name": "test", "dim": 16}, baseline, on_swap=swaps.append)
    return LearningLoop(settings, store, EXPERTS, NORM_COST, 0.0, promoter), promoter, swaps


def test_a_passing_candidate_goes_on_trial_not_live(tmp_path):
    store = LabelStore(tmp_path / "log.db")
    X, Y = topic_data(300)
    fill(store, X, Y)
    loop, promoter, swaps = canary_loop(tmp_path, store)
    loop.labels_added(300)
    out = loop.retrain()
    assert out.gate.passed and out.promoted is None and out.canary
    pointer = read_pointer(tmp_path / "art")
    assert pointer["current"] is None and pointer["canary"] == out.canary  # the live router did not change
    assert promoter.live is promoter.baseline and swaps == [None]  # the swap adds the canary beside it
    assert store.events("canary")[0]["artifact"] == out.canary
    again = loop.retrain()  # a second passing candidate does not replace the one on trial
    assert again.canary is None and again.promoted is None and read_pointer(tmp_path / "art")["canary"] == out.canary
    # the check confirms: the canary is live, the previous live router is kept for revert
    assert promoter.end_canary(promote=True) == out.canary
    loop.canary_ended(True)
    assert read_pointer(tmp_path / "art") == {"current": out.canary, "history": [], "version": 1, "canary": None}
    assert loop.live_trained and promoter.live is not promoter.baseline
    store.close()


def test_revert_stops_the_canary_and_keeps_the_live_router(tmp_path):
    store = LabelStore(tmp_path / "log.db")
    X, Y = topic_data(300)
    fill(store, X, Y)
    loop, promoter, _ = canary_loop(tmp_path, store)
    loop.labels_added(300)
    live = loop.retrain(promote=True).promoted  # by hand: straight to live, no canary
    assert live and promoter.canary is None
    trial = promoter.start_canary(loop.candidate, {"by": "test"})  # (the loop's path: the test above)
    assert trial and promoter.canary == trial
    assert promoter.revert() == live  # stops the canary only
    assert read_pointer(tmp_path / "art")["canary"] is None and read_pointer(tmp_path / "art")["current"] == live
    assert promoter.revert() is None  # the next revert steps the live router back
    store.close()


def test_another_replica_follows_a_canary_start(tmp_path):
    seen = []
    baseline = StrongestRouter.from_priors(EXPERTS, [0.3, 0.3, 0.4], 16)
    promoter = ArtifactPromoter(tmp_path / "art", EXPERTS, {"name": "t", "dim": 16}, baseline,
                                on_swap=seen.append)
    assert promoter.adopt({"current": None, "history": [], "version": 1, "canary": "somewhere/v0001"})
    assert seen == [None] and promoter.canary == "somewhere/v0001"
    assert not promoter.adopt({"current": None, "history": [], "version": 1, "canary": "somewhere/v0001"})


def test_canary_check_waits_then_passes_a_not_worse_canary_and_fails_a_worse_one():
    rng = np.random.default_rng(0)
    good = CanaryCheck(min_graded=30, z=1.0)
    for _ in range(29):
        good.observe("canary", rng.normal(0.6, 0.2))
        good.observe("live", rng.normal(0.5, 0.2))
    assert good.verdict() is None  # not enough grades on each arm yet
    good.observe("canary", 0.6)
    good.observe("live", 0.5)
    assert good.verdict().passed and good.verdict().gain > 0
    bad = CanaryCheck(min_graded=30, z=1.0)
    for _ in range(30):
        bad.observe("canary", rng.normal(0.3, 0.2))
        bad.observe("live", rng.normal(0.6, 0.2))
    verdict = bad.verdict()
    assert not verdict.passed and verdict.gain < -verdict.se


def test_routing_draws_the_canary_arm_by_request_id_with_its_probability():
    profile = Profile(router="live", canary=ProfileCanary(router="trial", share=0.2))
    arms = [canary_arm(profile, f"req-{i}") for i in range(5000)]
    on_trial = [p for name, p in arms if name == "trial"]
    assert 0.17 < len(on_trial) / len(arms) < 0.23
    assert set(on_trial) == {0.2} and {p for name, p in arms if name == "live"} == {0.8}
    assert canary_arm(profile, "req-7") == canary_arm(profile, "req-7")  # the same request, the same arm
    assert canary_arm(Profile(router="live"), "req-1") == ("live", 1.0)


def test_overlay_puts_the_canary_beside_the_live_router_and_removes_it():
    from router_gateway.domain.config import parse_config
    config = parse_config("experts:\n  a: {base_url: http://x/v1, model: a, price: {input_per_mtok: 1, output_per_mtok: 1}}\n"
                          "  b: {base_url: http://x/v1, model: b, price: {input_per_mtok: 2, output_per_mtok: 2}}\n"
                          "routers: {strong: {type: strongest}}\nprofiles: {auto: {router: strong}}\n")
    on = overlay(config, "auto", "strong", None, "knn", "art/v0002", 0.1)
    assert on.profiles["auto"].router == "strong"
    assert on.profiles["auto"].canary == ProfileCanary(router=canary_router_name("auto"), share=0.1)
    assert on.routers[canary_router_name("auto")].artifact == "art/v0002"
    off = overlay(on, "auto", "strong", "art/v0002", "knn")
    assert off.profiles["auto"].canary is None and canary_router_name("auto") not in off.routers
    assert off.profiles["auto"].router == "learned:auto"


def test_grades_of_an_earlier_canary_never_count_for_the_next():
    check = CanaryCheck(min_graded=3, z=1.0)
    for _ in range(3):
        check.observe("canary", 0.9, "art/v0001")
        check.observe("live", 0.5, "art/v0001")
    assert check.verdict().passed
    check.observe("canary", 0.1, "art/v0002")  # v0001 ended without this replica's check deciding it
    assert check.verdict() is None and check.utilities == {"canary": [0.1], "live": []}
