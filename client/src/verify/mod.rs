//! The chain verifier: checks a provenance bundle against a trust policy, trusting nothing
//! the node says, and explains its verdict step by step. SPEC.md section "Verification".
//!
//! [`verify_bundle`] runs these steps, in this order:
//!
//! 1. **Checkpoint.** The bundle's checkpoint is a signed note by the policy's log key,
//!    naming that log.
//! 2. **Inclusion.** Every entry is in the log's tree at the checkpoint: its RFC 9162
//!    inclusion proof leads to the checkpoint's root. Entries are unique and the log's
//!    integration times never decrease with the index.
//! 3. **Signatures.** Every entry holds a well-formed envelope and statement; every
//!    signature verifies; each issuer signed its statement.
//! 4. **Participants and keys.** Declarations and key rotations are replayed in log order:
//!    each rotation is signed by the old and the new key (or, recovering a lost key, by the
//!    new key and a quorum of the guardians the participant declared). Every statement is
//!    signed with the key its participant held at that entry: a key used after it was
//!    rotated away fails.
//! 5. **Tracing.** From the product's binding (or the lot named) back to every harvest:
//!    each lot consumed is made by a statement in the bundle ("cannot trace lot X"
//!    otherwise), logged before it is consumed.
//! 6. **Holders, quantities and yields.** Each lot is consumed only by its holder and never
//!    beyond its quantity, across every statement in the bundle that consumes it; each
//!    transformation's yield is within the policy's bounds for its process.
//! 7. **Receipts.** Each transfer on the chain is confirmed by its recipient, for the full
//!    amount, when the policy requires receipts.
//! 8. **Certifications.** For each step the policy wants certified, some certification of
//!    the actor covers it (see "Time rules"): issued by a certifier the policy trusts for
//!    the scheme, or by a PGS network the policy trusts with at least the quorum of distinct
//!    members signing; in scope for the commodity and the actor's role; in force at the
//!    step's integration time; not revoked or suspended then.
//! 9. **Prices.** Each harvest paid farmers at least the policy's minimum price for the
//!    commodity, and at least the premium.
//! 10. **Disputes.** Every dispute of an entry in the bundle is listed, as a warning.
//!
//! When step 1, 2 or 3 fails, the evidence itself is unsound and the later steps do not run.
//! Otherwise every step runs and reports everything it finds.
//!
//! # What a bundle cannot show
//!
//! The verifier checks the bundle's own subject: a caller who asked a node for one product
//! must check that the bundle is about that product (`fairtrail verify` does). And a node
//! can leave entries out: a revocation, a dispute, another statement that consumed a lot.
//! What is left out cannot be seen here; monitors and auditors who replay the whole log
//! (and witnesses who cosign its checkpoints) catch a node that hides entries.
//!
//! # Time rules
//!
//! Every time check uses the log's integration time of the step (`integrated_at_ms` of its
//! leaf, committed to by the tree), never the time a participant claims. With `skew` the
//! policy's `clock_skew_ms`, a certification covers a step integrated at `t` when
//! `valid_from <= t + skew` and `t <= valid_until + skew`, and it is neither revoked nor
//! suspended at `t`. A revocation counts from its `effective_at`, whenever it was logged: a
//! certifier who finds fraud can withdraw a certificate from the day the fraud began, and a
//! bundle fetched later will fail for goods shipped after that day. A suspension holds from
//! its `effective_at` until a reinstatement whose `effective_at` is later; events are
//! ordered by `effective_at`, then by log index. The skew widens the validity period only;
//! it never delays a revocation or a suspension.
//!
//! # Assurance
//!
//! Every claim in the report carries its [`Assurance`]: self-declared (only its author says
//! so), confirmed by the counterparty (a receipt), third-party certified, or peer (PGS)
//! certified. Findings about signatures and proofs carry none: mathematics settles them.

mod balance;
mod certs;
mod chain;
mod coverage;
mod disputes;
mod evidence;
mod identity;
mod policy;
mod prices;
mod receipts;
mod report;
mod text;
mod view;

#[cfg(test)]
mod dishonest;
#[cfg(test)]
mod testlog;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::bad_keys;

pub use policy::{
    CommodityPolicy, PgsPolicy, Policy, PolicyError, YieldBounds, DEFAULT_CLOCK_SKEW_MS,
    MAX_CLOCK_SKEW_MS,
};
pub use report::{
    format_date, format_time, Assurance, CertificationView, ChainView, CheckpointView,
    CoverageView, DisputeView, FarmgateView, Finding, JourneyStep, KeyView, LotView,
    ParticipantView, PartyRef, PriceView, Problem, ProductView, QuantityView, ReceiptView, Report,
    Severity, StatusChangeView, StepKind, StepReport, Verdict,
};
pub use text::render_text;

use crate::bundle::Bundle;

/// The numbered steps of verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Checkpoint = 1,
    Inclusion,
    Signatures,
    Participants,
    Trace,
    Quantities,
    Receipts,
    Certifications,
    Prices,
    Disputes,
}

impl Step {
    const ALL: [Step; 10] = [
        Step::Checkpoint,
        Step::Inclusion,
        Step::Signatures,
        Step::Participants,
        Step::Trace,
        Step::Quantities,
        Step::Receipts,
        Step::Certifications,
        Step::Prices,
        Step::Disputes,
    ];

    fn number(self) -> u8 {
        self as u8
    }

    fn title(self) -> &'static str {
        match self {
            Step::Checkpoint => "The checkpoint is signed by the log",
            Step::Inclusion => "Every entry is in the log",
            Step::Signatures => "Every signature verifies",
            Step::Participants => "Participants and their keys",
            Step::Trace => "The chain is traced to every harvest",
            Step::Quantities => "Holders, quantities and yields",
            Step::Receipts => "Transfers confirmed by their recipients",
            Step::Certifications => "Certifications in force and in scope",
            Step::Prices => "Prices and premiums paid to producers",
            Step::Disputes => "Open disputes",
        }
    }
}

/// Collects findings step by step.
pub(crate) struct Findings {
    steps: Vec<StepReport>,
}

impl Findings {
    fn new() -> Self {
        Findings {
            steps: Step::ALL
                .iter()
                .map(|s| StepReport {
                    number: s.number(),
                    title: s.title().to_owned(),
                    ran: true,
                    findings: Vec::new(),
                })
                .collect(),
        }
    }

    fn push(
        &mut self,
        step: Step,
        severity: Severity,
        problem: Option<Problem>,
        entry: Option<u64>,
        message: String,
    ) -> &mut Finding {
        let findings = &mut self.steps[step as usize - 1].findings;
        let at = findings.len();
        findings.push(Finding {
            severity,
            assurance: None,
            step: step.number(),
            problem,
            message,
            entry,
        });
        &mut findings[at]
    }

    /// A claim checked and found sound.
    pub(crate) fn pass(
        &mut self,
        step: Step,
        assurance: Option<Assurance>,
        entry: Option<u64>,
        message: impl Into<String>,
    ) {
        self.push(step, Severity::Pass, None, entry, message.into())
            .assurance = assurance;
    }

    pub(crate) fn warn(
        &mut self,
        step: Step,
        problem: Problem,
        entry: Option<u64>,
        message: impl Into<String>,
    ) -> &mut Finding {
        self.push(
            step,
            Severity::Warning,
            Some(problem),
            entry,
            message.into(),
        )
    }

    pub(crate) fn fail(
        &mut self,
        step: Step,
        problem: Problem,
        entry: Option<u64>,
        message: impl Into<String>,
    ) -> &mut Finding {
        self.push(
            step,
            Severity::Failure,
            Some(problem),
            entry,
            message.into(),
        )
    }

    pub(crate) fn failed(&self, step: Step) -> bool {
        self.steps[step as usize - 1].severity() == Severity::Failure
    }

    /// Marks every step from `from` on as not run.
    fn skip_from(&mut self, from: Step) {
        for s in self.steps.iter_mut().filter(|s| s.number >= from.number()) {
            s.ran = false;
        }
    }

    fn verdict(&self) -> Verdict {
        match self.steps.iter().map(StepReport::severity).max() {
            Some(Severity::Failure) => Verdict::Failed,
            Some(Severity::Warning) => Verdict::VerifiedWithWarnings,
            _ => Verdict::Verified,
        }
    }
}

/// Verifies `bundle` against `policy`: every step above, in order. Never panics on any
/// bundle; everything wrong with it becomes a finding.
pub fn verify_bundle(bundle: &Bundle, policy: &Policy) -> Report {
    let mut out = Findings::new();
    let (checkpoint, evidence) = evidence::check(bundle, policy, &mut out);
    let chain = match evidence {
        Some(ev) => {
            let ids = identity::check(&ev, &mut out);
            let ctx = Ctx {
                policy,
                ev: &ev,
                ids: &ids,
            };
            let traced = chain::trace(&ctx, &bundle.subject, &mut out);
            balance::check(&ctx, &traced, &mut out);
            let receipts = receipts::check(&ctx, &traced, &mut out);
            let certs = coverage::check(&ctx, &traced, &bundle.subject, &mut out);
            let farmgate = prices::check(&ctx, &traced, &mut out);
            let disputes = disputes::check(&ctx, &mut out);
            view::build(&ctx, &traced, &receipts, &certs, &farmgate, disputes)
        }
        None => {
            let first_not_run = Step::ALL
                .iter()
                .find(|s| out.failed(**s))
                .and_then(|s| Step::ALL.get(s.number() as usize).copied())
                .unwrap_or(Step::Participants);
            out.skip_from(first_not_run);
            ChainView::default()
        }
    };
    Report {
        verdict: out.verdict(),
        subject: bundle.subject.to_string(),
        policy: policy.name.clone(),
        checkpoint,
        steps: out.steps,
        chain,
    }
}

/// What every step after the evidence reads.
pub(crate) struct Ctx<'a> {
    pub policy: &'a Policy,
    pub ev: &'a evidence::Evidence,
    pub ids: &'a identity::Identities,
}
