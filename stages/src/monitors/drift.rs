//! Has the strategy's live behaviour moved away from what was backtested? Page-Hinkley watches the running mean
//! of live returns for a lasting shift; the two-sample Kolmogorov-Smirnov test compares the whole distribution of
//! recent live returns with the backtest's.

/// Page-Hinkley change detection in both directions: the index of the first observation at which the cumulative
/// deviation from the running mean (less the tolerated drift `delta`) has moved more than `threshold` from its
/// extreme, or `None`. Detects a shift of the mean up or down; `delta` ignores shifts smaller than it.
pub fn page_hinkley(xs: &[f64], delta: f64, threshold: f64) -> Option<usize> {
    let (mut mean, mut up, mut up_min, mut down, mut down_max) = (0.0, 0.0_f64, 0.0_f64, 0.0_f64, 0.0_f64);
    for (i, &x) in xs.iter().enumerate() {
        mean += (x - mean) / (i + 1) as f64;
        // Upward shift: the sum grows away from its minimum; downward: it falls away from its maximum.
        up += x - mean - delta;
        up_min = up_min.min(up);
        down += x - mean + delta;
        down_max = down_max.max(down);
        if up - up_min > threshold || down_max - down > threshold {
            return Some(i);
        }
    }
    None
}

/// The result of a two-sample Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    /// The largest distance between the two empirical distribution functions.
    pub statistic: f64,
    /// Probability of a distance at least this large if both samples came from one distribution (asymptotic).
    pub p_value: f64,
}

/// Two-sided two-sample Kolmogorov-Smirnov test; `None` when either sample is empty. The p-value is the
/// asymptotic Kolmogorov distribution with Stephens' small-sample correction, good from a few dozen observations
/// per sample (the monitor needs at least that many).
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Option<Ks> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let sorted = |xs: &[f64]| {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0_f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let en = (n * m / (n + m)).sqrt();
    Some(Ks { statistic: d, p_value: kolmogorov_q((en + 0.12 + 0.11 / en) * d) })
}

/// `Q(λ) = 2 Σ (-1)^(k-1) exp(-2 k² λ²)`, the survival function of the Kolmogorov distribution.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as i64 % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}
