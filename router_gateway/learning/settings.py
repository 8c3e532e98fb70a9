"""The ``learning:`` section of experts.yaml (strict, like the rest of the config).

Cross-references (the profile, shadow experts, the judge) are checked by ``check_learning`` from the
config's phase-2 resolution.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShadowSettings(_Strict):
    """Which requests are answered again, by whom, and how much that may cost."""

    sample: float = Field(default=0.1, ge=0, le=1)        # share of the profile's requests considered
    experts: tuple[str, ...] = ()                         # who may answer in shadow; empty = all
    policy: Literal["value", "random"] = "value"          # value: value of a label per dollar
    max_experts: int = Field(default=0, ge=0, le=64)      # shadow answers per prompt at most; 0: no cap
    explore: float = Field(default=0.2, ge=0, le=1)       # value policy: share shadowed whatever their value
    usd_per_day: float = Field(default=1.0, ge=0)         # hard cap on shadow answers + grading, per UTC day
    max_share: float = Field(default=0.25, ge=0, le=10)   # shadow spend <= this share of live spend
    concurrency: int = Field(default=2, ge=1, le=256)     # shadow calls in flight
    queue: int = Field(default=256, ge=1, le=100000)      # pending shadow jobs; more are dropped
    max_tokens: int = Field(default=256, ge=1)            # for shadow answers
    store_answers: bool = False                           # keep answer texts (needed to re-grade)


class JudgeSettings(_Strict):
    """An expert from experts.yaml that grades answers (see learning.judge for the prompt)."""

    expert: str
    mode: Literal["absolute", "pairwise"] = "absolute"
    reference_expert: str | None = None   # pairwise: every answer is compared with this expert's
    max_tokens: int = Field(default=8, ge=1, le=1024)
    regrade: int = Field(default=0, ge=0, le=8)     # extra calls for a surprising grade (learning.regrade)
    surprise: float = Field(default=0.5, ge=0, le=1)  # |grade - candidate's prediction| that counts as surprising


class ReferenceSettings(_Strict):
    """A labelled prompt set (CSV with prompt, reference) graded by matching."""

    path: str
    match: Literal["exact", "normalised", "numeric", "auto"] = "auto"


class GraderSettings(_Strict):
    """Which graders score shadow answers; several may be listed (see learning.labels for merging)."""

    kinds: tuple[Literal["judge", "reference", "feedback"], ...] = ("judge",)
    judge: JudgeSettings | None = None
    reference: ReferenceSettings | None = None


class RetrainSettings(_Strict):
    """The candidate router: its type and hyperparameters, and when it is retrained."""

    router: str = "knn"
    # shrinkage: each expert's neighbourhood mean is pulled to its global mean with this many pseudo-labels;
    # partial labels leave few graded neighbours per expert, and a noisy judge's flips then swing the
    # choice (ten-seed replay, 10% of grades flipped: 0.189 with 2, 0.229 with 5, 0.232 with 10)
    params: dict[str, Any] = Field(default_factory=lambda: {"k": 80, "shrinkage": 10.0})
    every_labels: int = Field(default=100, ge=1)
    every_minutes: float = Field(default=60.0, gt=0)
    min_labels: int = Field(default=50, ge=1)
    folds: int = Field(default=5, ge=2, le=20)            # cross-fitting folds for the gate (learning.loop)


class GateSettings(_Strict):
    """Promote when the candidate, on held-out labelled prompts (per-prompt utility at cost weights up
    to ``max_weight``), is not worse than the live router (paired: gain + ``z`` se > ``min_gain``) and
    beats ``controls`` copies of its recipe trained on shuffled labels by ``null_z`` of their sd (a
    permutation test), on at least ``min_rows`` prompts, ``confirm`` retrains in a row (learning.gate,
    learning.loop)."""

    min_gain: float = 0.0
    z: float = Field(default=1.0, ge=0)     # not worse than the live router by more than z standard errors
    min_rows: int = Field(default=100, ge=1)  # held-out labelled prompts the gate needs
    max_weight: float = Field(default=0.05, ge=0)  # judged at cost weights 0..max(this, the profile's)
    controls: int = Field(default=20, ge=0, le=200)  # shuffled-label controls per retrain (0: no permutation test)
    null_z: float = Field(default=2.33, ge=0)  # the candidate's lead over the controls, in their sd
    # the same on the residual statistic (signal residual / either): its null has a heavier tail, and a
    # second chance to pass must not let shuffled labels through more often (eval.gate_false_pass)
    residual_null_z: float = Field(default=3.0, ge=0)
    signal: Literal["decisions", "residual", "either"] = "either"  # what the lead over the controls is measured on
    confirm: int = Field(default=2, ge=1)  # first automatic promotion: after this many passing retrains in a row
    refresh_z: float | None = Field(default=1.0, ge=0)  # refit of the live learned router: not worse by z se
    ope_min_ess: float = Field(default=30.0, ge=1)  # logged-traffic veto needs this much support (learning.ope_check)

    @field_validator("controls")
    @classmethod
    def _controls_give_a_spread(cls, v: int) -> int:
        if v == 1:  # one control has no standard deviation to measure the candidate's lead in
            raise ValueError("controls: 0 (no permutation test) or at least 2")
        return v


class CanarySettings(_Strict):
    """Before an automatic promotion, the candidate serves ``share`` of the profile's requests; it goes
    live when its realised grades are not worse than the live router's (learning.canary)."""

    share: float = Field(default=0.0, ge=0, le=0.5)   # 0: promote at once when the gate passes
    min_graded: int = Field(default=30, ge=2)          # graded requests per arm before the check decides
    z: float = Field(default=1.0, ge=0)                # fails when z standard errors worse than live


class PromoteSettings(_Strict):
    """Where candidates are written and what a promotion must pass."""

    auto: bool = True
    gate: GateSettings = GateSettings()
    artifacts: str = "var/learning"
    canary: CanarySettings = CanarySettings()


class ReplicaSettings(_Strict):
    """With Redis: every replica's label rows reach the replica that retrains (learning.replicas)."""

    share_labels: bool = True
    stream_max_rows: int = Field(default=20000, ge=100, le=10_000_000)  # rows kept in Redis (~2 KB each)


class LearningSettings(_Strict):
    """Labels from live traffic for one profile's router."""

    profile: str = "auto"
    shadow: ShadowSettings = ShadowSettings()
    grader: GraderSettings = GraderSettings()
    retrain: RetrainSettings = RetrainSettings()
    promote: PromoteSettings = PromoteSettings()
    replicas: ReplicaSettings = ReplicaSettings()


def check_learning(learning: LearningSettings, experts: dict, profiles: dict) -> None:
    """Phase 2: every name in ``learning`` exists; raises ValueError with the key path."""
    if learning.profile not in profiles:
        raise ValueError(f"learning.profile: unknown profile {learning.profile!r}")
    for name in learning.shadow.experts:
        if name not in experts:
            raise ValueError(f"learning.shadow.experts: unknown expert {name!r}")
    grader = learning.grader
    if "judge" in grader.kinds:
        if grader.judge is None:
            raise ValueError("learning.grader.judge: required when kinds lists judge")
        for who in (grader.judge.expert, grader.judge.reference_expert):
            if who is not None and who not in experts:
                raise ValueError(f"learning.grader.judge: unknown expert {who!r}")
        if grader.judge.mode == "pairwise" and not grader.judge.reference_expert:
            raise ValueError("learning.grader.judge.reference_expert: required for pairwise mode")
    if "reference" in grader.kinds and grader.reference is None:
        raise ValueError("learning.grader.reference: required when kinds lists reference")
    from routers.registry import available_routers
    if learning.retrain.router not in available_routers():
        raise ValueError(f"learning.retrain.router: unknown router type {learning.retrain.router!r}")


def absolute_paths(learning: LearningSettings, base_dir) -> LearningSettings:
    """The artifacts folder and the reference set resolve against experts.yaml's folder."""
    promote = learning.promote.model_copy(update={"artifacts": str((base_dir / learning.promote.artifacts).resolve())})
    grader = learning.grader
    if grader.reference is not None:
        ref = grader.reference.model_copy(update={"path": str((base_dir / grader.reference.path).resolve())})
        grader = grader.model_copy(update={"reference": ref})
    return learning.model_copy(update={"promote": promote, "grader": grader})
