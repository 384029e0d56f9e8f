//! Envelopes, statements and the ledger rules on hostile bytes.
//!
//! The first byte picks a mode (its low bit):
//! - 0, "raw": the rest is tried as a protobuf `Envelope`, as a protobuf `Statement` and, if
//!   UTF-8, as a DSSE JSON envelope. Every envelope that decodes goes through
//!   `Envelope::try_from`, `Statement::decode`, `verify` and `verify_batch` (which must agree
//!   with `verify`), and a verified statement through the rules over the fixture ledger.
//! - 1, "rules": the rest is up to four records `mask u16 LE || len u16 LE || payload` (see
//!   `fairtrail_fuzz::parse_records`). Each payload is signed by the fixture keys the mask
//!   names (the issuer too, when it is a fixture key), so that the signatures are real and
//!   the rules, not the signature check, decide; the records are applied in turn with
//!   `rules::apply` over the state of the fixture ledger (declarations, a harvest, a
//!   certification, a transfer).
//!
//! Nothing may panic, and these must hold: envelopes round-trip; a batch accepts exactly
//! what single verification accepts; envelopes we signed verify; a refused statement leaves
//! the state untouched; an accepted one is indexed and cannot be applied twice; every lot
//! keeps `remaining <= quantity`; every key record names a declared identity.
#![no_main]

use std::collections::BTreeMap;

use fairtrail_client::envelope::{verify_batch, Envelope, EnvelopeJson, StatementId};
use fairtrail_client::proto;
use fairtrail_client::rules::records::{prefix, IdentityRecord, KeyRecord, LotRecord};
use fairtrail_client::rules::{self, Overlay, RuleError};
use fairtrail_client::statement::Statement;
use fairtrail_fuzz::{key, ledger, parse_records, signers_for};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        rules_mode(rest);
    }
});

fn raw(data: &[u8]) {
    if let Ok(s) = proto::Statement::decode(data) {
        // Re-encoding what decoded must decode to the same message.
        let again = proto::Statement::decode(s.encode_to_vec().as_slice()).expect("re-decodes");
        assert_eq!(again, s);
        let _ = Statement::decode_payload(data, StatementId::of_payload(data));
    }
    if let Ok(wire) = proto::Envelope::decode(data) {
        check_envelope(wire);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(wire) = EnvelopeJson::parse(text) {
            // What parsed prints as JSON that parses back to the same envelope.
            let json = serde_json::to_string(&EnvelopeJson::from(&wire)).expect("serialises");
            assert_eq!(EnvelopeJson::parse(&json).expect("re-parses"), wire);
            check_envelope(wire);
        }
    }
}

fn check_envelope(wire: proto::Envelope) {
    let Ok(envelope) = Envelope::try_from(wire.clone()) else {
        return;
    };
    assert_eq!(
        envelope.to_proto(),
        wire,
        "a checked envelope keeps its fields"
    );
    let statement = Statement::decode(&envelope);
    let single = envelope.clone().verify();
    // Batch verification accepts exactly what single verification does, whatever shares
    // the batch: put the envelope between two good ones.
    let good = Envelope::try_from(ledger().envelopes[0].clone()).expect("a fixture envelope");
    let batch = verify_batch(vec![good.clone(), envelope.clone(), good]);
    assert_eq!(batch.len(), 3);
    assert!(
        batch[0].is_ok() && batch[2].is_ok(),
        "good envelopes fail in a batch"
    );
    assert_eq!(
        batch[1].as_ref().map(|_| ()).err(),
        single.as_ref().map(|_| ()).err(),
        "batch and single verification disagree"
    );
    if let (Ok(verified), Ok(statement)) = (single, statement) {
        let state = &ledger().state;
        let mut overlay = Overlay::new(state);
        apply_checked(&mut overlay, &verified, &statement, 0);
    }
}

fn rules_mode(data: &[u8]) {
    let ledger = ledger();
    let mut overlay = Overlay::new(&ledger.state);
    let mut applied = 0u64;
    for record in parse_records(data) {
        let Ok(decoded) = proto::Statement::decode(record.payload) else {
            continue;
        };
        let signers = signers_for(record.mask, &decoded.issuer);
        if signers.is_empty() || record.payload.is_empty() {
            continue;
        }
        let keys: Vec<_> = signers.iter().map(|i| key(*i)).collect();
        let refs: Vec<_> = keys.iter().collect();
        let wire = fairtrail_client::envelope::sign(record.payload.to_vec(), &refs);
        let envelope = match Envelope::try_from(wire) {
            Ok(e) => e,
            // Only a payload over the size limit may be refused.
            Err(fairtrail_client::envelope::EnvelopeError::PayloadTooLarge { .. }) => continue,
            Err(e) => panic!("an envelope signed by distinct fixture keys is refused: {e}"),
        };
        let envelope = envelope
            .verify()
            .expect("an envelope we just signed verifies")
            .into_envelope();
        let Ok(statement) = Statement::decode(&envelope) else {
            continue;
        };
        if apply_checked(&mut overlay, &envelope, &statement, applied) {
            applied += 1;
        }
    }
    check_state(&ledger.state, overlay.writes());
}

/// Applies a statement and checks what the rules promise; true if it was accepted.
fn apply_checked(
    overlay: &mut Overlay<'_>,
    envelope: &Envelope,
    statement: &Statement,
    offset: u64,
) -> bool {
    let at = ledger().next_position(offset);
    let before = overlay.writes().clone();
    match rules::apply(overlay, envelope, statement, at) {
        Ok(()) => {
            assert_eq!(
                rules::statement_index(&*overlay, &statement.id).expect("state reads"),
                Some(at.index),
                "an accepted statement is indexed"
            );
            let again = ledger().next_position(offset + 1);
            let snapshot = overlay.writes().clone();
            match rules::apply(overlay, envelope, statement, again) {
                Err(RuleError::Conflict(_)) => {}
                other => panic!("a statement applied twice gives {other:?}"),
            }
            assert_eq!(overlay.writes(), &snapshot, "a refused statement wrote");
            true
        }
        Err(e) => {
            assert!(
                !matches!(e, RuleError::State(_)),
                "the state is corrupt: {e}"
            );
            assert_eq!(overlay.writes(), &before, "a refused statement wrote");
            false
        }
    }
}

/// Invariants of the whole state after the fixture ledger and the accepted records.
fn check_state(base: &BTreeMap<Vec<u8>, Vec<u8>>, writes: &BTreeMap<Vec<u8>, Vec<u8>>) {
    if writes.is_empty() {
        return;
    }
    let mut state = base.clone();
    state.extend(writes.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in &state {
        match k.first() {
            Some(&prefix::LOT) => {
                let lot: LotRecord = serde_json::from_slice(v).expect("a lot record");
                assert!(lot.remaining <= lot.quantity, "lot {k:?} grew: {lot:?}");
                assert!(lot.quantity > 0, "an empty lot was created: {lot:?}");
            }
            Some(&prefix::KEY) => {
                let record: KeyRecord = serde_json::from_slice(v).expect("a key record");
                let identity = [&[prefix::IDENTITY][..], record.identity.as_bytes()].concat();
                let id: IdentityRecord = state
                    .get(&identity)
                    .map(|v| serde_json::from_slice(v).expect("an identity record"))
                    .expect("a key record names a declared identity");
                if record.retired_at.is_none() {
                    assert_eq!(
                        id.current_key.as_bytes()[..],
                        k[1..],
                        "an identity has two keys that may sign"
                    );
                }
            }
            _ => {}
        }
    }
}
