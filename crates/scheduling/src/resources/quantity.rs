//! Kubernetes quantity strings (`100m`, `1.5`, `2Gi`, `1e3`, `1k`) read exactly.

use std::fmt;

/// A parsed quantity: `mantissa × 10^exponent × 1024^binary`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exponent: i32,
    binary: u32,
}

/// Why a string is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("\"{0}\" is not a quantity: expected a number such as 100m, 1.5, 2Gi or 1e3")]
    Malformed(String),
    #[error(
        "\"{text}\" has an unknown suffix \"{suffix}\" (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent)"
    )]
    UnknownSuffix { text: String, suffix: String },
    #[error("\"{0}\" is too large")]
    TooLarge(String),
}

/// Reads a Kubernetes quantity: an optional sign, digits with an optional fraction, then a
/// binary suffix (`Ki`…`Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M`…`E`) or a decimal
/// exponent (`e3`, `E-2`).
pub fn parse_quantity(text: &str) -> Result<Quantity, QuantityError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(QuantityError::Empty);
    }
    let malformed = || QuantityError::Malformed(text.to_string());
    let (negative, unsigned) = match trimmed.as_bytes()[0] {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let number_len = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(malformed());
    }
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or_else(|| QuantityError::TooLarge(text.to_string()))?;
    }
    let mut exponent = -(i32::try_from(fraction.len()).map_err(|_| malformed())?);
    let mut binary = 0;
    match suffix {
        "" => {}
        "Ki" => binary = 1,
        "Mi" => binary = 2,
        "Gi" => binary = 3,
        "Ti" => binary = 4,
        "Pi" => binary = 5,
        "Ei" => binary = 6,
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        other => {
            let power = other
                .strip_prefix(['e', 'E'])
                .and_then(|p| p.parse::<i32>().ok())
                .filter(|p| p.abs() <= 64)
                .ok_or_else(|| QuantityError::UnknownSuffix {
                    text: text.to_string(),
                    suffix: other.to_string(),
                })?;
            exponent += power;
        }
    }
    Ok(Quantity {
        negative,
        mantissa,
        exponent,
        binary,
    })
}

impl Quantity {
    /// The value in whole units, rounded up (away from zero for negatives, as Kubernetes does).
    pub fn units(&self) -> i64 {
        self.scaled(0)
    }

    /// The value in thousandths (millicores for cpu), rounded up.
    pub fn millis(&self) -> i64 {
        self.scaled(3)
    }

    /// The value as a float, for display and ratios.
    pub fn as_f64(&self) -> f64 {
        let sign = if self.negative { -1.0 } else { 1.0 };
        sign * self.mantissa as f64 * 10f64.powi(self.exponent) * 1024f64.powi(self.binary as i32)
    }

    /// `ceil(|value| × 10^decimals)` with the sign reapplied; saturates at the i64 range.
    fn scaled(&self, decimals: i32) -> i64 {
        let exponent = self.exponent + decimals;
        let mut numerator = self.mantissa;
        for _ in 0..self.binary {
            numerator = numerator.saturating_mul(1024);
        }
        let magnitude = if exponent >= 0 {
            let mut value = numerator;
            for _ in 0..exponent {
                value = value.saturating_mul(10);
            }
            value
        } else {
            let divisor = 10u128.checked_pow(exponent.unsigned_abs());
            match divisor {
                Some(d) => numerator.div_ceil(d),
                None => u128::from(numerator > 0),
            }
        };
        let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
        if self.negative { -magnitude } else { magnitude }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_f64())
    }
}
