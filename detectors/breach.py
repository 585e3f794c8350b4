"""Breached password: a login succeeded with a password found in a breach corpus.

The password itself never reaches detection: where ``authenticate()`` runs,
``tracking.enrich.breach`` checks it (k-anonymity range API or a local hash file) and the
recorded login carries only the ``breached_password`` tag (``Observation.tags``). This detector
turns that tag on a successful login into an explained finding weighed in the risk score (by
default not enough to flag alone: the password is weak, the login may still be the owner's).
"""

from __future__ import annotations

from detectors.base import Context, Detector, Finding, Observation, check_number
from detectors.profile import UserProfile

TAG = "breached_password"


class BreachedPassword(Detector):
    name = "breached_password"
    tag = TAG

    def __init__(self, weight: float = 0.6, flag: bool = False) -> None:
        self.weight = weight
        self.flag = flag

    def validate(self) -> None:
        check_number("weight", self.weight, low=0, high=1)
        if not isinstance(self.flag, bool):
            raise ValueError(f"flag must be True or False, got {self.flag!r}")

    def score(
        self, event: Observation, profile: UserProfile | None, context: Context
    ) -> list[Finding]:
        if TAG not in event.tags or event.failed:
            return []
        return [
            Finding(
                detector=self.name,
                tag=self.tag,
                score=self.weight,
                severity="medium",
                reason="Signed in with a password found in a breach corpus (Pwned Passwords)",
                evidence={"source": "k-anonymity range check at login"},
                flag=self.flag,
            )
        ]
