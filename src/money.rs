//! Currencies and amounts: the one currency table, and exact conversion from major units.
//!
//! Amounts are never floats and never rounded: a value with more decimals than its currency has is an
//! error for the row, not a guess.

/// A currency both Omise APIs document, with its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    /// Lowercase ISO 4217 code, as the API takes it.
    pub code: &'static str,
    /// Digits after the decimal point (JPY has none).
    pub exponent: u32,
}

/// The documented currencies (the API reference).
pub const CURRENCIES: &[Currency] = &[
    Currency { code: "thb", exponent: 2 },
    Currency { code: "jpy", exponent: 0 },
    Currency { code: "sgd", exponent: 2 },
    Currency { code: "myr", exponent: 2 },
    Currency { code: "usd", exponent: 2 },
];

impl Currency {
    /// Looks a code up, ignoring case (`THB` and `thb` are the same currency).
    pub fn find(code: &str) -> Option<Currency> {
        let code = code.trim();
        CURRENCIES.iter().copied().find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// The codes, for error messages.
    pub fn list() -> String {
        CURRENCIES.iter().map(|c| c.code).collect::<Vec<_>>().join(", ")
    }

    /// Renders a minor-unit amount in major units (`150000` THB → `1500.00`).
    fn format_major(&self, minor: u64) -> String {
        if self.exponent == 0 {
            return minor.to_string();
        }
        let scale = 10u64.pow(self.exponent);
        format!("{}.{:0width$}", minor / scale, minor % scale, width = self.exponent as usize)
    }
}

impl Currency {
    /// A minor-unit amount as a customer reads it, thousands grouped: `120000` THB → `1,200.00 THB`.
    pub fn display(&self, minor: u64) -> String {
        let major = self.format_major(minor);
        let (whole, fraction) = major.split_once('.').map_or((major.as_str(), None), |(w, f)| (w, Some(f)));
        let mut grouped = String::new();
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if let Some(fraction) = fraction {
            grouped.push('.');
            grouped.push_str(fraction);
        }
        format!("{grouped} {}", self.code.to_ascii_uppercase())
    }
}

/// A minor-unit amount in the currency named `code`, as a customer reads it: `1,200.00 THB` for a currency
/// of the table; a code it does not know (or none) keeps the smallest unit, said so: `120000 XYZ (smallest
/// unit)`. The one way linkbatch writes money for people (mail, validate, summaries).
pub fn display(minor: u64, code: &str) -> String {
    match Currency::find(code) {
        Some(currency) => currency.display(minor),
        None if code.trim().is_empty() => format!("{minor} (smallest unit)"),
        None => format!("{minor} {} (smallest unit)", code.trim().to_ascii_uppercase()),
    }
}

/// Which unit an amount column is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AmountUnit {
    /// Smallest unit: satang, cents, yen (`99000`).
    #[default]
    Minor,
    /// Main unit with a decimal point (`990.00`).
    Major,
}

/// Why an amount was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    /// Empty cell.
    #[error("amount is empty")]
    Empty,
    /// Not a plain non-negative number (thousands separators, signs, letters).
    #[error("amount `{0}` is not a plain non-negative number (no signs, spaces or thousands separators)")]
    NotANumber(String),
    /// More decimals than the currency has.
    #[error("amount `{value}` has more decimals than {currency} allows ({exponent}); it is never rounded")]
    TooPrecise {
        /// The amount as given.
        value: String,
        /// The currency code.
        currency: &'static str,
        /// Digits the currency has.
        exponent: u32,
    },
    /// A minor-unit amount written with a decimal point.
    #[error("amount `{0}` has a decimal point but the job says amounts are in minor units (amount_unit = \"minor\")")]
    FractionInMinor(String),
    /// Too large to be an amount.
    #[error("amount `{0}` is too large")]
    TooLarge(String),
}

/// Parses an amount into minor units, exactly.
pub fn parse_amount(text: &str, unit: AmountUnit, currency: Currency) -> Result<u64, AmountError> {
    let value = text.trim();
    if value.is_empty() {
        return Err(AmountError::Empty);
    }
    let (whole, fraction) = match value.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (value, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(AmountError::NotANumber(value.to_owned()));
    }
    let too_large = || AmountError::TooLarge(value.to_owned());
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    match unit {
        AmountUnit::Minor => match fraction {
            // "1500.00" in minor units only makes sense as a whole number of minor units.
            Some(f) if f.bytes().any(|b| b != b'0') => Err(AmountError::FractionInMinor(value.to_owned())),
            _ => Ok(whole),
        },
        AmountUnit::Major => {
            let fraction = fraction.unwrap_or("");
            let significant = fraction.trim_end_matches('0');
            if significant.len() > currency.exponent as usize {
                return Err(AmountError::TooPrecise {
                    value: value.to_owned(),
                    currency: currency.code,
                    exponent: currency.exponent,
                });
            }
            let scale = 10u64.pow(currency.exponent);
            let mut minor_part: u64 = 0;
            for (i, b) in significant.bytes().enumerate() {
                minor_part += u64::from(b - b'0') * 10u64.pow(currency.exponent - 1 - i as u32);
            }
            whole.checked_mul(scale).and_then(|m| m.checked_add(minor_part)).ok_or_else(too_large)
        }
    }
}

/// The most a JSON number's exponent may shift its point: no amount needs more, and it bounds the text.
const MAX_EXPONENT: i64 = 40;

/// A JSON number's text as a plain decimal (`1.5e2` → `150`, `2.50` → `2.50`), exactly: the digits are moved,
/// never computed, so nothing is rounded. An exponent past [`MAX_EXPONENT`] either way is refused
/// (`1e-400`, `1e309`): no amount is that small or that large.
pub fn decimal_text(number: &str) -> Result<String, String> {
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(at) => (&number[..at], &number[at + 1..]),
        None => return Ok(number.to_owned()),
    };
    let exponent: i64 = exponent
        .parse()
        .ok()
        .filter(|e: &i64| e.abs() <= MAX_EXPONENT)
        .ok_or_else(|| format!("number `{number}` has an exponent past {MAX_EXPONENT}: not an exact amount"))?;
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    // Where the point goes in `digits`, once the exponent has moved it.
    let point = i64::try_from(whole.len()).unwrap_or(i64::MAX).saturating_add(exponent);
    let text = if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        format!("0.{zeros}{digits}")
    } else {
        let point = usize::try_from(point).unwrap_or(usize::MAX);
        if point >= digits.len() {
            format!("{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    // Leading zeros of the whole part are not part of the value ("0150" is 150).
    let trimmed = text.trim_start_matches('0');
    let text = if trimmed.is_empty() || trimmed.starts_with('.') { format!("0{trimmed}") } else { trimmed.to_owned() };
    Ok(format!("{sign}{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thb() -> Currency {
        Currency::find("THB").unwrap()
    }

    #[test]
    fn amounts_read_as_a_customer_reads_them() {
        assert_eq!(display(99000, "thb"), "990.00 THB");
        assert_eq!(display(120_000, "THB"), "1,200.00 THB");
        assert_eq!(display(2024, "jpy"), "2,024 JPY");
        assert_eq!(display(120_000, "xyz"), "120000 XYZ (smallest unit)");
        assert_eq!(display(120_000, ""), "120000 (smallest unit)");
    }

    #[test]
    fn json_numbers_become_their_exact_decimal_text() {
        for (number, text) in [
            ("123456789012345.67", "123456789012345.67"),
            ("1.5e2", "150"),
            ("15E-1", "1.5"),
            ("1e-2", "0.01"),
            ("2.50", "2.50"),
            ("0", "0"),
            ("0.5e1", "5"),
            ("-1e2", "-100"),
            ("12e0", "12"),
        ] {
            assert_eq!(decimal_text(number).as_deref(), Ok(text), "{number}");
        }
        assert!(decimal_text("1e-400").is_err());
        assert!(decimal_text("1e309").is_err());
        assert_eq!(
            parse_amount(&decimal_text("123456789012345.67").unwrap(), AmountUnit::Major, thb()),
            Ok(12345678901234567)
        );
        assert!(parse_amount(&decimal_text("1e-3").unwrap(), AmountUnit::Major, thb()).is_err(), "never rounded");
    }

    #[test]
    fn major_units_convert_exactly_by_exponent() {
        assert_eq!(parse_amount("1500.00", AmountUnit::Major, thb()), Ok(150_000));
        assert_eq!(thb().display(120_000), "1,200.00 THB");
        assert_eq!(thb().display(1_200), "12.00 THB");
        assert_eq!(thb().display(123_456_789), "1,234,567.89 THB");
        assert_eq!(Currency::find("jpy").unwrap().display(1_200), "1,200 JPY");
        assert_eq!(parse_amount("1500.5", AmountUnit::Major, thb()), Ok(150_050));
        assert_eq!(parse_amount("0.07", AmountUnit::Major, thb()), Ok(7));
        assert_eq!(parse_amount("1500", AmountUnit::Major, Currency::find("jpy").unwrap()), Ok(1500));
        assert_eq!(parse_amount("1500.0", AmountUnit::Major, Currency::find("jpy").unwrap()), Ok(1500));
    }

    #[test]
    fn never_rounds_and_refuses_separators() {
        assert!(matches!(parse_amount("1.005", AmountUnit::Major, thb()), Err(AmountError::TooPrecise { .. })));
        assert!(matches!(
            parse_amount("1500.5", AmountUnit::Major, Currency::find("jpy").unwrap()),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(parse_amount("1,500.00", AmountUnit::Major, thb()), Err(AmountError::NotANumber(_))));
        assert!(matches!(parse_amount("-5", AmountUnit::Minor, thb()), Err(AmountError::NotANumber(_))));
        assert!(matches!(parse_amount("12.5", AmountUnit::Minor, thb()), Err(AmountError::FractionInMinor(_))));
        assert_eq!(parse_amount("", AmountUnit::Minor, thb()), Err(AmountError::Empty));
        assert!(matches!(
            parse_amount("99999999999999999999", AmountUnit::Minor, thb()),
            Err(AmountError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_major() {
        assert_eq!(thb().format_major(150_050), "1500.50");
        assert_eq!(Currency::find("jpy").unwrap().format_major(1500), "1500");
    }
}
