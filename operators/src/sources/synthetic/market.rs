//! HOSE trading rules (tick sizes, the daily price band) and the reference
//! data of the VN30 stocks the generator starts from.

/// The HOSE tick size for a price in VND.
pub(super) fn tick_size(price: i64) -> i64 {
    match price {
        ..10_000 => 10,
        10_000..50_000 => 50,
        _ => 100,
    }
}

/// The nearest valid price to `price`. Tick regimes change at 10,000 and
/// 50,000, which are multiples of every tick, so rounding never leaves the
/// interval between two valid prices.
pub(super) fn round_to_tick(price: f64) -> i64 {
    let p = round(price).max(10);
    // A constant tick in each arm, so each division is a multiplication.
    let to = |tick: i64| (p + tick / 2) / tick * tick;
    match tick_size(p) {
        10 => to(10),
        50 => to(50),
        100 => to(100),
        tick => to(tick),
    }
}

/// `x.round() as i64`. `f64::round` is a library call on x86-64's
/// baseline, made for every generated trade; from one half to 2⁵², adding
/// one half and truncating is the same (the sum is exact), and inline.
pub(super) fn round(x: f64) -> i64 {
    if (0.5..4.0e15).contains(&x) {
        (x + 0.5) as i64
    } else {
        x.round() as i64
    }
}

fn floor_to_tick(price: i64) -> i64 {
    price - price % tick_size(price)
}

fn ceil_to_tick(price: i64) -> i64 {
    let tick = tick_size(price);
    (price + tick - 1) / tick * tick
}

/// The prices a stock may trade at on one day: within ±7% of the reference
/// price (the previous close), the ceiling rounded down and the floor up to
/// a valid tick, as HOSE does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Band {
    pub reference: i64,
    pub floor: i64,
    pub ceiling: i64,
}

impl Band {
    pub fn new(reference: i64) -> Self {
        Self {
            reference,
            floor: ceil_to_tick((reference * 93 + 99) / 100),
            ceiling: floor_to_tick(reference * 107 / 100),
        }
    }

    pub fn clamp(&self, price: i64) -> i64 {
        price.clamp(self.floor, self.ceiling)
    }
}

/// A listed company as `stock_info` reports it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Listing {
    pub name: String,
    pub sector: String,
    /// The price level (VND) the synthetic history starts from and reverts to.
    pub base_price: i64,
    pub shares_outstanding: i64,
    pub free_float: f64,
}

/// (symbol, name, sector, base price VND, shares outstanding, free float).
/// Approximate public figures of the mid-2020s, rounded: plausible levels
/// for demonstrations, not data to trade on.
type Row = (&'static str, &'static str, &'static str, i64, i64, f64);

const B: i64 = 1_000_000_000;
const M: i64 = 1_000_000;

#[rustfmt::skip]
const VN30: [Row; 30] = [
    ("ACB", "Asia Commercial Joint Stock Bank", "Banking", 25_000, 4_470 * M, 0.85),
    ("BCM", "Becamex IDC Corporation", "Real Estate", 65_000, 1_035 * M, 0.10),
    ("BID", "Joint Stock Commercial Bank for Investment and Development of Vietnam", "Banking", 38_000, 7_020 * M, 0.10),
    ("BVH", "Bao Viet Holdings", "Insurance", 55_000, 742 * M, 0.15),
    ("CTG", "Vietnam Joint Stock Commercial Bank for Industry and Trade", "Banking", 40_000, 5_370 * M, 0.15),
    ("FPT", "FPT Corporation", "Technology", 120_000, 1_470 * M, 0.80),
    ("GAS", "PetroVietnam Gas Joint Stock Corporation", "Oil & Gas", 68_000, 2_340 * M, 0.10),
    ("GVR", "Vietnam Rubber Group", "Materials", 30_000, 4 * B, 0.10),
    ("HDB", "Ho Chi Minh City Development Joint Stock Commercial Bank", "Banking", 25_000, 3_490 * M, 0.60),
    ("HPG", "Hoa Phat Group", "Materials", 27_000, 6_400 * M, 0.55),
    ("LPB", "Loc Phat Vietnam Joint Stock Commercial Bank", "Banking", 35_000, 2_990 * M, 0.70),
    ("MBB", "Military Commercial Joint Stock Bank", "Banking", 25_000, 6_100 * M, 0.65),
    ("MSN", "Masan Group Corporation", "Consumer Staples", 75_000, 1_440 * M, 0.45),
    ("MWG", "Mobile World Investment Corporation", "Retail", 65_000, 1_460 * M, 0.75),
    ("PLX", "Vietnam National Petroleum Group", "Oil & Gas", 38_000, 1_270 * M, 0.15),
    ("SAB", "Saigon Beer-Alcohol-Beverage Corporation", "Consumer Staples", 50_000, 1_280 * M, 0.10),
    ("SHB", "Saigon - Hanoi Commercial Joint Stock Bank", "Banking", 12_000, 4_020 * M, 0.85),
    ("SSB", "Southeast Asia Commercial Joint Stock Bank", "Banking", 18_000, 2_830 * M, 0.40),
    ("SSI", "SSI Securities Corporation", "Financial Services", 28_000, 1_960 * M, 0.60),
    ("STB", "Saigon Thuong Tin Commercial Joint Stock Bank", "Banking", 45_000, 1_885 * M, 0.80),
    ("TCB", "Vietnam Technological and Commercial Joint Stock Bank", "Banking", 30_000, 7_070 * M, 0.55),
    ("TPB", "Tien Phong Commercial Joint Stock Bank", "Banking", 16_000, 2_640 * M, 0.45),
    ("VCB", "Joint Stock Commercial Bank for Foreign Trade of Vietnam", "Banking", 90_000, 5_590 * M, 0.10),
    ("VHM", "Vinhomes Joint Stock Company", "Real Estate", 80_000, 4_110 * M, 0.30),
    ("VIB", "Vietnam International Commercial Joint Stock Bank", "Banking", 19_000, 2_980 * M, 0.40),
    ("VIC", "Vingroup Joint Stock Company", "Real Estate", 100_000, 3_820 * M, 0.35),
    ("VJC", "Vietjet Aviation Joint Stock Company", "Industrials", 110_000, 542 * M, 0.45),
    ("VNM", "Vietnam Dairy Products Joint Stock Company", "Consumer Staples", 62_000, 2_090 * M, 0.40),
    ("VPB", "Vietnam Prosperity Joint Stock Commercial Bank", "Banking", 26_000, 7_930 * M, 0.65),
    ("VRE", "Vincom Retail Joint Stock Company", "Real Estate", 28_000, 2_270 * M, 0.40),
];

/// The VN30 tickers, in alphabetical order.
pub(super) fn vn30_symbols() -> impl Iterator<Item = &'static str> {
    VN30.iter().map(|row| row.0)
}

/// Sectors drawn for symbols outside the VN30.
const SECTORS: [&str; 8] = [
    "Banking",
    "Real Estate",
    "Materials",
    "Consumer Staples",
    "Industrials",
    "Technology",
    "Financial Services",
    "Utilities",
];

/// The listing of `symbol`: reference data for the VN30, otherwise values
/// drawn from `draw`, a source of uniform numbers in [0, 1) derived from the
/// seed and the symbol.
pub(super) fn listing(symbol: &str, mut draw: impl FnMut() -> f64) -> Listing {
    if let Some(&(_, name, sector, base_price, shares_outstanding, free_float)) =
        VN30.iter().find(|row| row.0 == symbol)
    {
        return Listing {
            name: name.to_string(),
            sector: sector.to_string(),
            base_price,
            shares_outstanding,
            free_float,
        };
    }
    // Log-uniform between 10,000 and 100,000 VND, like the VN30's spread.
    let base_price = round_to_tick(10_000.0 * 10f64.powf(draw()));
    let sector = SECTORS[(draw() * SECTORS.len() as f64) as usize];
    // 100 million to 2 billion shares, in round millions.
    let shares_outstanding = (100.0 + 1_900.0 * draw()).round() as i64 * M;
    let free_float = ((0.2 + 0.7 * draw()) * 100.0).round() / 100.0;
    Listing {
        name: format!("{symbol} Joint Stock Company (synthetic)"),
        sector: sector.to_string(),
        base_price,
        shares_outstanding,
        free_float,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_is_f64_round() {
        let edges = [
            0.0,
            0.49999999999999994,
            0.5,
            0.5000000000000001,
            0.9999999999999999,
            1.5,
            2.5,
            9_994.5,
            12_345.499999999998,
            4.0e15 - 0.5,
            4.0e15,
            4_503_599_627_370_497.0,
            -0.5,
            -2.5,
            f64::NAN,
            f64::INFINITY,
        ];
        for x in edges
            .into_iter()
            .chain((0..10_000).map(|i| i as f64 * 13.37 + 0.5))
        {
            assert_eq!(round(x), x.round() as i64, "{x}");
        }
    }

    #[test]
    fn tick_sizes_follow_hose_rules() {
        assert_eq!(round_to_tick(9_994.0), 9_990);
        assert_eq!(round_to_tick(9_996.0), 10_000);
        assert_eq!(round_to_tick(10_024.0), 10_000);
        assert_eq!(round_to_tick(10_026.0), 10_050);
        assert_eq!(round_to_tick(49_974.0), 49_950);
        assert_eq!(round_to_tick(49_976.0), 50_000);
        assert_eq!(round_to_tick(120_049.0), 120_000);
        assert_eq!(round_to_tick(120_051.0), 120_100);
    }

    #[test]
    fn band_is_seven_percent_rounded_inwards() {
        // Worked by hand: 25,000 × 1.07 = 26,750 and × 0.93 = 23,250, both
        // on the 50 VND tick.
        let band = Band::new(25_000);
        assert_eq!((band.floor, band.ceiling), (23_250, 26_750));
        // 10,500 × 1.07 = 11,235 → down to 11,200; × 0.93 = 9,765 → up to 9,770.
        let band = Band::new(10_500);
        assert_eq!((band.floor, band.ceiling), (9_770, 11_200));
        // 120,100 × 1.07 = 128,507 → 128,500; × 0.93 = 111,693 → 111,700.
        let band = Band::new(120_100);
        assert_eq!((band.floor, band.ceiling), (111_700, 128_500));
        // 47,000 × 1.07 = 50,290 → 50,200 (the 100 VND tick above 50,000).
        assert_eq!(Band::new(47_000).ceiling, 50_200);
    }

    #[test]
    fn vn30_is_complete_and_plausible() {
        assert_eq!(VN30.len(), 30);
        for (symbol, _, _, base, shares, free_float) in VN30 {
            assert_eq!(round_to_tick(base as f64), base, "{symbol}");
            assert!(shares >= 500 * M, "{symbol}");
            assert!((0.0..=1.0).contains(&free_float) && free_float > 0.0);
        }
        let other = listing("XYZ", || 0.5);
        assert!((10_000..=100_000).contains(&other.base_price));
    }
}
