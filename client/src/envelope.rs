//! DSSE envelopes: pre-authentication encoding (PAE), Ed25519 signing, single and batch
//! verification, statement ids, and the DSSE JSON form used for offline files.
//! SPEC.md section "Envelope".

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature as EdSignature, Signer, SigningKey};

use crate::keys::{PublicKey, PublicKeyError};
use crate::proto;

/// The DSSE payload type of every Fairtrail envelope.
pub const PAYLOAD_TYPE: &str = "application/vnd.fairtrail.statement.v1+protobuf";
/// More signatures than any statement needs (a rotation needs 2, a PGS quorum a handful).
pub const MAX_SIGNATURES: usize = 32;
/// The largest statement payload: an encoded leaf must fit the 16-bit length prefix of a
/// tlog-tiles entry bundle (65,535 bytes), with room for the signatures and the timestamp.
pub const MAX_PAYLOAD_LEN: usize = 60 * 1024;

/// DSSE pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`,
/// lengths in ASCII decimal. This is what every signature covers, so a signature can never
/// be replayed under another payload type.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// BLAKE3 of an envelope's payload: the content address of a statement.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatementId(pub [u8; 32]);

impl StatementId {
    pub fn of_payload(payload: &[u8]) -> Self {
        StatementId(*blake3::hash(payload).as_bytes())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StatementIdError> {
        bytes
            .try_into()
            .map(StatementId)
            .map_err(|_| StatementIdError::BadLength(bytes.len()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementIdError {
    #[error("a statement id has 32 bytes, got {0}")]
    BadLength(usize),
    #[error("a statement id is written as 64 hex digits; got {0:?}")]
    BadText(String),
}

impl fmt::Display for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for StatementId {
    type Err = StatementIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|_| StatementIdError::BadText(s.to_owned()))?;
        Ok(StatementId(bytes))
    }
}

impl serde::Serialize for StatementId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StatementId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What is wrong with an envelope. Every variant is the submitter's fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the envelope has no payload")]
    EmptyPayload,
    #[error("the payload has {len} bytes; the most a statement may have is {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("payload type is {found:?}; Fairtrail envelopes use {PAYLOAD_TYPE:?}")]
    WrongPayloadType { found: String },
    #[error("the envelope carries no signature")]
    NoSignatures,
    #[error("the envelope carries {count} signatures; at most {MAX_SIGNATURES} are allowed")]
    TooManySignatures { count: usize },
    #[error("signature {position}: {source}")]
    BadPublicKey {
        position: usize,
        #[source]
        source: PublicKeyError,
    },
    #[error("signature {position} has {len} bytes; an Ed25519 signature has 64")]
    BadSignatureLength { position: usize, len: usize },
    #[error("signature {position} is malformed: {reason}")]
    MalformedSignature {
        position: usize,
        reason: &'static str,
    },
    #[error("key {key} signs the envelope twice; each key may sign once")]
    DuplicateSigner { key: PublicKey },
    #[error("the signature by {key} does not verify over this payload")]
    BadSignature { key: PublicKey },
}

/// Refuses a signature whose R is not a canonical encoding of a point of large order: such
/// signatures only ever come from a signer playing with encodings, and refusing them keeps
/// the rule simple for independent verifiers.
///
/// This is the whole check, with a point decompression. Decoding makes the part of it that
/// needs none ([`check_r_encoding`]); whether R is a curve point at all is then settled by
/// the signature verification itself, which decompresses R anyway, and a failed
/// verification runs this check to say why (so the reason is the same either way).
fn check_r(sig: &[u8; 64]) -> Result<(), &'static str> {
    check_r_encoding(sig)?;
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    let point = curve25519_dalek::edwards::CompressedEdwardsY(r)
        .decompress()
        .ok_or("its R is not a curve point")?;
    // Given check_r_encoding, these cannot fail; kept as the definition.
    if point.compress().to_bytes() != r {
        return Err("its R is not canonically encoded");
    }
    if point.is_small_order() {
        return Err("its R is a small-order point");
    }
    Ok(())
}

/// p = 2^255 - 19, little-endian.
const FIELD_P: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// The encodings of y = 1 and y = p - 1: the two points with x = 0, whose encodings with the
/// sign bit set are not canonical.
const Y_ONE: [u8; 32] = {
    let mut y = [0u8; 32];
    y[0] = 1;
    y
};
const Y_P_MINUS_ONE: [u8; 32] = {
    let mut y = FIELD_P;
    y[0] = 0xec;
    y
};

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: std::sync::OnceLock<[[u8; 32]; 8]> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION.map(|point| point.compress().to_bytes())
    })
}

/// The part of [`check_r`] that needs no point decompression. For an R that is a curve
/// point it decides exactly as `check_r` does: the encoding is canonical when y < p and, for
/// the two points with x = 0, the sign bit is clear; and a canonical encoding is of a
/// small-order point when it is one of the eight.
fn check_r_encoding(sig: &[u8; 64]) -> Result<(), &'static str> {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    let sign = r[31] >> 7;
    let mut y = r;
    y[31] &= 0x7f;
    let y_below_p = y.iter().rev().cmp(FIELD_P.iter().rev()) == std::cmp::Ordering::Less;
    if !y_below_p || (sign == 1 && (y == Y_ONE || y == Y_P_MINUS_ONE)) {
        return Err("its R is not canonically encoded");
    }
    if small_order_encodings().contains(&r) {
        return Err("its R is a small-order point");
    }
    Ok(())
}

/// One signature, with its key already checked to be a valid, strong curve point.
#[derive(Clone, Debug)]
pub struct EnvelopeSignature {
    pub public_key: PublicKey,
    signature: EdSignature,
}

/// A decoded envelope whose shape has been checked (payload type, sizes, keys, no key twice).
/// Its signatures have NOT been verified yet: see [`Envelope::verify`] and [`verify_batch`].
#[derive(Clone, Debug)]
pub struct Envelope {
    payload: Vec<u8>,
    signatures: Vec<EnvelopeSignature>,
    id: StatementId,
}

/// Public keys already found to be valid, strong curve points, so that decoding the next
/// envelope they sign skips decompressing them again. Bounded: it forgets everything when
/// full. For a long-lived decoder such as
/// the node's verifier thread; keys never change validity, so remembering them is exact.
#[derive(Debug, Default)]
pub struct KnownKeys {
    /// Each key's encoding and its curve point, decompressed once: batch verification uses
    /// the point ([`verify_batch_with`]).
    keys: std::collections::HashMap<[u8; 32], EdwardsPoint>,
}

impl KnownKeys {
    /// Keys remembered at most (32 bytes and a 160-byte point each, about 6.5 MB in all
    /// with the table).
    pub const CAPACITY: usize = 16_384;

    /// Checks `key` as [`PublicKey::verifying_key`] does, remembering keys that pass.
    pub fn check(&mut self, key: &PublicKey) -> Result<(), crate::keys::PublicKeyError> {
        if self.keys.contains_key(key.as_bytes()) {
            return Ok(());
        }
        let point = key.verifying_key()?.to_edwards();
        if self.keys.len() >= Self::CAPACITY {
            self.keys.clear();
        }
        self.keys.insert(*key.as_bytes(), point);
        Ok(())
    }

    /// The curve point of a key checked before, if still remembered.
    fn point(&self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        self.keys.get(key).copied()
    }
}

impl TryFrom<proto::Envelope> for Envelope {
    type Error = EnvelopeError;

    fn try_from(wire: proto::Envelope) -> Result<Self, Self::Error> {
        Envelope::decode_with(wire, &mut KnownKeys::default())
    }
}

impl Envelope {
    /// Decodes and checks an envelope's shape as `TryFrom` does, skipping the curve checks
    /// of keys `known` has already seen pass.
    pub fn decode_with(
        wire: proto::Envelope,
        known: &mut KnownKeys,
    ) -> Result<Envelope, EnvelopeError> {
        if wire.payload.is_empty() {
            return Err(EnvelopeError::EmptyPayload);
        }
        if wire.payload.len() > MAX_PAYLOAD_LEN {
            return Err(EnvelopeError::PayloadTooLarge {
                len: wire.payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        if wire.payload_type != PAYLOAD_TYPE {
            // By characters: cutting bytes could split one, and panic on hostile input.
            let found = wire.payload_type.chars().take(200).collect();
            return Err(EnvelopeError::WrongPayloadType { found });
        }
        if wire.signatures.is_empty() {
            return Err(EnvelopeError::NoSignatures);
        }
        if wire.signatures.len() > MAX_SIGNATURES {
            return Err(EnvelopeError::TooManySignatures {
                count: wire.signatures.len(),
            });
        }
        let mut signatures: Vec<EnvelopeSignature> = Vec::with_capacity(wire.signatures.len());
        for (position, sig) in wire.signatures.iter().enumerate() {
            let public_key = PublicKey::from_bytes(&sig.public_key)
                .map_err(|source| EnvelopeError::BadPublicKey { position, source })?;
            // INVARIANT: no key signs twice, so counting signatures counts distinct signers
            // (a peer quorum cannot be padded with one member's key).
            if signatures.iter().any(|s| s.public_key == public_key) {
                return Err(EnvelopeError::DuplicateSigner { key: public_key });
            }
            known
                .check(&public_key)
                .map_err(|source| EnvelopeError::BadPublicKey { position, source })?;
            let sig_bytes: [u8; 64] =
                sig.sig
                    .as_slice()
                    .try_into()
                    .map_err(|_| EnvelopeError::BadSignatureLength {
                        position,
                        len: sig.sig.len(),
                    })?;
            check_r_encoding(&sig_bytes)
                .map_err(|reason| EnvelopeError::MalformedSignature { position, reason })?;
            signatures.push(EnvelopeSignature {
                public_key,
                signature: EdSignature::from_bytes(&sig_bytes),
            });
        }
        let id = StatementId::of_payload(&wire.payload);
        Ok(Envelope {
            payload: wire.payload,
            signatures,
            id,
        })
    }
}

impl Envelope {
    pub fn id(&self) -> StatementId {
        self.id
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn signatures(&self) -> &[EnvelopeSignature] {
        &self.signatures
    }

    /// The keys that signed, in envelope order.
    pub fn signers(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.signatures.iter().map(|s| s.public_key)
    }

    pub fn is_signed_by(&self, key: &PublicKey) -> bool {
        self.signatures.iter().any(|s| &s.public_key == key)
    }

    /// Checks every signature on its own, with the ZIP 215 (cofactored) rule, which batch
    /// verification agrees with exactly: see [`verify_batch`] and SPEC.md section "Verifying
    /// a signature".
    pub fn verify(self) -> Result<VerifiedEnvelope, EnvelopeError> {
        let message = pae(PAYLOAD_TYPE, &self.payload);
        for (position, s) in self.signatures.iter().enumerate() {
            let failed = || match check_r(&s.signature.to_bytes()) {
                // Decoding left this part of R's check to the verification: say so.
                Err(reason) => EnvelopeError::MalformedSignature { position, reason },
                Ok(()) => EnvelopeError::BadSignature { key: s.public_key },
            };
            let key = ed25519_zebra::VerificationKey::try_from(*s.public_key.as_bytes())
                .map_err(|_| failed())?;
            key.verify(&zebra_signature(&s.signature), &message)
                .map_err(|_| failed())?;
        }
        Ok(VerifiedEnvelope(self))
    }

    pub fn to_proto(&self) -> proto::Envelope {
        proto::Envelope {
            payload: self.payload.clone(),
            payload_type: PAYLOAD_TYPE.to_owned(),
            signatures: self
                .signatures
                .iter()
                .map(|s| proto::Signature {
                    public_key: s.public_key.as_bytes().to_vec(),
                    sig: s.signature.to_bytes().to_vec(),
                })
                .collect(),
        }
    }
}

/// An envelope every signature of which has been verified.
#[derive(Clone, Debug)]
pub struct VerifiedEnvelope(Envelope);

impl VerifiedEnvelope {
    pub fn envelope(&self) -> &Envelope {
        &self.0
    }

    pub fn into_envelope(self) -> Envelope {
        self.0
    }
}

impl std::ops::Deref for VerifiedEnvelope {
    type Target = Envelope;
    fn deref(&self) -> &Envelope {
        &self.0
    }
}

/// Verifies the signatures of many envelopes at once with Ed25519 batch verification (about
/// twice the single-signature rate). Batch and single verification follow ZIP 215, so they
/// accept exactly the same signatures: whether an envelope is accepted never depends on
/// what else shares its batch. When the batch fails, the envelopes are checked one by
/// one so that only the bad ones are refused. Results are in input order.
pub fn verify_batch(envelopes: Vec<Envelope>) -> Vec<Result<VerifiedEnvelope, EnvelopeError>> {
    verify_batch_with(envelopes, &KnownKeys::default())
}

/// [`verify_batch`], taking the curve points of keys `known` remembers instead of
/// decompressing them again (11% less time for 256 signatures by 64 keys, BENCHMARKS.md;
/// more when fewer signatures share a key).
pub fn verify_batch_with(
    envelopes: Vec<Envelope>,
    known: &KnownKeys,
) -> Vec<Result<VerifiedEnvelope, EnvelopeError>> {
    if batch_equation_holds(&envelopes, known) {
        return envelopes
            .into_iter()
            .map(|e| Ok(VerifiedEnvelope(e)))
            .collect();
    }
    envelopes.into_iter().map(Envelope::verify).collect()
}

/// The ZIP 215 batch equation over every signature of `envelopes`, as `ed25519-zebra`
/// computes it: `[8]([-sum(z_i s_i)]B + sum([z_i]R_i) + sum([z_i k_i]A_i)) = 0`, where
/// `k_i = SHA-512(R_i || A_i || M_i) mod l` and the `z_i` are random 128-bit scalars (here
/// from a keyed BLAKE3 stream under a fresh 256-bit key from the OS, one draw per batch
/// rather than one per signature), with the terms of each distinct key `A` coalesced. False
/// for an empty batch, a non-canonical `s`, an `R` or key that is not a curve point, or when
/// no randomness is to be had; the caller then checks envelopes one by one.
fn batch_equation_holds(envelopes: &[Envelope], known: &KnownKeys) -> bool {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use rand_core::RngCore;
    use sha2::Digest;

    let mut seed = [0u8; 32];
    if rand_core::OsRng.try_fill_bytes(&mut seed).is_err() {
        return false;
    }
    let mut randomness = blake3::Hasher::new_keyed(&seed).finalize_xof();
    let count: usize = envelopes.iter().map(|e| e.signatures.len()).sum();
    if count == 0 {
        return false;
    }
    let mut key_slots: std::collections::HashMap<[u8; 32], usize> =
        std::collections::HashMap::with_capacity(count);
    let mut a_points: Vec<EdwardsPoint> = Vec::with_capacity(count);
    let mut a_coeffs: Vec<Scalar> = Vec::with_capacity(count);
    let mut r_points: Vec<EdwardsPoint> = Vec::with_capacity(count);
    let mut r_coeffs: Vec<Scalar> = Vec::with_capacity(count);
    let mut b_coeff = Scalar::ZERO;
    for envelope in envelopes {
        let message = pae(PAYLOAD_TYPE, &envelope.payload);
        for s in &envelope.signatures {
            let key = s.public_key.as_bytes();
            let r_bytes = s.signature.r_bytes();
            let Some(r) = CompressedEdwardsY(*r_bytes).decompress() else {
                return false;
            };
            let Some(s_scalar) =
                Option::<Scalar>::from(Scalar::from_canonical_bytes(*s.signature.s_bytes()))
            else {
                return false;
            };
            let hash = sha2::Sha512::new()
                .chain_update(r_bytes)
                .chain_update(key)
                .chain_update(&message)
                .finalize();
            let mut wide = [0u8; 64];
            wide.copy_from_slice(&hash);
            let k = Scalar::from_bytes_mod_order_wide(&wide);
            let mut z_bytes = [0u8; 16];
            randomness.fill(&mut z_bytes);
            let z = Scalar::from(u128::from_le_bytes(z_bytes));
            b_coeff -= z * s_scalar;
            r_points.push(r);
            r_coeffs.push(z);
            let slot = match key_slots.get(key) {
                Some(&slot) => slot,
                None => {
                    let Some(a) = known
                        .point(key)
                        .or_else(|| CompressedEdwardsY(*key).decompress())
                    else {
                        return false;
                    };
                    a_points.push(a);
                    a_coeffs.push(Scalar::ZERO);
                    key_slots.insert(*key, a_points.len() - 1);
                    a_points.len() - 1
                }
            };
            if let Some(coeff) = a_coeffs.get_mut(slot) {
                *coeff += z * k;
            }
        }
    }
    let check = EdwardsPoint::vartime_multiscalar_mul(
        std::iter::once(&b_coeff)
            .chain(a_coeffs.iter())
            .chain(r_coeffs.iter()),
        std::iter::once(&ED25519_BASEPOINT_POINT)
            .chain(a_points.iter())
            .chain(r_points.iter()),
    );
    check.mul_by_cofactor().is_identity()
}

fn zebra_signature(sig: &EdSignature) -> ed25519_zebra::Signature {
    ed25519_zebra::Signature::from_bytes(&sig.to_bytes())
}

/// Signs `payload` (an encoded `Statement`) with each key, in order.
pub fn sign(payload: Vec<u8>, keys: &[&SigningKey]) -> proto::Envelope {
    let message = pae(PAYLOAD_TYPE, &payload);
    let signatures = keys
        .iter()
        .map(|k| proto::Signature {
            public_key: k.verifying_key().to_bytes().to_vec(),
            sig: k.sign(&message).to_bytes().to_vec(),
        })
        .collect();
    proto::Envelope {
        payload,
        payload_type: PAYLOAD_TYPE.to_owned(),
        signatures,
    }
}

/// Adds one more signature to an envelope (a co-signer of a rotation or a peer certification
/// signing an envelope prepared by someone else).
pub fn cosign(envelope: &mut proto::Envelope, key: &SigningKey) {
    let message = pae(&envelope.payload_type, &envelope.payload);
    envelope.signatures.push(proto::Signature {
        public_key: key.verifying_key().to_bytes().to_vec(),
        sig: key.sign(&message).to_bytes().to_vec(),
    });
}

/// The DSSE JSON form of an envelope, for files signed offline and submitted later:
/// `{"payloadType": ..., "payload": base64, "signatures": [{"keyid": "ed25519:<hex>", "sig": base64}]}`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EnvelopeJson {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<SignatureJson>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SignatureJson {
    pub keyid: String,
    pub sig: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeJsonError {
    #[error("not a DSSE JSON envelope")]
    Json(#[from] serde_json::Error),
    #[error("the {field} field is not valid base64")]
    Base64 { field: &'static str },
    #[error("signature {position}: {source}")]
    KeyId {
        position: usize,
        #[source]
        source: PublicKeyError,
    },
}

impl From<&proto::Envelope> for EnvelopeJson {
    fn from(e: &proto::Envelope) -> Self {
        EnvelopeJson {
            payload_type: e.payload_type.clone(),
            payload: B64.encode(&e.payload),
            signatures: e
                .signatures
                .iter()
                .map(|s| SignatureJson {
                    keyid: PublicKey::from_bytes(&s.public_key)
                        .map(|k| k.to_string())
                        .unwrap_or_else(|_| hex::encode(&s.public_key)),
                    sig: B64.encode(&s.sig),
                })
                .collect(),
        }
    }
}

/// DSSE allows standard or URL-safe base64, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [&B64, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text.as_bytes()).ok())
}

impl TryFrom<EnvelopeJson> for proto::Envelope {
    type Error = EnvelopeJsonError;
    fn try_from(j: EnvelopeJson) -> Result<Self, Self::Error> {
        let payload =
            decode_base64(&j.payload).ok_or(EnvelopeJsonError::Base64 { field: "payload" })?;
        let mut signatures = Vec::with_capacity(j.signatures.len());
        for (position, s) in j.signatures.into_iter().enumerate() {
            let key: PublicKey = s
                .keyid
                .parse()
                .map_err(|source| EnvelopeJsonError::KeyId { position, source })?;
            let sig = decode_base64(&s.sig).ok_or(EnvelopeJsonError::Base64 { field: "sig" })?;
            signatures.push(proto::Signature {
                public_key: key.as_bytes().to_vec(),
                sig,
            });
        }
        Ok(proto::Envelope {
            payload,
            payload_type: j.payload_type,
            signatures,
        })
    }
}

impl EnvelopeJson {
    pub fn parse(text: &str) -> Result<proto::Envelope, EnvelopeJsonError> {
        serde_json::from_str::<EnvelopeJson>(text)?.try_into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_signing_key;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document: PAE("http://example.com/HelloWorld", "hello world").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn signed_envelopes_verify_alone_and_in_batches() {
        let a = generate_signing_key();
        let b = generate_signing_key();
        let one = Envelope::try_from(sign(b"one".to_vec(), &[&a])).unwrap();
        let two = Envelope::try_from(sign(b"two".to_vec(), &[&a, &b])).unwrap();
        assert_eq!(one.id(), StatementId::of_payload(b"one"));
        assert!(one.clone().verify().is_ok());
        let results = verify_batch(vec![one, two]);
        assert!(results.iter().all(|r| r.is_ok()));
    }

    #[test]
    fn a_bad_signature_is_singled_out_of_a_batch() {
        let a = generate_signing_key();
        let good = Envelope::try_from(sign(b"good".to_vec(), &[&a])).unwrap();
        let mut wire = sign(b"bad".to_vec(), &[&a]);
        wire.payload = b"bad!".to_vec();
        let bad = Envelope::try_from(wire).unwrap();
        let results = verify_batch(vec![good.clone(), bad, good]);
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err(),
            &EnvelopeError::BadSignature {
                key: PublicKey::from(&a.verifying_key())
            }
        );
        assert!(results[2].is_ok());
    }

    /// `ed25519-zebra`'s batch verifier, which the node's own batch equation must agree with.
    fn zebra_batch_accepts(envelopes: &[Envelope]) -> bool {
        let messages: Vec<Vec<u8>> = envelopes
            .iter()
            .map(|e| pae(PAYLOAD_TYPE, &e.payload))
            .collect();
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for (envelope, message) in envelopes.iter().zip(&messages) {
            for s in &envelope.signatures {
                let key = ed25519_zebra::VerificationKeyBytes::from(*s.public_key.as_bytes());
                batch.queue((key, zebra_signature(&s.signature), message));
            }
        }
        batch.verify(rand_core::OsRng).is_ok()
    }

    /// Batches of valid envelopes, with keys repeated and co-signed envelopes, and the same
    /// with one signature spoiled (payload, R or s changed): the batch equation holds exactly
    /// when `ed25519-zebra`'s does, whether the keys' points come remembered or not, and a
    /// batch it refuses is sorted out one by one.
    #[test]
    fn the_batch_equation_agrees_with_ed25519_zebra() {
        use rand_core::RngCore;
        let keys: Vec<SigningKey> = (0..5).map(|_| generate_signing_key()).collect();
        let mut known = KnownKeys::default();
        for k in &keys[..3] {
            known.check(&PublicKey::from(&k.verifying_key())).unwrap();
        }
        let mut rng = rand_core::OsRng;
        for round in 0..60u32 {
            let size = 1 + (rng.next_u32() % 9) as usize;
            let mut wires: Vec<proto::Envelope> = (0..size)
                .map(|i| {
                    let first = &keys[(rng.next_u32() % 5) as usize];
                    let payload = format!("statement {round} {i}").into_bytes();
                    if i % 4 == 3 {
                        let second = &keys[(keys.iter().position(|k| k == first).unwrap() + 1) % 5];
                        sign(payload, &[first, second])
                    } else {
                        sign(payload, &[first])
                    }
                })
                .collect();
            let spoiled = round % 2 == 1;
            if spoiled {
                let victim = (rng.next_u32() as usize) % size;
                let sig = &mut wires[victim].signatures[0].sig;
                match round % 6 {
                    1 => wires[victim].payload.push(b'!'),
                    3 => sig[40] ^= 0x01,
                    _ => {
                        // Another signature's R, still a curve point.
                        let other = sign(b"other".to_vec(), &[&keys[0]]);
                        sig[..32].copy_from_slice(&other.signatures[0].sig[..32]);
                    }
                }
            }
            let envelopes: Vec<Envelope> = wires
                .into_iter()
                .map(|w| Envelope::try_from(w).unwrap())
                .collect();
            let zebra = zebra_batch_accepts(&envelopes);
            assert_eq!(zebra, !spoiled, "round {round}");
            assert_eq!(
                batch_equation_holds(&envelopes, &known),
                zebra,
                "round {round}"
            );
            assert_eq!(
                batch_equation_holds(&envelopes, &KnownKeys::default()),
                zebra,
                "round {round}"
            );
            let one_by_one: Vec<bool> = envelopes
                .iter()
                .map(|e| e.clone().verify().is_ok())
                .collect();
            let batched: Vec<bool> = verify_batch_with(envelopes, &known)
                .iter()
                .map(|r| r.is_ok())
                .collect();
            assert_eq!(batched, one_by_one, "round {round}");
        }
    }

    #[test]
    fn shape_errors_are_precise() {
        let a = generate_signing_key();
        let mut wire = sign(b"x".to_vec(), &[&a]);
        wire.payload_type = "application/json".into();
        assert!(matches!(
            Envelope::try_from(wire),
            Err(EnvelopeError::WrongPayloadType { .. })
        ));

        let mut wire = sign(b"x".to_vec(), &[&a]);
        wire.signatures[0].sig.truncate(10);
        assert_eq!(
            Envelope::try_from(wire).unwrap_err(),
            EnvelopeError::BadSignatureLength {
                position: 0,
                len: 10
            }
        );

        let wire = sign(b"x".to_vec(), &[&a, &a]);
        assert!(matches!(
            Envelope::try_from(wire),
            Err(EnvelopeError::DuplicateSigner { .. })
        ));

        let wire = sign(Vec::new(), &[&a]);
        assert_eq!(
            Envelope::try_from(wire).unwrap_err(),
            EnvelopeError::EmptyPayload
        );

        let mut wire = sign(b"x".to_vec(), &[&a]);
        wire.signatures.clear();
        assert_eq!(
            Envelope::try_from(wire).unwrap_err(),
            EnvelopeError::NoSignatures
        );

        let wire = sign(vec![0u8; MAX_PAYLOAD_LEN + 1], &[&a]);
        assert!(matches!(
            Envelope::try_from(wire),
            Err(EnvelopeError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn a_long_multibyte_payload_type_is_refused_not_a_panic() {
        // Regression: cutting the echoed type at byte 200 split the "é" and panicked, which
        // took down the node's verifier thread (found by fuzzing).
        let a = generate_signing_key();
        let mut wire = sign(b"x".to_vec(), &[&a]);
        wire.payload_type = format!("{}é", "a".repeat(199));
        assert!(matches!(
            Envelope::try_from(wire),
            Err(EnvelopeError::WrongPayloadType { .. })
        ));
    }

    #[test]
    fn a_signature_with_a_small_order_r_is_refused() {
        let a = generate_signing_key();
        let mut wire = sign(b"x".to_vec(), &[&a]);
        // R = the identity point: a "signature" strict verification refuses.
        wire.signatures[0].sig[..32].copy_from_slice(&{
            let mut r = [0u8; 32];
            r[0] = 1;
            r
        });
        assert!(matches!(
            Envelope::try_from(wire),
            Err(EnvelopeError::MalformedSignature { position: 0, .. })
        ));
    }

    #[test]
    fn dsse_json_accepts_url_safe_base64() {
        let a = generate_signing_key();
        let wire = sign(vec![0xfb, 0xff, 0xfe], &[&a]);
        let mut json = EnvelopeJson::from(&wire);
        json.payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&wire.payload);
        assert_eq!(proto::Envelope::try_from(json).unwrap(), wire);
    }

    #[test]
    fn dsse_json_round_trips() {
        let a = generate_signing_key();
        let wire = sign(b"offline".to_vec(), &[&a]);
        let text = serde_json::to_string(&EnvelopeJson::from(&wire)).unwrap();
        assert_eq!(EnvelopeJson::parse(&text).unwrap(), wire);
    }

    /// An R in the first half of a signature.
    fn with_r(r: [u8; 32]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig
    }

    /// Wherever R is a curve point, the check made at decoding decides as the whole check.
    fn agrees(r: [u8; 32]) {
        let sig = with_r(r);
        let point = curve25519_dalek::edwards::CompressedEdwardsY(r).decompress();
        match point {
            Some(_) => assert_eq!(
                check_r_encoding(&sig),
                check_r(&sig),
                "R = {}",
                hex::encode(r)
            ),
            // Not a point: refused either way, as non-canonical when y >= p shows it.
            None => assert!(matches!(
                check_r(&sig),
                Err("its R is not a curve point" | "its R is not canonically encoded")
            )),
        }
    }

    #[test]
    fn r_checked_without_decompression_decides_as_with_it() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        let mut special: Vec<[u8; 32]> = Vec::new();
        // The small-order points, each with its sign bit flipped too.
        for point in EIGHT_TORSION {
            let r = point.compress().to_bytes();
            let mut flipped = r;
            flipped[31] ^= 0x80;
            special.extend([r, flipped]);
        }
        // Every y of 0..40 and p..p+40 (non-canonical where they are points), both signs.
        for small in 0u8..40 {
            let mut y = [0u8; 32];
            y[0] = small;
            let mut high = FIELD_P;
            let (low, carried) = high[0].overflowing_add(small);
            high[0] = low;
            if carried {
                high[1] = high[1].wrapping_add(1);
            }
            for mut r in [y, high] {
                special.push(r);
                r[31] ^= 0x80;
                special.push(r);
            }
        }
        // Points of large order, and the same plus a small-order component.
        for k in 1u64..64 {
            let point = ED25519_BASEPOINT_POINT * Scalar::from(k);
            special.push(point.compress().to_bytes());
            special.push((point + EIGHT_TORSION[1]).compress().to_bytes());
        }
        for r in special {
            agrees(r);
        }
        let mut refused = 0;
        for r in &[Y_ONE, Y_P_MINUS_ONE] {
            let mut flipped = *r;
            flipped[31] |= 0x80;
            refused += usize::from(check_r_encoding(&with_r(flipped)).is_err());
        }
        assert_eq!(refused, 2, "x = 0 with the sign bit set is not canonical");
    }

    proptest::proptest! {
        #[test]
        fn r_checks_agree_on_any_bytes(r in proptest::array::uniform32(proptest::num::u8::ANY)) {
            agrees(r);
        }
    }

    #[test]
    fn an_r_that_is_not_a_point_is_named_at_verification() {
        let key = generate_signing_key();
        let mut wire = sign(b"payload".to_vec(), &[&key]);
        // y = 2 is not the y of any curve point.
        let mut r = [0u8; 32];
        r[0] = 2;
        assert!(curve25519_dalek::edwards::CompressedEdwardsY(r)
            .decompress()
            .is_none());
        wire.signatures[0].sig[..32].copy_from_slice(&r);
        let envelope = Envelope::try_from(wire).expect("decoding leaves it to verification");
        let expected = "its R is not a curve point";
        match envelope.clone().verify() {
            Err(EnvelopeError::MalformedSignature {
                position: 0,
                reason,
            }) => {
                assert_eq!(reason, expected)
            }
            other => panic!("{other:?}"),
        }
        match verify_batch(vec![envelope]).pop() {
            Some(Err(EnvelopeError::MalformedSignature { reason, .. })) => {
                assert_eq!(reason, expected)
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod known_keys {
    use super::*;
    use crate::keys::generate_signing_key;

    #[test]
    fn a_key_that_fails_is_never_remembered_and_batch_errors_match() {
        let mut known = KnownKeys::default();
        let identity = PublicKey::from_bytes(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        })
        .unwrap();
        let off = PublicKey::from_bytes(&{
            let mut b = [0u8; 32];
            b[0] = 2;
            b
        })
        .unwrap();
        for _ in 0..3 {
            assert!(matches!(
                known.check(&identity),
                Err(PublicKeyError::Weak(_))
            ));
            assert!(matches!(
                known.check(&off),
                Err(PublicKeyError::NotOnCurve(_))
            ));
        }
        assert!(known.point(identity.as_bytes()).is_none());
        assert!(known.point(off.as_bytes()).is_none());

        // Errors (not just verdicts) from a populated KnownKeys equal those without one.
        let a = generate_signing_key();
        let b = generate_signing_key();
        known.check(&PublicKey::from(&a.verifying_key())).unwrap();
        known.check(&PublicKey::from(&b.verifying_key())).unwrap();
        let good = sign(b"good".to_vec(), &[&a]);
        let mut forged = sign(b"forged".to_vec(), &[&a, &b]);
        forged.signatures[1].sig[40] ^= 1;
        let mut bad_r = sign(b"bad r".to_vec(), &[&b]);
        bad_r.signatures[0].sig[..32].copy_from_slice(off.as_bytes());
        let mut big_s = sign(b"big s".to_vec(), &[&a]);
        big_s.signatures[0].sig[63] |= 0xf0;
        let wires = [good, forged, bad_r, big_s];
        let with: Vec<Envelope> = wires
            .iter()
            .map(|w| Envelope::decode_with(w.clone(), &mut known).unwrap())
            .collect();
        let without: Vec<Envelope> = wires
            .iter()
            .map(|w| Envelope::try_from(w.clone()).unwrap())
            .collect();
        let one_by_one: Vec<_> = without
            .iter()
            .cloned()
            .map(Envelope::verify)
            .map(|r| r.map(|_| ()))
            .collect();
        let a_: Vec<_> = verify_batch_with(with, &known)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect();
        let b_: Vec<_> = verify_batch(without)
            .into_iter()
            .map(|r| r.map(|_| ()))
            .collect();
        assert_eq!(a_, b_);
        assert_eq!(a_, one_by_one);
        assert!(a_[0].is_ok());
    }
}
