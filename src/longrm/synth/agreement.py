"""How far the judges of a vote run agree: consensus rate, group sizes, each judge's agreement
with the consensus, and Fleiss' kappa (statsmodels).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longrm.synth.units import UNPARSEABLE, Judgment
from longrm.synth.vote import Vote

_COUNTS = ("judgments", "unparseable", "forced", "with_consensus", "agree")


def fleiss_kappa(ratings: Sequence[Sequence[int]]) -> float | None:
    """Return Fleiss' kappa of units (rows) rated by the same number of raters (columns).

    kappa = (P_bar - P_e) / (1 - P_e), with P_bar the mean over units of the share of agreeing
    rater pairs and P_e the sum of squared category shares (statsmodels' `fleiss_kappa`). Every
    distinct score is a category, -1 (unparseable) included. None for fewer than two units or
    when chance agreement is total (every rating in one category: kappa is undefined).
    """
    if len(ratings) < 2:
        return None
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

    table, _ = aggregate_raters([list(r) for r in ratings])
    if table.shape[1] < 2:
        return None
    value = float(sm_fleiss_kappa(table, method="fleiss"))
    return value if math.isfinite(value) else None


def agreement_stats(
    votes: Sequence[tuple[Sequence[Judgment], Vote]], judges: Sequence[str]
) -> dict[str, Any]:
    """Return the agreement statistics of voted units.

    - `consensus_rate`: units with a consensus over all units; `dropped` counts the others by
      reason (no-agreement, tie).
    - `consensus_size`: how many judges formed the consensus, as a histogram; `conf`: the score
      group sizes of every unit (the release's `conf`), as a histogram of patterns like "3,1,1".
    - `per_judge`: per judge, its judgments, unparseable ones, and `agreement`: the share of
      units with a consensus where its score is the consensus score.
    - `fleiss_kappa`: over the units rated by every judge in `judges` (`kappa_units` of them).
    """
    units = len(votes)
    kept = [v for _, v in votes if v.kept]
    dropped = Counter(v.dropped for _, v in votes if not v.kept)
    per_judge: dict[str, dict[str, Any]] = {name: dict.fromkeys(_COUNTS, 0) for name in judges}
    total = unparseable = forced = 0
    full: list[list[int]] = []
    for found, result in votes:
        by_name = {j.judge: j.score for j in found}
        for j in found:
            entry = per_judge.setdefault(j.judge, dict.fromkeys(_COUNTS, 0))
            entry["judgments"] += 1
            entry["unparseable"] += j.score == UNPARSEABLE
            entry["forced"] += j.forced
            total += 1
            unparseable += j.score == UNPARSEABLE
            forced += j.forced
            if result.kept:
                entry["with_consensus"] += 1
                entry["agree"] += j.score == result.consensus
        if judges and all(name in by_name for name in judges):
            full.append([by_name[name] for name in judges])
    for entry in per_judge.values():
        entry["agreement"] = _ratio(entry["agree"], entry["with_consensus"])
    return {
        "units": units,
        "consensus": len(kept),
        "consensus_rate": _ratio(len(kept), units),
        "dropped": {"no-agreement": dropped.get("no-agreement", 0), "tie": dropped.get("tie", 0)},
        "consensus_size": _histogram(
            sum(j.score == v.consensus for j in found) for found, v in votes if v.kept
        ),
        "conf": _histogram(",".join(map(str, v.conf)) for _, v in votes),
        "judgments": total,
        "unparseable": unparseable,
        "unparseable_rate": _ratio(unparseable, total),
        "forced": forced,
        "per_judge": per_judge,
        "fleiss_kappa": fleiss_kappa(full),
        "kappa_units": len(full),
    }


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _histogram(values: Any) -> dict[str, int]:
    """Return value -> count, keys as text (JSON), most common first."""
    return {str(k): n for k, n in Counter(values).most_common()}


def write_stats(stats: dict[str, Any], path: Path) -> Path:
    """Write the statistics as JSON; return the path."""
    path.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """Return the statistics as a few lines of text for a terminal."""

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    kappa = stats["fleiss_kappa"]
    lines = [
        f"consensus: {stats['consensus']} of {stats['units']} units "
        f"({pct(stats['consensus_rate'])}); dropped: "
        f"{stats['dropped']['no-agreement']} without agreement, {stats['dropped']['tie']} tied",
        f"unparseable judgments: {stats['unparseable']} of {stats['judgments']} "
        f"({pct(stats['unparseable_rate'])}); scores read by likelihood (--force-score): "
        f"{stats.get('forced', 0)}",
        "Fleiss' kappa: "
        + ("– (undefined)" if kappa is None else f"{kappa:.3f}")
        + f" over {stats['kappa_units']} units",
        "consensus size: " + ", ".join(f"{k}: {n}" for k, n in stats["consensus_size"].items()),
        "score groups (conf): " + ", ".join(f"[{k}]: {n}" for k, n in stats["conf"].items()),
    ]
    for name, entry in stats["per_judge"].items():
        lines.append(
            f"  {name}: agrees with the consensus on {pct(entry['agreement'])} of "
            f"{entry['with_consensus']} units; unparseable {entry['unparseable']} of "
            f"{entry['judgments']}"
        )
    return lines
