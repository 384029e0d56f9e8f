//! What verification returns: a verdict, the numbered steps with their findings, and a
//! structured view of the chain (journey, participants, certifications, prices, disputes)
//! that the CLI prints and the consumer page renders. Everything here is plain data and
//! serialises with serde, so a report can be stored or sent as JSON and read on its own.

use serde::Serialize;

use crate::envelope::StatementId;
use crate::keys::PublicKey;
use crate::rules::LotId;

/// The outcome of verifying a bundle against a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every step passed.
    Verified,
    /// Nothing failed, but something deserves a look (an open dispute, a yield the policy
    /// does not bound, ...).
    VerifiedWithWarnings,
    /// At least one check failed: the chain does not meet the policy, or the evidence is bad.
    Failed,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Verified => "verified",
            Verdict::VerifiedWithWarnings => "verified with warnings",
            Verdict::Failed => "failed",
        })
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Pass,
    Warning,
    Failure,
}

/// Who stands behind a claim. Signed is not the same as true: this says how far to trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Assurance {
    /// Only the participant who makes the claim says so.
    SelfDeclared,
    /// The counterparty confirmed it (a receipt).
    CounterpartyConfirmed,
    /// An independent certifier the policy trusts certified it.
    ThirdPartyCertified,
    /// A quorum of peers of a Participatory Guarantee System the policy trusts certified it.
    PeerCertified,
}

impl Assurance {
    pub fn label(&self) -> &'static str {
        match self {
            Assurance::SelfDeclared => "self-declared",
            Assurance::CounterpartyConfirmed => "confirmed by the counterparty",
            Assurance::ThirdPartyCertified => "third-party certified",
            Assurance::PeerCertified => "peer (PGS) certified",
        }
    }
}

/// What is wrong, for findings that are not passes: one name per kind of problem, so that
/// programs (and tests) can tell them apart without reading the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    // 1. checkpoint
    NoLogKey,
    CheckpointNotSignedByLog,
    CheckpointFromAnotherLog,
    CheckpointMalformed,
    // 2. inclusion
    EntryBeyondCheckpoint,
    LeafMalformed,
    NotInLog,
    DuplicateStatement,
    TimeGoesBackwards,
    // 3. signatures
    EnvelopeMalformed,
    StatementMalformed,
    IssuerDidNotSign,
    IssuedAfterLogged,
    BadSignature,
    // 4. participants and keys
    UndeclaredKey,
    RetiredKey,
    KeyReused,
    BadRotation,
    RecoveryQuorumNotMet,
    // 5. tracing
    NoBinding,
    BindingConflict,
    ProductNotCovered,
    UntracedLot,
    NotALot,
    LotUsedBeforeCreated,
    InvalidStatement,
    // 6. holders, quantities, yields
    NotHolder,
    LotOverdrawn,
    MixedTransfer,
    YieldOutOfBounds,
    NoYieldBound,
    YieldNotComputable,
    CommodityWithoutSource,
    // 7. receipts
    ReceiptMissing,
    ReceiptDisputed,
    ReceiptAmountMismatch,
    ReceiptByStranger,
    // 8. certifications
    NotCertified,
    UntrustedCertifier,
    CertificationOutOfScope,
    CertificationNotYetValid,
    CertificationExpired,
    CertificationRevoked,
    CertificationSuspended,
    PgsQuorumNotMet,
    UnauthorisedRevocation,
    // 9. prices
    NoPolicyForCommodity,
    PriceBelowMinimum,
    PremiumMissing,
    PremiumBelowMinimum,
    PriceNotComparable,
    // 10. disputes
    OpenDispute,
}

/// One thing the verifier found: a claim checked (a pass), or a problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Who stands behind the claim; `None` for what mathematics settles (signatures, proofs).
    pub assurance: Option<Assurance>,
    /// The number of the step that found it.
    pub step: u8,
    /// What is wrong; `None` for a pass.
    pub problem: Option<Problem>,
    /// For people: one sentence, naming participants, lots and entries.
    pub message: String,
    /// The log entry the finding is about, if one.
    pub entry: Option<u64>,
}

/// One numbered step and what it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub number: u8,
    pub title: String,
    /// False when an earlier step failed in a way that makes this one meaningless.
    pub ran: bool,
    pub findings: Vec<Finding>,
}

impl StepReport {
    /// The worst severity found in the step (a pass for a step with no findings).
    pub fn severity(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Pass)
    }
}

/// The checkpoint the bundle was proven against (once its signature verified).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Base64, as in the note.
    pub root: String,
}

/// The result of verifying a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// What was verified, for people ("GTIN 09506000134352 batch R2024-118").
    pub subject: String,
    pub policy: Option<String>,
    pub checkpoint: Option<CheckpointView>,
    pub steps: Vec<StepReport>,
    /// The chain as verified; empty when the evidence itself failed (steps 1 to 3).
    pub chain: ChainView,
}

impl Report {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.steps.iter().flat_map(|s| s.findings.iter())
    }

    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings().filter(|f| f.severity == Severity::Failure)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings().filter(|f| f.severity == Severity::Warning)
    }

    /// The findings of one kind of problem.
    pub fn problems(&self, problem: Problem) -> impl Iterator<Item = &Finding> {
        self.findings().filter(move |f| f.problem == Some(problem))
    }

    /// Whether the report names this problem at all.
    pub fn has(&self, problem: Problem) -> bool {
        self.problems(problem).next().is_some()
    }
}

/// A participant as the chain view names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartyRef {
    /// The identity: the key that declared the participant (or the bare key, undeclared).
    pub key: PublicKey,
    /// The declared name; `None` when the bundle holds no declaration.
    pub name: Option<String>,
    pub country: Option<String>,
}

/// An amount of goods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuantityView {
    pub amount: u64,
    /// "g", "ml" or "pcs".
    pub unit: String,
    /// For people: "12,000 kg".
    pub text: String,
}

/// A price per quantity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriceView {
    pub currency: String,
    pub minor_units: u64,
    pub per: QuantityView,
    /// For people, per kg (or l, or piece): "USD 4.29/kg".
    pub text: String,
    /// For people, per the unit it was stated in: per lb when stated per pound, else as
    /// `text`.
    pub stated: String,
    /// Per pound, for goods counted in grams (coffee is priced per lb): "USD 1.95/lb".
    pub per_lb: Option<String>,
}

/// A lot taken as input, or made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LotView {
    pub lot: LotId,
    pub commodity: Option<String>,
    pub quantity: QuantityView,
    /// The producer's or processor's own code.
    pub lot_code: Option<String>,
}

/// What kind of step in the journey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Harvest,
    Transfer,
    Transformation,
    ProductBinding,
}

/// What farmers were paid for a harvest, against the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FarmgateView {
    pub paid: Option<PriceView>,
    pub minimum: Option<PriceView>,
    /// Whether `paid` is at or above `minimum`; `None` when either is missing or they
    /// cannot be compared.
    pub meets_minimum: Option<bool>,
    pub premium: Option<PriceView>,
    pub premium_minimum: Option<PriceView>,
    pub meets_premium: Option<bool>,
    /// Money paid for the whole lot ("USD 51584.02"), when the price is known.
    pub total_paid: Option<String>,
    pub premium_total: Option<String>,
    /// The same totals in minor units of `paid`'s and `premium`'s currency, for writers with
    /// other separators (the consumer pages); not in the JSON, which has the texts.
    #[serde(skip)]
    pub total_paid_minor: Option<u128>,
    #[serde(skip)]
    pub premium_total_minor: Option<u128>,
    pub farmer_count: u32,
    pub harvested_from_ms: u64,
    pub harvested_until_ms: u64,
}

/// A recipient's answer to a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptView {
    pub entry: u64,
    pub integrated_at_ms: u64,
    /// "confirmed" or "disputed".
    pub outcome: String,
    pub received: QuantityView,
}

/// Whether one certification covered one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CoverageView {
    pub certification: StatementId,
    pub scheme: String,
    pub certificate_id: String,
    pub covers: bool,
    /// Why not, when it does not.
    pub reason: Option<String>,
    pub assurance: Assurance,
}

/// One step of the product's journey, in log order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JourneyStep {
    pub entry: u64,
    pub statement_id: StatementId,
    pub kind: StepKind,
    /// Who did it.
    pub actor: PartyRef,
    /// Who received it (transfers).
    pub counterparty: Option<PartyRef>,
    /// When the log integrated it: the time every check of this step uses.
    pub integrated_at_ms: u64,
    /// When the actor says it made the statement (a claim).
    pub issued_at_ms: u64,
    /// Where: a harvest's region and country, else the actor's declared place.
    pub place: Option<String>,
    pub inputs: Vec<LotView>,
    pub outputs: Vec<LotView>,
    /// The transformation's process ("roasting").
    pub process: Option<String>,
    /// Output per 1000 of input, for a transformation whose units allow it.
    pub yield_per_mille: Option<u64>,
    /// The price the recipient pays (transfers).
    pub price: Option<PriceView>,
    /// What farmers were paid (harvests).
    pub farmgate: Option<FarmgateView>,
    pub receipt: Option<ReceiptView>,
    pub certifications: Vec<CoverageView>,
    /// How far to trust the step's own claims (quantities, prices): self-declared, or
    /// confirmed by the recipient's receipt.
    pub assurance: Assurance,
    pub remark: Option<String>,
}

/// One key an identity has used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub key: PublicKey,
    pub from_entry: u64,
    pub retired_at_entry: Option<u64>,
}

/// A declared participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParticipantView {
    pub identity: PublicKey,
    pub name: String,
    pub roles: Vec<String>,
    pub organisation: String,
    pub country: String,
    pub location: String,
    pub declared_at_entry: u64,
    pub keys: Vec<KeyView>,
    pub assurance: Assurance,
}

/// A revocation, suspension or reinstatement of a certification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusChangeView {
    pub entry: u64,
    /// "revoked", "suspended" or "reinstated".
    pub kind: String,
    pub effective_at_ms: u64,
    pub reason: String,
}

/// A certification of a participant in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificationView {
    pub statement_id: StatementId,
    pub entry: u64,
    pub logged_at_ms: u64,
    pub subject: PartyRef,
    pub scheme: String,
    pub certificate_id: String,
    /// The certification body, or for a participatory certification the PGS network.
    pub certifier: PartyRef,
    pub assurance: Assurance,
    /// For a participatory certification: the members who signed.
    pub peers: Vec<PartyRef>,
    /// For a participatory certification: the distinct members the policy required.
    pub quorum: Option<u32>,
    pub commodities: Vec<String>,
    pub roles: Vec<String>,
    pub valid_from_ms: u64,
    pub valid_until_ms: u64,
    pub status_changes: Vec<StatusChangeView>,
    /// Whether the policy trusts it at all (its certifier, or its network and quorum).
    pub trusted: bool,
    pub untrusted_reason: Option<String>,
}

/// A dispute of an entry in the bundle. Nothing in the log closes a dispute, so every one
/// is open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DisputeView {
    pub entry: u64,
    pub integrated_at_ms: u64,
    pub by: PartyRef,
    pub disputed_entry: u64,
    pub disputed_statement: StatementId,
    /// What kind of statement is disputed ("transfer").
    pub disputed_kind: String,
    pub reason: String,
}

/// The product, as its binding names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProductView {
    pub gtin: String,
    pub batch: String,
    pub serial: Option<String>,
    pub name: String,
    pub bound_by: PartyRef,
    pub entry: u64,
    pub bound_at_ms: u64,
}

/// The chain behind the subject, as verified, for display.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChainView {
    pub product: Option<ProductView>,
    /// Journey steps in log order: harvests first, the product binding last.
    pub journey: Vec<JourneyStep>,
    pub participants: Vec<ParticipantView>,
    pub certifications: Vec<CertificationView>,
    pub disputes: Vec<DisputeView>,
}

/// A log time for people: "2024-03-12 14:05 UTC".
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// A log date for people: "2024-03-12".
pub fn format_date(ms: u64) -> String {
    let (y, m, d) = civil_from_days(ms / 1000 / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(format_time(1_709_210_096_000), "2024-02-29 12:34 UTC");
        assert_eq!(format_date(1_735_689_599_000), "2024-12-31");
        assert_eq!(format_date(1_735_689_600_000), "2025-01-01");
    }
}
