//! The trust policy: whom a retailer (or anyone verifying) trusts, and what it demands of a
//! chain. Read from TOML and checked on load, so a typo is an error, never a looser policy.
//! SPEC.md section "Trust policy"; `examples/policy.toml` is a complete example.
//!
//! ```toml
//! name = "Example Roasters sourcing policy"
//! log_key = "fairtrail.example/log+8c1d2e3f+AbCd..."   # C2SP verifier key of the log
//! require_receipts = true                              # default true
//! clock_skew_ms = 300000                               # default 5 minutes
//!
//! [certifiers]                                         # scheme -> trusted certifier keys
//! Fairtrade = ["ed25519:<64 hex>"]
//!
//! [pgs."Red Andina PGS"]                               # scheme -> a PGS network
//! network = "ed25519:<64 hex>"
//! quorum = 2
//! members = []                                         # optional: else its declared guardians
//!
//! [commodities.coffee]
//! includes = ["green coffee", "roasted coffee"]        # lot commodities of this family
//! minimum_price = "USD 1.80/lb"
//! premium = "USD 0.20/lb"
//! certification_required = true
//! schemes = ["Fairtrade", "Red Andina PGS"]
//! require_certified_handlers = false
//!
//! [yields.roasting]                                    # output per 1000 of input
//! min_per_mille = 780
//! max_per_mille = 880
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::{PublicKey, PublicKeyError};
use crate::note::{NoteError, NoteVerifier};
use crate::proto;
use crate::units::{parse_price, UnitError};

/// The clock skew accepted when none is given: five minutes.
pub const DEFAULT_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// The most clock skew a policy may accept: one day.
pub const MAX_CLOCK_SKEW_MS: u64 = 24 * 60 * 60 * 1000;
/// The highest yield bound a policy may set (output 100 times the input).
pub const MAX_YIELD_PER_MILLE: u32 = 100_000;

/// A checked trust policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// A name for people ("Example Roasters sourcing policy").
    pub name: Option<String>,
    /// The log's verifier key. Required to verify; the CLI may supply it with `--log-key`.
    pub log_key: Option<NoteVerifier>,
    /// Every transfer on the chain needs a receipt confirming it from its recipient.
    pub require_receipts: bool,
    /// How far the log's clock and a certificate's dates may disagree.
    pub clock_skew_ms: u64,
    /// Scheme -> keys of certifiers trusted to certify for it.
    pub certifiers: BTreeMap<String, Vec<PublicKey>>,
    /// Scheme -> the Participatory Guarantee System trusted to certify for it.
    pub pgs: BTreeMap<String, PgsPolicy>,
    /// Commodity family -> what the policy demands of it.
    pub commodities: BTreeMap<String, CommodityPolicy>,
    /// Transformation process (as named in the statement) -> yield bounds.
    pub yields: BTreeMap<String, YieldBounds>,
}

/// A trusted PGS network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgsPolicy {
    /// The network's key (any key of its identity).
    pub network: PublicKey,
    /// Distinct members who must sign a certification (at least the network's own quorum is
    /// always required too).
    pub quorum: u32,
    /// The members the policy recognises; empty means the guardians the network declared.
    pub members: Vec<PublicKey>,
}

/// What the policy demands of one commodity family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommodityPolicy {
    /// Lot commodity names of this family besides the family's own name.
    pub includes: Vec<String>,
    /// The least price producers must have been paid (a harvest's farm-gate price).
    pub minimum_price: Option<proto::Price>,
    /// The least premium paid on top.
    pub premium: Option<proto::Price>,
    /// The producer organisation must be certified, for one of `schemes`, at each of its
    /// steps (harvest and sale).
    pub certification_required: bool,
    /// Schemes whose certification counts.
    pub schemes: Vec<String>,
    /// Every other handler (trader, processor) must be certified at its steps too.
    pub require_certified_handlers: bool,
}

/// Yield bounds of a transformation, in output per 1000 of input (both inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct YieldBounds {
    pub min_per_mille: u32,
    pub max_per_mille: u32,
}

/// What is wrong with a policy file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the policy is not valid TOML for a Fairtrail policy: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("log_key is not a C2SP verifier key (name+hexkeyid+base64key): {0}")]
    BadLogKey(#[source] NoteError),
    #[error("--log-key {given} and the policy's log_key {policy} differ; use one log key")]
    LogKeyMismatch { given: String, policy: String },
    #[error("{field}: {source}")]
    BadKey {
        field: String,
        #[source]
        source: PublicKeyError,
    },
    #[error("{field}: {source}")]
    BadPrice {
        field: String,
        #[source]
        source: UnitError,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: Option<String>,
    log_key: Option<String>,
    require_receipts: Option<bool>,
    clock_skew_ms: Option<u64>,
    #[serde(default)]
    certifiers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pgs: BTreeMap<String, PgsFile>,
    #[serde(default)]
    commodities: BTreeMap<String, CommodityFile>,
    #[serde(default)]
    yields: BTreeMap<String, YieldFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PgsFile {
    network: String,
    quorum: u32,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommodityFile {
    #[serde(default)]
    includes: Vec<String>,
    minimum_price: Option<String>,
    premium: Option<String>,
    #[serde(default)]
    certification_required: bool,
    #[serde(default)]
    schemes: Vec<String>,
    #[serde(default)]
    require_certified_handlers: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YieldFile {
    min_per_mille: u32,
    max_per_mille: u32,
}

fn key(field: String, text: &str) -> Result<PublicKey, PolicyError> {
    let key: PublicKey = text.parse().map_err(|source| PolicyError::BadKey {
        field: field.clone(),
        source,
    })?;
    key.verifying_key()
        .map_err(|source| PolicyError::BadKey { field, source })?;
    Ok(key)
}

fn keys(field: &str, texts: &[String]) -> Result<Vec<PublicKey>, PolicyError> {
    let mut out: Vec<PublicKey> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let k = key(format!("{field}[{i}]"), text)?;
        if out.contains(&k) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("{k} is listed twice"),
            ));
        }
        out.push(k);
    }
    Ok(out)
}

fn price(field: String, text: &Option<String>) -> Result<Option<proto::Price>, PolicyError> {
    text.as_deref()
        .map(|t| parse_price(t).map_err(|source| PolicyError::BadPrice { field, source }))
        .transpose()
}

/// Commodity names as statements write them: lower case letters, digits, spaces, '-'.
fn commodity_name(field: &str, name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b' ' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not a commodity name: use lower case as statements do, such as \"green coffee\""),
        ))
    }
}

impl Policy {
    /// Parses and checks a policy.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text)?;
        let log_key = file
            .log_key
            .as_deref()
            .map(NoteVerifier::from_text)
            .transpose()
            .map_err(PolicyError::BadLogKey)?;
        let clock_skew_ms = file.clock_skew_ms.unwrap_or(DEFAULT_CLOCK_SKEW_MS);
        if clock_skew_ms > MAX_CLOCK_SKEW_MS {
            return Err(invalid(
                "clock_skew_ms",
                format!("{clock_skew_ms} is more than a day ({MAX_CLOCK_SKEW_MS})"),
            ));
        }

        let mut certifiers = BTreeMap::new();
        for (scheme, list) in &file.certifiers {
            let field = format!("certifiers.{scheme}");
            if list.is_empty() {
                return Err(invalid(field, "list at least one certifier key"));
            }
            certifiers.insert(scheme.clone(), keys(&field, list)?);
        }

        let mut pgs = BTreeMap::new();
        for (scheme, p) in &file.pgs {
            let field = format!("pgs.{scheme:?}");
            let network = key(format!("{field}.network"), &p.network)?;
            let members = keys(&format!("{field}.members"), &p.members)?;
            if p.quorum == 0 {
                return Err(invalid(
                    format!("{field}.quorum"),
                    "a quorum is at least 1 member",
                ));
            }
            if !members.is_empty() && p.quorum as usize > members.len() {
                return Err(invalid(
                    format!("{field}.quorum"),
                    format!(
                        "{} members cannot make a quorum of {}",
                        members.len(),
                        p.quorum
                    ),
                ));
            }
            if members.contains(&network) {
                return Err(invalid(
                    format!("{field}.members"),
                    "the network's own key is not one of its members",
                ));
            }
            pgs.insert(
                scheme.clone(),
                PgsPolicy {
                    network,
                    quorum: p.quorum,
                    members,
                },
            );
        }

        let mut commodities = BTreeMap::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (family, c) in &file.commodities {
            let field = format!("commodities.{family:?}");
            commodity_name(&field, family)?;
            for name in std::iter::once(family).chain(&c.includes) {
                commodity_name(&format!("{field}.includes"), name)?;
                if let Some(other) = seen.insert(name.clone(), family.clone()) {
                    return Err(invalid(
                        format!("{field}.includes"),
                        format!("{name:?} already belongs to the family {other:?}"),
                    ));
                }
            }
            for (i, scheme) in c.schemes.iter().enumerate() {
                if !certifiers.contains_key(scheme) && !pgs.contains_key(scheme) {
                    return Err(invalid(
                        format!("{field}.schemes[{i}]"),
                        format!("no certifier or PGS is trusted for the scheme {scheme:?}; add it under [certifiers] or [pgs]"),
                    ));
                }
            }
            if c.certification_required && c.schemes.is_empty() {
                return Err(invalid(
                    format!("{field}.schemes"),
                    "certification_required needs at least one scheme",
                ));
            }
            if c.require_certified_handlers && !c.certification_required {
                return Err(invalid(
                    format!("{field}.require_certified_handlers"),
                    "needs certification_required = true",
                ));
            }
            commodities.insert(
                family.clone(),
                CommodityPolicy {
                    includes: c.includes.clone(),
                    minimum_price: price(format!("{field}.minimum_price"), &c.minimum_price)?,
                    premium: price(format!("{field}.premium"), &c.premium)?,
                    certification_required: c.certification_required,
                    schemes: c.schemes.clone(),
                    require_certified_handlers: c.require_certified_handlers,
                },
            );
        }

        let mut yields = BTreeMap::new();
        for (process, y) in &file.yields {
            let field = format!("yields.{process:?}");
            if y.min_per_mille > y.max_per_mille {
                return Err(invalid(
                    field,
                    format!(
                        "min_per_mille {} is above max_per_mille {}",
                        y.min_per_mille, y.max_per_mille
                    ),
                ));
            }
            if y.max_per_mille > MAX_YIELD_PER_MILLE {
                return Err(invalid(
                    format!("{field}.max_per_mille"),
                    format!("at most {MAX_YIELD_PER_MILLE} (bounds are per mille: 830 is 83%)"),
                ));
            }
            yields.insert(
                process.clone(),
                YieldBounds {
                    min_per_mille: y.min_per_mille,
                    max_per_mille: y.max_per_mille,
                },
            );
        }

        Ok(Policy {
            name: file.name,
            log_key,
            require_receipts: file.require_receipts.unwrap_or(true),
            clock_skew_ms,
            certifiers,
            pgs,
            commodities,
            yields,
        })
    }

    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Sets the log key given apart from the policy (a `--log-key` flag); when the policy
    /// names one too, they must be the same key.
    pub fn with_log_key(mut self, given: NoteVerifier) -> Result<Self, PolicyError> {
        match &self.log_key {
            Some(own) if *own != given => Err(PolicyError::LogKeyMismatch {
                given: given.to_text(),
                policy: own.to_text(),
            }),
            _ => {
                self.log_key = Some(given);
                Ok(self)
            }
        }
    }

    /// The family a lot commodity belongs to, with the policy for it.
    pub fn commodity(&self, name: &str) -> Option<(&str, &CommodityPolicy)> {
        self.commodities
            .iter()
            .find(|(family, c)| *family == name || c.includes.iter().any(|i| i == name))
            .map(|(family, c)| (family.as_str(), c))
    }
}

impl CommodityPolicy {
    /// Every commodity name of the family, its own first.
    pub fn names<'a>(&'a self, family: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(family).chain(self.includes.iter().map(String::as_str))
    }
}
