"""Unit tests of the cascade's parts: answer features, verifiers, calibration, the learned artifact."""
from __future__ import annotations

import math

import numpy as np
import pytest

from router_gateway.cascade.answer_features import (
    FEATURE_NAMES,
    check_annotations,
    check_inline,
    features,
    normalise_final,
    safe_eval,
)
from router_gateway.cascade.calibrate import threshold_for_quality, threshold_for_share
from router_gateway.cascade.judge import judge_confidence
from router_gateway.cascade.learned import LearnedVerifier, train_learned_verifier
from router_gateway.cascade.logistic import fit_logistic
from router_gateway.cascade.runner import plan_tiers
from router_gateway.cascade.settings import CascadeSettings
from router_gateway.cascade.verifiers import (
    CheckContext,
    ConsistencyVerifier,
    LogprobVerifier,
    strip_extras,
)
from router_gateway.routing.service import Candidate


def test_annotations_are_recomputed():
    right = "3 x 60 = <<3*60=180>>180 meters. #### 180"
    wrong = "0.40 * 9 * 1040 = $<<0.40*9*1040=3760>>3760 #### 3760"
    assert check_annotations(right) == (1, 0)
    assert check_annotations(wrong) == (1, 1)
    assert check_inline("so 12 + 30 = 42 and 7 * 6 = 43") == (2, 1)


def test_safe_eval_only_does_arithmetic():
    assert safe_eval("2*(3+4)") == 14.0
    assert safe_eval("1,200 / 4") == 300.0
    assert safe_eval("__import__('os').system('true')") is None
    assert safe_eval("9**999999") is None


def test_final_answer_normalisation():
    assert normalise_final("so the total is $1,200.00\n#### 1,200") == "1200"
    assert normalise_final("The answer is \\boxed{B}.") == "B"
    assert normalise_final("") is None


def test_feature_vector_shape_and_wrong_step_flag():
    f = features("Tom has 3 apples and buys 4.", "3 + 4 = <<3+4=8>>8\n#### 8")
    assert f.shape == (len(FEATURE_NAMES),)
    assert f[FEATURE_NAMES.index("any_wrong")] == 1.0
    assert f[FEATURE_NAMES.index("prompt_numbers_share")] == 1.0


def test_logprob_verifier_mean_and_low_quantile():
    response = {"choices": [{"message": {"content": "x"},
                             "logprobs": {"content": [{"token": "a", "logprob": -0.1}] * 9
                                          + [{"token": "b", "logprob": -5.0}]}}]}
    check = LogprobVerifier().check("q", response, CheckContext())
    mean, low = (9 * -0.1 - 5.0) / 10, float(np.quantile([-0.1] * 9 + [-5.0], 0.1))
    assert check.confidence == pytest.approx(math.exp(0.5 * (mean + low)))
    assert LogprobVerifier().check("q", {"choices": [{"message": {"content": "x"}}]}, CheckContext()).confidence == 0


def test_consistency_verifier_majority_of_final_answers():
    texts = ["so #### 42", "I get 42.", "the answer is 41", "#### 42.0", "maybe 7"]
    response = {"choices": [{"index": i, "message": {"content": t}} for i, t in enumerate(texts)]}
    check = ConsistencyVerifier(samples=5).check("q", response, CheckContext())
    assert check.confidence == pytest.approx(3 / 5)
    assert check.choice == 0
    assert ConsistencyVerifier().upstream_params({"temperature": 0}) == {"n": 5, "temperature": 0.7}


def test_strip_extras_keeps_what_the_client_asked_for():
    response = {"choices": [{"index": 0, "message": {"content": "a"}, "logprobs": {"content": []}},
                            {"index": 1, "message": {"content": "b"}, "logprobs": {"content": []}}]}
    out = strip_extras(response, {"messages": []}, choice=1)
    assert out["choices"] == [{"index": 0, "message": {"content": "b"}}]
    kept = strip_extras(response, {"n": 2, "logprobs": True}, choice=1)
    assert kept["choices"] == response["choices"]


def test_calibration_targets():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([1, 1, 1, 0, 1, 0])
    assert threshold_for_quality(conf, right, 1.0, min_accepted=1) == 0.7
    assert threshold_for_quality(conf, right, 0.8, min_accepted=1) == 0.5
    assert threshold_for_quality(conf, right, 1.0, min_accepted=4) == math.inf
    assert threshold_for_share(np.linspace(0, 1, 101), 0.3) == pytest.approx(0.3)


def test_judge_confidence_from_first_token_logprobs():
    top = [{"token": "Yes", "logprob": math.log(0.6)}, {"token": "No", "logprob": math.log(0.2)}]
    response = {"choices": [{"message": {"content": "Yes"}, "logprobs": {"content": [{"top_logprobs": top}]}}]}
    assert judge_confidence(response) == pytest.approx(0.75)
    assert judge_confidence({"choices": [{"message": {"content": "no."}}]}) == 0.0


def test_plan_tiers_cheapest_above_floor_then_router_order():
    cands = [Candidate("big", 0.9, 3.0, 0.9), Candidate("mid", 0.7, 1.0, 0.7), Candidate("small", 0.3, 0.1, 0.3)]
    settings = CascadeSettings(threshold=0.5, floor=0.5, max_tiers=2)
    assert plan_tiers(cands, settings, 0.1) == ["mid", "big"]
    settings = CascadeSettings(threshold=0.5, first_tier="router-at-higher-cost-weight",
                               first_tier_cost_weight_factor=100, max_tiers=3)
    assert plan_tiers(cands, settings, 0.1) == ["small", "big", "mid"]


def test_logistic_learns_a_separable_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] > 0).astype(float)
    p = fit_logistic(X, y, l2=1.0).predict(X)
    assert np.mean((p > 0.5) == (y > 0.5)) > 0.95


def test_learned_verifier_artifact_round_trip(tmp_path):
    prompts = [f"Tom has {i} apples and buys {i + 1}." for i in range(60)]
    answers = [f"{i} + {i + 1} = <<{i}+{i + 1}={2 * i + 1 + (i % 2)}>>{2 * i + 1 + (i % 2)}\n#### {2 * i + 1}"
               for i in range(60)]
    labels = np.array([float(i % 2 == 0) for i in range(60)])  # odd rows carry a wrong annotation
    verifier = train_learned_verifier(prompts, answers, labels, np.arange(60) % 5,
                                      router_scores=np.full(60, 0.6), meta={"expert": "cheap"})
    loaded = LearnedVerifier.load(verifier.save(tmp_path / "v"))
    response = {"choices": [{"message": {"content": answers[1]}}]}
    good = {"choices": [{"message": {"content": answers[2]}}]}
    ctx = CheckContext("cheap", 0.6)
    assert loaded.check(prompts[2], good, ctx).confidence > 0.5 > loaded.check(prompts[1], response, ctx).confidence
    assert loaded.inputs == ("features", "router_score")


def test_train_verifier_from_logged_answers(tmp_path):
    import orjson

    from router_gateway.cli import main

    logs = tmp_path / "logs.jsonl"
    with open(logs, "wb") as f:
        for i in range(40):
            wrong = i % 2
            answer = f"{i} + 1 = <<{i}+1={i + 1 + wrong}>>{i + 1 + wrong}\n#### {i + 1 + wrong}"
            rec = {"request_id": f"r{i}", "prompt": f"What is {i} + 1?", "chosen_expert": "cheap",
                   "cascade": {"answers": {"cheap": answer}}, "feedback": {"score": 1.0 - wrong}}
            f.write(orjson.dumps(rec) + b"\n")
        f.write(orjson.dumps({"request_id": "other", "chosen_expert": "big", "feedback": None}) + b"\n")
    assert main(["train-verifier", "--from-logs", str(logs), "--expert", "cheap", "--out", str(tmp_path / "v")]) == 0
    verifier = LearnedVerifier.load(tmp_path / "v")
    assert verifier.meta["n_rows"] == 40 and verifier.meta["source"] == "logs"
    good = {"choices": [{"message": {"content": "5 + 1 = <<5+1=6>>6\n#### 6"}}]}
    bad = {"choices": [{"message": {"content": "5 + 1 = <<5+1=7>>7\n#### 7"}}]}
    assert verifier.check("What is 5 + 1?", good, CheckContext()).confidence > \
        verifier.check("What is 5 + 1?", bad, CheckContext()).confidence


class _FakeForwarder:
    """Answers per expert name; a judge expert answers 'no' with first-token logprobs."""

    def __init__(self, texts: dict[str, str]):
        self.texts, self.calls = texts, []

    async def forward(self, candidates, body, stream, deadline):
        import orjson

        from router_gateway.forwarding.result import ForwardResult

        name = candidates[0]
        self.calls.append((name, body))
        choice = {"index": 0, "message": {"role": "assistant", "content": self.texts[name]}}
        if name == "judge":
            top = [{"token": "no", "logprob": math.log(0.9)}, {"token": "yes", "logprob": math.log(0.1)}]
            choice["logprobs"] = {"content": [{"token": "no", "logprob": math.log(0.9), "top_logprobs": top}]}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        return ForwardResult(name, 200, [], body=orjson.dumps({"choices": [choice], "usage": usage}), usage=usage)


async def test_judge_verdict_escalates_and_the_judge_is_charged():
    from router_gateway.cascade.judge import JudgeVerifier
    from router_gateway.cascade.runner import run_cascade

    fwd = _FakeForwarder({"small": "#### 5", "big": "#### 4", "judge": "no"})

    async def ask(body):
        import orjson
        return orjson.loads((await fwd.forward(["judge"], body, False, 0)).body)

    result = await run_cascade(fwd, ["small", "big"], {"messages": []}, "2+2?", JudgeVerifier("judge", ask), 0.5,
                               {}, deadline=1e18, price=lambda expert, usage: 1.0)
    assert [(t.expert, t.outcome) for t in result.tiers] == [("small", "escalated"), ("judge", "judge"),
                                                             ("big", "final")]
    assert result.tiers[0].confidence == pytest.approx(0.1)
    assert result.cost_usd == 3.0 and result.usage["completion_tokens"] == 15
    assert [name for name, _ in fwd.calls] == ["small", "judge", "big"]


def test_config_refuses_a_cascade_judge_that_is_not_an_expert(tmp_path):
    from router_gateway.domain.config import ConfigError, load_config

    path = tmp_path / "experts.yaml"
    path.write_text("experts:\n  a: {base_url: http://127.0.0.1:1/v1, model: a, price: {input_per_mtok: 1, "
                    "output_per_mtok: 1}}\nrouters: {r: {type: cheapest}}\nprofiles:\n  p:\n    router: r\n"
                    "    cascade: {verifier: judge, judge: nobody, threshold: 0.5}\n")
    with pytest.raises(ConfigError, match="cascade.judge: unknown expert 'nobody'"):
        load_config(path)
    path.write_text(path.read_text().replace("verifier: judge, judge: nobody", "verifier: learned"))
    with pytest.raises(ConfigError, match="learned needs artifact"):
        load_config(path)
