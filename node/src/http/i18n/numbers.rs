//! Numbers on the consumer pages as the reader's locale writes them: quantities, money,
//! prices, percentages and counts, with the separators and grouping that CLDR gives the
//! page's language and region (ICU4X's compiled data). "1,234.5" in English and in Mexico,
//! "1.234,5" in Argentina, "1234,5" but "12.345,6" in Spain (and for `es` with no region or
//! a region CLDR does not know). What a number is (kg or g, per lb or per kg, the rounding)
//! is decided by the client's `units`, as in the report's texts; only its writing is decided
//! here, and so are the places of the currency and the percent sign, from CLDR's patterns:
//! "USD 2.10" and "84%" in Latin America and most of the English-speaking world, "2,10 USD"
//! and "84 %" in Spain. The JSON view and the CLI keep the report's own texts.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use fairtrail_client::units::{self, Decimal};
use fairtrail_client::verify::QuantityView;
use icu_decimal::input;
use icu_decimal::{DecimalFormatter, DecimalFormatterPreferences};
use icu_locale_core::subtags::{language, Language};
use icu_locale_core::{DataLocale, LanguageIdentifier};
use icu_locale_fallback::{LocaleFallbackConfig, LocaleFallbacker};

use super::{Lang, Locale};

/// Writes numbers for one locale.
pub struct Numbers {
    /// `None` only when CLDR's data cannot be loaded, which the data compiled in (down to the
    /// root locale, where every locale falls back) rules out; numbers are then written plainly
    /// ("1234.5") rather than the page failing.
    formatter: Option<DecimalFormatter>,
    /// The currency code after the amount ([`CURRENCY_AFTER`]).
    currency_after: bool,
    /// But the euro before it ([`EURO_BEFORE`]).
    euro_before: bool,
    /// A no-break space before the percent sign ([`PERCENT_SPACED`]).
    percent_spaced: bool,
    style: NumberStyle,
}

/// How a [`Numbers`] writes, as a key: equal styles write every number alike, so the pages of
/// locales that share one (`es-AR` and `es-CO`) are built and cached once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NumberStyle(String);

/// The number style of every locale met so far, so that a page served from the cache does
/// not build a formatter to find its key. Bounded by the tags `Locale` accepts: two
/// languages, and regions of two letters or three digits.
static STYLES: OnceLock<Mutex<HashMap<Locale, NumberStyle>>> = OnceLock::new();

impl Numbers {
    /// [`Numbers::style`] of `locale`'s numbers, worked out once per locale.
    pub fn style_of(locale: Locale) -> NumberStyle {
        let styles = STYLES.get_or_init(Default::default);
        // A poisoned lock only means another thread panicked while inserting: the map is
        // still whole.
        let mut styles = styles.lock().unwrap_or_else(|e| e.into_inner());
        styles
            .entry(locale)
            .or_insert_with(|| Numbers::new(locale).style)
            .clone()
    }

    /// The numbers of `locale`; a region CLDR does not know writes as its language does.
    pub fn new(locale: Locale) -> Numbers {
        let language: Language = match locale.lang {
            Lang::En => language!("en"),
            Lang::Es => language!("es"),
        };
        let id = LanguageIdentifier {
            language,
            script: None,
            region: locale.region,
            variants: Default::default(),
        };
        let prefs = DecimalFormatterPreferences::from(&id);
        let formatter = match DecimalFormatter::try_new(prefs, Default::default()) {
            Ok(formatter) => Some(formatter),
            Err(e) => {
                tracing::error!(error = %e, ?locale, "no CLDR data: numbers written plainly");
                None
            }
        };
        let chain = fallback_chain(&id);
        let mut numbers = Numbers {
            formatter,
            currency_after: cldr_says(&chain, &CURRENCY_AFTER),
            euro_before: cldr_says(&chain, &EURO_BEFORE),
            percent_spaced: cldr_says(&chain, &PERCENT_SPACED),
            style: NumberStyle(String::new()),
        };
        // INVARIANT: these samples show everything the formatter varies for the numbers the
        // pages write (never negative): its digits, both separators, the sizes of the first
        // and later groups (1,234,567 or 12,34,567), and from how many digits it groups (1234
        // or 1,234; 12345 or 12,345). With the places of the currency and of the percent
        // sign, they are the whole style (the language is in it too, as pages differ by it
        // anyway).
        let mut style = String::from(locale.lang.code());
        for (units, decimals) in [(123_456_789, 2), (1234, 0), (12_345, 0)] {
            style.push(' ');
            style.push_str(&numbers.number(Decimal { units, decimals }));
        }
        style.push_str(if numbers.currency_after {
            " 1 ¤"
        } else {
            " ¤ 1"
        });
        if numbers.euro_before {
            style.push_str(" € 1");
        }
        style.push_str(if numbers.percent_spaced {
            " 1 %"
        } else {
            " 1%"
        });
        numbers.style = NumberStyle(style);
        numbers
    }

    pub fn style(&self) -> &NumberStyle {
        &self.style
    }

    /// A number, exactly as given: "1,234.50" in English.
    pub fn number(&self, n: Decimal) -> String {
        match &self.formatter {
            Some(formatter) => formatter.format(&decimal(n)).to_string(),
            None => n.to_string(),
        }
    }

    /// A count: "12,345" in English, "12.345" in Spanish.
    pub fn count(&self, n: u64) -> String {
        self.number(Decimal {
            units: u128::from(n),
            decimals: 0,
        })
    }

    /// A quantity, in the unit its `text` uses: "12,000 kg", "12.000 kg".
    pub fn quantity(&self, q: &QuantityView) -> String {
        let (n, unit) = q.shown();
        format!("{} {unit}", self.number(n))
    }

    /// Money: "USD 51,584.02" in English, "USD 51.584,02" in Argentina, "51.584,02 USD" in
    /// Spain.
    pub fn money(&self, currency: &str, minor: u128) -> String {
        self.with_currency(currency, self.number(units::money(currency, minor)))
    }

    /// Money per unit: "USD 1.95/lb", "USD 1,95/lb", "1,95 USD/lb".
    pub fn price(&self, currency: &str, (amount, per): (Decimal, &str)) -> String {
        format!(
            "{}/{per}",
            self.with_currency(currency, self.number(amount))
        )
    }

    /// The amount with its currency code, set off by a no-break space (CLDR's currency
    /// spacing), on the side CLDR puts it.
    fn with_currency(&self, currency: &str, amount: String) -> String {
        let after = self.currency_after && !(self.euro_before && currency == "EUR");
        if after {
            format!("{amount}\u{a0}{currency}")
        } else {
            format!("{currency}\u{a0}{amount}")
        }
    }

    /// A yield given per mille, as a percentage: "84%" or "84.5%" in English and in Latin
    /// America, "84 %" or "84,5 %" in Spain (CLDR's `#,##0 %`, the space a no-break one).
    pub fn percent(&self, per_mille: u64) -> String {
        let n = if per_mille.is_multiple_of(10) {
            Decimal {
                units: u128::from(per_mille / 10),
                decimals: 0,
            }
        } else {
            Decimal {
                units: u128::from(per_mille),
                decimals: 1,
            }
        };
        if self.percent_spaced {
            format!("{}\u{a0}%", self.number(n))
        } else {
            format!("{}%", self.number(n))
        }
    }
}

/// Where CLDR's currency pattern for a currency written as letters
/// (`standard-alphaNextToNumber`; CLDR 48.2, read from cldr-json's `numbers.json`; the walk
/// follows the parent locales of ICU4X 2.4's compiled data, CLDR 49) puts the currency (`true`:
/// after the amount), for the languages and for each locale that differs from the one it
/// inherits from. `en` writes `¤ #,##0.00`, and so does every English region but `en-150`
/// ("English, Europe") and its children, which write `#,##0.00 ¤`, all but Austria,
/// Switzerland and the Netherlands; `es` writes `#,##0.00 ¤`, and so do Spain and its other
/// regions but `es-419` (Latin America, and the regions that inherit from it) and Equatorial
/// Guinea, which write `¤ #,##0.00`.
const CURRENCY_AFTER: [(&str, bool); 8] = [
    ("en", false),
    ("en-150", true),
    ("en-AT", false),
    ("en-CH", false),
    ("en-NL", false),
    ("es", true),
    ("es-419", false),
    ("es-GQ", false),
];

/// Where CLDR puts the euro where it has a pattern of its own (`currencies.json`, `EUR`,
/// `pattern`; CLDR 48.2): `¤#,##0.00`, before the amount, for `en-150` and every English
/// region that inherits from it, which put other currencies after (`EUR 14,90` but
/// `83.334,73 USD` in `en-DE`). No other English or Spanish locale has one.
const EURO_BEFORE: [(&str, bool); 3] = [("en", false), ("en-150", true), ("es", false)];

/// Whether CLDR's percent pattern (`standard`, CLDR 48.2 as above) has a no-break space
/// before the sign, for the languages and for each locale that differs from the one it
/// inherits from: `#,##0%` for `en` and most English regions, `#,##0 %` for Austria,
/// Germany, Denmark, Finland, Norway and Sweden; `#,##0 %` for `es` and Spain's regions,
/// `#,##0%` for `es-419` and its regions.
const PERCENT_SPACED: [(&str, bool); 9] = [
    ("en", false),
    ("en-AT", true),
    ("en-DE", true),
    ("en-DK", true),
    ("en-FI", true),
    ("en-NO", true),
    ("en-SE", true),
    ("es", true),
    ("es-419", false),
];

/// The locales `id` falls back through, most specific first (ICU4X's chain, from CLDR's
/// parent locales: `es-AR`, `es-419`, `es`), as tags.
fn fallback_chain(id: &LanguageIdentifier) -> Vec<String> {
    let fallbacker = LocaleFallbacker::new().for_config(LocaleFallbackConfig::default());
    let mut chain = fallbacker.fallback_for(DataLocale::from(id));
    let mut tags = Vec::new();
    // A chain is a few steps long (region, parent regions, language, `und`); the bound only
    // makes sure a surprise in the data cannot loop.
    for _ in 0..16 {
        if *chain.get() == DataLocale::default() {
            break;
        }
        tags.push(chain.get().to_string());
        chain.step();
    }
    tags
}

/// What `table` says for the locale of `chain` ([`fallback_chain`]): its first locale that
/// `table` names decides. Every table names both languages, where every chain of ours
/// passes; `false` if one did not.
fn cldr_says(chain: &[String], table: &[(&str, bool)]) -> bool {
    chain
        .iter()
        .find_map(|tag| table.iter().find(|(t, _)| t == tag).map(|&(_, says)| says))
        .unwrap_or(false)
}

/// ICU's decimal for ours: `units` shifted `decimals` places, its zeros after the separator
/// kept ("1.80").
fn decimal(n: Decimal) -> input::Decimal {
    let mut d = input::Decimal::from(n.units);
    d.multiply_pow10(-i16::try_from(n.decimals).unwrap_or(i16::MAX));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(tag: &str) -> Numbers {
        let locale = Locale::choose(Some(tag), None);
        assert_eq!(
            locale.lang.code(),
            &tag[..2],
            "{tag} names a supported language"
        );
        Numbers::new(locale)
    }

    fn dec(units: u128, decimals: u32) -> Decimal {
        Decimal { units, decimals }
    }

    /// Expected writings per locale, from CLDR (its `es` groups from five digits only:
    /// minimumGroupingDigits 2).
    #[test]
    fn numbers_are_written_as_cldr_says_for_each_locale() {
        let english = ["1,234.5", "12,345.6", "1,234,567", "0.05"];
        let period_grouping = ["1.234,5", "12.345,6", "1.234.567", "0,05"];
        let spain = ["1234,5", "12.345,6", "1.234.567", "0,05"];
        for (tags, [four, five, seven, small]) in [
            (
                &["en", "en-US", "es-MX", "es-US", "es-419", "es-PE"][..],
                english,
            ),
            (&["es", "es-ES", "es-ZZ", "es-001", "es-GQ"], spain),
            (
                &[
                    "es-AR", "es-CO", "es-CL", "es-UY", "es-VE", "es-EC", "es-PY", "es-BO",
                ],
                period_grouping,
            ),
        ] {
            for tag in tags {
                let n = numbers(tag);
                assert_eq!(n.number(dec(12_345, 1)), four, "{tag}");
                assert_eq!(n.number(dec(123_456, 1)), five, "{tag}");
                assert_eq!(n.count(1_234_567), seven, "{tag}");
                assert_eq!(n.number(dec(5, 2)), small, "{tag}");
            }
        }
        // Costa Rica groups with a non-breaking space.
        assert_eq!(numbers("es-CR").count(12_345), "12\u{a0}345");
    }

    #[test]
    fn money_keeps_its_currencys_decimals() {
        let (en, es, ar, mx) = (
            numbers("en"),
            numbers("es"),
            numbers("es-AR"),
            numbers("es-MX"),
        );
        // Two decimals, trailing zero kept.
        assert_eq!(en.money("USD", 5_158_402), "USD\u{a0}51,584.02");
        assert_eq!(es.money("USD", 5_158_402), "51.584,02\u{a0}USD");
        assert_eq!(ar.money("USD", 123_450), "USD\u{a0}1.234,50");
        assert_eq!(es.money("USD", 123_450), "1234,50\u{a0}USD");
        assert_eq!(mx.money("USD", 123_450), "USD\u{a0}1,234.50");
        assert_eq!(ar.money("EUR", 180), "EUR\u{a0}1,80");
        // Zero decimals.
        assert_eq!(en.money("JPY", 1_234_567), "JPY\u{a0}1,234,567");
        assert_eq!(ar.money("PYG", 1_234_567), "PYG\u{a0}1.234.567");
        assert_eq!(es.money("CLP", 1234), "1234\u{a0}CLP");
        // Three decimals.
        assert_eq!(en.money("KWD", 1_234_500), "KWD\u{a0}1,234.500");
        assert_eq!(ar.money("KWD", 1_234_500), "KWD\u{a0}1.234,500");
        assert_eq!(mx.money("BHD", 12_345_678), "BHD\u{a0}12,345.678");
        assert_eq!(es.money("BHD", 12_345_678), "12.345,678\u{a0}BHD");
        assert_eq!(
            ar.price("USD", (units::money("USD", 195), "lb")),
            "USD\u{a0}1,95/lb"
        );
        assert_eq!(
            es.price("USD", (units::money("USD", 195), "lb")),
            "1,95\u{a0}USD/lb"
        );
    }

    /// CLDR's currency patterns (CLDR 48.2): after the amount for `es`, Spain and the regions
    /// that inherit from `es` (but Equatorial Guinea), and for English in much of Europe
    /// (`en-150` and its children but Austria, Switzerland and the Netherlands), where the
    /// euro has a pattern of its own that puts it before; before it for `es-419` and its
    /// regions (Japan's Spanish among them), and for English elsewhere. Pages of locales that
    /// differ only there are not shared.
    #[test]
    fn the_currency_goes_where_cldr_puts_it() {
        let price = (units::money("USD", 1490), "kg");
        for tag in [
            "es", "es-ES", "es-IC", "es-EA", "es-PH", "es-ZZ", "es-001", "en-150", "en-DE",
            "en-FR", "en-SE", "en-BE", "en-PL",
        ] {
            assert!(
                numbers(tag).price("USD", price).ends_with("\u{a0}USD/kg"),
                "{tag}: {}",
                numbers(tag).price("USD", price)
            );
        }
        for tag in [
            "es-419", "es-AR", "es-MX", "es-US", "es-CO", "es-BO", "es-PE", "es-VE", "es-CR",
            "es-GQ", "es-JP", "en", "en-US", "en-GB", "en-IE", "en-AT", "en-CH", "en-NL", "en-IN",
            "en-ZZ",
        ] {
            assert!(
                numbers(tag).price("USD", price).starts_with("USD\u{a0}"),
                "{tag}: {}",
                numbers(tag).price("USD", price)
            );
        }
        // The euro has a pattern of its own in English for Europe: before the amount.
        let euros = (units::money("EUR", 1490), "kg");
        for (tag, written) in [
            ("en-DE", "EUR\u{a0}14,90/kg"),
            ("en-150", "EUR\u{a0}14.90/kg"),
            ("en-SE", "EUR\u{a0}14,90/kg"),
            ("en-AT", "EUR\u{a0}14,90/kg"),
            ("en", "EUR\u{a0}14.90/kg"),
            ("es", "14,90\u{a0}EUR/kg"),
            ("es-ES", "14,90\u{a0}EUR/kg"),
            ("es-AR", "EUR\u{a0}14,90/kg"),
        ] {
            assert_eq!(numbers(tag).price("EUR", euros), written, "{tag}");
        }
        assert_ne!(numbers("en-DE").style(), numbers("en-150").style());
        assert_ne!(numbers("en-150").style(), numbers("en-001").style());
        assert_ne!(numbers("es-ES").style(), numbers("es-AR").style());
        assert_eq!(numbers("es-ES").style(), numbers("es").style());
    }

    #[test]
    fn quantities_and_yields_use_the_reports_units() {
        let q = |amount, unit: &str| QuantityView {
            amount,
            unit: unit.to_owned(),
            text: String::new(),
        };
        let (en, es, ar, mx) = (
            numbers("en"),
            numbers("es"),
            numbers("es-AR"),
            numbers("es-MX"),
        );
        assert_eq!(en.quantity(&q(12_000_000, "g")), "12,000 kg");
        assert_eq!(ar.quantity(&q(12_000_000, "g")), "12.000 kg");
        assert_eq!(es.quantity(&q(1_234_500, "g")), "1234,5 kg");
        assert_eq!(ar.quantity(&q(1_234_500, "g")), "1.234,5 kg");
        assert_eq!(mx.quantity(&q(1_234_500, "g")), "1,234.5 kg");
        assert_eq!(ar.quantity(&q(69_500, "g")), "69,5 kg");
        assert_eq!(ar.quantity(&q(500, "g")), "500 g");
        assert_eq!(ar.quantity(&q(2_500, "ml")), "2,5 l");
        assert_eq!(ar.quantity(&q(12_345, "pcs")), "12.345 pcs");
        assert_eq!(en.percent(840), "84%");
        assert_eq!(en.percent(845), "84.5%");
        assert_eq!(es.percent(840), "84\u{a0}%");
        assert_eq!(es.percent(845), "84,5\u{a0}%");
        assert_eq!(ar.percent(845), "84,5%");
        assert_eq!(mx.percent(845), "84.5%");
        for (tag, spaced) in [
            ("es-ES", true),
            ("es-GQ", true),
            ("es-PH", true),
            ("es-419", false),
            ("es-CO", false),
            ("es-US", false),
            ("es-JP", false),
            ("en-GB", false),
            ("en-150", false),
            ("en-FR", false),
            ("en-DE", true),
            ("en-SE", true),
            ("en-AT", true),
        ] {
            let written = numbers(tag).percent(840);
            assert_eq!(written.ends_with("\u{a0}%"), spaced, "{tag}: {written}");
        }
    }

    #[test]
    fn locales_that_write_alike_share_a_style() {
        let style = |tag| numbers(tag).style().clone();
        assert_eq!(style("es-AR"), style("es-CO"));
        assert_eq!(style("es"), style("es-ES"));
        assert_eq!(style("es-ZZ"), style("es"));
        assert_eq!(style("es-MX"), style("es-419"));
        assert_ne!(style("es-AR"), style("es"), "1.234 against 1234");
        assert_ne!(style("es-MX"), style("es-AR"));
        assert_ne!(style("es-MX"), style("en"), "the language");
        assert_ne!(style("en"), style("en-IN"), "12,34,567");
    }

    #[test]
    fn the_remembered_style_is_the_formatters() {
        for tag in ["en", "en-IN", "es", "es-AR", "es-MX", "es-CR", "es-ZZ"] {
            let locale = Locale::choose(Some(tag), None);
            // Twice: worked out, then remembered.
            for _ in 0..2 {
                assert_eq!(Numbers::style_of(locale), *numbers(tag).style(), "{tag}");
            }
        }
    }
}
