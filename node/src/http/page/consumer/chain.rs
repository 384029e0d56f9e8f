//! The chain on the consumer page: the journey step by step (what, who, where, when,
//! quantities, prices, receipts, certifications, how sure), what farmers were paid, the
//! certifications, and open disputes.

use std::fmt::Write;

use fairtrail_client::verify::{
    Assurance, CertificationView, JourneyStep, LotView, PriceView, Severity, StepKind,
};

use super::super::chart::price_chart;
use super::super::esc;
use super::{assurance_tag, date, html_fill, marks, party, Page};
use crate::http::i18n::{fill, Messages, Numbers};

// Writing to a String cannot fail, so `write!` results are ignored throughout.
impl Page<'_> {
    pub(super) fn journey(&mut self) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<section aria-labelledby=\"journey\"><h2 id=\"journey\">{}</h2>",
            esc(t.journey)
        );
        if self.report.chain.journey.is_empty() {
            let _ = write!(self.out, "<p>{}</p></section>", esc(t.journey_empty));
            return;
        }
        let _ = write!(
            self.out,
            "<p class=\"muted\">{}</p><ol class=\"journey\">",
            esc(t.journey_note)
        );
        for step in &self.report.chain.journey {
            self.step(step);
        }
        self.push("</ol></section>");
    }

    /// One step: kind and actor, then its facts as a definition list.
    fn step(&mut self, s: &JourneyStep) {
        let (t, n) = (self.t, self.numbers);
        let (kind, data) = match s.kind {
            StepKind::Harvest => (t.step_harvest.to_owned(), "harvest"),
            StepKind::Transfer => (t.step_transfer.to_owned(), "transfer"),
            StepKind::Transformation => {
                let process = s
                    .process
                    .as_deref()
                    .map(|p| format!(" · {p}"))
                    .unwrap_or_default();
                (
                    format!("{}{process}", t.step_transformation),
                    "transformation",
                )
            }
            StepKind::ProductBinding => (t.step_binding.to_owned(), "product_binding"),
        };
        let _ = write!(
            self.out,
            "<li class=\"step\" id=\"e{}\" data-kind=\"{data}\"><h3><span class=\"kind\">{}</span> <span class=\"actor\">{}</span></h3><dl class=\"facts\">",
            s.entry,
            esc(&kind),
            party(&s.actor)
        );
        if let Some(place) = &s.place {
            self.fact(t.place, &esc(place));
        }
        self.fact(t.logged_on, &date(s.integrated_at_ms));
        match s.kind {
            StepKind::Harvest => {
                self.fact(t.harvested, &lots(t, n, &s.outputs));
                if let Some(f) = &s.farmgate {
                    let period = html_fill(
                        t.valid_range,
                        &[&date(f.harvested_from_ms), &date(f.harvested_until_ms)],
                    );
                    self.fact(t.harvest_period, &period);
                }
            }
            StepKind::Transfer => {
                self.fact(t.shipped, &lots(t, n, &s.outputs));
                if let Some(to) = &s.counterparty {
                    self.fact(t.shipped_to, &party(to));
                }
                if let Some(price) = &s.price {
                    self.fact(t.price, &esc(&stated(n, price)));
                }
                self.fact(t.receipt, &receipt(t, n, s));
            }
            StepKind::Transformation => {
                self.fact(t.used, &lots(t, n, &s.inputs));
                self.fact(t.made, &lots(t, n, &s.outputs));
                if let Some(y) = s.yield_per_mille {
                    self.fact(t.yield_label, &esc(&n.percent(y)));
                }
            }
            StepKind::ProductBinding => self.fact(t.contains, &lots(t, n, &s.inputs)),
        }
        self.fact(t.signed_by, &party(&s.actor));
        let mut sure = assurance_tag(t, s.assurance);
        if self
            .report
            .chain
            .disputes
            .iter()
            .any(|d| d.disputed_entry == s.entry)
        {
            let _ = write!(
                sure,
                " <a class=\"tag t-bad\" href=\"#disputes\">{}</a>",
                esc(t.disputed_tag)
            );
        }
        self.fact(t.assurance, &sure);
        if !s.certifications.is_empty() {
            let mut certs = String::from("<ul>");
            for c in &s.certifications {
                let status = if c.covers {
                    esc(t.cert_in_force)
                } else {
                    let why = c.reason.as_deref().unwrap_or("");
                    format!(
                        "<span class=\"tag t-bad\">{}</span> <span lang=\"en\">{}</span>",
                        esc(t.cert_not_counted),
                        esc(why)
                    )
                };
                let _ = write!(
                    certs,
                    "<li>{} <code>{}</code>: {status} {}</li>",
                    esc(&c.scheme),
                    esc(&c.certificate_id),
                    assurance_tag(t, c.assurance)
                );
            }
            certs.push_str("</ul>");
            self.fact(t.step_certified, &certs);
        }
        self.push("</dl>");
        if let Some(f) = &s.farmgate {
            let _ = write!(
                self.out,
                "<div class=\"pay\"><h4>{}</h4>",
                esc(t.farmers_paid)
            );
            if let Some(chart) = price_chart(t, n, f, &format!("c{}", s.entry)) {
                self.push(&chart);
            }
            let _ = write!(
                self.out,
                "<ul class=\"reasons\"><li>{}</li><li>{}</li></ul><p>{}",
                meets(t, t.price_paid, f.meets_minimum),
                meets(t, t.premium, f.meets_premium),
                esc(&fill(
                    t.farmer_households,
                    &[&n.count(u64::from(f.farmer_count))]
                ))
            );
            let total = |price: &Option<PriceView>, minor: Option<u128>| {
                price
                    .as_ref()
                    .zip(minor)
                    .map(|(p, minor)| n.money(&p.currency, minor))
            };
            if let (Some(total), Some(premium)) = (
                total(&f.paid, f.total_paid_minor),
                total(&f.premium, f.premium_total_minor),
            ) {
                let _ = write!(
                    self.out,
                    " {}",
                    esc(&fill(t.total_paid, &[&total, &premium]))
                );
            }
            let _ = write!(
                self.out,
                " {}</p></div>",
                assurance_tag(t, Assurance::SelfDeclared)
            );
        }
        self.push("</li>");
    }

    /// One `<dt>`/`<dd>` pair; `html` is already escaped.
    fn fact(&mut self, label: &str, html: &str) {
        let _ = write!(self.out, "<dt>{}</dt><dd>{html}</dd>", esc(label));
    }

    pub(super) fn certifications(&mut self) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<section aria-labelledby=\"certs\"><h2 id=\"certs\">{}</h2>",
            esc(t.certifications)
        );
        let certs = &self.report.chain.certifications;
        if certs.is_empty() {
            let _ = write!(self.out, "<p>{}</p></section>", esc(t.no_certification));
            return;
        }
        self.push("<ul class=\"certs\">");
        for c in certs {
            self.certification(c);
        }
        self.push("</ul></section>");
    }

    fn certification(&mut self, c: &CertificationView) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<li><h3>{} <code>{}</code></h3><dl class=\"facts\">",
            esc(&c.scheme),
            esc(&c.certificate_id)
        );
        self.fact(t.holder, &party(&c.subject));
        self.fact(t.certified_by, &party(&c.certifier));
        let validity = html_fill(
            t.valid_range,
            &[&date(c.valid_from_ms), &date(c.valid_until_ms)],
        );
        self.fact(t.valid, &validity);
        let roles: Vec<String> = c.roles.iter().map(|r| t.role(r)).collect();
        let scope = [c.commodities.join(", "), roles.join(", ")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · ");
        if !scope.is_empty() {
            self.fact(t.scope, &esc(&scope));
        }
        self.fact(t.assurance, &assurance_tag(t, c.assurance));
        if !c.peers.is_empty() || c.quorum.is_some() {
            let mut peers = c.peers.iter().map(party).collect::<Vec<_>>().join(", ");
            if let Some(q) = c.quorum {
                let quorum = self.numbers.count(u64::from(q));
                let _ = write!(peers, " ({})", esc(&fill(t.quorum, &[&quorum])));
            }
            self.fact(t.peers, &peers);
        }
        self.push("</dl>");
        for change in &c.status_changes {
            let template = match change.kind.as_str() {
                "revoked" => t.status_revoked,
                "suspended" => t.status_suspended,
                _ => t.status_reinstated,
            };
            let text = html_fill(
                template,
                &[&date(change.effective_at_ms), &esc(&change.reason)],
            );
            let _ = write!(self.out, "<p><span class=\"tag t-bad\">!</span> {text}</p>");
        }
        if let Some(why) = c.untrusted_reason.as_deref().filter(|_| !c.trusted) {
            let _ = write!(
                self.out,
                "<p><span class=\"tag t-bad\">!</span> {}</p>",
                html_fill(
                    t.not_trusted,
                    &[&format!("<span lang=\"en\">{}</span>", esc(why))]
                )
            );
        }
        self.push("</li>");
    }

    pub(super) fn disputes(&mut self) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<section aria-labelledby=\"disputes\"><h2 id=\"disputes\">{}</h2>",
            esc(t.disputes)
        );
        let disputes = &self.report.chain.disputes;
        if disputes.is_empty() {
            let _ = write!(self.out, "<p>{}</p></section>", esc(t.no_disputes));
            return;
        }
        self.push("<ul class=\"findings\">");
        for d in disputes {
            let text = html_fill(
                t.dispute_text,
                &[
                    &date(d.integrated_at_ms),
                    &party(&d.by),
                    &esc(&t.kind(&d.disputed_kind)),
                    &esc(&fill(t.entry, &[&d.disputed_entry.to_string()])),
                ],
            );
            let _ = write!(
                self.out,
                "<li>{} <a href=\"#e{}\">#</a><blockquote>{}</blockquote>{}</li>",
                text,
                d.disputed_entry,
                esc(&d.reason),
                assurance_tag(t, Assurance::SelfDeclared)
            );
        }
        self.push("</ul></section>");
    }
}

/// Lots as HTML: "18,000 kg coffee (lot MV-2526-01)", one per line.
fn lots(t: &Messages, n: &Numbers, lots: &[LotView]) -> String {
    lots.iter()
        .map(|l| {
            let mut s = esc(&n.quantity(&l.quantity));
            if let Some(c) = &l.commodity {
                let _ = write!(s, " {}", esc(c));
            }
            if let Some(code) = &l.lot_code {
                let _ = write!(s, " ({})", esc(&fill(t.lot, &[code])));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// A transfer's price as it was stated: per lb or per kg.
fn stated(n: &Numbers, p: &PriceView) -> String {
    p.shown_as_stated()
        .map_or_else(|| p.stated.clone(), |shown| n.price(&p.currency, shown))
}

/// A transfer's receipt status.
fn receipt(t: &Messages, n: &Numbers, s: &JourneyStep) -> String {
    let recipient = s.counterparty.as_ref().map(party).unwrap_or_default();
    match &s.receipt {
        Some(r) if r.outcome == "confirmed" => html_fill(
            t.receipt_confirmed,
            &[
                &recipient,
                &esc(&n.quantity(&r.received)),
                &date(r.integrated_at_ms),
            ],
        ),
        Some(r) => format!(
            "<span class=\"tag t-bad\">!</span> {}",
            html_fill(t.receipt_disputed, &[&recipient, &date(r.integrated_at_ms)])
        ),
        None => format!("<span class=\"tag t-bad\">!</span> {}", esc(t.no_receipt)),
    }
}

/// Whether a price met its minimum, as a reason line: mark, what, and the outcome in words.
fn meets(t: &Messages, what: &str, meets: Option<bool>) -> String {
    let (severity, text) = match meets {
        Some(true) => (Severity::Pass, t.meets_minimum),
        Some(false) => (Severity::Failure, t.below_minimum),
        None => (Severity::Warning, t.not_compared),
    };
    let (class, mark, _) = marks(t, severity);
    format!(
        "<span class=\"mark {class}\" aria-hidden=\"true\">{mark}</span><span>{}: {}</span>",
        esc(what),
        esc(text)
    )
}
