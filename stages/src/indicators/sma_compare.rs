//! Crossings of two canonical SMAs in O(1) per bar, exactly as if both SMAs had been computed the spec's way.
//!
//! The canonical SMA (a left-to-right sum of the window) costs `w` additions per bar, which dominates a backtest
//! on a million bars and a sweep over many windows. But a crossing only needs the *sign* of `fast - slow`, and
//! that sign is almost never in doubt. So window sums are taken as differences of prefix sums (restarted every
//! block, so their rounding error stays tiny), and only when the two averages are within a rigorous error bound
//! of each other (ties on flat prices, mostly) is the canonical sum computed for that bar. The flags are
//! therefore identical to [`crate::strategy::crossings`] over [`super::sma`] (tested on tie-heavy series, and on
//! every reference file by the parity tests).

use rayon::prelude::*;

use crate::backtest::buffers::filled;

/// Unit roundoff of f64.
const U: f64 = f64::EPSILON / 2.0;

/// Output bars per block: prefix sums restart at each block, bounding their error by the block's length.
const BLOCK: usize = 2048;

/// Comparison state of `fast` vs `slow` at one bar.
const GREATER: i8 = 1;
const EQUAL: i8 = 0;
const LESS: i8 = -1;
/// Undefined (warm-up) or NaN: every comparison is false, as in the spec.
const NONE: i8 = 2;
/// Too close to call from the prefix sums: decided by the canonical sums.
const UNSURE: i8 = 3;

/// Crossing flags of the canonical `SMA_fast` over `SMA_slow` with the spec's rule: up at `t` when
/// `fast > slow` at `t` and `fast <= slow` at `t-1`; down when `fast < slow` at `t` and `fast >= slow` at `t-1`.
pub fn sma_crossings(x: &[f64], fast: usize, slow: usize) -> (Vec<bool>, Vec<bool>) {
    crossings_blocked(x, fast, slow, BLOCK)
}

fn crossings_blocked(x: &[f64], fast: usize, slow: usize, block: usize) -> (Vec<bool>, Vec<bool>) {
    let n = x.len();
    let (mut up, mut down) = (filled(n, false), filled(n, false));
    let wmax = fast.max(slow);
    if fast == 0 || slow == 0 || n <= wmax || block == 0 {
        return (up, down);
    }
    // blocks are independent (each also evaluates the bar before it), so they run in parallel
    up.par_chunks_mut(block).zip(down.par_chunks_mut(block)).enumerate().for_each(|(i, (up, down))| {
        crossings_of_block(x, fast, slow, i * block, up, down);
    });
    (up, down)
}

/// Flags of bars `b0..b0 + up.len()`.
fn crossings_of_block(x: &[f64], fast: usize, slow: usize, b0: usize, up: &mut [bool], down: &mut [bool]) {
    let wmax = fast.max(slow);
    let b1 = b0 + up.len();
    // states of bars s0..b1: s0 is the bar before the block (its state is the first "before"), or the first bar
    // where both SMAs are defined
    let s0 = b0.saturating_sub(1).max(wmax - 1);
    if s0 >= b1 {
        return;
    }
    let (f, s) = (fast as f64, slow as f64);
    let len = b1 - s0;
    // windows of bars s0..b1 cover x[start..b1]; prefix[i] = x[start] + ... + x[start+i-1]
    let start = s0 + 1 - wmax;
    let xs = &x[start..b1];
    let mut p = vec![0.0f64; xs.len() + 1];
    let (xmax, finite) = prefix_sums(xs, &mut p);
    // error bounds, in units of `fast_sum * slow - slow_sum * fast`: a prefix value over L terms is off by at
    // most (L^2 + 3L) u xmax (four partial chains and their offsets), a window sum by two of those plus its
    // subtraction's rounding; a canonical mean (scaled back to a sum) by w^2 u xmax plus its division; then the
    // two products and their difference. Doubled for second-order terms.
    let l = xs.len() as f64;
    let approx = |w: f64| 2.0 * (l * l + 3.0 * l) * U * xmax + 2.0 * U * w * xmax;
    let canonical = |w: f64| w * w * U * xmax + 2.0 * U * w * xmax;
    let products = 4.0 * U * f * s * xmax;
    let bound = if finite {
        2.0 * (s * (approx(f) + canonical(f)) + f * (approx(s) + canonical(s)) + products)
    } else {
        f64::INFINITY // every bar takes the canonical path
    };
    // bar s0 + k: its window sums end at prefix[wmax + k]; decided bars in a loop that vectorises
    let mut st = vec![NONE; len];
    let ends = &p[wmax..wmax + len];
    let fasts = &p[wmax - fast..wmax - fast + len];
    let slows = &p[wmax - slow..wmax - slow + len];
    for (((o, e), a), b) in st.iter_mut().zip(ends).zip(fasts).zip(slows) {
        let d = (e - a) * s - (e - b) * f;
        let (gt, lt) = (i8::from(d > bound), i8::from(d < -bound));
        *o = UNSURE - (UNSURE - GREATER) * gt - (UNSURE - LESS) * lt;
    }
    // the rest from the canonical sums (near ties; most blocks have none)
    if st.iter().fold(false, |any, &o| any | (o == UNSURE)) {
        for (k, o) in st.iter_mut().enumerate() {
            if *o == UNSURE {
                *o = canonical_state(x, s0 + k, fast, slow);
            }
        }
    }
    // crossings: up when > now and <= before, down when < now and >= before (NONE is neither)
    let crossed = |now: i8, before: i8| {
        (now == GREATER && (before == EQUAL || before == LESS), now == LESS && (before == EQUAL || before == GREATER))
    };
    let (mut before, states) = if s0 < b0 { (st[0], &st[1..]) } else { (NONE, &st[..]) };
    let skip = up.len() - states.len(); // bars of the block still in warm-up
    for ((u, dn), &now) in up[skip..].iter_mut().zip(&mut down[skip..]).zip(states) {
        (*u, *dn) = crossed(now, before);
        before = now;
    }
}

/// Prefix sums `p[i] = xs[0] + ... + xs[i-1]` (`p[0] = 0`) in four interleaved chains (a sum is a chain of
/// dependent additions; four run in parallel), each chain then offset by the total before it. Also returns the
/// largest |x| and whether all values are finite, computed in the same pass for free.
fn prefix_sums(xs: &[f64], p: &mut [f64]) -> (f64, bool) {
    let m = xs.len();
    p[0] = 0.0;
    let q = m / 4;
    let (mut xmax, mut bad) = ([0.0f64; 4], false);
    if q < 16 {
        let mut acc = 0.0;
        for (o, v) in p[1..].iter_mut().zip(xs) {
            acc += v;
            *o = acc;
            xmax[0] = if v.abs() > xmax[0] { v.abs() } else { xmax[0] };
            bad |= v.is_nan() | (v.abs() > f64::MAX);
        }
        return (xmax[0], !bad);
    }
    let mut acc = [0.0f64; 4];
    for i in 0..q {
        for lane in 0..4 {
            let v = xs[lane * q + i];
            acc[lane] += v;
            p[lane * q + i + 1] = acc[lane];
            xmax[lane] = if v.abs() > xmax[lane] { v.abs() } else { xmax[lane] };
            bad |= v.is_nan() | (v.abs() > f64::MAX);
        }
    }
    for i in 4 * q..m {
        let v = xs[i];
        acc[3] += v;
        p[i + 1] = acc[3];
        xmax[3] = if v.abs() > xmax[3] { v.abs() } else { xmax[3] };
        bad |= v.is_nan() | (v.abs() > f64::MAX);
    }
    for lane in 1..4 {
        let offset = p[lane * q];
        let end = if lane == 3 { m } else { (lane + 1) * q };
        for v in &mut p[lane * q + 1..=end] {
            *v += offset;
        }
    }
    (xmax.iter().fold(0.0f64, |a, &b| a.max(b)), !bad)
}

/// The spec's comparison at `t`: canonical SMAs (left-to-right window sums, then divided), NaN compares false.
#[inline(never)]
fn canonical_state(x: &[f64], t: usize, fast: usize, slow: usize) -> i8 {
    let a = x[t + 1 - fast..=t].iter().sum::<f64>() / fast as f64;
    let b = x[t + 1 - slow..=t].iter().sum::<f64>() / slow as f64;
    if a > b {
        GREATER
    } else if a < b {
        LESS
    } else if a == b {
        EQUAL
    } else {
        NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::synthetic::Rng;
    use crate::indicators::sma;
    use crate::strategy::crossings;

    fn reference(x: &[f64], f: usize, s: usize) -> (Vec<bool>, Vec<bool>) {
        crossings(&sma(x, f), &sma(x, s))
    }

    #[test]
    fn identical_to_the_canonical_smas_on_tie_heavy_series() {
        let mut rng = Rng::new(42);
        for case in 0..40 {
            // coarse ticks, long flat stretches, a few big jumps: many exact and near ties
            let tick = [1e-8, 1e-4, 0.01, 1.0][case % 4];
            let mut p = 1000.0 * tick;
            let x: Vec<f64> = (0..3000)
                .map(|_| {
                    let u = rng.uniform();
                    if u < 0.15 {
                        p += tick * (rng.normal() * 3.0).round();
                    } else if u < 0.16 {
                        p *= 1.0 + 0.05 * rng.normal();
                    }
                    p = (p / tick).round().max(1.0) * tick;
                    p
                })
                .collect();
            for (f, s) in [(10, 30), (2, 3), (1, 2), (5, 200), (30, 10), (7, 7), (50, 60)] {
                let want = reference(&x, f, s);
                assert_eq!(sma_crossings(&x, f, s), want, "case {case} ({f}, {s})");
                assert_eq!(crossings_blocked(&x, f, s, 7), want, "case {case} ({f}, {s}) small blocks");
            }
        }
    }

    #[test]
    fn edges_and_non_finite_values() {
        let x = [1.0, 2.0, 3.0, 3.0, 1.0];
        assert_eq!(sma_crossings(&x, 1, 2), reference(&x, 1, 2));
        assert_eq!(sma_crossings(&x, 0, 2), (vec![false; 5], vec![false; 5]));
        assert_eq!(sma_crossings(&x, 1, 9), (vec![false; 5], vec![false; 5]));
        let bad = [1.0, f64::NAN, 2.0, 3.0, 1.0, 0.5, 2.0, 3.0, f64::INFINITY, 1.0, 2.0, 0.0, 3.0];
        let mut p = vec![0.0; 101];
        let xs: Vec<f64> = (0..100).map(|i| i as f64).collect();
        prefix_sums(&xs, &mut p);
        assert_eq!(p, (0..=100).map(|i| (i * (i - 1) / 2) as f64).collect::<Vec<_>>());
        for block in [1, 3, 100] {
            assert_eq!(crossings_blocked(&bad, 1, 2, block), reference(&bad, 1, 2), "block {block}");
        }
    }
}
