//! Money as integer micro-dollars, and model prices.
//!
//! The ledger, the budgets and every comparison use [`Micros`] (1 = $0.000001), never `f64`:
//! sums of floats drift, and a budget check must be exact. A request's cost is rounded *up* to
//! the next micro-dollar, so the ledger never under-charges and the ledger total is exactly the
//! sum of the per-request costs.

use crate::Usage;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// An amount of money in micro-dollars (US$ 1 = 1,000,000).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    pub const ZERO: Micros = Micros(0);

    /// Parses a decimal dollar amount such as `"12.5"`, `"0.000001"` or `"3"` exactly (no float
    /// on the way). At most six decimals; no sign, exponent or separators.
    pub fn parse_dollars(s: &str) -> Result<Micros, String> {
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err("an amount must have digits".to_owned());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{s:?} is not a plain decimal amount of dollars (like \"12.50\")"
            ));
        }
        if frac.len() > 6 {
            return Err(format!(
                "{s:?} has more than six decimals (the smallest unit is $0.000001)"
            ));
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("{s:?} is too large an amount"))?
        };
        let frac_micros: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().expect("six digits parse")
        };
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac_micros))
            .map(Micros)
            .ok_or_else(|| format!("{s:?} is too large an amount"))
    }

    /// Converts a float from a config file (TOML numbers such as `2.5`), rounding to the
    /// nearest micro-dollar. Only for reading configuration; arithmetic never uses floats.
    pub fn from_dollars_f64(dollars: f64) -> Result<Micros, String> {
        if !dollars.is_finite() || dollars < 0.0 {
            return Err(format!("{dollars} is not a non-negative amount"));
        }
        let micros = (dollars * 1_000_000.0).round();
        if micros > i64::MAX as f64 / 2.0 {
            return Err(format!("{dollars} is too large an amount"));
        }
        Ok(Micros(micros as i64))
    }

    pub fn saturating_add(self, other: Micros) -> Micros {
        Micros(self.0.saturating_add(other.0))
    }

    /// Dollars as a JSON-friendly string with six decimals (`"0.001250"`).
    pub fn to_dollars_string(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Micros {
    /// `1.250000` for 1,250,000 micros; negative amounts keep their sign.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

impl Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0 + rhs.0)
    }
}

impl AddAssign for Micros {
    fn add_assign(&mut self, rhs: Micros) {
        self.0 += rhs.0;
    }
}

impl Sub for Micros {
    type Output = Micros;
    fn sub(self, rhs: Micros) -> Micros {
        Micros(self.0 - rhs.0)
    }
}

/// A model's price, in micro-dollars per million tokens (so `$2.50 / 1M` is `2_500_000`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: i64,
    /// Completion tokens.
    pub output: i64,
    /// Prompt tokens served from the provider's prompt cache.
    pub cached_input: i64,
}

impl Price {
    pub const FREE: Price = Price {
        input: 0,
        output: 0,
        cached_input: 0,
    };

    /// The cost of `usage`, rounded up to the next micro-dollar. `usage.input_tokens` includes
    /// the cached ones, which are billed at `cached_input` instead of `input`.
    pub fn cost(&self, usage: &Usage) -> Micros {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        // Micro-dollars times a million: u128 cannot overflow for any real token count.
        let scaled = uncached as u128 * self.input.max(0) as u128
            + cached as u128 * self.cached_input.max(0) as u128
            + usage.output_tokens as u128 * self.output.max(0) as u128;
        let micros = scaled.div_ceil(1_000_000);
        Micros(micros.min(i64::MAX as u128) as i64)
    }

    /// The most a request can cost: `prompt_tokens` all uncached plus `max_output_tokens`.
    pub fn worst_case(&self, prompt_tokens: u64, max_output_tokens: u64) -> Micros {
        self.cost(&Usage {
            input_tokens: prompt_tokens,
            output_tokens: max_output_tokens,
            cached_input_tokens: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(Micros::parse_dollars("12.5"), Ok(Micros(12_500_000)));
        assert_eq!(Micros::parse_dollars("0.000001"), Ok(Micros(1)));
        assert_eq!(Micros::parse_dollars("3"), Ok(Micros(3_000_000)));
        assert_eq!(Micros::parse_dollars(".25"), Ok(Micros(250_000)));
        assert!(Micros::parse_dollars("0.0000001").is_err());
        assert!(Micros::parse_dollars("-1").is_err());
        assert!(Micros::parse_dollars("1e3").is_err());
        assert!(Micros::parse_dollars("").is_err());
        assert_eq!(Micros::from_dollars_f64(2.5), Ok(Micros(2_500_000)));
        assert_eq!(Micros::from_dollars_f64(0.15), Ok(Micros(150_000)));
        assert!(Micros::from_dollars_f64(-0.1).is_err());
    }

    #[test]
    fn display_has_six_decimals() {
        assert_eq!(Micros(1_250_000).to_string(), "1.250000");
        assert_eq!(Micros(7).to_string(), "0.000007");
        assert_eq!(Micros(-7).to_string(), "-0.000007");
    }

    #[test]
    fn cost_rounds_up_and_bills_cached_input_separately() {
        let price = Price {
            input: 2_500_000,
            output: 10_000_000,
            cached_input: 1_250_000,
        };
        let usage = Usage {
            input_tokens: 1000,
            output_tokens: 100,
            cached_input_tokens: 400,
        };
        // 600 * 2.5 + 400 * 1.25 + 100 * 10 = 1500 + 500 + 1000 micro-dollars
        assert_eq!(price.cost(&usage), Micros(3000));
        let one = Usage {
            input_tokens: 1,
            output_tokens: 0,
            cached_input_tokens: 0,
        };
        let cheap = Price {
            input: 150_000,
            output: 0,
            cached_input: 0,
        };
        assert_eq!(cheap.cost(&one), Micros(1), "fractions round up");
        assert_eq!(Price::FREE.cost(&usage), Micros::ZERO);
        assert_eq!(price.worst_case(1000, 100), Micros(3500));
    }
}
