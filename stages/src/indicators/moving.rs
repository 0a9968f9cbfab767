//! Moving averages: the canonical SMA of the reference spec, and the EMA.

/// Simple moving average with the reference spec's canonical arithmetic: for `t >= w-1`,
/// `(((x[t-w+1] + x[t-w+2]) + ...) + x[t]) / w`, an f64 sum taken strictly left to right over the window.
///
/// Why not a running sum: on flat-price series `fast == slow` is a real tie, and a running or pairwise sum
/// rounds differently, which flips crossings and so trades (REFERENCE_SPEC.md section 2). This function is bit
/// for bit `x[t+1-w..=t].iter().sum::<f64>() / w as f64`, only faster (see [`sma_into`]).
pub fn sma(x: &[f64], w: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    sma_into(x, w, &mut out);
    out
}

/// [`sma`] written into a caller's buffer (of `x.len()`), so a sweep reuses allocations.
///
/// The sums are computed in blocks of output bars: each block's accumulators stay in L1 cache while the window
/// offsets are added one after another. Every accumulator still sees its window left to right, so the result is
/// identical to the naive loop, but the inner loop is an element-wise add the compiler vectorises.
pub fn sma_into(x: &[f64], w: usize, out: &mut [f64]) {
    const BLOCK: usize = 1024;
    let n = x.len().min(out.len());
    if w == 0 || n < w {
        out.fill(f64::NAN);
        return;
    }
    out[..w - 1].fill(f64::NAN);
    let defined = n - w + 1; // out[w-1+j] = sum(x[j..j+w]) / w
    let wf = w as f64;
    let dst = &mut out[w - 1..n];
    let mut start = 0;
    while start < defined {
        let len = BLOCK.min(defined - start);
        let acc = &mut dst[start..start + len];
        acc.copy_from_slice(&x[start..start + len]);
        for k in 1..w {
            let src = &x[start + k..start + k + len];
            for (a, s) in acc.iter_mut().zip(src) {
                *a += *s;
            }
        }
        for a in acc.iter_mut() {
            *a /= wf;
        }
        start += len;
    }
}

/// Exponential moving average with `alpha = 2 / (period + 1)`, seeded at bar `period-1` with the SMA of the first
/// `period` values (the TA-Lib convention), so it does not depend on where the series happens to start.
/// Leading `NaN`s in `x` (another indicator's warm-up) are skipped: the seed is taken over the first `period`
/// defined values.
pub fn ema(x: &[f64], period: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    if period == 0 {
        return out;
    }
    let Some(first) = x.iter().position(|v| !v.is_nan()) else {
        return out;
    };
    let seed_end = first + period - 1;
    if seed_end >= x.len() {
        return out;
    }
    let alpha = 2.0 / (period as f64 + 1.0);
    let mut v = x[first..=seed_end].iter().sum::<f64>() / period as f64;
    out[seed_end] = v;
    for t in seed_end + 1..x.len() {
        v += alpha * (x[t] - v);
        out[t] = v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::reference_values;
    use crate::indicators::test_support::{CLOSE, assert_series};

    /// The spec's defining loop, written the obvious way.
    fn naive_sma(x: &[f64], w: usize) -> Vec<f64> {
        (0..x.len())
            .map(|t| if t + 1 >= w { x[t + 1 - w..=t].iter().sum::<f64>() / w as f64 } else { f64::NAN })
            .collect()
    }

    #[test]
    fn sma_is_bit_identical_to_the_naive_left_to_right_sum() {
        // values chosen so that summation order matters in the last bits
        let x: Vec<f64> = (0..5000).map(|i| 0.1 + (i as f64 * 0.37).sin() * 1e3 + 1e-7 * i as f64).collect();
        for w in [1, 2, 3, 10, 30, 200, 1024, 1025, 4999, 5000] {
            let got = sma(&x, w);
            let want = naive_sma(&x, w);
            for t in 0..x.len() {
                assert_eq!(got[t].to_bits(), want[t].to_bits(), "w={w} t={t}");
            }
        }
        assert!(sma(&x, 5001).iter().all(|v| v.is_nan()));
        assert!(sma(&x, 0).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn sma_by_hand() {
        let s = sma(&[1.0, 2.0, 3.0, 4.0], 2);
        assert!(s[0].is_nan());
        assert_eq!(&s[1..], &[1.5, 2.5, 3.5]);
    }

    #[test]
    fn ema_matches_pandas() {
        assert_series(&ema(&CLOSE, 10), &reference_values::EMA10, 1e-12);
    }

    #[test]
    fn ema_skips_leading_nans_and_rejects_zero_period() {
        let e = ema(&[f64::NAN, 2.0, 4.0, 8.0], 2);
        assert!(e[0].is_nan() && e[1].is_nan());
        assert_eq!(e[2], 3.0);
        assert_eq!(e[3], 3.0 + 2.0 / 3.0 * 5.0);
        assert!(ema(&[1.0], 0).iter().all(|v| v.is_nan()));
    }
}
