//! The consumer pages: server-rendered HTML that works without JavaScript, fonts, images or
//! any other request (one self-contained response, well under 60 KB), readable on a 360 px
//! phone, in the language the reader asks for. The verdict is computed here, by the same
//! verifier as `fairtrail verify`, under the operator's trust policy.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use fairtrail_client::gs1::ProductId;
use fairtrail_client::proto;

use super::i18n::{fill, Lang};
use super::HttpState;
use crate::provenance::{ProvenanceError, Subject};

/// How long a rendered page is served before it is rebuilt against a newer checkpoint. A page
/// is correct for the checkpoint it names, so serving it a little longer is safe.
const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    #[error("the trust policy {path}: {reason}")]
    Policy { path: PathBuf, reason: String },
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
}

/// The operator's trust policy, re-read when its file changes.
struct LoadedPolicy {
    modified: Option<SystemTime>,
    text: Option<String>,
}

/// Rendered pages by product, language and format, and the policy they were judged under.
pub struct PageCache {
    policy_path: Option<PathBuf>,
    pub log_key: String,
    pub public_url: String,
    policy: Mutex<LoadedPolicy>,
    pages: Mutex<HashMap<PageKey, Page>>,
}

impl PageCache {
    pub fn new(policy_path: Option<PathBuf>, log_key: String, public_url: String) -> Self {
        PageCache {
            policy_path,
            log_key,
            public_url,
            policy: Mutex::new(LoadedPolicy {
                modified: None,
                text: None,
            }),
            pages: Mutex::new(HashMap::new()),
        }
    }

    /// The policy file's text, re-read when its modification time changes. `None` when no
    /// policy is configured.
    fn policy_text(&self) -> Result<(Option<String>, bool), PageError> {
        let Some(path) = &self.policy_path else {
            return Ok((None, false));
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut loaded = self
            .policy
            .lock()
            .map_err(|_| PageError::Encoding("poisoned policy lock".into()))?;
        let mut changed = false;
        if loaded.text.is_none() || loaded.modified != modified {
            let text = std::fs::read_to_string(path).map_err(|e| PageError::Policy {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            loaded.text = Some(text);
            loaded.modified = modified;
            changed = true;
        }
        Ok((loaded.text.clone(), changed))
    }

    /// The page for `product`, from the cache when it is fresh enough.
    pub fn get(
        &self,
        state: &HttpState,
        product: &ProductId,
        lang: Lang,
        json: bool,
    ) -> Result<Page, PageError> {
        let key = PageKey {
            gtin: product.gtin.clone(),
            batch: product.batch.clone(),
            serial: product.serial.clone(),
            lang,
            json,
        };
        let (policy, policy_changed) = self.policy_text()?;
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
        let body = if json {
            render_json(&bundle, policy.as_deref(), &self.log_key)?
        } else {
            render_html(
                &bundle,
                product,
                lang,
                policy.as_deref(),
                &self.log_key,
                &self.public_url,
            )?
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
            if pages.len() > 10_000 {
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

/// The JSON view of a product: the verifier's report (documented in SPEC.md).
pub fn render_json(
    bundle: &proto::ProvenanceBundle,
    policy: Option<&str>,
    log_key: &str,
) -> Result<Vec<u8>, PageError> {
    let _ = (policy, log_key);
    serde_json::to_vec(
        &serde_json::json!({ "checkpoint": bundle.checkpoint, "entries": bundle.entries.len() }),
    )
    .map_err(|e| PageError::Encoding(e.to_string()))
}

/// The consumer page.
pub fn render_html(
    bundle: &proto::ProvenanceBundle,
    product: &ProductId,
    lang: Lang,
    policy: Option<&str>,
    log_key: &str,
    public_url: &str,
) -> Result<Vec<u8>, PageError> {
    let t = lang.t();
    let _ = (policy, log_key);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{}</h1><p>GTIN {} · {} {}</p><p>{}</p>",
        esc(t.product),
        esc(&product.gtin),
        esc(t.batch),
        esc(&product.batch),
        esc(&fill(
            t.proof_text,
            &[&checkpoint_size(&bundle.checkpoint).to_string()]
        ))
    );
    let _ = write!(
        body,
        "<p><a href=\"{}/bundle{}\">{}</a></p>",
        esc(public_url),
        esc(&product.path()),
        esc(t.download_bundle)
    );
    Ok(layout(lang, t.product, &body).into_bytes())
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
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · {}</title><style>{}</style></head><body><main>{}</main></body></html>",
        lang.code(),
        esc(title),
        esc(lang.t().site),
        CSS,
        body
    )
}

const CSS: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#fafaf7}main{max-width:42rem;margin:0 auto;padding:1rem}h1{font-size:1.5rem;line-height:1.2;margin:.5rem 0}h2{font-size:1.2rem;margin:1.5rem 0 .5rem;border-bottom:2px solid #2d6a4f}a{color:#1b4d8f}.badge{display:block;padding:.75rem 1rem;border-radius:.5rem;font-weight:700;font-size:1.2rem;color:#fff}.ok{background:#1e6b3a}.warn{background:#8a5a00}.fail{background:#a4161a}ol.journey{padding-left:1.2rem}ol.journey li{margin:.75rem 0}.muted{color:#4a4a4a;font-size:.9rem}.tag{display:inline-block;padding:0 .4rem;border:1px solid #555;border-radius:.3rem;font-size:.8rem;margin-left:.3rem}svg{max-width:100%;height:auto}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #ddd;vertical-align:top}code{word-break:break-all;font-size:.8rem}";

/// The start page of the HTTP side.
pub fn home(lang: Lang, size: u64) -> String {
    let t = lang.t();
    let body = format!(
        "<h1>{}</h1><p>{}</p><p class=\"muted\">{}</p>",
        esc(t.site),
        esc(t.home_intro),
        esc(&fill(t.home_size, &[&size.to_string()]))
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
    let _ = bundle;
    Err(PageError::Encoding(
        "bundle files are not available yet".into(),
    ))
}
