//! The one message catalogue of the consumer pages: every text a person reads, in English and
//! Spanish. A new language is one more `Messages` value.

use fairtrail_client::gs1::Gs1Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    /// `?lang=` wins; then the first supported language of `Accept-Language` (by q-value);
    /// then English.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(l) = query.and_then(Lang::parse) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim();
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    fn parse(tag: &str) -> Option<Lang> {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "es" => Some(Lang::Es),
            _ => None,
        }
    }

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

/// Every text of the pages. Texts with `{}` are filled in order by [`fill`].
pub struct Messages {
    pub site: &'static str,
    pub home_intro: &'static str,
    pub home_size: &'static str,
    pub no_such_page: &'static str,
    pub bad_link: &'static str,
    pub unknown_product: &'static str,
    pub internal_error: &'static str,
    pub error_title: &'static str,
    pub back_home: &'static str,
    pub verdict_verified: &'static str,
    pub verdict_warnings: &'static str,
    pub verdict_failed: &'static str,
    pub verdict_explain: &'static str,
    pub product: &'static str,
    pub batch: &'static str,
    pub serial: &'static str,
    pub journey: &'static str,
    pub step_harvest: &'static str,
    pub step_transfer: &'static str,
    pub step_transformation: &'static str,
    pub step_binding: &'static str,
    pub signed_by: &'static str,
    pub logged_on: &'static str,
    pub farmers_paid: &'static str,
    pub price_paid: &'static str,
    pub minimum: &'static str,
    pub premium: &'static str,
    pub premium_minimum: &'static str,
    pub farmers: &'static str,
    pub price_chart_alt: &'static str,
    pub certifications: &'static str,
    pub certified_by: &'static str,
    pub valid: &'static str,
    pub peers: &'static str,
    pub no_certification: &'static str,
    pub assurance_self: &'static str,
    pub assurance_counterparty: &'static str,
    pub assurance_third_party: &'static str,
    pub assurance_peer: &'static str,
    pub assurance_legend: &'static str,
    pub disputes: &'static str,
    pub open_dispute: &'static str,
    pub not_verified: &'static str,
    pub nothing_unverified: &'static str,
    pub checks: &'static str,
    pub proof: &'static str,
    pub proof_text: &'static str,
    pub download_bundle: &'static str,
    pub json_view: &'static str,
    pub received_confirmed: &'static str,
    pub received_disputed: &'static str,
    pub no_receipt: &'static str,
    pub language: &'static str,
}

pub static EN: Messages = Messages {
    site: "Fairtrail",
    home_intro: "This node keeps a public, verifiable record of fair-trade supply chains. Scan the QR code on a package to see where it comes from.",
    home_size: "Statements in the log: {}",
    no_such_page: "There is no page at this address.",
    bad_link: "This product link is not valid.",
    unknown_product: "This product is not in the record. The code may be mistyped, or the product was never registered here.",
    internal_error: "Something went wrong on our side. Please try again later.",
    error_title: "Sorry",
    back_home: "Back to the start",
    verdict_verified: "Verified",
    verdict_warnings: "Verified, with warnings",
    verdict_failed: "Not verified",
    verdict_explain: "Checked by this page against the signed public record and the trust policy of {}, not taken on anyone's word.",
    product: "Product",
    batch: "Batch",
    serial: "Serial",
    journey: "The journey",
    step_harvest: "Harvest",
    step_transfer: "Shipment",
    step_transformation: "Processing",
    step_binding: "Packed for sale",
    signed_by: "Signed by",
    logged_on: "Recorded",
    farmers_paid: "What the farmers were paid",
    price_paid: "Paid",
    minimum: "Fair-trade minimum",
    premium: "Premium paid",
    premium_minimum: "Required premium",
    farmers: "farming households",
    price_chart_alt: "Bar chart: price paid to farmers compared with the fair-trade minimum and the premium.",
    certifications: "Certifications",
    certified_by: "Certified by",
    valid: "Valid",
    peers: "Peer reviewers",
    no_certification: "No certification recorded.",
    assurance_self: "self-declared",
    assurance_counterparty: "confirmed by the other party",
    assurance_third_party: "certified by an independent body",
    assurance_peer: "certified by peer farmers",
    assurance_legend: "How sure is each claim? Self-declared: the participant says so. Confirmed: the other party signed too. Certified: an independent body or a group of peers checked it.",
    disputes: "Open disputes",
    open_dispute: "Disputed by {}: {}",
    not_verified: "What could not be verified",
    nothing_unverified: "Everything shown here was verified.",
    checks: "All checks",
    proof: "Proof",
    proof_text: "Every step above is signed by the participant who made it and recorded in a public, append-only log (checkpoint of {} entries). Anyone can check it independently:",
    download_bundle: "download the proof bundle",
    json_view: "machine-readable view",
    received_confirmed: "receipt confirmed by the buyer",
    received_disputed: "the buyer disputed this shipment",
    no_receipt: "no receipt from the buyer",
    language: "Language",
};

pub static ES: Messages = Messages {
    site: "Fairtrail",
    home_intro: "Este nodo guarda un registro público y verificable de cadenas de comercio justo. Escanee el código QR del envase para ver de dónde viene.",
    home_size: "Declaraciones en el registro: {}",
    no_such_page: "No hay ninguna página en esta dirección.",
    bad_link: "Este enlace de producto no es válido.",
    unknown_product: "Este producto no está en el registro. Puede que el código esté mal escrito o que el producto nunca se haya registrado aquí.",
    internal_error: "Algo ha fallado por nuestra parte. Vuelva a intentarlo más tarde.",
    error_title: "Lo sentimos",
    back_home: "Volver al inicio",
    verdict_verified: "Verificado",
    verdict_warnings: "Verificado, con advertencias",
    verdict_failed: "No verificado",
    verdict_explain: "Comprobado por esta página con el registro público firmado y la política de confianza de {}, sin fiarse de la palabra de nadie.",
    product: "Producto",
    batch: "Lote",
    serial: "Número de serie",
    journey: "El recorrido",
    step_harvest: "Cosecha",
    step_transfer: "Envío",
    step_transformation: "Transformación",
    step_binding: "Envasado para la venta",
    signed_by: "Firmado por",
    logged_on: "Registrado",
    farmers_paid: "Lo que se pagó a los agricultores",
    price_paid: "Pagado",
    minimum: "Mínimo de comercio justo",
    premium: "Prima pagada",
    premium_minimum: "Prima exigida",
    farmers: "familias productoras",
    price_chart_alt: "Gráfico de barras: precio pagado a los agricultores comparado con el mínimo de comercio justo y la prima.",
    certifications: "Certificaciones",
    certified_by: "Certificado por",
    valid: "Vigencia",
    peers: "Revisores pares",
    no_certification: "No hay ninguna certificación registrada.",
    assurance_self: "autodeclarado",
    assurance_counterparty: "confirmado por la otra parte",
    assurance_third_party: "certificado por un organismo independiente",
    assurance_peer: "certificado por productores pares",
    assurance_legend: "¿Qué seguridad tiene cada dato? Autodeclarado: lo afirma el participante. Confirmado: la otra parte también lo firmó. Certificado: lo comprobó un organismo independiente o un grupo de pares.",
    disputes: "Reclamaciones abiertas",
    open_dispute: "Reclamado por {}: {}",
    not_verified: "Lo que no se pudo verificar",
    nothing_unverified: "Todo lo que se muestra aquí está verificado.",
    checks: "Todas las comprobaciones",
    proof: "Prueba",
    proof_text: "Cada paso está firmado por quien lo realizó y anotado en un registro público que solo admite añadidos (punto de control de {} entradas). Cualquiera puede comprobarlo por su cuenta:",
    download_bundle: "descargar el paquete de pruebas",
    json_view: "vista para máquinas",
    received_confirmed: "recepción confirmada por el comprador",
    received_disputed: "el comprador reclamó este envío",
    no_receipt: "sin confirmación del comprador",
    language: "Idioma",
};

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
        assert_eq!(Lang::choose(Some("es"), Some("en")), Lang::Es);
        assert_eq!(
            Lang::choose(None, Some("es-PE,es;q=0.9,en;q=0.8")),
            Lang::Es
        );
        assert_eq!(
            Lang::choose(None, Some("fr-FR, en;q=0.5, es;q=0.7")),
            Lang::Es
        );
        assert_eq!(Lang::choose(None, Some("de")), Lang::En);
        assert_eq!(Lang::choose(Some("xx"), None), Lang::En);
    }

    #[test]
    fn templates_fill_in_order() {
        assert_eq!(fill("a {} b {}", &["1", "2"]), "a 1 b 2");
        assert_eq!(fill("{}", &[]), "");
    }
}
