//! Standard normal draws by the ziggurat method (Marsaglia and Tsang, 2000,
//! with Doornik's 2005 correction: the layer and the position come from
//! independent bits). Intraday trades draw two normals each, hundreds of
//! millions in a backfill; a ziggurat draw is a table lookup and a multiply
//! 98.8% of the time, where Box–Muller takes a logarithm and a cosine.
//!
//! The density under the curve `f(x) = exp(-x²/2)` is cut into [`LAYERS`]
//! horizontal slices of equal area `V`: slice 0 is the base (a rectangle of
//! width `x[0] = V / f(R)` standing for the rectangle up to `R` plus the
//! tail beyond it), slice `i` spans heights `f(x[i])..f(x[i+1])` over the
//! width `x[i]`, and `x[LAYERS] = 0` is the peak.

use std::sync::OnceLock;

const LAYERS: usize = 128;
/// Where the tail starts, and the area of each slice, for 128 slices.
const R: f64 = 3.442_619_855_899;
const V: f64 = 9.912_563_035_262_17e-3;

struct Tables {
    /// Slice widths, `x[0] = V / f(R)`, `x[1] = R`, decreasing to `x[128] = 0`.
    x: [f64; LAYERS + 1],
    /// `f(x[i])`.
    f: [f64; LAYERS + 1],
    /// `x[i + 1] / x[i]`: a draw within this share of the width is under the
    /// curve whatever its height.
    inner: [f64; LAYERS],
}

fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp()
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut x = [0.0; LAYERS + 1];
        x[0] = V / density(R);
        x[1] = R;
        for i in 1..LAYERS - 1 {
            // Slice i has area V: x[i] · (f(x[i+1]) − f(x[i])) = V.
            x[i + 1] = (-2.0 * (V / x[i] + density(x[i])).ln()).sqrt();
        }
        x[LAYERS] = 0.0;
        let f = x.map(density);
        let inner = std::array::from_fn(|i| x[i + 1] / x[i]);
        Tables { x, f, inner }
    })
}

/// A standard normal draw from `bits`, a source of uniform 64-bit words.
pub(super) fn normal(mut bits: impl FnMut() -> u64) -> f64 {
    let t = tables();
    loop {
        let word = bits();
        // The top 53 bits place the draw in (−1, 1); the low 7 pick the slice.
        let u = ((word >> 11) as f64 + 0.5) / (1u64 << 52) as f64 - 1.0;
        let i = (word & (LAYERS as u64 - 1)) as usize;
        if u.abs() < t.inner[i] {
            return u * t.x[i];
        }
        if i == 0 {
            return tail(&mut bits).copysign(u);
        }
        // The wedge between the slice's inner rectangle and the curve.
        let x = u * t.x[i];
        let y = t.f[i] + uniform(bits()) * (t.f[i + 1] - t.f[i]);
        if y < density(x) {
            return x;
        }
    }
}

/// A draw from the normal's tail beyond [`R`] (Marsaglia, 1964).
fn tail(bits: &mut impl FnMut() -> u64) -> f64 {
    loop {
        let a = -(1.0 - uniform(bits())).ln() / R;
        let b = -(1.0 - uniform(bits())).ln();
        if 2.0 * b > a * a {
            return R + a;
        }
    }
}

fn uniform(word: u64) -> f64 {
    (word >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::synthetic::generate::Rng;

    #[test]
    fn slices_have_equal_area_and_reach_the_peak() {
        // The base: the rectangle up to R and the tail beyond it, whose area
        // sqrt(π/2)·erfc(R/√2) is 0.000722044943208245 (Python's math.erfc).
        let base = R * density(R) + 0.000_722_044_943_208_245;
        assert!((base - V).abs() < 1e-15, "base area {base}");
        // Walking up slices of area V from R lands on the peak: the last
        // slice, from f(x[127]) to 1, has area V too.
        let t = tables();
        let top = t.x[LAYERS - 1] * (1.0 - t.f[LAYERS - 1]);
        assert!((top - V).abs() < 1e-9, "top slice area {top}");
    }

    /// Probabilities of the standard normal (from Python's math.erfc)
    /// against shares of 4 million draws. The standard
    /// error of a share p is sqrt(p(1−p)/n) ≤ 0.00025; the bounds are 4 of it.
    /// What is counted, which draws count, the share expected.
    type Case = (&'static str, fn(f64) -> bool, f64);

    #[test]
    fn draws_follow_the_standard_normal() {
        let n = 4_000_000;
        let mut rng = Rng::new(42, "ZIG", &[]);
        let draws: Vec<f64> = (0..n).map(|_| normal(|| rng.next_u64())).collect();
        let share = |p: fn(f64) -> bool| draws.iter().filter(|&&z| p(z)).count() as f64 / n as f64;
        let cases: [Case; 6] = [
            ("z < 0", |z| z < 0.0, 0.5),
            ("|z| < 1", |z| z.abs() < 1.0, 0.682_689_492_1),
            ("|z| < 2", |z| z.abs() < 2.0, 0.954_499_736_1),
            ("z < -1.5", |z| z < -1.5, 0.066_807_201_3),
            ("z > 3", |z| z > 3.0, 0.001_349_898),
            ("|z| > R", |z| z.abs() > R, 0.000_576_108_5),
        ];
        for (what, p, expected) in cases {
            let got = share(p);
            let se = (expected * (1.0 - expected) / n as f64).sqrt();
            assert!(
                (got - expected).abs() < 4.0 * se,
                "P({what}) = {got}, expected {expected} ± {}",
                4.0 * se
            );
        }
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.003, "mean {mean}");
        assert!((var - 1.0).abs() < 0.005, "variance {var}");
    }
}
