//! The series kernels: each reads one run of values in time order, all of
//! them present (finite), and writes one output per row, NaN where the
//! feature is undefined (the operator turns every non-finite output into
//! null). All are O(n) whatever the window.
//!
//! Running window sums drift: each update rounds, and a huge value leaves a
//! rounding residue behind when it leaves the window. So the windowed
//! kernels recompute their state exactly every [`resync_every`] rows, and at
//! once when the window's magnitude falls far below its recent peak, which
//! bounds the error at a cost of well under one extra addition per row.

use std::collections::VecDeque;
use std::ops::Range;

const NAN: f64 = f64::NAN;

/// Rows between exact recomputations of a window's running state.
fn resync_every(w: usize) -> usize {
    (8 * w).max(2048)
}

/// How far below its peak since the last recomputation a running window
/// magnitude may fall before the state is recomputed. The running update's
/// rounding error is relative to the peak, so this bounds the relative
/// error to about `resync_every × ε / DRIFT`, a few 1e-9 at worst and
/// ~1e-11 typically (errors mostly cancel).
const DRIFT: f64 = 1.0 / (1u64 << 14) as f64;

/// Calls `f` on each maximal run of rows where every column is finite,
/// with that run's rows and output; other rows get NaN. So a missing value
/// restarts the feature, as though the series began after it.
pub(super) fn by_runs(
    cols: &[&[f64]],
    out: &mut [f64],
    mut f: impl FnMut(Range<usize>, &mut [f64]),
) {
    let n = out.len();
    // `fold` rather than `all`: no early exit, so it vectorizes.
    if cols
        .iter()
        .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
    {
        f(0..n, out);
        return;
    }
    let present = |i: usize| cols.iter().all(|c| c[i].is_finite());
    let mut i = 0;
    while i < n {
        if !present(i) {
            out[i] = NAN;
            i += 1;
            continue;
        }
        let start = i;
        while i < n && present(i) {
            i += 1;
        }
        f(start..i, &mut out[start..i]);
    }
}

/// A sum with four accumulators: shorter rounding chains, and vectorizable.
fn sum(xs: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let chunks = xs.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..4 {
            acc[k] += c[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn sum_abs(xs: &[f64]) -> f64 {
    xs.iter().map(|v| v.abs()).sum()
}

/// Fills the warm-up rows `0..lead` with NaN; false when the run is too
/// short to reach the first valid row.
fn warm_up(out: &mut [f64], lead: usize) -> bool {
    let n = out.len();
    out[..lead.min(n)].fill(NAN);
    n > lead
}

/// (x[t] - x[t-k]) / x[t-k], or ln(x[t] / x[t-k]); NaN before row k.
pub(super) fn returns(x: &[f64], k: usize, log: bool, out: &mut [f64]) {
    if !warm_up(out, k) {
        return;
    }
    let pairs = x[k..].iter().zip(&x[..x.len() - k]);
    if log {
        for (o, (&v, &p)) in out[k..].iter_mut().zip(pairs) {
            *o = (v / p).ln();
        }
    } else {
        for (o, (&v, &p)) in out[k..].iter_mut().zip(pairs) {
            // Division by a zero price gives ±inf or NaN: null.
            *o = (v - p) / p;
        }
    }
}

/// The mean of the last `w` values; NaN before row w-1.
pub(super) fn rolling_mean(x: &[f64], w: usize, out: &mut [f64]) {
    if !warm_up(out, w - 1) {
        return;
    }
    let width = w as f64;
    let every = resync_every(w);
    // The window's sum, and the sum of its magnitudes to notice when a
    // value much larger than the rest has left (its residue would stay).
    let exact = |window: &[f64]| (sum(window), sum_abs(window));
    let (mut total, mut size) = exact(&x[..w]);
    let (mut peak, mut since) = (size, 0);
    out[w - 1] = total / width;
    // s = x[t-w ..= t] for t in w..n.
    for (o, s) in out[w..].iter_mut().zip(x.windows(w + 1)) {
        let (y, v) = (s[0], s[w]);
        total += v - y;
        size += v.abs() - y.abs();
        peak = peak.max(size);
        since += 1;
        if since == every || size < peak * DRIFT {
            (total, size) = exact(&s[1..]);
            (peak, since) = (size, 0);
        }
        *o = total / width;
    }
}

/// Runs the window's mean and sum of squared deviations (M2) along `x`,
/// calling `emit(x[t] - mean, m2)` for each row from w-1 (NaN before it).
///
/// Each step swaps the leaving value y for the entering value v in one
/// Welford-style update (Welford 1962, as extended to sliding windows):
/// mean' = mean + (v - y) / w and M2' = M2 + (v - y)(v - mean' + y - mean),
/// which has none of the cancellation of sum-of-squares formulas. The mean
/// is carried as an unevaluated sum `mean + low` (TwoSum), because each
/// rounding of a mean far from zero would otherwise feed M2 an error
/// proportional to the price level rather than to the spread. The state is
/// recomputed exactly when M2 falls far below its recent peak (the update's
/// rounding is relative to the peak), and a window whose values are all
/// equal (counted exactly, by the changes between neighbours) has M2
/// exactly 0.
fn rolling_moments(x: &[f64], w: usize, out: &mut [f64], emit: impl Fn(f64, f64) -> f64) {
    debug_assert!(w >= 2);
    if !warm_up(out, w - 1) {
        return;
    }
    let width = w as f64;
    // Multiplying by reciprocals: divisions would bound the loop's speed.
    let inv_width = 1.0 / width;
    let every = resync_every(w);
    let exact = |window: &[f64]| {
        let changes = window.windows(2).filter(|p| p[0] != p[1]).count();
        if changes == 0 {
            return (window[0], 0.0, 0.0, 0);
        }
        let mean = sum(window) / width;
        // The rounding of `mean`, recovered from the residuals.
        let low = window.iter().map(|v| v - mean).sum::<f64>() / width;
        let m2: f64 = window.iter().map(|v| ((v - mean) - low).powi(2)).sum();
        (mean, low, m2, changes)
    };
    let (mut mean, mut low, mut m2, mut changes) = exact(&x[..w]);
    let (mut peak, mut since) = (m2, 0);
    out[w - 1] = emit((x[w - 1] - mean) - low, m2);
    // s = x[t-w ..= t] for t in w..n.
    for (o, s) in out[w..].iter_mut().zip(x.windows(w + 1)) {
        let (y, v) = (s[0], s[w]);
        changes += (v != s[w - 1]) as usize;
        changes -= (s[1] != y) as usize;
        let d = v - y;
        let step = d * inv_width;
        let next = mean + step;
        // TwoSum: the exact rounding error of `mean + step`.
        let back = next - mean;
        let next_low = low + ((mean - (next - back)) + (step - back));
        m2 += d * (((v - next) - next_low) + ((y - mean) - low));
        (mean, low) = (next, next_low);
        peak = peak.max(m2);
        since += 1;
        if changes == 0 {
            (mean, low, m2, peak, since) = (v, 0.0, 0.0, 0.0, 0);
        } else if since == every || m2 < peak * DRIFT {
            (mean, low, m2, changes) = exact(&s[1..]);
            (peak, since) = (m2, 0);
        }
        *o = emit((v - mean) - low, m2);
    }
}

/// The standard deviation of the last `w` values, dividing by w - ddof.
pub(super) fn rolling_std(x: &[f64], w: usize, ddof: u8, out: &mut [f64]) {
    let inv_divisor = 1.0 / (w - ddof as usize) as f64;
    rolling_moments(x, w, out, |_, m2| (m2.max(0.0) * inv_divisor).sqrt());
}

/// (x[t] - mean) / std over the last `w` values; NaN when std is 0.
pub(super) fn rolling_zscore(x: &[f64], w: usize, ddof: u8, out: &mut [f64]) {
    let inv_divisor = 1.0 / (w - ddof as usize) as f64;
    rolling_moments(x, w, out, |deviation, m2| {
        deviation / (m2.max(0.0) * inv_divisor).sqrt()
    });
}

/// The largest (`MAX`) or smallest value of the last `w`, with a monotonic
/// deque of candidate indexes: each index enters and leaves once.
pub(super) fn rolling_extreme<const MAX: bool>(x: &[f64], w: usize, out: &mut [f64]) {
    let mut candidates: VecDeque<usize> = VecDeque::with_capacity(w + 1);
    for (t, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        while let Some(&last) = candidates.back() {
            let beaten = if MAX { x[last] <= v } else { x[last] >= v };
            if !beaten {
                break;
            }
            candidates.pop_back();
        }
        candidates.push_back(t);
        if candidates[0] + w <= t {
            candidates.pop_front();
        }
        *o = if t + 1 >= w { x[candidates[0]] } else { NAN };
    }
}

/// EMA with alpha 2 / (w + 1), seeded at row w-1 with the mean of the
/// first `w` values (TA-Lib's EMA).
pub(super) fn ema(x: &[f64], w: usize, out: &mut [f64]) {
    if !warm_up(out, w - 1) {
        return;
    }
    let alpha = 2.0 / (w as f64 + 1.0);
    let keep = 1.0 - alpha;
    let mut e = sum(&x[..w]) / w as f64;
    out[w - 1] = e;
    for (o, &v) in out[w..].iter_mut().zip(&x[w..]) {
        e = e * keep + v * alpha;
        *o = e;
    }
}

/// 100 × gain / (gain + loss), 0 when there was no change (as TA-Lib).
fn rsi_of(gain: f64, loss: f64) -> f64 {
    let total = gain + loss;
    if total == 0.0 {
        0.0
    } else {
        100.0 * gain / total
    }
}

/// RSI with Wilder's smoothing (TA-Lib's RSI): first valid at row w.
pub(super) fn rsi(x: &[f64], w: usize, out: &mut [f64]) {
    if !warm_up(out, w) {
        return;
    }
    let width = w as f64;
    let (mut gain, mut loss) = (0.0, 0.0);
    for p in x[..=w].windows(2) {
        let d = p[1] - p[0];
        if d > 0.0 {
            gain += d;
        } else {
            loss -= d;
        }
    }
    gain /= width;
    loss /= width;
    out[w] = rsi_of(gain, loss);
    let (keep, take) = ((width - 1.0) / width, 1.0 / width);
    for (o, p) in out[w + 1..].iter_mut().zip(x[w..].windows(2)) {
        let d = p[1] - p[0];
        gain = gain * keep + d.max(0.0) * take;
        loss = loss * keep + (-d).max(0.0) * take;
        *o = rsi_of(gain, loss);
    }
}

/// ATR with Wilder's smoothing (TA-Lib's ATR): the true range is defined
/// from row 1; the first ATR, at row w, is the mean of TR[1..=w].
pub(super) fn atr(high: &[f64], low: &[f64], close: &[f64], w: usize, out: &mut [f64]) {
    if !warm_up(out, w) {
        return;
    }
    let true_range = |t: usize| high[t].max(close[t - 1]) - low[t].min(close[t - 1]);
    let width = w as f64;
    let mut a = (1..=w).map(true_range).sum::<f64>() / width;
    out[w] = a;
    let (keep, take) = ((width - 1.0) / width, 1.0 / width);
    for (t, o) in out.iter_mut().enumerate().skip(w + 1) {
        a = a * keep + true_range(t) * take;
        *o = a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [-1, 1) (SplitMix64).
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// A hard series: a random walk far from zero, with a huge spike, a
    /// constant stretch and a level jump.
    fn hard_series(n: usize) -> Vec<f64> {
        let mut p = 1.0e4;
        let mut x: Vec<f64> = noise(7, n)
            .into_iter()
            .map(|e| {
                p *= 1.0 + 0.001 * e;
                p
            })
            .collect();
        x[n / 5] = 1.0e12;
        let flat = x[n / 3];
        x[n / 3..n / 3 + 300].fill(flat);
        for v in &mut x[n / 2..] {
            *v *= 1e-3;
        }
        x
    }

    fn run(n: usize, f: impl Fn(&mut [f64])) -> Vec<f64> {
        let mut out = vec![0.0; n];
        f(&mut out);
        out
    }

    /// Relative agreement, NaN only where NaN is expected.
    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len());
        for (t, (&g, &e)) in got.iter().zip(want).enumerate() {
            if e.is_nan() {
                assert!(g.is_nan(), "{what}[{t}]: got {g}, want NaN");
            } else {
                let err = (g - e).abs();
                assert!(
                    err <= tol * e.abs().max(g.abs()) + 1e-300,
                    "{what}[{t}]: got {g}, want {e}"
                );
            }
        }
    }

    fn naive(x: &[f64], w: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        (0..x.len())
            .map(|t| if t + 1 < w { NAN } else { f(&x[t + 1 - w..=t]) })
            .collect()
    }

    fn mean(s: &[f64]) -> f64 {
        s.iter().sum::<f64>() / s.len() as f64
    }

    fn std(s: &[f64], ddof: usize) -> f64 {
        let m = mean(s);
        (s.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (s.len() - ddof) as f64).sqrt()
    }

    #[test]
    fn rolling_kernels_match_a_direct_computation_on_a_hard_series() {
        let n = 20_000;
        let x = hard_series(n);
        for w in [2, 5, 20, 240, 3000] {
            let scales = naive(&x, w, |s| s.iter().fold(0.0, |m: f64, v| m.max(*v)));
            let mean_ = run(n, |o| rolling_mean(&x, w, o));
            assert_close(&mean_, &naive(&x, w, mean), 1e-9, &format!("mean {w}"));
            for ddof in [0u8, 1] {
                let got = run(n, |o| rolling_std(&x, w, ddof, o));
                let want = naive(&x, w, |s| std(s, ddof as usize));
                // The spike's window holds a 1e12 value among 1e4 ones:
                // compare with an absolute tolerance scaled to the window.
                for t in 0..n {
                    let scale = scales[t];
                    if want[t].is_nan() {
                        assert!(got[t].is_nan(), "std {w}[{t}]");
                    } else {
                        assert!(
                            (got[t] - want[t]).abs() <= 1e-9 * want[t] + 1e-12 * scale,
                            "std {w} ddof {ddof}[{t}]: got {}, want {}",
                            got[t],
                            want[t]
                        );
                    }
                }
            }
            let max_ = run(n, |o| rolling_extreme::<true>(&x, w, o));
            let min_ = run(n, |o| rolling_extreme::<false>(&x, w, o));
            assert_eq!(
                format!("{max_:?}"),
                format!(
                    "{:?}",
                    naive(&x, w, |s| s.iter().cloned().fold(f64::MIN, f64::max))
                )
            );
            assert_eq!(
                format!("{min_:?}"),
                format!(
                    "{:?}",
                    naive(&x, w, |s| s.iter().cloned().fold(f64::MAX, f64::min))
                )
            );
        }
    }

    #[test]
    fn a_constant_window_has_std_exactly_zero_and_no_zscore() {
        let n = 20_000;
        let x = hard_series(n);
        let w = 20;
        let std_ = run(n, |o| rolling_std(&x, w, 0, o));
        let z = run(n, |o| rolling_zscore(&x, w, 0, o));
        // Rows whose window lies inside the constant stretch.
        for t in n / 3 + w - 1..n / 3 + 300 {
            assert_eq!(std_[t], 0.0, "std[{t}]");
            assert!(z[t].is_nan(), "z[{t}] = {}", z[t]);
        }
        // Elsewhere z agrees with its definition.
        let t = n - 1;
        let s = &x[t + 1 - w..=t];
        let want = (x[t] - mean(s)) / std(s, 0);
        assert!(
            (z[t] - want).abs() < 1e-9 * want.abs(),
            "{} vs {want}",
            z[t]
        );
    }

    #[test]
    fn small_cases_by_hand() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0];
        assert_eq!(
            format!("{:?}", run(6, |o| rolling_mean(&x, 3, o))),
            "[NaN, NaN, 2.0, 3.0, 4.0, 5.333333333333333]"
        );
        assert_eq!(
            format!("{:?}", run(6, |o| returns(&x, 2, false, o))),
            "[NaN, NaN, 2.0, 1.0, 0.6666666666666666, 0.75]"
        );
        let log = run(6, |o| returns(&x, 1, true, o));
        assert!(log[0].is_nan());
        assert!((log[5] - (7.0f64 / 5.0).ln()).abs() < 1e-15);
        // Population std of [1, 2, 3] is sqrt(2/3); sample std is 1.
        assert_eq!(run(6, |o| rolling_std(&x, 3, 1, o))[2], 1.0);
        assert!((run(6, |o| rolling_std(&x, 3, 0, o))[2] - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
        // EMA 3: seed mean(1, 2, 3) = 2 at row 2, then alpha 0.5.
        assert_eq!(
            format!("{:?}", run(6, |o| ema(&x, 3, o))),
            "[NaN, NaN, 2.0, 3.0, 4.0, 5.5]"
        );
        // Returns where the earlier price is 0 are undefined.
        let zero = [0.0, 1.0];
        assert!(!run(2, |o| returns(&zero, 1, false, o))[1].is_finite());
        // Too short a run is all warm-up.
        assert!(
            run(2, |o| rolling_mean(&x[..2], 3, o))
                .iter()
                .all(|v| v.is_nan())
        );
        assert!(run(3, |o| rsi(&x[..3], 3, o)).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn rsi_and_atr_follow_wilder_from_row_n() {
        // Changes +2, -1, +3, -2, +1.
        let x = [10.0, 12.0, 11.0, 14.0, 12.0, 13.0];
        let got = run(6, |o| rsi(&x, 3, o));
        // First: gain (2 + 3) / 3, loss 1 / 3 -> 100 * 5 / 6.
        let (g, l) = (5.0 / 3.0, 1.0 / 3.0);
        assert!(got[..3].iter().all(|v| v.is_nan()));
        assert!((got[3] - 100.0 * g / (g + l)).abs() < 1e-12);
        let (g, l) = (g * 2.0 / 3.0, (l * 2.0 + 2.0) / 3.0);
        assert!((got[4] - 100.0 * g / (g + l)).abs() < 1e-12);
        let (g, l) = ((g * 2.0 + 1.0) / 3.0, l * 2.0 / 3.0);
        assert!((got[5] - 100.0 * g / (g + l)).abs() < 1e-12);
        // No movement at all: 0, as TA-Lib.
        assert_eq!(run(5, |o| rsi(&[1.0; 5], 2, o))[4], 0.0);

        let high = [11.0, 13.0, 12.0, 16.0, 13.0];
        let low = [9.0, 11.0, 10.0, 13.0, 11.0];
        let close = [10.0, 12.0, 11.0, 14.0, 12.0];
        // TR from row 1: max(13, 10) - min(11, 10) = 3; max(12, 12) - min(10, 12) = 2;
        // 16 - 11 = 5; max(13, 14) - min(11, 14) = 3.
        let got = run(5, |o| atr(&high, &low, &close, 2, o));
        assert!(got[..2].iter().all(|v| v.is_nan()));
        assert_eq!(got[2], 2.5);
        assert_eq!(got[3], (2.5 + 5.0) / 2.0);
        assert_eq!(got[4], (3.75 + 3.0) / 2.0);
    }

    #[test]
    fn a_missing_value_restarts_the_feature() {
        let x = [1.0, 2.0, 3.0, f64::NAN, 4.0, 5.0, 6.0, 7.0];
        let mut out = vec![0.0; x.len()];
        by_runs(&[&x], &mut out, |r, o| rolling_mean(&x[r], 2, o));
        assert_eq!(
            format!("{out:?}"),
            "[NaN, 1.5, 2.5, NaN, NaN, 4.5, 5.5, 6.5]"
        );
        let inf = [1.0, f64::INFINITY, 2.0, 3.0];
        let mut out = vec![0.0; 4];
        by_runs(&[&inf], &mut out, |r, o| ema(&inf[r], 1, o));
        assert_eq!(format!("{out:?}"), "[1.0, NaN, 2.0, 3.0]");
    }
}
