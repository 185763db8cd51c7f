"""Claim checks: what a lesson says about its numbers is checked against its own outputs.

A notebook that writes "FGSM training collapses" or "GCE-AT is as robust as PGD-AT" calls
``expect`` with the measured values right after computing them. The student sees one line per
claim::

    ✓ FGSM-AT collapsed: PGD-20 accuracy 1.3 % < 10 %

and, when their own run (another seed, a GPU, another profile) does not show it::

    ✗ expected: FGSM-AT collapsed: PGD-20 accuracy 1.3 % < 10 %; measured: PGD-20 accuracy 24.0 %.
      Why it may differ: ...

The notebook goes on. The course's tests run every notebook with ``ROBUSTVIZ_STRICT_CLAIMS=1``,
where a failed claim raises ``ClaimFailed``: the prose can no longer drift from its outputs.

Example:
    >>> expect(0.013 < 0.10, "FGSM-AT collapsed", "PGD-20 accuracy 1.3 % < 10 %")
    ✓ FGSM-AT collapsed: PGD-20 accuracy 1.3 % < 10 %
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass

STRICT_ENV = "ROBUSTVIZ_STRICT_CLAIMS"
PASS, FAIL = "✓", "✗"


class ClaimFailed(AssertionError):
    """A lesson's claim did not hold in strict mode (the course tests)."""


@dataclass(frozen=True)
class Claim:
    """One checked statement: the claim, whether it held, what was measured, why it may not hold."""

    claim: str
    held: bool
    measured: str = ""
    why: str = ""

    def __str__(self) -> str:
        if self.held:
            return f"{PASS} {self.claim}" + (f": {self.measured}" if self.measured else "")
        text = f"{FAIL} expected: {self.claim}" + (f"; measured: {self.measured}" if self.measured else "")
        return text + (f".\n  Why it may differ: {self.why}" if self.why else ".")


CHECKED: list[Claim] = []  # every claim checked in this process, in order (the course tests read it)


def expect(held: bool, claim: str, measured: str = "", why: str = "") -> bool:
    """Check one claim of a lesson, print the verdict, and return whether it held.

    Args:
        held: the outcome of the check (a comparison of measured values).
        claim: the statement as the lesson makes it, e.g. ``"FGSM-AT collapsed"``.
        measured: the numbers behind the verdict, e.g. ``"PGD-20 accuracy 1.3 % < 10 %"``.
        why: for a student's run where it does not hold: what could explain it (budget,
            seed, profile) and what to change.

    Raises:
        ClaimFailed: when the claim does not hold and ``ROBUSTVIZ_STRICT_CLAIMS`` is set.
    """
    result = Claim(claim, bool(held), measured, why)
    CHECKED.append(result)
    print(result)
    if not result.held and os.environ.get(STRICT_ENV, "") not in ("", "0"):
        raise ClaimFailed(str(result))
    return result.held
