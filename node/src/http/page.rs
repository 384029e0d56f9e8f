//! The consumer pages: server-rendered HTML that works without JavaScript, fonts, images or
//! any other request (one self-contained response, well under 60 KB), readable on a 360 px
//! phone, in the language the reader asks for, its numbers written as in the reader's region
//! (`i18n::Numbers`). The verdict is computed here, by the same verifier as `fairtrail
//! verify`, under the operator's trust policy.
//!
//! # The operator's policy
//!
//! The node judges its pages under the policy file given by `--policy`, re-read when the
//! file changes. A missing, unreadable or invalid policy file (or one naming another log's
//! key) is the operator's mistake, not the reader's: it is logged once per change and the
//! pages are still served, judged under an empty policy that holds only the log's key. Such
//! a page never says "Verified": its badge says it was only partly checked, and a plain
//! notice says certifications and prices were not judged. The same holds when no policy is
//! configured at all. A failed signature or proof still shows "Not verified".
//!
//! # The JSON view
//!
//! `Accept: application/json` (or `?format=json`) returns the verifier's [`Report`],
//! serialised exactly as `fairtrail verify --json` reads it (verdict, subject, policy,
//! checkpoint, steps with findings, and the chain view), with one more member,
//! `trust_policy`: `{"state": "operator" | "none" | "unreadable", "error": "..."}` (`error`
//! only when unreadable), saying which policy the verdict was computed under.
//!
//! # Layout
//! - this file: the cache, the policy, the verdict, the JSON view, the page frame, the
//!   start and error pages, the bundle download.
//! - `consumer`: the consumer page's HTML.
//! - `chart`: the inline SVG chart of prices paid to farmers.

mod chart;
mod consumer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fairtrail_client::bundle::{Bundle, BundleError};
use fairtrail_client::gs1::ProductId;
use fairtrail_client::note::{NoteError, NoteVerifier};
use fairtrail_client::proto;
use fairtrail_client::verify::{verify_bundle, Policy, PolicyError, Report};

use super::i18n::{fill, Lang, Locale, NumberStyle, Numbers};
use super::HttpState;
use crate::provenance::{ProvenanceError, Subject};

/// How long a rendered page is served before it is rebuilt against a newer checkpoint. A page
/// is correct for the checkpoint it names, so serving it a little longer is safe.
const REFRESH: Duration = Duration::from_secs(2);
/// Pages kept at most (about 20 KB each: some 20 MB); beyond, the cache starts again empty.
const PAGES_KEPT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    #[error("the node's own log key does not parse")]
    LogKey(#[source] NoteError),
    #[error("the empty trust policy")]
    EmptyPolicy(#[source] PolicyError),
    #[error("the node built a malformed bundle")]
    Bundle(#[from] BundleError),
    #[error("encoding: {0}")]
    Encoding(String),
}

/// A rendered page or JSON view.
#[derive(Clone)]
pub struct Page {
    pub etag: String,
    pub body: bytes::Bytes,
    built: Instant,
    checkpoint_size: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PageKey {
    gtin: String,
    batch: String,
    serial: Option<String>,
    lang: Lang,
    json: bool,
    /// How the page writes numbers (the reader's region can change it without changing the
    /// language); `None` for the JSON view, which writes none for people.
    numbers: Option<NumberStyle>,
}

/// Which policy a verdict was computed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyState {
    /// The operator's policy file, read and valid.
    Operator,
    /// No policy is configured: only the log's key.
    NotConfigured,
    /// The policy file is configured but cannot be used (why): only the log's key.
    Unreadable(String),
}

impl PolicyState {
    /// Whether the verdict was judged under the operator's policy.
    pub fn in_force(&self) -> bool {
        *self == PolicyState::Operator
    }
}

/// The policy pages are judged under, always holding the log's key.
#[derive(Clone, Debug)]
pub struct PagePolicy {
    pub policy: Policy,
    pub state: PolicyState,
}

/// The policy for the pages: the operator's policy `text` (`Ok(None)` when none is
/// configured, `Err(why)` when its file cannot be read) with the log's key. A policy that
/// cannot be used falls back to the log's key alone (see the module documentation); only a
/// log key that does not parse (the node's own, so our fault) is an error.
pub fn page_policy(
    text: Result<Option<&str>, String>,
    log_key: &str,
) -> Result<PagePolicy, PageError> {
    let key = NoteVerifier::from_text(log_key).map_err(PageError::LogKey)?;
    let operator = match text {
        Ok(None) => Err(PolicyState::NotConfigured),
        Ok(Some(text)) => Policy::from_toml(text)
            .and_then(|p| p.with_log_key(key.clone()))
            .map_err(|e| PolicyState::Unreadable(error_chain(&e))),
        Err(why) => Err(PolicyState::Unreadable(why)),
    };
    match operator {
        Ok(policy) => Ok(PagePolicy {
            policy,
            state: PolicyState::Operator,
        }),
        Err(state) => Ok(PagePolicy {
            policy: Policy::from_toml("")
                .and_then(|p| p.with_log_key(key))
                .map_err(PageError::EmptyPolicy)?,
            state,
        }),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The operator's policy as last read, and the file's modification time then.
struct LoadedPolicy {
    modified: Option<SystemTime>,
    policy: Arc<PagePolicy>,
}

/// Rendered pages by product, language, number style and format, and the policy they were
/// judged under.
pub struct PageCache {
    policy_path: Option<PathBuf>,
    pub log_key: String,
    pub public_url: String,
    /// `None` until the first page is asked for. Held only while the file is checked (and
    /// read when it changed), never while a page renders.
    policy: Mutex<Option<LoadedPolicy>>,
    pages: Mutex<HashMap<PageKey, Page>>,
}

impl PageCache {
    pub fn new(policy_path: Option<PathBuf>, log_key: String, public_url: String) -> Self {
        PageCache {
            policy_path,
            log_key,
            public_url,
            policy: Mutex::new(None),
            pages: Mutex::new(HashMap::new()),
        }
    }

    /// The policy for the pages, re-read when the file's modification time changes; and
    /// whether it changed since the last call.
    fn policy(&self) -> Result<(Arc<PagePolicy>, bool), PageError> {
        let modified = self
            .policy_path
            .as_ref()
            .and_then(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        let mut loaded = self
            .policy
            .lock()
            .map_err(|_| PageError::Encoding("poisoned policy lock".into()))?;
        if let Some(l) = loaded.as_ref().filter(|l| l.modified == modified) {
            return Ok((l.policy.clone(), false));
        }
        let text = match &self.policy_path {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(Some)
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        };
        let text = match &text {
            Ok(t) => Ok(t.as_deref()),
            Err(why) => Err(why.clone()),
        };
        let policy = Arc::new(page_policy(text, &self.log_key)?);
        match (&policy.state, &self.policy_path) {
            (PolicyState::Unreadable(why), Some(path)) => tracing::error!(
                policy = %path.display(),
                error = %why,
                "the consumer pages' trust policy cannot be used; pages are judged without it until the file is fixed"
            ),
            (PolicyState::Operator, Some(path)) => {
                tracing::info!(policy = %path.display(), "consumer pages judged under this trust policy")
            }
            _ => {}
        }
        *loaded = Some(LoadedPolicy {
            modified,
            policy: policy.clone(),
        });
        Ok((policy, true))
    }

    /// The page for `product`, from the cache when it is fresh enough.
    pub fn get(
        &self,
        state: &HttpState,
        product: &ProductId,
        locale: Locale,
        json: bool,
    ) -> Result<Page, PageError> {
        let key = PageKey {
            gtin: product.gtin.clone(),
            batch: product.batch.clone(),
            serial: product.serial.clone(),
            lang: locale.lang,
            json,
            numbers: (!json).then(|| Numbers::style_of(locale)),
        };
        let (policy, policy_changed) = self.policy()?;
        let size = state.store.snapshot().size;
        if !policy_changed {
            if let Some(page) = self.pages.lock().ok().and_then(|p| p.get(&key).cloned()) {
                if page.checkpoint_size == size || page.built.elapsed() < REFRESH {
                    return Ok(page);
                }
            }
        } else if let Ok(mut pages) = self.pages.lock() {
            pages.clear();
        }
        let bundle = state
            .provenance
            .bundle(&Subject::Product(product.clone()))?;
        let checkpoint_size = checkpoint_size(&bundle.checkpoint);
        let report = judge(&bundle, &policy)?;
        let body = if json {
            render_json(&report, &policy.state)?
        } else {
            render_page(
                &report,
                product,
                locale.lang,
                &Numbers::new(locale),
                &policy.state,
                &self.public_url,
            )
        };
        let digest = blake3::hash(&body);
        let page = Page {
            etag: format!("\"{}\"", &digest.to_hex()[..32]),
            body: bytes::Bytes::from(body),
            built: Instant::now(),
            checkpoint_size,
        };
        if let Ok(mut pages) = self.pages.lock() {
            // Bounded: a flood of distinct product links cannot grow memory without end.
            if pages.len() >= PAGES_KEPT {
                pages.clear();
            }
            pages.insert(key, page.clone());
        }
        Ok(page)
    }
}

fn checkpoint_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// Verifies the node's own bundle as any reader would: the same verifier as `fairtrail
/// verify`, nothing taken from the node beyond the bundle.
pub fn judge(bundle: &proto::ProvenanceBundle, policy: &PagePolicy) -> Result<Report, PageError> {
    let bundle = Bundle::try_from(bundle.clone())?;
    Ok(verify_bundle(&bundle, &policy.policy))
}

/// The JSON view of a product: the verifier's report and the policy state (see the module
/// documentation).
pub fn render_json(report: &Report, policy: &PolicyState) -> Result<Vec<u8>, PageError> {
    #[derive(serde::Serialize)]
    struct TrustPolicy<'a> {
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct JsonView<'a> {
        #[serde(flatten)]
        report: &'a Report,
        trust_policy: TrustPolicy<'a>,
    }
    let (state, error) = match policy {
        PolicyState::Operator => ("operator", None),
        PolicyState::NotConfigured => ("none", None),
        PolicyState::Unreadable(why) => ("unreadable", Some(why.as_str())),
    };
    let view = JsonView {
        report,
        trust_policy: TrustPolicy { state, error },
    };
    let mut body =
        serde_json::to_vec_pretty(&view).map_err(|e| PageError::Encoding(e.to_string()))?;
    body.push(b'\n');
    Ok(body)
}

/// The consumer page for a reader in `locale` (or of a language, their region unknown).
pub fn render_html(
    report: &Report,
    product: &ProductId,
    locale: impl Into<Locale>,
    policy: &PolicyState,
    public_url: &str,
) -> Vec<u8> {
    let locale = locale.into();
    let numbers = Numbers::new(locale);
    render_page(report, product, locale.lang, &numbers, policy, public_url)
}

/// The consumer page, its texts in `lang` and its numbers written by `numbers`.
fn render_page(
    report: &Report,
    product: &ProductId,
    lang: Lang,
    numbers: &Numbers,
    policy: &PolicyState,
    public_url: &str,
) -> Vec<u8> {
    let (title, body) = consumer::render(report, product, lang, numbers, policy, public_url);
    layout(lang, &title, &body).into_bytes()
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page frame: inline CSS sized for small phones, high contrast, no external resources.
pub fn layout(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light\"><title>{} · {}</title><style>{}</style></head><body><main>{}</main></body></html>",
        lang.code(),
        esc(title),
        esc(lang.t().site),
        CSS,
        body
    )
}

/// Every size is at least 1rem (16 px); colours meet WCAG AA on their backgrounds; long
/// keys and ids wrap, so nothing scrolls sideways at 360 px.
const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:1rem/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#fafaf7;overflow-wrap:anywhere}\
main{max-width:44rem;margin:0 auto;padding:.75rem 1rem 2rem}\
h1{font-size:1.6rem;line-height:1.2;margin:.25rem 0 .25rem}\
h2{font-size:1.3rem;line-height:1.25;margin:2rem 0 .5rem;padding-bottom:.2rem;border-bottom:2px solid #2d6a4f}\
h3{font-size:1.1rem;line-height:1.3;margin:0 0 .4rem}\
p,ul,ol,dl{margin:.4rem 0}\
a{color:#1b4d8f}\
.lang{text-align:right;margin:0}.lang a,.lang strong{display:inline-block;padding:.5rem .25rem;margin-left:.5rem}\
.ids{color:#3d3d3d;margin:0 0 .75rem}\
.badge{display:flex;gap:.6rem;align-items:center;margin:.5rem 0;padding:.7rem 1rem;border-radius:.5rem;font-size:1.4rem;line-height:1.2;font-weight:700;color:#fff;border:0}\
.badge .icon{font-size:1.6rem}\
.ok{background:#1e6b3a}.warn{background:#8a5a00}.fail{background:#a4161a}\
.reasons{list-style:none;padding:0}.reasons li{display:flex;gap:.5rem;margin:.3rem 0}\
.mark{flex:none;width:1.5rem;text-align:center;font-weight:700}\
.m-ok{color:#1e6b3a}.m-warn{color:#8a5a00}.m-fail{color:#a4161a}\
.notice{padding:.6rem .8rem;border-left:.35rem solid #8a5a00;background:#fbf1dc}\
.muted{color:#3d3d3d}\
ol.journey{list-style:none;padding:0;counter-reset:s}\
.step{margin:0 0 1rem;padding:.75rem .85rem;background:#fff;border:1px solid #d6d6cf;border-radius:.5rem;counter-increment:s}\
.kind{display:block;color:#2d6a4f;font-size:1rem;text-transform:uppercase;letter-spacing:.04em}\
.step .kind::before{content:counter(s);display:inline-block;min-width:1.6rem;height:1.6rem;margin-right:.5rem;border-radius:50%;background:#2d6a4f;color:#fff;text-align:center;font-weight:700;line-height:1.6rem;letter-spacing:0}\
dl.facts dt{display:inline;font-weight:600;color:#3d3d3d}dl.facts dt::after{content:\":\"}\
dl.facts dd{display:inline;margin:0 0 0 .35rem}dl.facts dd::after{content:\"\";display:block;margin-bottom:.25rem}\
@media (min-width:40rem){dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem .75rem}dl.facts dt::after{content:none}dl.facts dd{margin:0}dl.facts dd::after{content:none}}\
dd ul,.plain{list-style:none;padding:0;margin:0}\
.tag{display:inline-block;max-width:100%;padding:0 .45rem;border:1px solid #6b6b6b;border-radius:.3rem;background:#f3f3ee}\
.a-self{background:#f6f1e3}.a-counterparty_confirmed{background:#e4eefb}.a-third_party_certified{background:#e3f3e8}.a-peer_certified{background:#efe7f8}\
.t-bad{border-color:#a4161a;color:#a4161a;background:#fff}\
.pay{margin-top:.6rem;padding-top:.5rem;border-top:1px dashed #c9c9c0}\
.pay h4{font-size:1rem;margin:0 0 .25rem}\
svg{display:block;width:100%;max-width:22rem;height:auto;margin:.25rem 0}\
.certs{list-style:none;padding:0}.certs>li{margin:0 0 1rem;padding:.75rem .9rem;background:#fff;border:1px solid #d6d6cf;border-radius:.5rem}\
.findings li{margin:.4rem 0}\
details{margin:.5rem 0}summary{cursor:pointer;color:#1b4d8f;padding:.3rem 0}\
.checks>li{margin:.6rem 0}.checks ul{padding-left:1.2rem}\
code{font:1rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere;background:#efefe8;padding:0 .2rem}\
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}\
time{white-space:nowrap}\
blockquote{margin:.3rem 0 0;padding-left:.75rem;border-left:.25rem solid #c9c9c0}";

/// The start page of the HTTP side.
pub fn home(locale: Locale, size: u64) -> String {
    let (lang, numbers) = (locale.lang, Numbers::new(locale));
    let t = lang.t();
    let body = format!(
        "<h1>{}</h1><p>{}</p><p class=\"muted\">{}</p>",
        esc(t.site),
        esc(t.home_intro),
        esc(&fill(t.home_size, &[&numbers.count(size)]))
    );
    layout(lang, t.site, &body)
}

/// An error page that says plainly what is wrong.
pub fn error(lang: Lang, status: u16, message: &str) -> String {
    let t = lang.t();
    let body = format!(
        "<h1>{} ({status})</h1><p>{}</p><p><a href=\"/\">{}</a></p>",
        esc(t.error_title),
        esc(message),
        esc(t.back_home)
    );
    layout(lang, t.error_title, &body)
}

/// A bundle as the file `fairtrail verify --bundle` reads.
pub fn bundle_json(bundle: &proto::ProvenanceBundle) -> Result<String, PageError> {
    Ok(Bundle::try_from(bundle.clone())?.to_json())
}

#[cfg(test)]
mod tests {
    use fairtrail_client::note::NoteSigner;

    use super::*;

    fn log_key(name: &str) -> String {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        NoteSigner::new(name, key).unwrap().verifier().to_text()
    }

    #[test]
    fn a_policy_that_cannot_be_used_falls_back_to_the_log_key_alone() {
        let key = log_key("example.org/log");
        let state = |text| page_policy(text, &key).unwrap().state;
        assert_eq!(state(Ok(None)), PolicyState::NotConfigured);
        assert_eq!(
            state(Ok(Some("require_receipts = true\n"))),
            PolicyState::Operator
        );
        assert!(
            matches!(state(Ok(Some("[[[ not toml"))), PolicyState::Unreadable(why) if why.contains("TOML"))
        );
        assert!(
            matches!(state(Err("cannot read x".into())), PolicyState::Unreadable(why) if why == "cannot read x")
        );
        let other_log = format!("log_key = \"{}\"\n", log_key("another.org/log"));
        assert!(matches!(
            state(Ok(Some(&other_log))),
            PolicyState::Unreadable(_)
        ));
        for text in [Ok(None), Ok(Some("[[[")), Err(String::new())] {
            let policy = page_policy(text, &key).unwrap().policy;
            assert_eq!(policy.log_key.map(|k| k.to_text()), Some(key.clone()));
        }
        assert!(matches!(
            page_policy(Ok(None), "not a key"),
            Err(PageError::LogKey(_))
        ));
    }

    #[test]
    fn text_from_the_log_is_escaped() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
