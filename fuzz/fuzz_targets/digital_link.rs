//! Text that people and other tools hand the client: GS1 Digital Link URLs and GTINs,
//! quantities and prices, bundle files and receipts.
//!
//! The input, as UTF-8 (invalid sequences replaced), goes through
//! `ProductId::from_digital_link`, `gs1::normalise_gtin`, `gs1::decode`,
//! `units::parse_quantity`, `units::parse_price`, `Bundle::from_json`, and
//! `ReceiptJson::parse` then `verify` with the fixture log's key. Nothing may panic, and
//! these must hold: a product parsed from a link round-trips through its URL and path; a
//! normalised GTIN is 14 digits and normalises to itself; percent-decoding accepts only
//! `%` and two hex digits; a parsed quantity is more than zero of a real unit; a parsed
//! price is per one of the units it names; a bundle round-trips through its JSON and wire
//! forms; a receipt that verifies is for an entry inside its checkpoint.
#![no_main]

use fairtrail_client::bundle::Bundle;
use fairtrail_client::gs1::{self, ProductId};
use fairtrail_client::proto;
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::units::{parse_price, parse_quantity};
use fairtrail_fuzz::log_verifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    digital_link(text);
    units(text);
    bundle(text);
    receipt(text);
});

fn digital_link(text: &str) {
    if let Ok(p) = ProductId::from_digital_link(text) {
        assert_eq!(p.gtin.len(), 14);
        let again = ProductId::new(&p.gtin, &p.batch, p.serial.as_deref());
        assert_eq!(again.as_ref(), Ok(&p));
        assert_eq!(
            ProductId::from_digital_link(&p.url("https://id.example.org")),
            Ok(p.clone())
        );
        assert_eq!(ProductId::from_digital_link(&p.path()), Ok(p));
    }
    if let Ok(g) = gs1::normalise_gtin(text) {
        assert!(
            g.len() == 14 && g.bytes().all(|b| b.is_ascii_digit()),
            "{g:?}"
        );
        assert_eq!(gs1::normalise_gtin(&g).as_ref(), Ok(&g));
    }
    assert_eq!(
        gs1::decode(text),
        strict_percent_decode(text),
        "decode({text:?})"
    );
}

/// RFC 3986 percent-decoding: `%` must be followed by two hex digits.
fn strict_percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
            let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What one of each unit a price may be per is, in base units.
fn one_of_each_unit() -> Vec<proto::Quantity> {
    let mut units: Vec<proto::Quantity> = ["1t", "1kg", "1g", "1l", "1ml", "1pcs"]
        .iter()
        .map(|u| parse_quantity(u).expect("a unit"))
        .collect();
    units.push(proto::Quantity {
        amount: 45_359_237,
        unit: proto::Unit::Gram as i32,
    });
    units
}

fn units(text: &str) {
    if let Ok(q) = parse_quantity(text) {
        assert!(q.amount > 0);
        assert!(matches!(
            proto::Unit::try_from(q.unit),
            Ok(proto::Unit::Gram | proto::Unit::Millilitre | proto::Unit::Piece)
        ));
    }
    if let Ok(p) = parse_price(text) {
        let per = p.per.expect("a price is per some quantity");
        assert!(
            one_of_each_unit().contains(&per),
            "{text:?} is read as a price per {} base units",
            per.amount
        );
    }
}

fn bundle(text: &str) {
    let Ok(b) = Bundle::from_json(text) else {
        return;
    };
    let json = b.to_json();
    let again = Bundle::from_json(&json).expect("a printed bundle parses");
    assert_eq!(again, b);
    let wire = Bundle::try_from(b.to_proto()).expect("a bundle's wire form parses");
    assert_eq!(wire, b);
}

fn receipt(text: &str) {
    let Ok(r) = ReceiptJson::parse(text) else {
        return;
    };
    if let Ok(v) = r.verify(&log_verifier()) {
        assert!(v.index < v.checkpoint.size);
        assert_eq!(v.index, r.index);
    }
}
