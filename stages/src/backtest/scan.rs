//! Searches over long columns, written in chunks so the compiler vectorises them (an early-exit `position` is
//! compiled one element at a time). The kernel jumps from signal to signal and from peak to peak with these.

const CHUNK: usize = 32;

/// Index of the first `true` in `flags`.
#[inline]
pub fn next_true(flags: &[bool]) -> Option<usize> {
    let mut base = 0;
    for chunk in flags.chunks(CHUNK) {
        if chunk.iter().fold(false, |a, &b| a | b) {
            return chunk.iter().position(|&b| b).map(|k| base + k);
        }
        base += chunk.len();
    }
    None
}

/// Index of the first value `>= threshold` (NaN never is).
#[inline]
pub fn next_at_least(xs: &[f64], threshold: f64) -> Option<usize> {
    let mut base = 0;
    for chunk in xs.chunks(CHUNK) {
        if chunk.iter().fold(false, |a, &v| a | (v >= threshold)) {
            return chunk.iter().position(|&v| v >= threshold).map(|k| base + k);
        }
        base += chunk.len();
    }
    None
}

/// Smallest value (`+inf` for an empty slice; NaNs are skipped).
#[inline]
pub fn min_of(xs: &[f64]) -> f64 {
    let mut m = [f64::INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder().iter().fold(f64::INFINITY, |a, &v| if v < a { v } else { a });
    for c in chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = if v < *m { v } else { *m };
        }
    }
    m.iter().fold(rest, |a, &v| if v < a { v } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches() {
        let mut f = vec![false; 100];
        assert_eq!(next_true(&f), None);
        f[70] = true;
        f[90] = true;
        assert_eq!(next_true(&f), Some(70));
        assert_eq!(next_true(&f[71..]), Some(19));
        let x: Vec<f64> = (0..100).map(|i| (i % 37) as f64).collect();
        assert_eq!(next_at_least(&x, 36.0), Some(36));
        assert_eq!(next_at_least(&x[37..], 36.0), Some(36));
        assert_eq!(next_at_least(&[f64::NAN, 1.0], 0.5), Some(1));
        assert_eq!(next_at_least(&x, 99.0), None);
        assert_eq!(min_of(&x[1..36]), 1.0);
        assert_eq!(min_of(&[3.0, f64::NAN, 2.0]), 2.0);
        assert_eq!(min_of(&[]), f64::INFINITY);
    }
}
