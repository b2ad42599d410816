"""The reproduction's goals, each decided by an interval rather than a point estimate.

A point estimate on a few dozen items moves by ten points from one seed to the next, so a goal
that a point alone decides can pass by luck. Each goal here states its rule in its name and is
met only when the interval supports the claim: a gain needs its paired interval above 0, a
floor or a ceiling is judged by the interval end that would have to cross it, and a control
(the context swapped or emptied) by whether its interval contains chance. A missed goal says
by how much, in points, so a reader sees whether it was close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Interval = Sequence[float] | None


@dataclass(frozen=True)
class Goal:
    """One goal: its rule (in the name), what was measured, and whether the interval meets it.

    `value` is the point estimate (a fraction, or a difference of fractions), `interval` its
    interval [lo, hi], `n` the items it rests on, `shortfall` what is missing when not met
    ("" when met).
    """

    name: str
    value: float | None
    interval: tuple[float, float] | None
    met: bool
    shortfall: str
    n: int = 0
    signed: bool = False  # a difference (printed +x.x) rather than an accuracy

    def as_dict(self) -> dict[str, Any]:
        """Return the goal as reproduce.json stores it."""
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval else None
        return out

    def line(self) -> str:
        """Return "PASS  name: 62.5% [55.0, 70.1] over 144 items" (MISS with the shortfall)."""
        verdict = "PASS" if self.met else "MISS"
        text = f"{verdict}  {self.name}: {measured(self.value, self.interval, self.signed)}"
        if self.n:
            text += f" over {self.n} items"
        return text + (f" ({self.shortfall})" if self.shortfall else "")


def pts(x: float) -> str:
    """Return a fraction as points with one decimal: 0.1234 -> "12.3"."""
    return f"{100 * x:.1f}"


def measured(value: float | None, interval: Interval, signed: bool = False) -> str:
    """Return "62.5% [55.0, 70.1]" (or "+7.3 pts [-1.0, +15.2]" for a difference)."""
    if value is None:
        return "not measured"
    if signed:
        text = f"{100 * value:+.1f} pts"
        return text + (f" [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]" if interval else "")
    return f"{pts(value)}%" + (f" [{pts(interval[0])}, {pts(interval[1])}]" if interval else "")


def _bounds(interval: Interval) -> tuple[float, float] | None:
    return None if interval is None else (float(interval[0]), float(interval[1]))


def _goal(
    name: str, value: float | None, interval: Interval, n: int, signed: bool, missing: list[str]
) -> Goal:
    ci = _bounds(interval)
    if value is None or ci is None:
        return Goal(name, value, ci, False, "not measured: no items, or no interval", n, signed)
    return Goal(name, value, ci, not missing, "; ".join(missing), n, signed)


def gain(name: str, value: float | None, interval: Interval, min_gain: float, n: int = 0) -> Goal:
    """A difference of at least `min_gain` whose paired interval lies above 0 (both needed)."""
    missing = []
    if value is not None and value < min_gain:
        missing.append(f"{pts(min_gain - value)} pts short of +{pts(min_gain)}")
    if interval is not None and interval[0] <= 0:
        missing.append(f"interval low end {100 * interval[0]:+.1f}, not above 0")
    return _goal(name, value, interval, n, True, missing)


def above(name: str, value: float | None, interval: Interval, bound: float, n: int = 0) -> Goal:
    """A difference whose paired interval lies entirely above `bound` (lo > bound)."""
    missing = []
    if interval is not None and interval[0] <= bound:
        missing.append(f"interval low end {100 * interval[0]:+.1f}, not above {100 * bound:+.1f}")
    return _goal(name, value, interval, n, True, missing)


def at_least(
    name: str,
    value: float | None,
    interval: Interval,
    floor: float,
    n: int = 0,
    signed: bool = False,
) -> Goal:
    """A value whose interval's low end reaches `floor` (lo >= floor): the interval rules out
    anything below it."""
    missing = []
    if interval is not None and interval[0] < floor:
        low = f"{100 * interval[0]:+.1f}" if signed else pts(interval[0])
        missing.append(f"interval low end {low}, {pts(floor - interval[0])} pts below the floor")
    return _goal(name, value, interval, n, signed, missing)


def reaches(
    name: str, value: float | None, interval: Interval, target: float, chance: float, n: int = 0
) -> Goal:
    """An accuracy of at least `target` whose interval lies above `chance` (both needed), the
    pattern of `gain` for an accuracy rather than a difference."""
    missing = []
    if value is not None and value < target:
        missing.append(f"{pts(target - value)} pts short of {pts(target)}%")
    if interval is not None and interval[0] <= chance:
        missing.append(f"interval low end {pts(interval[0])}, not above {pts(chance)}%")
    return _goal(name, value, interval, n, False, missing)


def below(name: str, value: float | None, interval: Interval, ceiling: float, n: int = 0) -> Goal:
    """A rate whose interval's high end stays under `ceiling` (hi < ceiling)."""
    missing = []
    if interval is not None and interval[1] >= ceiling:
        missing.append(
            f"interval high end {pts(interval[1])}, {pts(interval[1] - ceiling)} pts at or over "
            f"{pts(ceiling)}%"
        )
    return _goal(name, value, interval, n, False, missing)


def contains(name: str, value: float | None, interval: Interval, target: float, n: int = 0) -> Goal:
    """An accuracy whose interval contains `target` (chance, for a control without context)."""
    missing = []
    if interval is not None and not interval[0] <= target <= interval[1]:
        gap = interval[0] - target if interval[0] > target else target - interval[1]
        side = "above" if interval[0] > target else "below"
        missing.append(f"interval {pts(gap)} pts {side} {pts(target)}%")
    return _goal(name, value, interval, n, False, missing)
