"""The canary check: a promoted candidate first serves a share of the profile's requests (routing
draws the arm by a hash of the request id, see services.routing.canary_arm), and goes live only
when its realised grades are not worse than the live router's on the same traffic.

Both arms are graded the same way: a shadowed request has its live answer graded (the shadow job
grades it even when the policy wanted no other expert), and ``observe`` gets the realised utility
(grade minus the profile's cost weight times the expert's normalised price) with the arm that chose
it. Once each arm has ``min_graded`` grades, the canary passes when its mean utility is at most
``z`` standard errors (Welch) below the live arm's: the gate already showed a gain out of sample,
the canary checks it holds on real traffic and grades.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CanaryVerdict:
    passed: bool
    gain: float          # canary mean utility minus live mean utility
    se: float
    graded: dict[str, int]

    def as_dict(self) -> dict:
        return {"passed": self.passed, "gain": round(self.gain, 6), "se": round(self.se, 6), "graded": self.graded}


class CanaryCheck:
    """Realised utilities of the two arms while a canary runs (in memory, per replica)."""

    def __init__(self, min_graded: int, z: float):
        self.min_graded, self.z = int(min_graded), float(z)
        self.utilities: dict[str, list[float]] = {"canary": [], "live": []}
        self.trial: str | None = None  # the canary artifact these grades belong to

    def reset(self) -> None:
        self.utilities = {"canary": [], "live": []}

    def observe(self, arm: str, utility: float, trial: str | None = None) -> None:
        """``trial`` names the canary on trial: grades of an earlier one (ended by a revert, the CLI
        or another replica) never count for the next."""
        if trial != self.trial:
            self.reset()
            self.trial = trial
        if arm in self.utilities and math.isfinite(utility):
            self.utilities[arm].append(float(utility))

    def verdict(self) -> CanaryVerdict | None:
        """None until both arms have ``min_graded`` grades."""
        c, live = np.asarray(self.utilities["canary"]), np.asarray(self.utilities["live"])
        if len(c) < self.min_graded or len(live) < self.min_graded:
            return None
        gain = float(c.mean() - live.mean())
        se = float(math.sqrt(c.var(ddof=1) / len(c) + live.var(ddof=1) / len(live)))
        return CanaryVerdict(gain >= -self.z * se, gain, se, {"canary": len(c), "live": len(live)})
