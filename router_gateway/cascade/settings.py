"""The ``cascade:`` block of a profile in experts.yaml.

    profiles:
      careful:
        router: knn
        cascade:
          verifier: logprob          # logprob | consistency | learned | judge
          threshold: 0.55            # accept a tier's answer when its confidence >= threshold
          # or: calibrate: {rows: path/to/rows.csv, quality_floor: 0.9}  (or escalation_share: 0.3)
          max_tiers: 2
          first_tier: cheapest-above-floor   # or router-at-higher-cost-weight
          floor: 0.5                 # predicted score the first tier must clear
          first_tier_cost_weight_factor: 4.0
          stream_first_tier: false   # true: stream tier 1 unverified (no escalation for streams)
          samples: 5                 # consistency: n
          artifact: path             # learned: verifier artifact directory
          judge: expert-name         # judge: the expert asked
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Calibration(BaseModel):
    """Labelled rows (CSV with ``confidence`` and ``correct`` columns) and the target to reach."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rows: str
    quality_floor: float | None = Field(default=None, ge=0, le=1)
    escalation_share: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_target(self) -> "Calibration":
        if (self.quality_floor is None) == (self.escalation_share is None):
            raise ValueError("give exactly one of quality_floor or escalation_share")
        return self


class CascadeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    verifier: Literal["logprob", "consistency", "learned", "judge"] = "logprob"
    threshold: float | None = Field(default=None, ge=0, le=1)
    calibrate: Calibration | None = None
    max_tiers: int = Field(default=2, ge=1, le=5)
    first_tier: Literal["cheapest-above-floor", "router-at-higher-cost-weight"] = "cheapest-above-floor"
    floor: float = Field(default=0.5, ge=0, le=1)
    first_tier_cost_weight_factor: float = Field(default=4.0, ge=1, le=1000)
    stream_first_tier: bool = False
    samples: int = Field(default=5, ge=2, le=32)
    artifact: str | None = None
    judge: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> "CascadeSettings":
        if self.threshold is None and self.calibrate is None:
            raise ValueError("give a threshold or a calibrate block")
        if self.verifier == "learned" and not self.artifact:
            raise ValueError("verifier learned needs artifact: <directory>")
        if self.verifier == "judge" and not self.judge:
            raise ValueError("verifier judge needs judge: <expert>")
        return self
