//! The report for people: the numbered steps with each finding and its assurance level,
//! the journey, the disputes and the verdict, as plain text for a terminal.

use std::fmt::Write;

use super::report::{format_date, JourneyStep, ProductView, Report, Severity, StepKind, Verdict};

/// Renders a report as text, one finding a line, ending with the verdict.
pub fn render_text(report: &Report) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut s, report);
    s
}

fn write_report(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "Fairtrail verification of {}", r.subject)?;
    if let Some(policy) = &r.policy {
        writeln!(s, "policy: {policy}")?;
    }
    if let Some(cp) = &r.checkpoint {
        writeln!(s, "log: {}, checkpoint at tree size {}", cp.origin, cp.size)?;
    }
    for step in &r.steps {
        writeln!(s, "\n{}. {}", step.number, step.title)?;
        if !step.ran {
            writeln!(s, "   (not checked: the evidence above is not sound)")?;
            continue;
        }
        for f in &step.findings {
            let mark = match f.severity {
                Severity::Pass => "ok  ",
                Severity::Warning => "WARN",
                Severity::Failure => "FAIL",
            };
            write!(s, "   {mark} {}", f.message)?;
            if let Some(a) = f.assurance {
                write!(s, " [{}]", a.label())?;
            }
            writeln!(s)?;
        }
    }

    if !r.chain.journey.is_empty() {
        writeln!(s, "\nJourney (dates are when the log recorded each step)")?;
        for step in &r.chain.journey {
            write_step(s, step, r.chain.product.as_ref())?;
        }
    }
    if !r.chain.disputes.is_empty() {
        writeln!(s, "\nOpen disputes")?;
        for d in &r.chain.disputes {
            writeln!(
                s,
                "  {}  {} disputes the {} at entry {}: \"{}\"",
                format_date(d.integrated_at_ms),
                d.by.name.clone().unwrap_or_else(|| d.by.key.to_string()),
                d.disputed_kind,
                d.disputed_entry,
                d.reason
            )?;
        }
    }

    let failures = r.failures().count();
    let warnings = r.warnings().count();
    let verdict = match r.verdict {
        Verdict::Verified => "VERIFIED".to_owned(),
        Verdict::VerifiedWithWarnings => format!(
            "VERIFIED WITH WARNINGS ({warnings} warning{})",
            plural(warnings)
        ),
        Verdict::Failed => format!(
            "FAILED ({failures} failure{}, {warnings} warning{})",
            plural(failures),
            plural(warnings)
        ),
    };
    writeln!(s, "\nVerdict: {verdict}")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn write_step(
    s: &mut String,
    step: &JourneyStep,
    product: Option<&ProductView>,
) -> std::fmt::Result {
    let actor = step
        .actor
        .name
        .clone()
        .unwrap_or_else(|| step.actor.key.to_string());
    let outputs = step
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o.quantity.text,
                o.commodity.as_deref().unwrap_or("goods")
            )
        })
        .collect::<Vec<_>>()
        .join(" and ");
    let date = format_date(step.integrated_at_ms);
    let place = step
        .place
        .as_deref()
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    let line = match step.kind {
        StepKind::Harvest => format!("harvest: {actor}{place} harvested {outputs}"),
        StepKind::Transfer => {
            let to = step
                .counterparty
                .as_ref()
                .and_then(|c| c.name.clone())
                .unwrap_or_else(|| "another participant".into());
            let price = step
                .price
                .as_ref()
                .map(|p| format!(" at {}", p.stated))
                .unwrap_or_default();
            format!("transfer: {actor} shipped {outputs} to {to}{price}")
        }
        StepKind::Transformation => {
            let process = step.process.as_deref().unwrap_or("transformation");
            let inputs = step
                .inputs
                .iter()
                .map(|i| i.quantity.text.clone())
                .collect::<Vec<_>>()
                .join(" + ");
            let yield_text = step
                .yield_per_mille
                .map(|y| format!(", yield {y}‰"))
                .unwrap_or_default();
            format!("{process}: {actor} made {outputs} from {inputs}{yield_text}")
        }
        StepKind::ProductBinding => {
            let inputs = step
                .inputs
                .iter()
                .map(|i| {
                    format!(
                        "{} {}",
                        i.quantity.text,
                        i.commodity.as_deref().unwrap_or("goods")
                    )
                })
                .collect::<Vec<_>>()
                .join(" and ");
            let name = product.map_or_else(String::new, |p| format!(" \"{}\"", p.name));
            format!("product: {actor} made the product{name} from {inputs}")
        }
    };
    writeln!(s, "  {date}  {line} [{}]", step.assurance.label())?;
    if let Some(f) = &step.farmgate {
        let paid = f
            .paid
            .as_ref()
            .map(|p| p.per_lb.clone().unwrap_or(p.text.clone()))
            .unwrap_or_else(|| "not stated".into());
        let minimum = f
            .minimum
            .as_ref()
            .map(|p| format!(" (minimum {})", p.per_lb.clone().unwrap_or(p.text.clone())))
            .unwrap_or_default();
        let premium = f
            .premium
            .as_ref()
            .map(|p| format!(", premium {}", p.per_lb.clone().unwrap_or(p.text.clone())))
            .unwrap_or_else(|| ", no premium".into());
        writeln!(
            s,
            "              farmers paid {paid}{minimum}{premium}; {} farming households [self-declared]",
            f.farmer_count
        )?;
    }
    for c in &step.certifications {
        let status = if c.covers {
            "in force".to_owned()
        } else {
            format!("does not cover it: {}", c.reason.as_deref().unwrap_or("?"))
        };
        writeln!(
            s,
            "              {} {}: {status} [{}]",
            c.scheme,
            c.certificate_id,
            c.assurance.label()
        )?;
    }
    Ok(())
}
