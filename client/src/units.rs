//! Quantities and money: integer base units, exact parsing and printing, checked arithmetic.
//! Never floating point: 1.80 USD is 180 cents, 1 kg is 1000 g.

use std::cmp::Ordering;
use std::fmt;

use crate::proto;

/// A base unit, as the wire has it.
pub fn unit_symbol(unit: i32) -> &'static str {
    match proto::Unit::try_from(unit) {
        Ok(proto::Unit::Gram) => "g",
        Ok(proto::Unit::Millilitre) => "ml",
        Ok(proto::Unit::Piece) => "pcs",
        _ => "?",
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    #[error("{0:?} is not a quantity: write an integer or decimal and a unit, such as 1200kg, 69.5kg, 500g, 2t, 12pcs, 750ml or 3l")]
    BadQuantity(String),
    #[error("{0:?} is not a price: write CURRENCY AMOUNT/UNIT, such as \"USD 1.80/lb\" or \"USD 4.25/kg\"")]
    BadPrice(String),
    #[error("{0:?} is not an ISO 4217 currency code (three capital letters, such as USD)")]
    BadCurrency(String),
    #[error("{0} has more decimals than {1} allows")]
    TooPrecise(String, String),
    #[error("{0} is too large")]
    Overflow(String),
}

/// Parses a decimal with at most `scale_digits` decimals into an integer scaled by 10^scale.
fn parse_decimal(text: &str, scale_digits: u32) -> Option<u128> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() as u32 > scale_digits {
        return None;
    }
    let mut value: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        value = value.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    value.checked_mul(10u128.checked_pow(scale_digits - frac.len() as u32)?)
}

/// Units a person may type, with their size in base units (milli-base units, so that
/// "69.5kg" is exact): (symbol, base unit, milli-base units per 1).
const QUANTITY_UNITS: &[(&str, proto::Unit, u128)] = &[
    ("t", proto::Unit::Gram, 1_000_000_000),
    ("kg", proto::Unit::Gram, 1_000_000),
    ("g", proto::Unit::Gram, 1_000),
    ("l", proto::Unit::Millilitre, 1_000_000),
    ("ml", proto::Unit::Millilitre, 1_000),
    ("pcs", proto::Unit::Piece, 1_000),
    ("pc", proto::Unit::Piece, 1_000),
];

/// Parses "1200kg", "69.5 kg", "500g", "2t", "12pcs", "750ml", "3l" into base units.
pub fn parse_quantity(text: &str) -> Result<proto::Quantity, UnitError> {
    let bad = || UnitError::BadQuantity(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, symbol) = t.split_at(split);
    let symbol = symbol.trim().to_ascii_lowercase();
    let (_, unit, milli) = QUANTITY_UNITS
        .iter()
        .find(|(s, _, _)| *s == symbol)
        .ok_or_else(bad)?;
    let value = parse_decimal(number, 3).ok_or_else(bad)?;
    let milli_base = value
        .checked_mul(*milli)
        .ok_or_else(|| UnitError::Overflow(text.to_owned()))?
        / 1_000;
    if milli_base % 1_000 != 0 {
        return Err(UnitError::TooPrecise(
            text.to_owned(),
            format!("one {}", unit_symbol(*unit as i32)),
        ));
    }
    let amount =
        u64::try_from(milli_base / 1_000).map_err(|_| UnitError::Overflow(text.to_owned()))?;
    if amount == 0 {
        return Err(bad());
    }
    Ok(proto::Quantity {
        amount,
        unit: *unit as i32,
    })
}

/// The base unit a symbol of [`unit_symbol`] names, as the wire has it (`Unspecified` for
/// any other text).
pub fn unit_from_symbol(symbol: &str) -> i32 {
    match symbol {
        "g" => proto::Unit::Gram as i32,
        "ml" => proto::Unit::Millilitre as i32,
        "pcs" => proto::Unit::Piece as i32,
        _ => proto::Unit::Unspecified as i32,
    }
}

/// An exact number as people read it: `units` times 10^-`decimals`, shown with exactly
/// `decimals` digits after the decimal separator (1.80 is 180 with 2 decimals). Which
/// separators write it is the writer's choice: [`fmt::Display`] writes it plainly
/// ("1234.50"), quantities' texts group it ("1,234.5"), the consumer pages write the reader's
/// locale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub units: u128,
    pub decimals: u32,
}

impl Decimal {
    /// The whole part, and the digits after the decimal separator (empty for none).
    fn split(self) -> (u128, String) {
        let Some(scale) = 10u128.checked_pow(self.decimals) else {
            return (0, String::new());
        };
        let frac = match self.decimals {
            0 => String::new(),
            d => format!("{:0width$}", self.units % scale, width = d as usize),
        };
        (self.units / scale, frac)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.split() {
            (whole, frac) if frac.is_empty() => write!(f, "{whole}"),
            (whole, frac) => write!(f, "{whole}.{frac}"),
        }
    }
}

/// A quantity for people: grams as kg or t when exact enough, otherwise as stored.
pub struct DisplayQuantity(pub u64, pub i32);

impl DisplayQuantity {
    /// The number and unit people read: 1,000 g or more as kg (1,000 ml or more as l) with
    /// no trailing zeros after the decimal separator, anything else in its base unit.
    pub fn shown(&self) -> (Decimal, &'static str) {
        let (amount, unit) = (self.0, self.1);
        let big = match proto::Unit::try_from(unit) {
            Ok(proto::Unit::Gram) => Some("kg"),
            Ok(proto::Unit::Millilitre) => Some("l"),
            _ => None,
        };
        match big {
            Some(symbol) if amount >= 1_000 => {
                let mut n = Decimal {
                    units: u128::from(amount),
                    decimals: 3,
                };
                while n.decimals > 0 && n.units.is_multiple_of(10) {
                    n.units /= 10;
                    n.decimals -= 1;
                }
                (n, symbol)
            }
            _ => (
                Decimal {
                    units: u128::from(amount),
                    decimals: 0,
                },
                unit_symbol(unit),
            ),
        }
    }
}

impl fmt::Display for DisplayQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, symbol) = self.shown();
        let (whole, frac) = n.split();
        if frac.is_empty() {
            write!(f, "{} {symbol}", group(whole))
        } else {
            write!(f, "{}.{frac} {symbol}", group(whole))
        }
    }
}

fn group(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// ISO 4217 minor-unit exponents that are not 2.
const EXPONENTS: &[(&str, u32)] = &[
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
];

/// Digits after the decimal point in `currency`'s minor unit.
pub fn currency_exponent(currency: &str) -> u32 {
    EXPONENTS
        .iter()
        .find(|(c, _)| *c == currency)
        .map_or(2, |(_, e)| *e)
}

pub fn check_currency(code: &str) -> Result<(), UnitError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(UnitError::BadCurrency(code.to_owned()))
    }
}

/// Parses "USD 1.80/lb", "USD 4.25/kg", "PEN 12/kg", "EUR 0.02/pcs" into a price. A pound is
/// 453.59237 g exactly, so "/lb" prices are kept exact by scaling both sides.
pub fn parse_price(text: &str) -> Result<proto::Price, UnitError> {
    let bad = || UnitError::BadPrice(text.to_owned());
    let (currency, rest) = text
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(bad)?;
    check_currency(currency)?;
    let (amount, per) = rest.trim().split_once('/').ok_or_else(bad)?;
    let exponent = currency_exponent(currency);
    let minor = parse_decimal(amount.trim(), exponent)
        .ok_or_else(|| UnitError::TooPrecise(amount.to_owned(), currency.to_owned()))?;
    let per = per.trim().to_ascii_lowercase();
    let (minor, per_quantity) = if per == "lb" {
        // 1 lb = 45,359,237 g / 100,000.
        (
            minor.checked_mul(100_000).ok_or_else(bad)?,
            proto::Quantity {
                amount: 45_359_237,
                unit: proto::Unit::Gram as i32,
            },
        )
    } else {
        // A unit alone ("kg"), not a quantity: "/5kg" would otherwise read as per 15 kg.
        if !per.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad());
        }
        (
            minor,
            parse_quantity(&format!("1{per}")).map_err(|_| bad())?,
        )
    };
    Ok(proto::Price {
        currency: currency.to_owned(),
        minor_units: u64::try_from(minor).map_err(|_| UnitError::Overflow(text.to_owned()))?,
        per: Some(per_quantity),
    })
}

/// Money as people read it: `minor` units of `currency`, with as many decimals as its minor
/// unit has.
pub fn money(currency: &str, minor: u128) -> Decimal {
    Decimal {
        units: minor,
        decimals: currency_exponent(currency),
    }
}

/// Money for people: "USD 1.80".
pub fn format_money(currency: &str, minor: u128) -> String {
    format!("{currency} {}", money(currency, minor))
}

/// A price per kilogram (or litre, or piece), as people read it: minor units per that unit,
/// rounded down, and its symbol; `None` when the price is per no quantity.
pub fn price_per_unit(price: &proto::Price) -> Option<(u128, &'static str)> {
    let per = price.per.as_ref().filter(|per| per.amount > 0)?;
    let (scale, symbol) = match proto::Unit::try_from(per.unit) {
        Ok(proto::Unit::Gram) => (1_000u128, "kg"),
        Ok(proto::Unit::Millilitre) => (1_000, "l"),
        _ => (1, "pcs"),
    };
    Some((
        u128::from(price.minor_units) * scale / u128::from(per.amount),
        symbol,
    ))
}

/// A price per kilogram (or litre, or piece) for people: "USD 3.97/kg", rounded down to the
/// minor unit.
pub fn format_price(price: &proto::Price) -> String {
    if price.per.is_none() {
        return format!("{} (no quantity)", price.currency);
    }
    match price_per_unit(price) {
        Some((minor, symbol)) => format!("{}/{symbol}", format_money(&price.currency, minor)),
        None => format!("{} (per nothing)", price.currency),
    }
}

/// Grams in a pound, times 100,000 (a pound is exactly 453.59237 g).
const GRAMS_PER_LB_E5: u128 = 45_359_237;

/// A price per pound, for goods counted in grams (coffee is priced per lb): minor units per
/// pound, rounded down like [`price_per_unit`]; `None` for other goods.
pub fn price_per_lb(price: &proto::Price) -> Option<u128> {
    let per = price
        .per
        .as_ref()
        .filter(|per| per.unit == proto::Unit::Gram as i32 && per.amount > 0)?;
    Some(u128::from(price.minor_units) * GRAMS_PER_LB_E5 / (u128::from(per.amount) * 100_000))
}

/// Whether a price was stated per pound (as [`parse_price`] keeps "/lb").
pub fn stated_per_lb(price: &proto::Price) -> bool {
    price.per.as_ref().is_some_and(|per| {
        per.unit == proto::Unit::Gram as i32 && u128::from(per.amount) == GRAMS_PER_LB_E5
    })
}

/// Compares two prices (same currency and unit) exactly: a/b against c/d by cross
/// multiplication in 128 bits, which cannot overflow for 64-bit inputs.
pub fn compare_prices(a: &proto::Price, b: &proto::Price) -> Option<Ordering> {
    let (pa, pb) = (a.per.as_ref()?, b.per.as_ref()?);
    if a.currency != b.currency || pa.unit != pb.unit || pa.amount == 0 || pb.amount == 0 {
        return None;
    }
    let left = u128::from(a.minor_units) * u128::from(pb.amount);
    let right = u128::from(b.minor_units) * u128::from(pa.amount);
    Some(left.cmp(&right))
}

/// What a price amounts to for `quantity` base units, in minor units (exact, rounded down).
pub fn price_total(price: &proto::Price, quantity: u64) -> Option<u128> {
    let per = price.per.as_ref()?;
    if per.amount == 0 {
        return None;
    }
    Some(u128::from(price.minor_units) * u128::from(quantity) / u128::from(per.amount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantities_parse_exactly() {
        assert_eq!(parse_quantity("1200kg").unwrap().amount, 1_200_000);
        assert_eq!(parse_quantity("69.5 kg").unwrap().amount, 69_500);
        assert_eq!(parse_quantity("2t").unwrap().amount, 2_000_000);
        assert_eq!(
            parse_quantity("750ml").unwrap().unit,
            proto::Unit::Millilitre as i32
        );
        assert_eq!(parse_quantity("12pcs").unwrap().amount, 12);
        for bad in [
            "",
            "kg",
            "12",
            "1.5g",
            "0kg",
            "-3kg",
            "1e3kg",
            "12 parsecs",
            "99999999999999999999t",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantities_print_for_people() {
        assert_eq!(
            DisplayQuantity(1_200_000, proto::Unit::Gram as i32).to_string(),
            "1,200 kg"
        );
        assert_eq!(
            DisplayQuantity(69_500, proto::Unit::Gram as i32).to_string(),
            "69.5 kg"
        );
        assert_eq!(
            DisplayQuantity(500, proto::Unit::Gram as i32).to_string(),
            "500 g"
        );
        assert_eq!(
            DisplayQuantity(12, proto::Unit::Piece as i32).to_string(),
            "12 pcs"
        );
    }

    #[test]
    fn prices_parse_and_compare_exactly() {
        let per_lb = parse_price("USD 1.80/lb").unwrap();
        let per_kg = parse_price("USD 3.97/kg").unwrap();
        let above = parse_price("USD 3.98/kg").unwrap();
        // 1.80/lb is 3.9683.../kg.
        assert_eq!(compare_prices(&per_kg, &per_lb), Some(Ordering::Greater));
        assert_eq!(
            compare_prices(&parse_price("USD 3.96/kg").unwrap(), &per_lb),
            Some(Ordering::Less)
        );
        assert_eq!(compare_prices(&above, &per_kg), Some(Ordering::Greater));
        assert_eq!(format_price(&per_lb), "USD 3.96/kg");
        assert_eq!(parse_price("JPY 500/kg").unwrap().minor_units, 500);
        assert!(parse_price("USD 1.805/kg").is_err());
        assert!(parse_price("usd 1/kg").is_err());
        assert!(parse_price("USD 1").is_err());
        // Regression (found by fuzzing): a number before the unit was glued to the 1.
        assert!(parse_price("USD 1.80/5kg").is_err());
        assert!(parse_price("USD 1.80/.5kg").is_err());
        assert_eq!(
            compare_prices(&per_kg, &parse_price("EUR 3.97/kg").unwrap()),
            None
        );
    }

    #[test]
    fn the_numbers_behind_the_texts() {
        let gram = proto::Unit::Gram as i32;
        let dec = |units, decimals| Decimal { units, decimals };
        assert_eq!(
            DisplayQuantity(12_000_000, gram).shown(),
            (dec(12_000, 0), "kg")
        );
        assert_eq!(
            DisplayQuantity(1_234_500, gram).shown(),
            (dec(12_345, 1), "kg")
        );
        assert_eq!(DisplayQuantity(999, gram).shown(), (dec(999, 0), "g"));
        let litres = DisplayQuantity(1_001, proto::Unit::Millilitre as i32);
        assert_eq!(litres.shown(), (dec(1_001, 3), "l"));
        assert_eq!(litres.to_string(), "1.001 l");
        for unit in [
            proto::Unit::Gram,
            proto::Unit::Millilitre,
            proto::Unit::Piece,
        ] {
            assert_eq!(unit_from_symbol(unit_symbol(unit as i32)), unit as i32);
        }
        assert_eq!(unit_from_symbol("kg"), proto::Unit::Unspecified as i32);

        assert_eq!(money("USD", 180), dec(180, 2));
        assert_eq!(money("JPY", 500), dec(500, 0));
        assert_eq!(money("KWD", 1_500), dec(1_500, 3));
        assert_eq!(format_money("USD", 5_158_402), "USD 51584.02");
        assert_eq!(format_money("JPY", 1_234_567), "JPY 1234567");
        assert_eq!(format_money("KWD", 1_500), "KWD 1.500");
        assert_eq!(dec(5, 2).to_string(), "0.05");

        let per_lb = parse_price("USD 1.80/lb").unwrap();
        let per_kg = parse_price("USD 3.97/kg").unwrap();
        assert_eq!(price_per_unit(&per_lb), Some((396, "kg")));
        assert_eq!(price_per_lb(&per_lb), Some(180));
        assert_eq!(price_per_lb(&per_kg), Some(180));
        assert!(stated_per_lb(&per_lb) && !stated_per_lb(&per_kg));
        let per_piece = parse_price("EUR 0.02/pcs").unwrap();
        assert_eq!(price_per_unit(&per_piece), Some((2, "pcs")));
        assert_eq!(price_per_lb(&per_piece), None);
        let nothing = proto::Price {
            per: Some(proto::Quantity { amount: 0, unit: 1 }),
            ..per_kg.clone()
        };
        assert_eq!(price_per_unit(&nothing), None);
        assert_eq!(format_price(&nothing), "USD (per nothing)");
    }

    proptest! {
        /// A quantity's text is its number and unit written the report's way.
        #[test]
        fn a_quantitys_text_is_its_number_and_unit(amount in any::<u64>(), unit in 0..4i32) {
            let q = DisplayQuantity(amount, unit);
            let (n, symbol) = q.shown();
            let (whole, frac) = n.split();
            let number = match frac.as_str() {
                "" => group(whole),
                frac => format!("{}.{frac}", group(whole)),
            };
            prop_assert_eq!(q.to_string(), format!("{number} {symbol}"));
            prop_assert!(!frac.ends_with('0'));
        }

        #[test]
        fn price_arithmetic_never_overflows(m in any::<u64>(), p in 1..u64::MAX, q in any::<u64>(), m2 in any::<u64>(), p2 in 1..u64::MAX) {
            let a = proto::Price { currency: "USD".into(), minor_units: m, per: Some(proto::Quantity { amount: p, unit: 1 }) };
            let b = proto::Price { currency: "USD".into(), minor_units: m2, per: Some(proto::Quantity { amount: p2, unit: 1 }) };
            prop_assert!(compare_prices(&a, &b).is_some());
            prop_assert!(price_total(&a, q).is_some());
            let _ = format_price(&a);
        }

        #[test]
        fn parsing_never_panics(s in ".{0,40}") {
            let _ = parse_quantity(&s);
            let _ = parse_price(&s);
        }
    }
}
