"""Inputs and expected answers for the health monitors' tests, computed independently of the Rust code:
scipy for the Kolmogorov-Smirnov test, numpy Monte Carlo (many more paths) for the GBM drawdown bounds, and a
plain-Python Page-Hinkley written from the textbook definition. Run: python3 expected.py > monitors.json
"""
import json

import numpy as np
from scipy import stats

rng = np.random.default_rng(20261130)
reference = rng.normal(0.003, 0.02, 500)
same = rng.normal(0.003, 0.02, 60)
different = rng.normal(-0.008, 0.04, 60)


def ks(a, b):
    r = stats.ks_2samp(a, b, method="asymp")
    en = np.sqrt(len(a) * len(b) / (len(a) + len(b)))
    # The same statistic under the limiting Kolmogorov law with Stephens' correction (what the monitor uses).
    stephens = stats.kstwobign.sf((en + 0.12 + 0.11 / en) * r.statistic)
    return {"statistic": float(r.statistic), "p_value": float(r.pvalue), "p_stephens": float(stephens)}


def page_hinkley(xs, delta, threshold):
    mean = 0.0
    up = up_min = down = down_max = 0.0
    for i, x in enumerate(xs):
        mean = mean + (x - mean) / (i + 1)
        up += x - mean - delta
        up_min = min(up_min, up)
        down += x - mean + delta
        down_max = max(down_max, down)
        if up - up_min > threshold or down_max - down > threshold:
            return i
    return None


steady = rng.normal(0.0, 1.0, 200)
shifted = np.concatenate([rng.normal(0.0, 1.0, 100), rng.normal(-1.5, 1.0, 100)])


def drawdown_bounds(returns, days, paths, confidence):
    logs = np.log1p(returns)
    mu, sigma = logs.mean(), logs.std(ddof=1)
    steps = np.random.default_rng(7).normal(mu, sigma, (paths, days))
    equity = np.exp(np.concatenate([np.zeros((paths, 1)), np.cumsum(steps, axis=1)], axis=1))
    peak = np.maximum.accumulate(equity, axis=1)
    depth = (1 - equity / peak).max(axis=1)
    under = equity < peak
    longest = np.zeros(paths, dtype=int)
    run = np.zeros(paths, dtype=int)
    for t in range(days + 1):
        run = np.where(under[:, t], run + 1, 0)
        longest = np.maximum(longest, run)
    return {
        "mu": float(mu),
        "sigma": float(sigma),
        "depth": float(np.quantile(depth, confidence)),
        "days": float(np.quantile(longest, confidence)),
    }


print(json.dumps({
    "reference": reference.tolist(),
    "same": same.tolist(),
    "different": different.tolist(),
    "ks_same": ks(same, reference),
    "ks_different": ks(different, reference),
    "steady": steady.tolist(),
    "shifted": shifted.tolist(),
    "ph_steady": page_hinkley(steady, 0.25, 10.0),
    "ph_shifted": page_hinkley(shifted, 0.25, 10.0),
    "gbm_120_days": drawdown_bounds(reference, 120, 200000, 0.95),
}))
