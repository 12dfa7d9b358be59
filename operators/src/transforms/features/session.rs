//! Session-aware kernels: VWAP anchored to each local date, and volume
//! relative to the same time of day on earlier sessions. Rows with a
//! missing input are skipped (output NaN, no effect on the state) rather
//! than restarting, since a gap in one bar says nothing about the session.

use std::collections::HashMap;

const NAN: f64 = f64::NAN;

/// VWAP of the typical price (high + low + close) / 3.
pub(super) fn vwap_typical(
    high: &[f64],
    low: &[f64],
    close: &[f64],
    volume: &[f64],
    day: &[i64],
    out: &mut [f64],
) {
    let price = |t: usize| (high[t] + low[t] + close[t]) / 3.0;
    vwap_by(price, volume, day, out);
}

/// VWAP of one price column.
pub(super) fn vwap(price: &[f64], volume: &[f64], day: &[i64], out: &mut [f64]) {
    vwap_by(|t| price[t], volume, day, out);
}

/// Σ price × volume / Σ volume since the first row of the row's date.
fn vwap_by(price: impl Fn(usize) -> f64, volume: &[f64], day: &[i64], out: &mut [f64]) {
    let (mut value, mut traded) = (0.0, 0.0);
    for (t, o) in out.iter_mut().enumerate() {
        if t == 0 || day[t] != day[t - 1] {
            (value, traded) = (0.0, 0.0);
        }
        let (p, v) = (price(t), volume[t]);
        if !(p.is_finite() && v.is_finite()) {
            *o = NAN;
            continue;
        }
        value += p * v;
        traded += v;
        // No volume yet in the session: 0 / 0, null.
        *o = value / traded;
    }
}

/// The last `w` volumes seen in one time-of-day slot.
struct Slot {
    ring: Vec<f64>,
    next: usize,
    total: f64,
    since_exact: usize,
}

impl Slot {
    fn push(&mut self, v: f64, w: usize) {
        if self.ring.len() < w {
            self.ring.push(v);
            self.total += v;
            return;
        }
        self.total += v - self.ring[self.next];
        self.ring[self.next] = v;
        self.next = (self.next + 1) % w;
        // Recompute now and then so rounding cannot accumulate.
        self.since_exact += 1;
        if self.since_exact == 8 * w {
            self.total = self.ring.iter().sum();
            self.since_exact = 0;
        }
    }
}

/// volume[t] ÷ the mean of the `w` latest earlier volumes in the same
/// time-of-day slot; NaN until the slot has `w` of them.
pub(super) fn relative_volume(volume: &[f64], slot: &[i64], w: usize, out: &mut [f64]) {
    let mut slots: HashMap<i64, Slot> = HashMap::new();
    for ((o, &v), &at) in out.iter_mut().zip(volume).zip(slot) {
        let history = slots.entry(at).or_insert_with(|| Slot {
            ring: Vec::with_capacity(w),
            next: 0,
            total: 0.0,
            since_exact: 0,
        });
        if !v.is_finite() {
            *o = NAN;
            continue;
        }
        *o = if history.ring.len() == w {
            // A mean of 0 gives ±inf or NaN: null.
            v / (history.total / w as f64)
        } else {
            NAN
        };
        history.push(v, w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: &[f64]) -> String {
        format!("{v:?}")
    }

    #[test]
    fn vwap_resets_each_day_and_skips_missing_rows() {
        // Two sessions of three bars; the second session's middle bar has
        // no volume reported.
        let day = [10, 10, 10, 11, 11, 11];
        let high = [11.0, 12.0, 13.0, 21.0, 22.0, 23.0];
        let low = [9.0, 10.0, 11.0, 19.0, 20.0, 21.0];
        let close = [10.0, 11.0, 12.0, 20.0, 21.0, 22.0];
        let volume = [100.0, 300.0, 0.0, 50.0, f64::NAN, 150.0];
        let mut out = [0.0; 6];
        vwap_typical(&high, &low, &close, &volume, &day, &mut out);
        // Typical prices 10, 11, 12 | 20, 21, 22.
        // Day 10: 10; (1000 + 3300) / 400 = 10.75; a 0-volume bar keeps it.
        // Day 11: 20; skipped; (1000 + 3300) / 200 = 21.5.
        assert_eq!(show(&out), "[10.0, 10.75, 10.75, 20.0, NaN, 21.5]");

        // A price column, and a session opening with no volume (0 / 0).
        let price = [5.0, 6.0, 7.0];
        let mut out = [0.0; 3];
        vwap(&price, &[0.0, 2.0, 2.0], &[1, 1, 1], &mut out);
        assert_eq!(show(&out), "[NaN, 6.0, 6.5]");
    }

    #[test]
    fn relative_volume_compares_the_same_time_of_day() {
        // Three sessions of two slots (09:30 and 10:00, as seconds), w = 2.
        let slot = [34200, 36000, 34200, 36000, 34200, 36000];
        let volume = [100.0, 10.0, 300.0, 30.0, 400.0, 10.0];
        let mut out = [0.0; 6];
        relative_volume(&volume, &slot, 2, &mut out);
        // Day 3's 09:30: 400 / mean(100, 300) = 2; 10:00: 10 / mean(10, 30) = 0.5.
        assert_eq!(show(&out), "[NaN, NaN, NaN, NaN, 2.0, 0.5]");
    }

    #[test]
    fn daily_relative_volume_is_against_the_previous_bars() {
        // Dates have one slot: volume ÷ the mean of the w previous bars,
        // excluding the current one; a missing volume is skipped.
        let slot = [0; 6];
        let volume = [10.0, 20.0, 30.0, f64::NAN, 50.0, 0.0];
        let mut out = [0.0; 6];
        relative_volume(&volume, &slot, 2, &mut out);
        assert_eq!(show(&out), "[NaN, NaN, 2.0, NaN, 2.0, 0.0]");
        // A slot whose earlier volumes are all 0 has no defined ratio.
        let mut out = [0.0; 3];
        relative_volume(&[0.0, 0.0, 5.0], &[0; 3], 2, &mut out);
        assert!(!out[2].is_finite());
    }

    #[test]
    fn the_slot_mean_stays_exact_over_a_long_history() {
        let n = 100_000;
        let volume: Vec<f64> = (0..n)
            .map(|t| if t % 7 == 0 { 1e12 } else { 3.0 })
            .collect();
        let mut out = vec![0.0; n];
        relative_volume(&volume, &vec![0; n], 7, &mut out);
        // Every window of 7 previous bars holds one 1e12 and six 3s.
        let mean = (1e12 + 18.0) / 7.0;
        for t in [7, 50_001, n - 1] {
            assert!(
                (out[t] - volume[t] / mean).abs() <= 1e-12 * out[t].abs(),
                "{t}"
            );
        }
    }
}
