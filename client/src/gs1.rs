//! GS1 identifiers: GTIN check digits and normalisation to GTIN-14, batch and serial
//! character rules, and GS1 Digital Link URLs (`https://host/01/{gtin}/10/{batch}[/21/{serial}]`).

/// What is wrong with a GS1 identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Gs1Error {
    #[error("GTIN {0:?} must be 8, 12, 13 or 14 digits")]
    GtinLength(String),
    #[error("GTIN {gtin} has check digit {found}; the digits before it give {expected}")]
    CheckDigit {
        gtin: String,
        found: u8,
        expected: u8,
    },
    #[error("{what} {value:?} must be 1 to 20 characters from the GS1 set (letters, digits, and !\"%&'()*+,-./:;<=>?_)")]
    BadText { what: &'static str, value: String },
    #[error(
        "{0:?} is not a GS1 Digital Link URL of the form https://host/01/GTIN/10/BATCH[/21/SERIAL]"
    )]
    BadDigitalLink(String),
}

/// The GS1 mod-10 check digit of `digits` (the digits before the check digit).
pub fn check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Checks a GTIN-8/12/13/14 and returns it as 14 digits (left-padded with zeros).
pub fn normalise_gtin(text: &str) -> Result<String, Gs1Error> {
    let t = text.trim();
    if !matches!(t.len(), 8 | 12 | 13 | 14) || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Gs1Error::GtinLength(t.chars().take(40).collect()));
    }
    let padded = format!("{t:0>14}");
    let digits: Vec<u8> = padded.bytes().map(|b| b - b'0').collect();
    let (body, last) = digits.split_at(13);
    let expected = check_digit(body);
    let found = last.first().copied().unwrap_or(0);
    if found != expected {
        return Err(Gs1Error::CheckDigit {
            gtin: padded,
            found,
            expected,
        });
    }
    Ok(padded)
}

/// GS1 AI (10) batch and AI (21) serial: 1 to 20 characters of GS1 character set 82.
pub fn check_text(what: &'static str, value: &str) -> Result<(), Gs1Error> {
    let ok = (1..=20).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!\"%&'()*+,-./:;<=>?_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Gs1Error::BadText {
            what,
            value: value.chars().take(40).collect(),
        })
    }
}

/// A product instance named by a Digital Link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProductId {
    /// Always 14 digits.
    pub gtin: String,
    pub batch: String,
    pub serial: Option<String>,
}

impl ProductId {
    pub fn new(gtin: &str, batch: &str, serial: Option<&str>) -> Result<Self, Gs1Error> {
        let gtin = normalise_gtin(gtin)?;
        check_text("batch", batch)?;
        if let Some(s) = serial {
            check_text("serial", s)?;
        }
        Ok(ProductId {
            gtin,
            batch: batch.to_owned(),
            serial: serial.map(str::to_owned),
        })
    }

    /// The Digital Link path: `/01/{gtin}/10/{batch}[/21/{serial}]`, percent-encoding what
    /// needs it.
    pub fn path(&self) -> String {
        let mut p = format!("/01/{}/10/{}", self.gtin, encode(&self.batch));
        if let Some(s) = &self.serial {
            p.push_str(&format!("/21/{}", encode(s)));
        }
        p
    }

    /// The Digital Link URL under `base` (such as `https://trace.example.org`).
    pub fn url(&self, base: &str) -> String {
        format!("{}{}", base.trim_end_matches('/'), self.path())
    }

    /// Parses a Digital Link URL or path; the host is ignored (any resolver may serve it).
    pub fn from_digital_link(url: &str) -> Result<Self, Gs1Error> {
        let bad = || Gs1Error::BadDigitalLink(url.chars().take(200).collect());
        let path = match url.find("://") {
            Some(i) => {
                let rest = &url[i + 3..];
                &rest[rest.find('/').ok_or_else(bad)?..]
            }
            None => url,
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // Any path prefix is allowed before the primary key, as GS1 Digital Link permits.
        let start = parts.iter().position(|p| *p == "01").ok_or_else(bad)?;
        let rest = parts.get(start..).ok_or_else(bad)?;
        match rest {
            ["01", gtin, "10", batch] => Self::new(gtin, &decode(batch).ok_or_else(bad)?, None),
            ["01", gtin, "10", batch, "21", serial] => Self::new(
                gtin,
                &decode(batch).ok_or_else(bad)?,
                Some(&decode(serial).ok_or_else(bad)?),
            ),
            _ => Err(bad()),
        }
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding; `None` for malformed escapes or non-UTF-8 results.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Exactly two hex digits: from_str_radix alone would take "+2".
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtins_are_checked_and_normalised() {
        // GS1's published example GTIN-13 and its GTIN-14 form.
        assert_eq!(normalise_gtin("4006381333931").unwrap(), "04006381333931");
        assert_eq!(normalise_gtin("09506000134352").unwrap(), "09506000134352");
        assert_eq!(normalise_gtin("96385074").unwrap(), "00000096385074");
        assert!(matches!(
            normalise_gtin("4006381333932"),
            Err(Gs1Error::CheckDigit { expected: 1, .. })
        ));
        assert!(normalise_gtin("400638133393").is_err());
        assert!(normalise_gtin("40063813339x1").is_err());
    }

    #[test]
    fn percent_escapes_take_exactly_two_hex_digits() {
        // Regression (found by fuzzing): from_str_radix accepts a sign, so "%+2" was U+0002.
        assert_eq!(decode("%+2"), None);
        assert_eq!(decode("%2F"), Some("/".to_owned()));
        assert_eq!(decode("%2"), None);
    }

    #[test]
    fn digital_links_round_trip() {
        let p = ProductId::new("09506000134352", "LOT-7/A", Some("42")).unwrap();
        let url = p.url("https://trace.example.org/");
        assert_eq!(
            url,
            "https://trace.example.org/01/09506000134352/10/LOT-7%2FA/21/42"
        );
        assert_eq!(ProductId::from_digital_link(&url).unwrap(), p);
        assert!(
            ProductId::new("09506000134352", "LOT 7", None).is_err(),
            "a space is not in the GS1 set"
        );
        let p = ProductId::new("9506000134352", "L2026-11", None).unwrap();
        assert_eq!(
            ProductId::from_digital_link(&p.url("http://127.0.0.1:8080")).unwrap(),
            p
        );
        assert_eq!(
            ProductId::from_digital_link("/01/09506000134352/10/L1?lang=es")
                .unwrap()
                .batch,
            "L1"
        );
        for bad in [
            "",
            "https://x/",
            "https://x/01/123/10/A",
            "https://x/01/09506000134352",
            "/01/09506000134352/10/%ZZ",
        ] {
            assert!(ProductId::from_digital_link(bad).is_err(), "{bad:?}");
        }
    }
}
