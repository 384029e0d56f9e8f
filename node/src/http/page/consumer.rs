//! The consumer page's HTML, from the verifier's report: the product, the verdict with its
//! reasons, the chain (`chain`: the journey step by step, what farmers were paid, the
//! certifications, open disputes), what could not be verified, and the proof. Every human
//! text comes from the catalogue, and every number people read is written by `Numbers`
//! (the verifier's own English messages aside); everything from the log is escaped and shown
//! as written.

mod chain;

use std::fmt::Write;

use fairtrail_client::gs1::ProductId;
use fairtrail_client::verify::{
    format_date, Assurance, Finding, PartyRef, Report, Severity, StepKind, StepReport, Verdict,
};

use super::{esc, PolicyState};
use crate::http::i18n::{fill, problem_text, Lang, Messages, Numbers};

/// Steps whose verdict depends on the policy's demands beyond the log key: certifications
/// (8) and prices (9). Without the operator's policy they are not judged.
const POLICY_STEPS: [u8; 2] = [8, 9];

/// The page's title and body.
pub(super) fn render(
    report: &Report,
    product: &ProductId,
    lang: Lang,
    numbers: &Numbers,
    policy: &PolicyState,
    public_url: &str,
) -> (String, String) {
    let t = lang.t();
    let name = report
        .chain
        .product
        .as_ref()
        .map_or_else(|| t.product.to_owned(), |p| p.name.clone());
    let mut page = Page {
        out: String::with_capacity(32 * 1024),
        t,
        lang,
        numbers,
        report,
    };
    page.language_switch();
    page.header(&name, product);
    page.verdict(policy);
    page.journey();
    page.certifications();
    page.disputes();
    page.not_verified(policy);
    page.proof(product, public_url);
    (name, page.out)
}

struct Page<'a> {
    out: String,
    t: &'static Messages,
    lang: Lang,
    numbers: &'a Numbers,
    report: &'a Report,
}

// Writing to a String cannot fail, so `write!` results are ignored throughout.
impl Page<'_> {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// Links to the page in each other language; the current one is marked, not linked.
    fn language_switch(&mut self) {
        let _ = write!(
            self.out,
            "<nav class=\"lang\" aria-label=\"{}\">",
            esc(self.t.language)
        );
        for l in Lang::ALL {
            let name = esc(l.t().lang_name);
            let code = l.code();
            if l == self.lang {
                let _ = write!(
                    self.out,
                    "<strong lang=\"{code}\" aria-current=\"page\">{name}</strong>"
                );
            } else {
                let _ = write!(
                    self.out,
                    "<a href=\"?lang={code}\" hreflang=\"{code}\" lang=\"{code}\">{name}</a>"
                );
            }
        }
        self.push("</nav>");
    }

    fn header(&mut self, name: &str, product: &ProductId) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<h1>{}</h1><p class=\"ids\">GTIN {} · {} {}",
            esc(name),
            esc(&product.gtin),
            esc(t.batch),
            esc(&product.batch)
        );
        if let Some(serial) = &product.serial {
            let _ = write!(self.out, " · {} {}", esc(t.serial), esc(serial));
        }
        self.push("</p>");
        let origins: Vec<String> = self
            .report
            .chain
            .journey
            .iter()
            .filter(|s| s.kind == StepKind::Harvest)
            .map(|s| match &s.place {
                Some(place) => format!("{} ({})", party(&s.actor), esc(place)),
                None => party(&s.actor),
            })
            .collect();
        if !origins.is_empty() {
            let _ = write!(
                self.out,
                "<p><strong>{}:</strong> {}</p>",
                esc(t.grown_by),
                origins.join("; ")
            );
        }
    }

    /// The badge (text, icon and colour) and the reasons, one per verification step.
    fn verdict(&mut self, policy: &PolicyState) {
        let t = self.t;
        let r = self.report;
        let (class, icon, text) = match (r.verdict, policy.in_force()) {
            (Verdict::Failed, _) => ("fail", "✗", t.verdict_failed),
            (_, false) => ("warn", "!", t.verdict_unjudged),
            (Verdict::Verified, true) => ("ok", "✓", t.verdict_verified),
            (Verdict::VerifiedWithWarnings, true) => ("warn", "!", t.verdict_warnings),
        };
        let _ = write!(
            self.out,
            "<section aria-labelledby=\"verdict\"><h2 id=\"verdict\" class=\"badge {class}\"><span class=\"vh\">{}: </span><span class=\"icon\" aria-hidden=\"true\">{icon}</span><span>{}</span></h2>",
            esc(t.verdict),
            esc(text)
        );
        if let Some(notice) = policy_notice(t, policy) {
            let _ = write!(self.out, "<p class=\"notice\">{}</p>", esc(notice));
        }
        self.push("<ul class=\"reasons\">");
        // Steps 1 to 3 (checkpoint, inclusion, signatures) read as one reason when sound.
        let evidence_ok = r
            .steps
            .iter()
            .filter(|s| s.number <= 3)
            .all(|s| s.ran && s.severity() == Severity::Pass);
        if evidence_ok {
            self.reason(Severity::Pass, t.evidence_ok, "");
        }
        for step in &r.steps {
            if (!policy.in_force() && POLICY_STEPS.contains(&step.number))
                || (evidence_ok && step.number <= 3)
            {
                continue;
            }
            if !step.ran {
                self.reason(Severity::Warning, &step_title(t, step), &not_run(t));
                continue;
            }
            match step.severity() {
                Severity::Pass => {
                    let text = t
                        .step_ok
                        .get(usize::from(step.number) - 1)
                        .copied()
                        .unwrap_or("");
                    self.reason(Severity::Pass, text, "");
                }
                _ => {
                    let mut seen = Vec::new();
                    for f in step
                        .findings
                        .iter()
                        .filter(|f| f.severity != Severity::Pass)
                    {
                        let Some(p) = f.problem.filter(|p| !seen.contains(p)) else {
                            continue;
                        };
                        seen.push(p);
                        self.reason(f.severity, problem_text(self.lang, p), "");
                    }
                }
            }
        }
        self.push("</ul>");
        let _ = write!(
            self.out,
            "<p class=\"muted\">{}</p>",
            esc(t.verdict_explain)
        );
        if let Some(name) = &r.policy {
            let _ = write!(
                self.out,
                "<p class=\"muted\">{}</p>",
                esc(&fill(t.policy_named, &[name]))
            );
        }
        self.push("</section>");
    }

    /// One reason: its mark (the severity in words for screen readers), its text, and
    /// `extra` HTML after the text.
    fn reason(&mut self, severity: Severity, text: &str, extra: &str) {
        let (class, mark, word) = marks(self.t, severity);
        let _ = write!(
            self.out,
            "<li><span class=\"mark {class}\" aria-hidden=\"true\">{mark}</span><div><span class=\"vh\">{}: </span>{}{extra}</div></li>",
            esc(word),
            esc(text)
        );
    }

    /// Failures, then warnings, each in plain words with the verifier's detail.
    fn not_verified(&mut self, policy: &PolicyState) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<section aria-labelledby=\"unverified\"><h2 id=\"unverified\">{}</h2>",
            esc(t.not_verified)
        );
        if let Some(notice) = policy_notice(t, policy) {
            let _ = write!(self.out, "<p class=\"notice\">{}</p>", esc(notice));
        }
        let r = self.report;
        let problems: Vec<&Finding> = r.failures().chain(r.warnings()).collect();
        let skipped: Vec<&StepReport> = r.steps.iter().filter(|s| !s.ran).collect();
        if problems.is_empty() && skipped.is_empty() {
            let _ = write!(self.out, "<p>{}</p>", esc(t.nothing_unverified));
        } else {
            self.push("<ul class=\"reasons findings\">");
            for f in problems {
                let text = f.problem.map_or("", |p| problem_text(self.lang, p));
                let detail = self.detail(&f.message);
                self.reason(f.severity, text, &detail);
            }
            for s in skipped {
                self.reason(Severity::Warning, &step_title(t, s), &not_run(t));
            }
            self.push("</ul>");
        }
        let _ = write!(self.out, "<p>{}</p></section>", esc(t.self_declared_note));
    }

    /// The verifier's English message: inline on English pages, folded away on others.
    fn detail(&self, message: &str) -> String {
        if self.lang == Lang::En {
            format!("<br><span class=\"muted\">{}</span>", esc(message))
        } else {
            format!(
                "<details><summary>{}</summary><p lang=\"en\">{}</p></details>",
                esc(self.t.details_en),
                esc(message)
            )
        }
    }

    /// Every step and every finding, folded away: for the sceptical.
    fn checks(&mut self) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<details><summary>{}</summary><ol class=\"checks\">",
            esc(t.checks)
        );
        for s in &self.report.steps {
            let (_, mark, word) = marks(t, s.severity());
            let _ = write!(
                self.out,
                "<li><strong>{}</strong> <span aria-hidden=\"true\">{mark}</span> {}",
                esc(&step_title(t, s)),
                esc(if s.ran { word } else { t.step_not_run })
            );
            let lang = if self.lang == Lang::En {
                ""
            } else {
                " lang=\"en\""
            };
            let _ = write!(self.out, "<ul{lang}>");
            for f in &s.findings {
                let (_, mark, _) = marks(t, f.severity);
                let _ = write!(
                    self.out,
                    "<li><span aria-hidden=\"true\">{mark}</span> {}",
                    esc(&f.message)
                );
                if let Some(a) = f.assurance {
                    let _ = write!(self.out, " {}", assurance_tag(t, a));
                }
                self.push("</li>");
            }
            self.push("</ul></li>");
        }
        self.push("</ol></details>");
    }

    fn proof(&mut self, product: &ProductId, public_url: &str) {
        let t = self.t;
        let _ = write!(
            self.out,
            "<section aria-labelledby=\"proof\"><h2 id=\"proof\">{}</h2>",
            esc(t.proof)
        );
        if let Some(cp) = &self.report.checkpoint {
            let root = format!("<code>{}</code>", esc(&cp.root));
            let text = fill(
                &esc(t.proof_text),
                &[&esc(&cp.origin), &esc(&self.numbers.count(cp.size)), &root],
            );
            let _ = write!(self.out, "<p>{text}</p>");
        }
        let base = public_url.trim_end_matches('/');
        let path = product.path();
        let lang = self.lang.code();
        let _ = write!(
            self.out,
            "<ul><li><a href=\"{}\" download>{}</a></li><li><a href=\"{}\">{}</a></li></ul>",
            esc(&format!("{base}/bundle{path}")),
            esc(t.download_bundle),
            esc(&format!("{base}{path}?format=json&lang={lang}")),
            esc(t.json_view)
        );
        let _ = write!(
            self.out,
            "<p>{}<br><code>fairtrail verify --bundle BUNDLE.json --policy POLICY.toml</code></p>",
            esc(t.verify_yourself)
        );
        self.checks();
        let _ = write!(
            self.out,
            "<h3>{}</h3><ul class=\"plain\">",
            esc(t.assurance_legend)
        );
        for (a, meaning) in [
            (Assurance::SelfDeclared, t.legend_self),
            (Assurance::CounterpartyConfirmed, t.legend_counterparty),
            (Assurance::ThirdPartyCertified, t.legend_third_party),
            (Assurance::PeerCertified, t.legend_peer),
        ] {
            let _ = write!(
                self.out,
                "<li>{}: {}</li>",
                assurance_tag(t, a),
                esc(meaning)
            );
        }
        self.push("</ul></section>");
    }
}

/// A catalogue text whose `{}` are filled with HTML (each argument already escaped).
fn html_fill(template: &str, html: &[&str]) -> String {
    fill(&esc(template), html)
}

/// A log date as HTML that never breaks across lines.
fn date(ms: u64) -> String {
    let d = format_date(ms);
    format!("<time datetime=\"{d}\">{d}</time>")
}

fn not_run(t: &Messages) -> String {
    format!(" <span class=\"muted\">({})</span>", esc(t.step_not_run))
}

/// The plain notice when the operator's policy was not applied.
fn policy_notice(t: &Messages, policy: &PolicyState) -> Option<&'static str> {
    match policy {
        PolicyState::Operator => None,
        PolicyState::NotConfigured => Some(t.policy_none),
        PolicyState::Unreadable(_) => Some(t.policy_unreadable),
    }
}

fn step_title(t: &Messages, s: &StepReport) -> String {
    t.step_title
        .get(usize::from(s.number).wrapping_sub(1))
        .map_or_else(|| s.title.clone(), |title| (*title).to_owned())
}

/// (CSS class, mark, word) for a severity: the mark and colour repeat the word.
fn marks(t: &Messages, s: Severity) -> (&'static str, &'static str, &'static str) {
    match s {
        Severity::Pass => ("m-ok", "✓", t.sev_pass),
        Severity::Warning => ("m-warn", "!", t.sev_warning),
        Severity::Failure => ("m-fail", "✗", t.sev_failure),
    }
}

fn assurance_tag(t: &Messages, a: Assurance) -> String {
    let (class, text) = match a {
        Assurance::SelfDeclared => ("a-self", t.assurance_self),
        Assurance::CounterpartyConfirmed => ("a-counterparty_confirmed", t.assurance_counterparty),
        Assurance::ThirdPartyCertified => ("a-third_party_certified", t.assurance_third_party),
        Assurance::PeerCertified => ("a-peer_certified", t.assurance_peer),
    };
    format!("<span class=\"tag {class}\">{}</span>", esc(text))
}

/// A participant as HTML: the name, or the key in code (it wraps).
fn party(p: &PartyRef) -> String {
    match &p.name {
        Some(name) => esc(name),
        None => format!("<code>{}</code>", esc(&p.key.to_string())),
    }
}
