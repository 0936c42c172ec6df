"""CVSS base scores from vector strings, and the severity band of a score.

OSV advisories carry severity as CVSS vectors (``CVSS:3.1/AV:N/AC:L/...``), not numbers,
so the score is computed here with the formulas of the CVSS v3.1 and v2 specifications.
CVSS v4 scores need the specification's large lookup tables and are not computed; an
advisory with only a v4 vector falls back to its other severity hints.
"""

from __future__ import annotations

import math

# CVSS v3.x metric weights (specification section 7.4).
_V3_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_V3_AC = {"L": 0.77, "H": 0.44}
_V3_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_V3_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_V3_UI = {"N": 0.85, "R": 0.62}
_V3_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}

# CVSS v2 metric weights (specification section 3.2.1).
_V2_AV = {"L": 0.395, "A": 0.646, "N": 1.0}
_V2_AC = {"H": 0.35, "M": 0.61, "L": 0.71}
_V2_AU = {"M": 0.45, "S": 0.56, "N": 0.704}
_V2_CIA = {"N": 0.0, "P": 0.275, "C": 0.660}


def _metrics(parts: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition(":")
        if sep:
            found[key] = value
    return found


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup: smallest one-decimal number >= value, float-safe."""
    as_int = round(value * 100_000)
    if as_int % 10_000 == 0:
        return as_int / 100_000.0
    return (math.floor(as_int / 10_000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """Base score of a ``CVSS:3.0/...`` or ``CVSS:3.1/...`` vector; ValueError if malformed."""
    parts = vector.strip().split("/")
    if not parts[0].startswith("CVSS:3"):
        raise ValueError(f"not a CVSS v3 vector: {vector!r}")
    m = _metrics(parts[1:])
    try:
        changed = m["S"] == "C"
        pr_table = _V3_PR_CHANGED if changed else _V3_PR_UNCHANGED
        exploitability = 8.22 * _V3_AV[m["AV"]] * _V3_AC[m["AC"]] * pr_table[m["PR"]]
        exploitability *= _V3_UI[m["UI"]]
        iss = 1 - (1 - _V3_CIA[m["C"]]) * (1 - _V3_CIA[m["I"]]) * (1 - _V3_CIA[m["A"]])
    except KeyError as exc:
        raise ValueError(f"incomplete CVSS v3 vector {vector!r}: {exc}") from None
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    if impact <= 0:
        return 0.0
    total = impact + exploitability
    if changed:
        total *= 1.08
    return _roundup(min(total, 10.0))


def cvss2_base_score(vector: str) -> float:
    """Base score of a CVSS v2 vector (``AV:N/AC:L/Au:N/C:P/I:P/A:P``)."""
    m = _metrics(vector.strip().removeprefix("(").removesuffix(")").split("/"))
    try:
        impact = 10.41 * (1 - (1 - _V2_CIA[m["C"]]) * (1 - _V2_CIA[m["I"]]) * (1 - _V2_CIA[m["A"]]))
        exploitability = 20 * _V2_AV[m["AV"]] * _V2_AC[m["AC"]] * _V2_AU[m["Au"]]
    except KeyError as exc:
        raise ValueError(f"incomplete CVSS v2 vector {vector!r}: {exc}") from None
    f_impact = 0.0 if impact == 0 else 1.176
    return round((0.6 * impact + 0.4 * exploitability - 1.5) * f_impact, 1)


def score_band(score: float) -> str:
    """CVSS qualitative rating; "none" (0.0) is reported as "low"."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def vector_score(kind: str, score: str) -> float | None:
    """Score of one OSV ``severity`` entry (``type``, ``score``), or None if unknown."""
    text = score.strip()
    try:
        return float(text)  # some feeds put the number itself in "score"
    except ValueError:
        pass
    try:
        if kind.startswith("CVSS_V3") or text.startswith("CVSS:3"):
            return cvss3_base_score(text)
        if kind == "CVSS_V2":
            return cvss2_base_score(text)
    except ValueError:
        return None
    return None
