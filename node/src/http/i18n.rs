//! The one message catalogue of the consumer pages: every text a person reads, in English
//! (`en`) and Spanish (`es`), and the plain text of each problem the verifier names
//! (`problems`); the reader's [`Locale`], and how numbers are written in it (`numbers`). A new
//! language is one more `Messages` value and one more column there.

mod en;
mod es;
mod numbers;
mod problems;

pub use en::EN;
pub use es::ES;
use fairtrail_client::gs1::Gs1Error;
use icu_locale_core::subtags::Region;
pub use numbers::{NumberStyle, Numbers};
pub use problems::problem_text;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Es,
}

/// Who reads a page: the language of its texts, and the region of the language tag that chose
/// it (`AR` of `es-AR`), which with the language sets how numbers are written ([`Numbers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Locale {
    pub lang: Lang,
    pub region: Option<Region>,
}

/// A language with no region: numbers as CLDR writes them for the language alone.
impl From<Lang> for Locale {
    fn from(lang: Lang) -> Locale {
        Locale { lang, region: None }
    }
}

impl Locale {
    /// English, with no region.
    pub const EN: Locale = Locale {
        lang: Lang::En,
        region: None,
    };

    /// `?lang=` wins; then the first supported language of `Accept-Language` (by q-value);
    /// then English. The region is the chosen tag's; when `?lang=` names a language alone
    /// (as the language switch's links do), it is that of the reader's most wanted
    /// `Accept-Language` tag in the same language, so following a link keeps their numbers.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Locale {
        match query.and_then(Locale::parse) {
            Some(Locale { lang, region: None }) => Locale {
                lang,
                region: preferred(accept_language, Some(lang)).and_then(|l| l.region),
            },
            Some(locale) => locale,
            None => preferred(accept_language, None).unwrap_or(Locale::EN),
        }
    }

    /// A language tag (`es`, `es-AR`, `ES_ar`, `es-Latn-AR`, `es-419`): its primary subtag
    /// names the language; a region subtag after it (and after a script, if any) is kept.
    fn parse(tag: &str) -> Option<Locale> {
        let mut subtags = tag.split(['-', '_']);
        let lang = match subtags.next()?.to_ascii_lowercase().as_str() {
            "en" => Lang::En,
            "es" => Lang::Es,
            _ => return None,
        };
        let mut next = subtags.next();
        if next.is_some_and(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic())) {
            next = subtags.next();
        }
        let region = next.and_then(|s| s.parse::<Region>().ok());
        Some(Locale { lang, region })
    }
}

/// The supported tag of `Accept-Language` with the highest q-value (the first on a tie), in
/// language `only` when given. A tag with `q=0` is one the reader does not accept (RFC 9110
/// 12.4.2), and a q-value that is not a number in 0..=1 is taken as 1, as if absent.
fn preferred(accept_language: Option<&str>, only: Option<Lang>) -> Option<Locale> {
    let mut best: Option<(f32, Locale)> = None;
    for part in accept_language.unwrap_or("").split(',') {
        let mut pieces = part.split(';');
        let tag = pieces.next().unwrap_or("").trim();
        let q = pieces
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|v| v.parse::<f32>().ok())
            })
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let Some(locale) = Locale::parse(tag) else {
            continue;
        };
        if only.is_some_and(|lang| lang != locale.lang) {
            continue;
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, locale));
        }
    }
    best.map(|(_, l)| l)
}

impl Lang {
    /// Every language the pages speak, in the order the language switch lists them.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    pub fn t(self) -> &'static Messages {
        match self {
            Lang::En => &EN,
            Lang::Es => &ES,
        }
    }

    /// A GS1 identifier error in this language.
    pub fn gs1_error(self, e: &Gs1Error) -> String {
        match (self, e) {
            (Lang::En, e) => e.to_string(),
            (Lang::Es, Gs1Error::GtinLength(g)) => {
                format!("El GTIN {g:?} debe tener 8, 12, 13 o 14 dígitos.")
            }
            (
                Lang::Es,
                Gs1Error::CheckDigit {
                    gtin,
                    found,
                    expected,
                },
            ) => {
                format!("El GTIN {gtin} termina en {found}, pero su dígito de control debería ser {expected}.")
            }
            (Lang::Es, Gs1Error::BadText { what, value }) => {
                let what = if *what == "batch" {
                    "El lote"
                } else {
                    "El número de serie"
                };
                format!("{what} {value:?} debe tener de 1 a 20 caracteres del juego GS1 (letras, cifras y !\"%&'()*+,-./:;<=>?_).")
            }
            (Lang::Es, Gs1Error::BadDigitalLink(u)) => {
                format!("{u:?} no es un enlace GS1 Digital Link.")
            }
        }
    }
}

/// Every text of the pages. Texts with `{}` are filled in order by [`fill`]. Names, places,
/// commodities and reasons come from the log as written and are never translated.
pub struct Messages {
    // The site, its start page and its errors.
    pub site: &'static str,
    /// This language's own name, for the language switch.
    pub lang_name: &'static str,
    pub language: &'static str,
    pub home_intro: &'static str,
    pub home_size: &'static str,
    pub no_such_page: &'static str,
    pub bad_link: &'static str,
    pub unknown_product: &'static str,
    pub internal_error: &'static str,
    pub error_title: &'static str,
    pub back_home: &'static str,

    // The verdict.
    pub verdict: &'static str,
    pub verdict_verified: &'static str,
    pub verdict_warnings: &'static str,
    pub verdict_failed: &'static str,
    /// The badge when no trust policy was applied (none configured, or unreadable).
    pub verdict_unjudged: &'static str,
    pub verdict_explain: &'static str,
    pub policy_named: &'static str,
    pub policy_none: &'static str,
    pub policy_unreadable: &'static str,
    /// Steps 1 to 3 (checkpoint, inclusion, signatures) together, when all passed.
    pub evidence_ok: &'static str,
    /// What each of the verifier's ten steps established, when it passed.
    pub step_ok: [&'static str; 10],
    /// The verifier's ten steps, by number.
    pub step_title: [&'static str; 10],
    pub step_not_run: &'static str,
    pub sev_pass: &'static str,
    pub sev_warning: &'static str,
    pub sev_failure: &'static str,

    // The product.
    pub product: &'static str,
    pub batch: &'static str,
    pub serial: &'static str,
    pub grown_by: &'static str,

    // The journey.
    pub journey: &'static str,
    pub journey_note: &'static str,
    pub journey_empty: &'static str,
    pub step_harvest: &'static str,
    pub step_transfer: &'static str,
    pub step_transformation: &'static str,
    pub step_binding: &'static str,
    pub place: &'static str,
    pub logged_on: &'static str,
    pub signed_by: &'static str,
    pub harvested: &'static str,
    pub harvest_period: &'static str,
    pub shipped: &'static str,
    pub shipped_to: &'static str,
    pub used: &'static str,
    pub made: &'static str,
    pub contains: &'static str,
    pub price: &'static str,
    pub yield_label: &'static str,
    pub lot: &'static str,
    pub receipt: &'static str,
    pub receipt_confirmed: &'static str,
    pub receipt_disputed: &'static str,
    pub no_receipt: &'static str,
    pub assurance: &'static str,
    pub step_certified: &'static str,
    pub cert_in_force: &'static str,
    pub cert_not_counted: &'static str,
    pub disputed_tag: &'static str,

    // What the farmers were paid.
    pub farmers_paid: &'static str,
    pub price_paid: &'static str,
    pub minimum: &'static str,
    pub premium: &'static str,
    pub premium_minimum: &'static str,
    pub farmer_households: &'static str,
    pub total_paid: &'static str,
    pub meets_minimum: &'static str,
    pub below_minimum: &'static str,
    pub not_compared: &'static str,
    pub not_stated: &'static str,
    pub no_minimum: &'static str,
    pub price_chart: &'static str,

    // Certifications.
    pub certifications: &'static str,
    pub holder: &'static str,
    pub certified_by: &'static str,
    pub certificate: &'static str,
    pub valid: &'static str,
    pub valid_range: &'static str,
    pub scope: &'static str,
    pub peers: &'static str,
    pub quorum: &'static str,
    pub status_revoked: &'static str,
    pub status_suspended: &'static str,
    pub status_reinstated: &'static str,
    pub not_trusted: &'static str,
    pub no_certification: &'static str,

    // How sure each claim is.
    pub assurance_self: &'static str,
    pub assurance_counterparty: &'static str,
    pub assurance_third_party: &'static str,
    pub assurance_peer: &'static str,
    pub assurance_legend: &'static str,
    pub legend_self: &'static str,
    pub legend_counterparty: &'static str,
    pub legend_third_party: &'static str,
    pub legend_peer: &'static str,

    // Disputes.
    pub disputes: &'static str,
    pub dispute_text: &'static str,
    pub no_disputes: &'static str,

    // What could not be verified, and every check.
    pub not_verified: &'static str,
    pub nothing_unverified: &'static str,
    pub self_declared_note: &'static str,
    pub details_en: &'static str,
    pub checks: &'static str,

    // The proof.
    pub proof: &'static str,
    pub proof_text: &'static str,
    pub download_bundle: &'static str,
    pub json_view: &'static str,
    pub verify_yourself: &'static str,
    pub entry: &'static str,

    // Statement kinds and roles, for disputes and certification scopes.
    pub kind_declaration: &'static str,
    pub kind_key_rotation: &'static str,
    pub kind_certification: &'static str,
    pub kind_revocation: &'static str,
    pub kind_receipt: &'static str,
    pub kind_dispute: &'static str,
    pub role_producer: &'static str,
    pub role_cooperative: &'static str,
    pub role_trader: &'static str,
    pub role_processor: &'static str,
    pub role_retailer: &'static str,
    pub role_certifier: &'static str,
    pub role_monitor: &'static str,
}

impl Messages {
    /// A statement kind as the verifier names it ("transfer"), in this language.
    pub fn kind(&self, kind: &str) -> String {
        match kind {
            "harvest" => self.step_harvest,
            "transfer" => self.step_transfer,
            "transformation" => self.step_transformation,
            "product binding" => self.step_binding,
            "participant declaration" => self.kind_declaration,
            "key rotation" => self.kind_key_rotation,
            "certification" => self.kind_certification,
            "revocation" => self.kind_revocation,
            "receipt" => self.kind_receipt,
            "dispute" => self.kind_dispute,
            other => return other.to_owned(),
        }
        .to_owned()
    }

    /// A role as the verifier names it ("producer"), in this language.
    pub fn role(&self, role: &str) -> String {
        match role {
            "producer" => self.role_producer,
            "cooperative" => self.role_cooperative,
            "trader" => self.role_trader,
            "processor" => self.role_processor,
            "retailer" => self.role_retailer,
            "certifier" => self.role_certifier,
            "monitor" => self.role_monitor,
            other => return other.to_owned(),
        }
        .to_owned()
    }
}

/// Fills the `{}` of a catalogue text in order.
pub fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    let mut args = args.iter();
    while let Some(i) = rest.find("{}") {
        out.push_str(&rest[..i]);
        out.push_str(args.next().copied().unwrap_or(""));
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_is_chosen_by_query_then_header() {
        let lang = |query, header| Locale::choose(query, header).lang;
        assert_eq!(lang(Some("es"), Some("en")), Lang::Es);
        assert_eq!(lang(None, Some("es-PE,es;q=0.9,en;q=0.8")), Lang::Es);
        assert_eq!(lang(None, Some("fr-FR, en;q=0.5, es;q=0.7")), Lang::Es);
        assert_eq!(lang(None, Some("de")), Lang::En);
        assert_eq!(lang(Some("xx"), None), Lang::En);
        // q=0: not acceptable, whatever its place; nonsense q-values count as absent.
        assert_eq!(lang(None, Some("es;q=0")), Lang::En);
        assert_eq!(lang(None, Some("es;q=0.0, de")), Lang::En);
        assert_eq!(lang(None, Some("en;q=0, es;q=0.1")), Lang::Es);
        assert_eq!(lang(None, Some("en;q=0.5, es;q=NaN")), Lang::Es);
        assert_eq!(lang(None, Some("en;q=0.5, es;q=-1")), Lang::Es);
    }

    #[test]
    fn the_region_comes_from_the_tag_that_chose_the_language() {
        let region = |query, header| {
            let l = Locale::choose(query, header);
            (l.lang, l.region.map(|r| r.to_string()))
        };
        let es = |r: Option<&str>| (Lang::Es, r.map(str::to_owned));
        assert_eq!(
            region(None, Some("es-AR,es;q=0.9,en;q=0.8")),
            es(Some("AR"))
        );
        assert_eq!(region(None, Some("es")), es(None));
        assert_eq!(region(None, Some("es_mx")), es(Some("MX")));
        assert_eq!(region(None, Some("es-419")), es(Some("419")));
        assert_eq!(region(None, Some("es-Latn-CO")), es(Some("CO")));
        assert_eq!(region(None, Some("en-GB;q=0.5, es-CL")), es(Some("CL")));
        assert_eq!(region(Some("es-MX"), Some("es-AR")), es(Some("MX")));
        // The language switch's links name a language alone: the reader's region stays.
        assert_eq!(
            region(Some("es"), Some("en-US, es-AR;q=0.8")),
            es(Some("AR"))
        );
        assert_eq!(
            region(Some("en"), Some("es-AR, en-GB;q=0.5")),
            (Lang::En, Some("GB".to_owned()))
        );
        assert_eq!(region(Some("en"), Some("es-AR")), (Lang::En, None));
        // Whatever follows the language and is not a region is ignored.
        for odd in [
            "es-",
            "es-x-private",
            "es-AR1",
            "es--AR",
            "es-Latn",
            "es-ÅR",
        ] {
            assert_eq!(region(Some(odd), None), es(None), "{odd}");
        }
        assert_eq!(Locale::choose(None, Some(";q=,,-AR")), Locale::EN);
    }

    #[test]
    fn templates_fill_in_order() {
        assert_eq!(fill("a {} b {}", &["1", "2"]), "a 1 b 2");
        assert_eq!(fill("{}", &[]), "");
    }

    proptest::proptest! {
        /// Whatever a reader sends as `?lang=` and `Accept-Language`, a locale is chosen and
        /// its numbers are written: a test that nothing there panics (the fallback walk, the
        /// formatter), and that the remembered style is the locale's.
        #[test]
        fn any_query_and_header_choose_a_locale_that_writes_numbers(
            query in proptest::option::of("(en|es|EN|Es|x)?([-_][A-Za-z0-9]{0,5}){0,3}|.{0,12}"),
            header in proptest::option::of("((en|es|fr|\\*|.{0,6})([-_][A-Za-z0-9]{0,4}){0,2}(;q=[0-9.e-]{0,6})?,?){0,4}|.{0,40}"),
        ) {
            let locale = Locale::choose(query.as_deref(), header.as_deref());
            let numbers = super::numbers::Numbers::new(locale);
            let price = (fairtrail_client::units::money("USD", 210), "lb");
            let written = numbers.price("USD", price);
            proptest::prop_assert!(written.contains("USD"), "{written}");
            proptest::prop_assert_eq!(
                super::numbers::Numbers::style_of(locale),
                numbers.style().clone()
            );
        }
    }
}
