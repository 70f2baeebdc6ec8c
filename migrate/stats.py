"""Latency statistics that tell a real change from a noisy machine.

A stage is measured in rounds (`migrate run --repeat N`): each round runs every stage once, in
order, so a slow minute on a shared machine hits all stages of that round alike. Latency is
summarised by the median and quartiles of all steady batches (the first batch of each process
pays compilation/warm-up and is kept apart). Two stages are compared round by round: the ratio
is the geometric mean over rounds of (median latency of A in round r) / (median latency of B in
round r). Its 95% interval is the wider of two: a two-level bootstrap (rounds resampled, then
batches inside each resampled round: batch noise) and Student's t interval of the mean log
ratio over rounds (round-to-round drift; with 2-5 rounds a bootstrap alone cannot reach beyond
the few values it has and is far too narrow, which is how a busy minute became a "verdict").

The verdict is `same` when the interval contains 1 or the change is under `THRESHOLD`;
otherwise `faster` or `slower`; `unknown` with fewer than `MIN_ROUNDS` rounds, since one
process's batches cannot show a slow minute that hit only that stage; `inconclusive` when the
interval contains 1 but reaches past `NOISE_FACTOR` either way (0.32x [0.00-154.40] is not
"same": it says nothing). The bootstrap is
seeded: the same data give the same report.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

THRESHOLD = 0.05  # changes under 5% are reported as `same` even when the interval excludes 1
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 12345

MIN_ROUNDS = 2  # with one round, batch noise is all we see: no verdict
NOISE_FACTOR = 2.0  # an interval around 1 reaching below 1/2x or above 2x says nothing
FASTER, SLOWER, SAME, UNKNOWN = "faster", "slower", "same", "unknown"
INCONCLUSIVE = "inconclusive"
NOISY = "inconclusive (too noisy)"  # a cell's text; the ratio and interval go to notes and JSON
MARK = {SAME: "≈", FASTER: "▲", SLOWER: "▼", UNKNOWN: "?", INCONCLUSIVE: "?"}


def verdict_text(verdict: str, ratio: float, ci_low: float, ci_high: float) -> str:
    """A speed-up as a report cell shows it: the verdict first, then ratio and 95% interval.

    One wording for `compare` and `matrix`; a too-noisy interval is not shown as a ratio.
    """
    if verdict == INCONCLUSIVE:
        return f"{MARK[verdict]} {NOISY}"
    return f"{MARK.get(verdict, '?')} {verdict} {ratio:.2f}x [{ci_low:.2f}–{ci_high:.2f}]"


@dataclass(frozen=True)
class Summary:
    """Median and quartiles of a set of latencies (seconds), and how many there were."""

    median_s: float
    p25_s: float
    p75_s: float
    n: int


@dataclass(frozen=True)
class Ratio:
    """A speed-up (before / after latency: >1 means `after` is faster) with its interval."""

    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    rounds: int  # rounds in which both sides had a steady latency


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (q in [0, 1])."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("quantile of no values")
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(values: Sequence[float]) -> Summary | None:
    """Median, quartiles and n; None when there is nothing to summarise."""
    if not values:
        return None
    return Summary(
        median_s=statistics.median(values),
        p25_s=quantile(values, 0.25),
        p75_s=quantile(values, 0.75),
        n=len(values),
    )


def verdict(ratio: float, ci_low: float, ci_high: float, threshold: float = THRESHOLD) -> str:
    """`same` when the interval contains 1 or the change is under the threshold.

    An interval that contains 1 and also reaches below 1/NOISE_FACTOR or above NOISE_FACTOR is
    `inconclusive`: too noisy to call the stages the same.
    """
    if ci_low <= 1.0 <= ci_high and (ci_low < 1 / NOISE_FACTOR or ci_high > NOISE_FACTOR):
        return INCONCLUSIVE
    if ci_low <= 1.0 <= ci_high or abs(ratio - 1.0) < threshold:
        return SAME
    return FASTER if ratio > 1.0 else SLOWER


# Student's t, two-sided 95%, by degrees of freedom (no scipy); 1.96 beyond the table.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _t_interval(log_ratios: Sequence[float]) -> tuple[float, float]:
    """95% t interval of the mean log ratio over rounds, as ratios (n >= 2)."""
    n = len(log_ratios)
    mean = statistics.fmean(log_ratios)
    half = (_T975[n - 2] if n - 2 < len(_T975) else 1.96) * statistics.stdev(log_ratios) / n**0.5
    return math.exp(mean - half), math.exp(mean + half)


def _geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def paired_ratio(
    before: Sequence[Sequence[float]],
    after: Sequence[Sequence[float]],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    threshold: float = THRESHOLD,
) -> Ratio | None:
    """Speed-up of `after` over `before`, paired by round.

    `before[r]` and `after[r]` are the steady batch latencies of the two stages in round r.
    Rounds where either side has none are left out; None when no round is left.
    """
    pairs = [
        (list(b), list(a))
        for b, a in zip(before, after, strict=False)
        if b and a and all(x > 0 for x in (*b, *a))
    ]
    if not pairs:
        return None
    point = _geomean([statistics.median(b) / statistics.median(a) for b, a in pairs])
    rng = random.Random(seed)
    estimates: list[float] = []
    for _ in range(resamples):
        ratios = []
        for _ in pairs:
            b, a = pairs[rng.randrange(len(pairs))]
            rb = statistics.median(rng.choices(b, k=len(b)))
            ra = statistics.median(rng.choices(a, k=len(a)))
            ratios.append(rb / ra)
        estimates.append(_geomean(ratios))
    tail = (1.0 - CONFIDENCE) / 2
    low, high = quantile(estimates, tail), quantile(estimates, 1.0 - tail)
    if len(pairs) >= 2:  # with few rounds the bootstrap interval is too narrow: widen it
        t_low, t_high = _t_interval(
            [math.log(statistics.median(b) / statistics.median(a)) for b, a in pairs]
        )
        low, high = min(low, t_low), max(high, t_high)
    judged = verdict(point, low, high, threshold) if len(pairs) >= MIN_ROUNDS else UNKNOWN
    return Ratio(point, low, high, judged, len(pairs))
