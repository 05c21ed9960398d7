"""Is B faster than A? Median difference, its block-bootstrap CI and a Mann-Whitney U test.

Latencies measured under load are correlated in time: a slow minute slows every
request in it. Resampling single requests would treat them as independent and give
intervals that are far too narrow, so the bootstrap resamples whole time blocks
(``block_s`` seconds of consecutive requests) with replacement, separately for A and
B, and widens the result by the usual sqrt(k / (k - 1)) for k blocks. The verdict needs
both the interval to exclude 0 and the Mann-Whitney p-value to be below ``alpha``
(CONTRACT.md, "Verdict"): the rank test alone ignores the correlation (on correlated
A/A data it alone calls a difference about three times too often).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capdisc.metrics.frame import tasks
from capdisc.schema import Verdict, VersionDiff

__all__ = ["MIN_SAMPLES", "block_bootstrap_medians", "compare_versions"]

# Below this many successful tasks on a side, a CI or p-value would be noise dressed
# up as a result: report the point differences only, and no verdict.
MIN_SAMPLES = 10

# Elements of the (resamples x rows) weight matrix handled at once: keeps memory near
# 8-16 MB whatever the run length, while each batch is still one numpy operation.
_BATCH_ELEMENTS = 2_000_000


def _successful(df: pd.DataFrame) -> pd.DataFrame:
    rows = tasks(df)
    return rows[rows["ok"] == 1]


def _pct(b: float, a: float) -> float | None:
    return (b - a) / a * 100.0 if a > 0 else None


def _block_ids(ts: np.ndarray, block_s: float, runs: np.ndarray | None = None) -> np.ndarray:
    """Consecutive time blocks of ``block_s`` seconds, numbered 0..k-1 without gaps.

    With ``runs`` (the step or block each row was measured in), blocks start afresh
    at the first request of each run, so the gap between alternating A/B blocks
    never leaves a sliver of a block at each edge.
    """
    if block_s <= 0:
        # No block length: every request is its own block (a plain bootstrap).
        return np.arange(ts.size)
    if runs is None:
        runs = np.zeros(ts.size, dtype=np.int64)
    starts = {run: ts[runs == run].min() for run in np.unique(runs)}
    offsets = np.array([starts[run] for run in runs], dtype="float64")
    raw = np.floor((ts - offsets) / block_s).astype(np.int64)
    pairs = np.stack([runs.astype(np.int64), raw], axis=1)
    _, compact = np.unique(pairs, axis=0, return_inverse=True)
    return compact.reshape(-1)


def _runs(df: pd.DataFrame) -> np.ndarray | None:
    return df["step"].to_numpy(dtype="int64") if "step" in df.columns else None


def block_bootstrap_medians(
    values: np.ndarray, blocks: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Medians of ``n_boot`` resamples that draw whole blocks with replacement.

    Each resample draws as many blocks as there are; its median is found without
    materialising the resample: values are sorted once, each resample weights every
    value by how often its block was drawn, and the median is where the cumulative
    weight crosses half the total (mid-point of the two middle values when even,
    as ``np.median``).
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    sorted_blocks = blocks[order]
    n = sorted_values.size
    k = int(blocks.max()) + 1
    sizes = np.bincount(blocks, minlength=k)
    # int32 halves the memory traffic of the (resamples x rows) matrix, which is the
    # whole cost; a resample's total weight is at most k x the largest block.
    dtype = np.int32 if k * int(sizes.max()) < 2**31 else np.int64
    out = np.empty(n_boot, dtype="float64")
    batch = max(1, _BATCH_ELEMENTS // max(n, k))
    for start in range(0, n_boot, batch):
        rows = min(batch, n_boot - start)
        draws = rng.integers(0, k, size=(rows, k))
        flat = (draws + (np.arange(rows) * k)[:, None]).ravel()
        counts = np.bincount(flat, minlength=rows * k).reshape(rows, k).astype(dtype)
        total = counts @ sizes.astype(dtype)
        # Values down, resamples across: the cumulative sum then adds whole contiguous
        # rows, which numpy vectorises (about twice as fast as summing along rows).
        cum = np.take(np.ascontiguousarray(counts.T), sorted_blocks, axis=0)
        np.cumsum(cum, axis=0, out=cum)
        # The value of 0-based rank r is the first whose cumulative weight exceeds r.
        lower = (cum > ((total - 1) // 2)[None, :]).argmax(axis=0)
        upper = (cum > (total // 2)[None, :]).argmax(axis=0)
        out[start : start + rows] = (sorted_values[lower] + sorted_values[upper]) / 2.0
    return out


def _widened(medians: np.ndarray, values: np.ndarray, blocks: int) -> np.ndarray:
    """Bootstrap medians spread by sqrt(k / (k - 1)) around the sample median, in log scale.

    Resampling k blocks underestimates the variance by (k - 1) / k, which matters with
    the 20-odd blocks of a typical comparison (a too-narrow CI is a false verdict).
    Log scale keeps the medians positive and the correction multiplicative.
    """
    centre = float(np.median(values))
    if centre <= 0 or blocks < 2 or np.any(medians <= 0):
        return medians
    factor = np.sqrt(blocks / (blocks - 1))
    return np.asarray(centre * np.exp(factor * np.log(medians / centre)), dtype="float64")


def compare_versions(
    a_df: pd.DataFrame,
    b_df: pd.DataFrame,
    *,
    block_s: float,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[VersionDiff, Verdict]:
    """B against A on successful tasks' end-to-end time: differences in % of A, and the verdict.

    The CI is the ``1 - alpha`` percentile interval of the block-bootstrap median
    difference; the p-value is a two-sided Mann-Whitney U. Too few samples on a side
    (< ``MIN_SAMPLES``) or fewer than two time blocks leave the CI (and, for samples,
    the p-value) None, and the verdict ``no_difference``. The same seed gives the same
    result.
    """
    a = _successful(a_df)
    b = _successful(b_df)
    a_dur = a["duration_ms"].to_numpy(dtype="float64")
    b_dur = b["duration_ms"].to_numpy(dtype="float64")

    p50_pct = p95_pct = ttft_pct = tpot_pct = p_value = None
    ci: tuple[float, float] | None = None
    if a_dur.size and b_dur.size:
        p50_pct = _pct(float(np.median(b_dur)), float(np.median(a_dur)))
        p95_pct = _pct(float(np.percentile(b_dur, 95)), float(np.percentile(a_dur, 95)))
    a_ttft = a["ttft_ms"].dropna().to_numpy(dtype="float64")
    b_ttft = b["ttft_ms"].dropna().to_numpy(dtype="float64")
    if a_ttft.size and b_ttft.size:
        ttft_pct = _pct(float(np.median(b_ttft)), float(np.median(a_ttft)))
    a_tpot = a["tpot_ms"].dropna().to_numpy(dtype="float64")
    b_tpot = b["tpot_ms"].dropna().to_numpy(dtype="float64")
    if a_tpot.size and b_tpot.size:
        tpot_pct = _pct(float(np.median(b_tpot)), float(np.median(a_tpot)))

    if a_dur.size >= MIN_SAMPLES and b_dur.size >= MIN_SAMPLES and p50_pct is not None:
        from scipy.stats import mannwhitneyu  # lazy: scipy costs CLI start-up time

        p = float(mannwhitneyu(a_dur, b_dur, alternative="two-sided").pvalue)
        p_value = p if np.isfinite(p) else None
        a_blocks = _block_ids(a["ts_start"].to_numpy(dtype="float64"), block_s, _runs(a))
        b_blocks = _block_ids(b["ts_start"].to_numpy(dtype="float64"), block_s, _runs(b))
        if n_boot > 0 and a_blocks.max() >= 1 and b_blocks.max() >= 1:
            rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
            med_a = block_bootstrap_medians(a_dur, a_blocks, n_boot, rng_a)
            med_a = _widened(med_a, a_dur, int(a_blocks.max()) + 1)
            med_b = block_bootstrap_medians(b_dur, b_blocks, n_boot, rng_b)
            med_b = _widened(med_b, b_dur, int(b_blocks.max()) + 1)
            valid = (med_a > 0) & np.isfinite(med_a) & np.isfinite(med_b)
            if valid.any():
                diffs = (med_b[valid] - med_a[valid]) / med_a[valid] * 100.0
                lo, hi = np.percentile(diffs, [50.0 * alpha, 100.0 - 50.0 * alpha])
                ci = (float(lo), float(hi))

    verdict: Verdict = "no_difference"
    if ci is not None and p_value is not None and p_value < alpha:
        if ci[1] < 0:
            verdict = "b_faster"
        elif ci[0] > 0:
            verdict = "b_slower"
    diff = VersionDiff(
        p50_pct=p50_pct,
        p50_ci95_pct=ci,
        p95_pct=p95_pct,
        p_value=p_value,
        ttft_p50_pct=ttft_pct,
        tpot_p50_pct=tpot_pct,
    )
    return diff, verdict
