//! Statement commands: certify, revoke, rotate-key, harvest, ship, receive, transform, label,
//! dispute, cosign.
//!
//! Each command builds one statement body, checks locally what the node would refuse for the
//! statement alone (text limits, commodity and country spelling, units, dates, GTINs), signs it
//! and either submits it or writes the DSSE envelope with `--out` for `fairtrail submit`.
//! Whatever depends on the log (who holds a lot, what is left of it, roles, quorums) the node
//! decides, and its refusal is shown as it stands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context};
use clap::{ArgGroup, Args};
use ed25519_dalek::SigningKey;
use fairtrail_client::entry::Leaf;
use fairtrail_client::envelope::{self, Envelope, EnvelopeJson, StatementId};
use fairtrail_client::gs1;
use fairtrail_client::keys::PublicKey;
use fairtrail_client::proto::{self, statement::Body};
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::rules::{LotId, MAX_LOTS_PER_STATEMENT, MAX_TEXT};
use fairtrail_client::statement::{body_kind, encode, Statement};
use fairtrail_client::units::{parse_price, parse_quantity, DisplayQuantity};
use serde_json::{json, Map, Value};

use super::ledger::RoleArg;
use super::{
    connect, log_key, print_receipt, public_key, read_key_file, sign_and_send, signing_key, EXIT_OK,
};
use crate::Global;

// ---------------------------------------------------------------------------------------------
// certify

/// What every statement command takes besides its own fields.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// A short remark, shown with the statement.
    #[arg(long)]
    pub remark: Option<String>,
    /// Write the signed envelope (DSSE JSON) to this new file instead of submitting it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CertifyArgs {
    /// The certified participant's public key (ed25519:<64 hex>, as `fairtrail keygen` printed
    /// it). It must have declared itself.
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub subject: PublicKey,
    /// The scheme, such as Fairtrade, SPP, WFTO, or the name of a PGS network.
    #[arg(long)]
    pub scheme: String,
    /// Your own identifier for the certificate, such as FLO-ID 3345.
    #[arg(long, default_value = "")]
    pub certificate_id: String,
    /// A commodity in scope, such as coffee or "green coffee" (repeat for several). Written in
    /// lower case. Give at least one --commodity or --role.
    #[arg(long = "commodity", value_name = "COMMODITY")]
    pub commodities: Vec<String>,
    /// A role in scope (repeat for several).
    #[arg(long = "role", value_enum, value_name = "ROLE")]
    pub roles: Vec<RoleArg>,
    /// When the certification starts: YYYY-MM-DD (midnight UTC at the start of that day),
    /// YYYY-MM-DDTHH:MM:SSZ, or milliseconds since 1970.
    #[arg(long, value_name = "DATE", value_parser = time_arg)]
    pub valid_from: u64,
    /// When it ends (exclusive): YYYY-MM-DD (midnight UTC at the start of that day, so it is no
    /// longer valid on that day), YYYY-MM-DDTHH:MM:SSZ, or milliseconds since 1970.
    #[arg(long, value_name = "DATE", value_parser = time_arg)]
    pub valid_until: u64,
    /// Certify as peers of a Participatory Guarantee System instead of as a certification
    /// body: the PGS network's public key. Its declaration names the members (as guardians) and
    /// the quorum (as guardian threshold); at least that many members must sign. You (--key)
    /// sign as one member; add others with --cosigner, or write the envelope with --out and let
    /// them run `fairtrail cosign FILE --key THEIR_KEY` before `fairtrail submit FILE`.
    #[arg(long, value_name = "NETWORK_KEY")]
    pub pgs: Option<PublicKey>,
    /// With --pgs: the key file of another PGS member who signs now (repeat for several).
    #[arg(long = "cosigner", value_name = "KEYFILE", requires = "pgs")]
    pub cosigners: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn certify(g: &Global, a: CertifyArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    check_text("--scheme", &a.scheme, true)?;
    check_text("--certificate-id", &a.certificate_id, false)?;
    let mut commodities = Vec::with_capacity(a.commodities.len());
    for c in &a.commodities {
        let c = commodity("--commodity", c)?;
        if commodities.contains(&c) {
            bail!("--commodity {c:?} is given twice; name each commodity once");
        }
        commodities.push(c);
    }
    if commodities.is_empty() && a.roles.is_empty() {
        bail!("name the scope: at least one --commodity (such as coffee) or --role");
    }
    if a.valid_from >= a.valid_until {
        bail!(
            "--valid-until ({}) must be after --valid-from ({})",
            format_time(a.valid_until),
            format_time(a.valid_from)
        );
    }
    let mut roles: Vec<i32> = Vec::new();
    for r in &a.roles {
        let r = proto::Role::from(*r) as i32;
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    let cosigners = read_keys("--cosigner", &a.cosigners)?;
    let (kind, network) = match &a.pgs {
        Some(n) => (
            proto::CertificationKind::Participatory,
            n.as_bytes().to_vec(),
        ),
        None => (proto::CertificationKind::ThirdParty, Vec::new()),
    };
    let body = Body::Certification(proto::Certification {
        subject: a.subject.as_bytes().to_vec(),
        scheme: a.scheme.trim().to_owned(),
        certificate_id: a.certificate_id.trim().to_owned(),
        commodities,
        roles,
        valid_from_ms: a.valid_from,
        valid_until_ms: a.valid_until,
        kind: kind as i32,
        network,
    });
    let statement = header(&key, body, a.common.remark)?;
    let mut keys = vec![&key];
    keys.extend(cosigners.iter());
    distinct_signers(&keys)?;
    let mut report = Report::default();
    if let (Some(network), Some(out)) = (&a.pgs, &a.common.out) {
        report.line(format!(
            "network    {network}: {} member(s) signed so far; the others add theirs with `fairtrail cosign {} --key THEIR_KEY`",
            keys.len(),
            out.display()
        ));
    }
    send(g, &statement, &keys, a.common.out.as_deref(), report).await
}

// ---------------------------------------------------------------------------------------------
// revoke

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["revoke", "suspend", "reinstate"])
))]
pub struct RevokeArgs {
    /// The certification's statement id (64 hex digits, as `fairtrail certify` printed it).
    #[arg(long, value_name = "ID", value_parser = statement_id_arg)]
    pub certification: StatementId,
    /// Withdraw the certification for good.
    #[arg(long)]
    pub revoke: bool,
    /// Suspend it from --effective until a later --reinstate.
    #[arg(long)]
    pub suspend: bool,
    /// End an earlier suspension.
    #[arg(long)]
    pub reinstate: bool,
    /// Why, in words people can check (shown with the certification).
    #[arg(long)]
    pub reason: String,
    /// When it takes effect: YYYY-MM-DD (midnight UTC), YYYY-MM-DDTHH:MM:SSZ, or milliseconds
    /// since 1970 [default: now].
    #[arg(long, value_name = "DATE", value_parser = time_arg)]
    pub effective: Option<u64>,
    /// For a participatory (PGS) certification: the key file of another network member who
    /// signs too (repeat until the network's quorum signs; members can also sign later with
    /// `fairtrail cosign` on a file written with --out). A third-party certification is
    /// revoked by its certifier alone (--key).
    #[arg(long = "cosigner", value_name = "KEYFILE")]
    pub cosigners: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn revoke(g: &Global, a: RevokeArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    check_text("--reason", &a.reason, true)?;
    let kind = if a.revoke {
        proto::RevocationKind::Revoked
    } else if a.suspend {
        proto::RevocationKind::Suspended
    } else if a.reinstate {
        proto::RevocationKind::Reinstated
    } else {
        bail!("say what to do: --revoke, --suspend or --reinstate");
    };
    let cosigners = read_keys("--cosigner", &a.cosigners)?;
    let body = Body::Revocation(proto::Revocation {
        certification: a.certification.as_bytes().to_vec(),
        kind: kind as i32,
        effective_at_ms: a
            .effective
            .unwrap_or_else(fairtrail_client::statement::now_ms),
        reason: a.reason.trim().to_owned(),
    });
    let statement = header(&key, body, a.common.remark)?;
    let mut keys = vec![&key];
    keys.extend(cosigners.iter());
    distinct_signers(&keys)?;
    sign_and_send(g, &statement, &keys, a.common.out.as_deref()).await
}

// ---------------------------------------------------------------------------------------------
// rotate-key

/// How a rotation is signed, shown under `fairtrail rotate-key --help`.
const ROTATE_KEY_HELP: &str = "\
Who signs:
  normal rotation: the statement is issued by your current key (--key) and signed by it and
    by the new key (--new-key).
  --recovery (your key is lost): the statement names the lost key (--lost-key) as its issuer,
    but is signed by the new key and by your guardians (--guardian, or later `fairtrail
    cosign FILE --key GUARDIAN_KEY` on a file written with --out); --key is not used. At least
    the guardian threshold of your declaration must sign.
Once logged, only the new key may sign for your identity.";

#[derive(Args, Debug)]
#[command(after_help = ROTATE_KEY_HELP)]
pub struct RotateKeyArgs {
    /// The new key's file (make it first with `fairtrail keygen --out FILE`). It signs too,
    /// proving you hold it. From the moment the rotation is logged, only the new key may sign
    /// for your identity; the old one is retired.
    #[arg(long, value_name = "KEYFILE")]
    pub new_key: PathBuf,
    /// Recover an identity whose key is lost: needs --lost-key, and signatures of at least the
    /// guardian threshold named in the identity's declaration (--guardian, or `fairtrail
    /// cosign` on a file written with --out). Signed by the new key and the guardians; --key is
    /// not used.
    #[arg(long, requires = "lost_key")]
    pub recovery: bool,
    /// With --recovery: the lost key (ed25519:<64 hex>). It is the statement's issuer, but it
    /// does not sign.
    #[arg(long, value_name = "PUBLIC_KEY", requires = "recovery")]
    pub lost_key: Option<PublicKey>,
    /// With --recovery: the key file of a guardian who signs now (repeat for several).
    #[arg(long = "guardian", value_name = "KEYFILE", requires = "recovery")]
    pub guardians: Vec<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn rotate_key(g: &Global, a: RotateKeyArgs) -> anyhow::Result<u8> {
    let new_key =
        read_key_file(&a.new_key).map_err(|e| anyhow!("--new-key {}: {e}", a.new_key.display()))?;
    let new_public = public_key(&new_key);
    let body = Body::KeyRotation(proto::KeyRotation {
        new_key: new_public.as_bytes().to_vec(),
        recovery: a.recovery,
    });
    let mut report = Report::default();
    report.line(format!(
        "new key    {new_public} (from now on sign with --key {})",
        a.new_key.display()
    ));
    report
        .json
        .insert("new_key".into(), json!(new_public.to_string()));
    if a.recovery {
        let lost = a
            .lost_key
            .ok_or_else(|| anyhow!("--recovery needs --lost-key PUBLIC_KEY: the key you lost"))?;
        if lost == new_public {
            bail!("--new-key {} holds the lost key itself; make a new key with `fairtrail keygen --out FILE`", a.new_key.display());
        }
        if g.key.is_some() {
            eprintln!(
                "note: a recovery is signed by the new key and the guardians; --key is not used"
            );
        }
        let guardians = read_keys("--guardian", &a.guardians)?;
        if guardians.is_empty() && a.common.out.is_none() {
            bail!("a recovery needs your guardians' signatures: give --guardian KEYFILE (repeat), or write the envelope with --out FILE and have each guardian run `fairtrail cosign FILE --key THEIR_KEY` before `fairtrail submit FILE`");
        }
        let mut statement = header(&new_key, body, a.common.remark)?;
        statement.issuer = lost.as_bytes().to_vec();
        let mut keys = vec![&new_key];
        keys.extend(guardians.iter());
        distinct_signers(&keys)?;
        if let Some(out) = &a.common.out {
            report.line(format!(
                "guardians  {} of them signed so far; the others add theirs with `fairtrail cosign {} --key THEIR_KEY`",
                guardians.len(),
                out.display()
            ));
        }
        return send(g, &statement, &keys, a.common.out.as_deref(), report).await;
    }
    let key = signing_key(g)?;
    if public_key(&key) == new_public {
        bail!(
            "--new-key {} is the key you sign with now (--key); make a new one with `fairtrail keygen --out FILE`",
            a.new_key.display()
        );
    }
    let statement = header(&key, body, a.common.remark)?;
    send(
        g,
        &statement,
        &[&key, &new_key],
        a.common.out.as_deref(),
        report,
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// harvest

#[derive(Args, Debug)]
pub struct HarvestArgs {
    /// What was harvested, such as coffee or cocoa (written in lower case; later statements
    /// and certifications name it the same way).
    #[arg(long)]
    pub commodity: String,
    /// How much, with a unit: 12000kg, 12t, 69.5kg, 500g, 3l, 120pcs.
    #[arg(long, value_parser = quantity_arg)]
    pub quantity: proto::Quantity,
    /// First day of the harvest: YYYY-MM-DD (UTC), YYYY-MM-DDTHH:MM:SSZ, or milliseconds since
    /// 1970.
    #[arg(long, value_name = "DATE", value_parser = time_arg)]
    pub from: u64,
    /// Last day of the harvest (same forms as --from; not before it).
    #[arg(long, value_name = "DATE", value_parser = time_arg)]
    pub until: u64,
    /// Where it was grown: ISO 3166-1 alpha-2 country code, such as HN or PE.
    #[arg(long)]
    pub country: String,
    /// A coarse region or municipality, such as "Marcala, La Paz" (never a farm's exact
    /// position).
    #[arg(long, default_value = "")]
    pub region: String,
    /// What the farmers were paid: CURRENCY AMOUNT/UNIT, such as "USD 1.95/lb" or
    /// "HNL 48/kg".
    #[arg(long, value_parser = price_arg)]
    pub price: proto::Price,
    /// The social premium paid on top to the producer organisation, such as "USD 0.20/lb".
    #[arg(long, value_parser = price_arg)]
    pub premium: Option<proto::Price>,
    /// How many farming households contributed.
    #[arg(long, default_value_t = 0)]
    pub farmers: u32,
    /// Your own lot code for this harvest.
    #[arg(long, default_value = "")]
    pub lot_code: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn harvest(g: &Global, a: HarvestArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    let commodity = commodity("--commodity", &a.commodity)?;
    let country = country("--country", &a.country)?;
    check_text("--region", &a.region, false)?;
    check_text("--lot-code", &a.lot_code, false)?;
    if a.from > a.until {
        bail!(
            "--until ({}) is before --from ({}); give the first and last day of the harvest",
            format_time(a.until),
            format_time(a.from)
        );
    }
    price_matches("--price", &a.price, a.quantity.unit)?;
    if let Some(p) = &a.premium {
        price_matches("--premium", p, a.quantity.unit)?;
    }
    let quantity = a.quantity;
    let body = Body::Harvest(proto::Harvest {
        commodity: commodity.clone(),
        quantity: Some(quantity),
        harvested_from_ms: a.from,
        harvested_until_ms: a.until,
        country,
        region: a.region.trim().to_owned(),
        farmgate_price: Some(a.price),
        premium: a.premium,
        farmer_count: a.farmers,
        lot_code: a.lot_code.trim().to_owned(),
    });
    let statement = header(&key, body, a.common.remark)?;
    let lot = LotId {
        statement: id_of(&statement),
        output: 0,
    };
    let mut report = Report::default();
    report.new_lot(
        lot,
        format!(
            "{commodity}, {}",
            DisplayQuantity(quantity.amount, quantity.unit)
        ),
    );
    send(g, &statement, &[&key], a.common.out.as_deref(), report).await
}

// ---------------------------------------------------------------------------------------------
// ship

#[derive(Args, Debug)]
pub struct ShipArgs {
    /// A lot you hold and how much of it to ship: LOT=QUANTITY, such as 3f2a...:0=6000kg
    /// (LOT is the id that harvest, ship or transform printed). Repeat to ship from several
    /// lots of the same commodity; they become one lot for the recipient.
    #[arg(long = "lot", value_name = "LOT=QUANTITY", required = true)]
    pub lots: Vec<LotAmount>,
    /// The recipient's public key (ed25519:<64 hex>); the new lot is theirs. They must have
    /// declared themselves.
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub to: PublicKey,
    /// The price the recipient pays: CURRENCY AMOUNT/UNIT, such as "USD 2.40/lb".
    #[arg(long, value_parser = price_arg)]
    pub price: Option<proto::Price>,
    /// A contract, invoice or bill of lading reference.
    #[arg(long, default_value = "")]
    pub document: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn ship(g: &Global, a: ShipArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    if public_key(&key) == a.to {
        bail!(
            "--to is your own key: a shipment goes to another participant (give their public key)"
        );
    }
    check_text("--document", &a.document, false)?;
    let inputs = lot_inputs("--lot", &a.lots)?;
    let unit = a.lots[0].quantity.unit;
    if let Some(other) = a.lots.iter().find(|l| l.quantity.unit != unit) {
        bail!(
            "--lot {} is counted in {} but --lot {} in {}: a shipment carries one commodity in one unit (transform first to blend)",
            a.lots[0].lot,
            unit_kind(unit),
            other.lot,
            unit_kind(other.quantity.unit)
        );
    }
    if let Some(p) = &a.price {
        price_matches("--price", p, unit)?;
    }
    let total = total_of(&a.lots)?;
    let body = Body::Transfer(proto::Transfer {
        inputs,
        recipient: a.to.as_bytes().to_vec(),
        price: a.price,
        document_reference: a.document.trim().to_owned(),
    });
    let statement = header(&key, body, a.common.remark)?;
    let lot = LotId {
        statement: id_of(&statement),
        output: 0,
    };
    let mut report = Report::default();
    report.new_lot(
        lot,
        format!("{}, held by {}", DisplayQuantity(total, unit), a.to),
    );
    report.line(format!(
        "next       the recipient runs `fairtrail receive --transfer {} --confirm`",
        lot.statement
    ));
    send(g, &statement, &[&key], a.common.out.as_deref(), report).await
}

// ---------------------------------------------------------------------------------------------
// receive

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("outcome").required(true).args(["confirm", "dispute"])))]
pub struct ReceiveArgs {
    /// The transfer's statement id (as `fairtrail ship` printed it; the lot id ID:0 works too).
    #[arg(long, value_name = "ID", value_parser = statement_id_arg)]
    pub transfer: StatementId,
    /// Everything shipped arrived: confirm the transfer.
    #[arg(long)]
    pub confirm: bool,
    /// What arrived is not what was shipped: dispute the transfer, with --amount saying what
    /// did arrive.
    #[arg(long)]
    pub dispute: bool,
    /// How much arrived, such as 6000kg. A confirmation states the full amount shipped; when
    /// confirming online without --amount, that amount is read from the transfer in the log.
    #[arg(long, value_name = "QUANTITY", value_parser = quantity_arg)]
    pub amount: Option<proto::Quantity>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn receive(g: &Global, a: ReceiveArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    let outcome = if a.confirm {
        proto::ReceiptOutcome::Confirmed
    } else {
        proto::ReceiptOutcome::Disputed
    };
    let amount = match (a.amount, a.confirm, a.common.out.is_some()) {
        (Some(q), _, _) => q.amount,
        (None, true, false) => shipped_amount(g, &a.transfer).await?,
        (None, true, true) => bail!(
            "signing offline: give --amount with the full quantity shipped, such as --amount 6000kg"
        ),
        (None, false, _) => {
            bail!("a dispute says what did arrive: give --amount, such as --amount 5800kg")
        }
    };
    let body = Body::Receipt(proto::Receipt {
        transfer: a.transfer.as_bytes().to_vec(),
        outcome: outcome as i32,
        amount_received: amount,
    });
    let statement = header(&key, body, a.common.remark)?;
    sign_and_send(g, &statement, &[&key], a.common.out.as_deref()).await
}

/// The total a logged transfer shipped, in its lots' unit (the node's word; the node checks
/// the receipt against its own record anyway).
async fn shipped_amount(g: &Global, id: &StatementId) -> anyhow::Result<u64> {
    let mut client = connect(g).await?;
    let entry = client
        .entry(proto::get_entry_request::Key::StatementId(
            id.as_bytes().to_vec(),
        ))
        .await
        .map_err(|e| {
            anyhow!("cannot read transfer {id} from the node: {e} (is it logged? give --amount to sign anyway)")
        })?;
    let leaf =
        Leaf::decode(entry.leaf).map_err(|e| anyhow!("the node sent a malformed leaf: {e}"))?;
    let envelope = Envelope::try_from(leaf.envelope)
        .map_err(|e| anyhow!("the logged envelope is malformed: {e}"))?;
    if envelope.id() != *id {
        bail!(
            "the node answered with statement {} when asked for {id}",
            envelope.id()
        );
    }
    let statement = Statement::decode(&envelope)
        .map_err(|e| anyhow!("the logged statement is malformed: {e}"))?;
    match &statement.body {
        Body::Transfer(t) => t.inputs.iter().try_fold(0u64, |sum, i| {
            sum.checked_add(i.amount)
                .ok_or_else(|| anyhow!("transfer {id} ships more than 2^64 units"))
        }),
        other => bail!(
            "statement {id} is a {}, not a transfer: give the id `fairtrail ship` printed",
            body_kind(other)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// transform

#[derive(Args, Debug)]
pub struct TransformArgs {
    /// A lot you hold and how much of it is consumed: LOT=QUANTITY, such as 3f2a...:0=6000kg
    /// (repeat for several).
    #[arg(long = "input", value_name = "LOT=QUANTITY", required = true)]
    pub inputs: Vec<LotAmount>,
    /// An output lot: COMMODITY=QUANTITY, optionally followed by @LOT_CODE, such as
    /// "roasted coffee=5000kg" or "roasted coffee=5000kg@R-118" (repeat for several; the new
    /// lots are numbered ID:0, ID:1, ... in this order).
    #[arg(long = "output", value_name = "COMMODITY=QUANTITY", required = true)]
    pub outputs: Vec<OutputSpec>,
    /// What was done, such as roasting, hulling or blending.
    #[arg(long)]
    pub process: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn transform(g: &Global, a: TransformArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    check_text("--process", &a.process, true)?;
    let inputs = lot_inputs("--input", &a.inputs)?;
    if a.outputs.len() > MAX_LOTS_PER_STATEMENT {
        bail!(
            "{} --output lots given; at most {MAX_LOTS_PER_STATEMENT} fit in one transformation",
            a.outputs.len()
        );
    }
    for o in &a.outputs {
        check_text("the --output lot code", &o.lot_code, false)?;
    }
    warn_if_gaining(&a.inputs, &a.outputs);
    let body = Body::Transformation(proto::Transformation {
        inputs,
        outputs: a
            .outputs
            .iter()
            .map(|o| proto::LotOutput {
                commodity: o.commodity.clone(),
                quantity: Some(o.quantity),
                lot_code: o.lot_code.clone(),
            })
            .collect(),
        process: a.process.trim().to_owned(),
    });
    let statement = header(&key, body, a.common.remark)?;
    let id = id_of(&statement);
    let mut report = Report::default();
    let mut lots = Vec::new();
    for (i, o) in a.outputs.iter().enumerate() {
        let lot = LotId {
            statement: id,
            output: u32::try_from(i).unwrap_or(u32::MAX),
        };
        lots.push(json!(lot.to_string()));
        report.line(format!(
            "new lot    {lot} ({}, {})",
            o.commodity,
            DisplayQuantity(o.quantity.amount, o.quantity.unit)
        ));
    }
    report.json.insert("lots".into(), Value::Array(lots));
    send(g, &statement, &[&key], a.common.out.as_deref(), report).await
}

/// Outputs that weigh more than the inputs they come from are unusual (roasting loses about a
/// sixth); verifiers may flag them, so say so before signing.
fn warn_if_gaining(inputs: &[LotAmount], outputs: &[OutputSpec]) {
    let unit = match inputs.first() {
        Some(i) => i.quantity.unit,
        None => return,
    };
    let same = |u: i32| u == unit;
    if !inputs.iter().all(|i| same(i.quantity.unit))
        || !outputs.iter().all(|o| same(o.quantity.unit))
    {
        return;
    }
    let total = |it: &mut dyn Iterator<Item = u64>| it.map(u128::from).sum::<u128>();
    let in_total = total(&mut inputs.iter().map(|i| i.quantity.amount));
    let out_total = total(&mut outputs.iter().map(|o| o.quantity.amount));
    if out_total > in_total {
        eprintln!(
            "note: the outputs ({}) add up to more than the inputs ({}); verifiers may question the yield",
            DisplayQuantity(u64::try_from(out_total).unwrap_or(u64::MAX), unit),
            DisplayQuantity(u64::try_from(in_total).unwrap_or(u64::MAX), unit)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// label

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// The product's GS1 GTIN: 8, 12, 13 or 14 digits with a valid check digit. It is signed
    /// as 14 digits (left-padded with zeros).
    #[arg(long)]
    pub gtin: String,
    /// The batch or lot number printed on the pack (GS1 AI 10): 1 to 20 letters, digits or
    /// !"%&'()*+,-./:;<=>?_
    #[arg(long)]
    pub batch: String,
    /// A serial number for a single item (GS1 AI 21), same characters as --batch.
    #[arg(long)]
    pub serial: Option<String>,
    /// The product's name as sold, such as "Marcala roasted coffee 250 g".
    #[arg(long)]
    pub product_name: String,
    /// A lot you hold that the product consumes: LOT=QUANTITY, such as 3f2a...:0=5000kg
    /// (repeat for several).
    #[arg(long = "input", value_name = "LOT=QUANTITY", required = true)]
    pub inputs: Vec<LotAmount>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn label(g: &Global, a: LabelArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    let gtin = gs1::normalise_gtin(&a.gtin).map_err(|e| anyhow!("--gtin: {e}"))?;
    let batch = a.batch.trim();
    gs1::check_text("batch", batch).map_err(|e| anyhow!("--batch: {e}"))?;
    let serial = a.serial.as_deref().map(str::trim);
    if let Some(s) = serial {
        gs1::check_text("serial", s).map_err(|e| anyhow!("--serial: {e}"))?;
    }
    let product = gs1::ProductId::new(&gtin, batch, serial).map_err(|e| anyhow!("{e}"))?;
    check_text("--product-name", &a.product_name, true)?;
    let inputs = lot_inputs("--input", &a.inputs)?;
    let body = Body::ProductBinding(proto::ProductBinding {
        gtin: product.gtin.clone(),
        batch: product.batch.clone(),
        serial: product.serial.clone().unwrap_or_default(),
        inputs,
        product_name: a.product_name.trim().to_owned(),
    });
    let statement = header(&key, body, a.common.remark)?;
    let mut report = Report::default();
    report.line(format!(
        "product    GTIN {} batch {}{} (Digital Link path {})",
        product.gtin,
        product.batch,
        product
            .serial
            .as_ref()
            .map(|s| format!(" serial {s}"))
            .unwrap_or_default(),
        product.path()
    ));
    report.json.insert(
        "product".into(),
        json!({
            "gtin": product.gtin,
            "batch": product.batch,
            "serial": product.serial,
            "digital_link_path": product.path(),
        }),
    );
    send(g, &statement, &[&key], a.common.out.as_deref(), report).await
}

// ---------------------------------------------------------------------------------------------
// dispute

#[derive(Args, Debug)]
pub struct DisputeArgs {
    /// The contested entry's statement id (64 hex digits; a lot id ID:N names the statement
    /// that made the lot).
    #[arg(long, value_name = "ID", value_parser = statement_id_arg)]
    pub entry: StatementId,
    /// What is wrong, in words people can check.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn dispute(g: &Global, a: DisputeArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    check_text("--reason", &a.reason, true)?;
    let body = Body::Dispute(proto::Dispute {
        entry: a.entry.as_bytes().to_vec(),
        reason: a.reason.trim().to_owned(),
    });
    let statement = header(&key, body, a.common.remark)?;
    sign_and_send(g, &statement, &[&key], a.common.out.as_deref()).await
}

// ---------------------------------------------------------------------------------------------
// cosign

#[derive(Args, Debug)]
#[command(after_help = "\
Adds the signature of --key to an envelope file (DSSE JSON, as written with --out) and rewrites
the file in place. Offline: nothing is sent. The envelope's signatures are checked first, and a
key that already signed is refused. Submit the file with `fairtrail submit FILE` once enough
members or guardians have signed.")]
pub struct CosignArgs {
    /// The envelope file; it is rewritten atomically with your signature added.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn cosign(g: &Global, a: CosignArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    let me = public_key(&key);
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    // Library errors are shown with `{e}` alone: their messages already name their causes.
    let mut wire = EnvelopeJson::parse(&text).map_err(|e| {
        anyhow!(
            "{}: {e} (give the file written with --out, unchanged)",
            a.file.display()
        )
    })?;
    // Sign only what verifies and can be read: a broken envelope would waste the signature.
    let checked = Envelope::try_from(wire.clone())
        .map_err(|e| anyhow!("{} holds a malformed envelope: {e}", a.file.display()))?;
    if checked.is_signed_by(&me) {
        bail!(
            "{me} has already signed {}; each key signs once (another member or guardian must sign with their own key)",
            a.file.display()
        );
    }
    let statement = Statement::decode_payload(checked.payload(), checked.id()).map_err(|e| {
        anyhow!(
            "{} does not hold a Fairtrail statement: {e}",
            a.file.display()
        )
    })?;
    checked.verify().map_err(|e| {
        anyhow!(
            "{}: {e}; the file was changed after signing, ask its sender for a fresh copy",
            a.file.display()
        )
    })?;
    envelope::cosign(&mut wire, &key);
    let signed = Envelope::try_from(wire.clone())
        .map_err(|e| anyhow!("cannot add a signature to {}: {e}", a.file.display()))?;
    let out = serde_json::to_string_pretty(&EnvelopeJson::from(&wire))?;
    write_atomically(&a.file, &format!("{out}\n"))?;
    let signers: Vec<String> = signed.signers().map(|k| k.to_string()).collect();
    let what = describe(&statement.body);
    if g.json {
        println!(
            "{}",
            json!({
                "file": a.file.display().to_string(),
                "statement_id": statement.id.to_string(),
                "kind": body_kind(&statement.body),
                "issuer": statement.issuer.to_string(),
                "signer": me.to_string(),
                "signatures": signers,
            })
        );
    } else {
        println!(
            "signed {} with {me}\n  statement  {}\n  what       {what}\n  issuer     {}",
            a.file.display(),
            statement.id,
            statement.issuer
        );
        for s in &signers {
            println!("  signed by  {s}");
        }
        println!(
            "submit it with `fairtrail submit {}` once enough have signed",
            a.file.display()
        );
    }
    Ok(EXIT_OK)
}

/// Replaces `path` with `text` via a temporary file in the same directory and a rename, so the
/// file is never half written; keeps the file's permissions.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let permissions = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        if let Some(p) = permissions {
            file.set_permissions(p)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {} (via {})", path.display(), tmp.display()))
}

/// What a statement says, in one line, for someone about to add their signature.
fn describe(body: &Body) -> String {
    match body {
        Body::Certification(c) => {
            let subject = key_text(&c.subject);
            let mut scope: Vec<String> = c.commodities.clone();
            scope.extend(c.roles.iter().map(|r| role_text(*r)));
            let how = match proto::CertificationKind::try_from(c.kind) {
                Ok(proto::CertificationKind::Participatory) => {
                    format!("participatory, network {}", key_text(&c.network))
                }
                Ok(proto::CertificationKind::ThirdParty) => "third-party".to_owned(),
                _ => "unknown kind".to_owned(),
            };
            let certificate = if c.certificate_id.is_empty() {
                String::new()
            } else {
                format!(" (certificate {})", c.certificate_id)
            };
            format!(
                "certification of {subject} for {}{certificate}, scope {}, valid {} to {}, {how}",
                c.scheme,
                scope.join(", "),
                format_time(c.valid_from_ms),
                format_time(c.valid_until_ms)
            )
        }
        Body::Revocation(r) => {
            let kind = match proto::RevocationKind::try_from(r.kind) {
                Ok(proto::RevocationKind::Revoked) => "revocation",
                Ok(proto::RevocationKind::Suspended) => "suspension",
                Ok(proto::RevocationKind::Reinstated) => "reinstatement",
                _ => "unknown action on",
            };
            format!(
                "{kind} of certification {} from {}: {}",
                hex::encode(&r.certification),
                format_time(r.effective_at_ms),
                r.reason
            )
        }
        Body::KeyRotation(k) => format!(
            "key rotation to {}{}",
            key_text(&k.new_key),
            if k.recovery {
                " (recovery signed by guardians)"
            } else {
                ""
            }
        ),
        other => body_kind(other).to_owned(),
    }
}

fn key_text(bytes: &[u8]) -> String {
    PublicKey::from_bytes(bytes)
        .map(|k| k.to_string())
        .unwrap_or_else(|_| format!("(malformed key {})", hex::encode(bytes)))
}

fn role_text(r: i32) -> String {
    proto::Role::try_from(r)
        .map(|r| {
            r.as_str_name()
                .trim_start_matches("ROLE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("role {r}"))
}

// ---------------------------------------------------------------------------------------------
// Signing, sending and printing

/// What a command prints besides the receipt (or the file written): JSON fields for scripts
/// and lines for people.
#[derive(Default)]
struct Report {
    json: Map<String, Value>,
    lines: Vec<String>,
}

impl Report {
    fn line(&mut self, text: String) {
        self.lines.push(format!("  {text}"));
    }

    fn new_lot(&mut self, lot: LotId, what: String) {
        self.json.insert("lot".into(), json!(lot.to_string()));
        self.line(format!("new lot    {lot} ({what})"));
    }
}

/// A statement header for `key`, issued now, after checking the remark.
fn header(
    key: &SigningKey,
    body: Body,
    remark: Option<String>,
) -> anyhow::Result<proto::Statement> {
    if let Some(r) = &remark {
        check_text("--remark", r, false)?;
    }
    Ok(super::statement(key, body, remark))
}

/// The statement id: BLAKE3 of the encoded statement, known before anyone signs.
fn id_of(statement: &proto::Statement) -> StatementId {
    StatementId::of_payload(&encode(statement))
}

/// Signs `statement` with `keys` (issuer first), then writes it to `out` or submits it, and
/// prints the outcome with the report.
async fn send(
    g: &Global,
    statement: &proto::Statement,
    keys: &[&SigningKey],
    out: Option<&Path>,
    report: Report,
) -> anyhow::Result<u8> {
    let wire = envelope::sign(encode(statement), keys);
    match out {
        Some(out) => write_out(g, &wire, out, report),
        None => submit_out(g, wire, report).await,
    }
}

fn write_out(g: &Global, wire: &proto::Envelope, out: &Path, report: Report) -> anyhow::Result<u8> {
    let id = StatementId::of_payload(&wire.payload);
    let text = serde_json::to_string_pretty(&EnvelopeJson::from(wire))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (it must not exist yet; choose another --out)",
                out.display()
            )
        })?;
    file.write_all(format!("{text}\n").as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if g.json {
        let mut object = Map::new();
        object.insert("statement_id".into(), json!(id.to_string()));
        object.insert("file".into(), json!(out.display().to_string()));
        object.extend(report.json);
        println!("{}", Value::Object(object));
    } else {
        println!(
            "signed statement {id}\nwritten to {} (submit it later with `fairtrail submit {}`)",
            out.display(),
            out.display()
        );
        for line in report.lines {
            println!("{line}");
        }
    }
    Ok(EXIT_OK)
}

async fn submit_out(g: &Global, wire: proto::Envelope, report: Report) -> anyhow::Result<u8> {
    let id = StatementId::of_payload(&wire.payload);
    let mut client = connect(g).await?;
    let key = log_key(g, &mut client).await?;
    let response = client.submit(wire).await?;
    let receipt = response
        .receipt
        .ok_or_else(|| anyhow!("the node answered without a receipt"))?;
    let mut receipt_json = ReceiptJson::from(&receipt);
    receipt_json.existing = response.existing;
    let verified = receipt_json
        .verify(&key)
        .context("the node's receipt does not verify")?;
    if verified.statement_id != id {
        bail!(
            "the node's receipt is for statement {}, not for the one submitted ({id})",
            verified.statement_id
        );
    }
    if g.json {
        let mut value = serde_json::to_value(&receipt_json)?;
        if let Value::Object(object) = &mut value {
            object.extend(report.json);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_receipt(g, &receipt_json, &verified);
        for line in report.lines {
            println!("{line}");
        }
    }
    Ok(EXIT_OK)
}

fn read_keys(flag: &str, paths: &[PathBuf]) -> anyhow::Result<Vec<SigningKey>> {
    paths
        .iter()
        // `{e}` alone: a key-file error already names its cause.
        .map(|p| read_key_file(p).map_err(|e| anyhow!("{flag} {}: {e}", p.display())))
        .collect()
}

/// The node refuses an envelope signed twice by one key; say which file repeats a key.
fn distinct_signers(keys: &[&SigningKey]) -> anyhow::Result<()> {
    for (i, k) in keys.iter().enumerate() {
        let pk = public_key(k);
        if keys[..i].iter().any(|other| public_key(other) == pk) {
            bail!("{pk} is given twice among the signing keys (--key, --cosigner, --guardian, --new-key); each key signs once");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parsing and local checks (the node applies the same rules; failing here saves a round trip)

/// A lot and an amount of it: `LOT=QUANTITY`, such as `3f2a...:0=6000kg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LotAmount {
    pub lot: LotId,
    /// In base units (grams for kg input).
    pub quantity: proto::Quantity,
}

impl FromStr for LotAmount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let example = "such as 3f2a...:0=6000kg (the lot id that harvest, ship or transform printed, '=', and how much)";
        let (lot, quantity) = s
            .split_once('=')
            .ok_or_else(|| format!("write LOT=QUANTITY, {example}"))?;
        let lot: LotId = lot
            .trim()
            .parse()
            .map_err(|e| format!("{e}; write LOT=QUANTITY, {example}"))?;
        let quantity = parse_quantity(quantity).map_err(|e| e.to_string())?;
        Ok(LotAmount { lot, quantity })
    }
}

/// An output lot of a transformation: `COMMODITY=QUANTITY[@LOT_CODE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub commodity: String,
    pub quantity: proto::Quantity,
    pub lot_code: String,
}

impl FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let example = "such as \"roasted coffee=5000kg\" or \"roasted coffee=5000kg@R-118\"";
        let (commodity_text, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("write COMMODITY=QUANTITY, {example}"))?;
        let (quantity, lot_code) = match rest.split_once('@') {
            Some((q, code)) => (q, code.trim()),
            None => (rest, ""),
        };
        let commodity = normalise_commodity(commodity_text)
            .map_err(|e| format!("{e}; write COMMODITY=QUANTITY, {example}"))?;
        let quantity = parse_quantity(quantity).map_err(|e| e.to_string())?;
        Ok(OutputSpec {
            commodity,
            quantity,
            lot_code: lot_code.to_owned(),
        })
    }
}

fn quantity_arg(s: &str) -> Result<proto::Quantity, String> {
    parse_quantity(s).map_err(|e| e.to_string())
}

fn price_arg(s: &str) -> Result<proto::Price, String> {
    parse_price(s).map_err(|e| e.to_string())
}

fn time_arg(s: &str) -> Result<u64, String> {
    parse_time_ms(s)
}

/// A statement id; a lot id `ID:N` is accepted too and names the statement that made it.
fn statement_id_arg(s: &str) -> Result<StatementId, String> {
    let t = s.trim();
    let id = t.split_once(':').map_or(t, |(id, _)| id);
    id.parse().map_err(|_| {
        format!("{t:?} is not a statement id: write the 64 hex digits a command printed (a lot id ID:0 works too)")
    })
}

/// The inputs of a transfer, transformation or binding, checked as the node would.
fn lot_inputs(flag: &str, lots: &[LotAmount]) -> anyhow::Result<Vec<proto::LotInput>> {
    if lots.is_empty() {
        bail!("name at least one {flag} LOT=QUANTITY, such as {flag} 3f2a...:0=6000kg");
    }
    if lots.len() > MAX_LOTS_PER_STATEMENT {
        bail!(
            "{} {flag} lots given; at most {MAX_LOTS_PER_STATEMENT} fit in one statement",
            lots.len()
        );
    }
    for (i, l) in lots.iter().enumerate() {
        if lots[..i].iter().any(|o| o.lot == l.lot) {
            bail!(
                "{flag} {} is given twice; name each lot once with the total quantity",
                l.lot
            );
        }
    }
    Ok(lots
        .iter()
        .map(|l| proto::LotInput {
            lot: Some(l.lot.to_proto()),
            amount: l.quantity.amount,
        })
        .collect())
}

fn total_of(lots: &[LotAmount]) -> anyhow::Result<u64> {
    lots.iter().try_fold(0u64, |sum, l| {
        sum.checked_add(l.quantity.amount)
            .ok_or_else(|| anyhow!("the quantities add up to more than 2^64 base units"))
    })
}

fn unit_kind(unit: i32) -> &'static str {
    match proto::Unit::try_from(unit) {
        Ok(proto::Unit::Gram) => "weight (t, kg, g, lb)",
        Ok(proto::Unit::Millilitre) => "volume (l, ml)",
        Ok(proto::Unit::Piece) => "pieces (pcs)",
        _ => "no known unit",
    }
}

fn price_matches(flag: &str, price: &proto::Price, goods_unit: i32) -> anyhow::Result<()> {
    let per = price.per.map(|p| p.unit).unwrap_or_default();
    if per != goods_unit {
        bail!(
            "{flag} is a price per {} but the goods are counted by {}: give it per the same unit, such as \"USD 1.80/lb\" or \"USD 4.00/kg\" for weight",
            unit_kind(per),
            unit_kind(goods_unit)
        );
    }
    Ok(())
}

/// Free text as the node accepts it: at most MAX_TEXT bytes, no control characters but
/// newlines, and not blank when required.
fn check_text(flag: &str, value: &str, required: bool) -> anyhow::Result<()> {
    if required && value.trim().is_empty() {
        bail!("{flag} must not be empty");
    }
    if value.len() > MAX_TEXT {
        bail!(
            "{flag} has {} bytes; at most {MAX_TEXT} are allowed, so shorten it",
            value.len()
        );
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        bail!("{flag} contains control characters (such as tabs); remove them");
    }
    Ok(())
}

fn normalise_commodity(text: &str) -> Result<String, String> {
    let c = text.trim().to_lowercase();
    let ok = !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b' ');
    if ok {
        Ok(c)
    } else {
        Err(format!(
            "commodity {text:?} must be 1 to 64 letters, digits, spaces or '-', such as coffee or \"green coffee\""
        ))
    }
}

fn commodity(flag: &str, text: &str) -> anyhow::Result<String> {
    normalise_commodity(text).map_err(|e| anyhow!("{flag}: {e}"))
}

fn country(flag: &str, text: &str) -> anyhow::Result<String> {
    let c = text.trim().to_ascii_uppercase();
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        bail!("{flag} {text:?} is not an ISO 3166-1 alpha-2 country code: write two letters, such as HN or PE")
    }
}

// ---------------------------------------------------------------------------------------------
// Dates: civil (proleptic Gregorian, UTC) days to and from the Unix epoch, without a date crate.

const MS_PER_DAY: u64 = 86_400_000;

/// Days from 1970-01-01 to `y-m-d` (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A fixed-width run of ASCII digits.
fn digits(text: &str, len: usize) -> Option<u32> {
    if text.len() == len && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM[:SS]Z` (UTC), or an integer number of
/// milliseconds since 1970-01-01T00:00:00Z.
pub fn parse_time_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!("{t:?} is not a date: write YYYY-MM-DD (midnight UTC), such as 2026-11-03, or YYYY-MM-DDTHH:MM:SSZ, or milliseconds since 1970")
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| format!("{t:?} milliseconds is too large a time"));
    }
    let (date, time) = match t.split_once(['T', 't', ' ']) {
        Some((d, rest)) => (d, Some(rest)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return Err(bad());
    };
    let y = i64::from(y);
    if y < 1970 {
        return Err(format!("{t:?} is before 1970; give a date from 1970 on"));
    }
    if !(1..=12).contains(&m) {
        return Err(format!("{t:?}: month {m} does not exist (01 to 12)"));
    }
    if d == 0 || d > days_in_month(y, m) {
        return Err(format!(
            "{t:?}: {y}-{m:02} has no day {d} (it has {})",
            days_in_month(y, m)
        ));
    }
    let mut ms = u64::try_from(days_from_civil(y, m, d)).map_err(|_| bad())? * MS_PER_DAY;
    if let Some(time) = time {
        let time = time.strip_suffix(['Z', 'z']).ok_or_else(|| {
            format!("{t:?}: give times in UTC, ending in Z, such as 2026-11-03T14:30:00Z")
        })?;
        let mut fields = time.split(':');
        let (Some(h), Some(min), s, None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let (Some(h), Some(min)) = (digits(h, 2), digits(min, 2)) else {
            return Err(bad());
        };
        let s = match s {
            Some(s) => digits(s, 2).ok_or_else(bad)?,
            None => 0,
        };
        if h > 23 || min > 59 || s > 59 {
            return Err(format!(
                "{t:?}: {h:02}:{min:02}:{s:02} is not a time of day"
            ));
        }
        ms += (u64::from(h) * 3600 + u64::from(min) * 60 + u64::from(s)) * 1000;
    }
    Ok(ms)
}

/// A time for people: `2026-11-03` at midnight UTC, else `2026-11-03T14:30:05Z`.
pub fn format_time(ms: u64) -> String {
    let days = i64::try_from(ms / MS_PER_DAY).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(days);
    let rest = ms % MS_PER_DAY;
    if rest == 0 {
        return format!("{y:04}-{m:02}-{d:02}");
    }
    let s = rest / 1000;
    let frac = rest % 1000;
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn dates_parse_as_utc_midnight() {
        assert_eq!(parse_time_ms("1970-01-01"), Ok(0));
        assert_eq!(parse_time_ms("2000-01-01"), Ok(946_684_800_000));
        assert_eq!(parse_time_ms("2000-02-29"), Ok(951_782_400_000));
        assert_eq!(parse_time_ms("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(parse_time_ms(" 2026-11-03 "), Ok(1_793_664_000_000));
        assert_eq!(parse_time_ms("1972-03-01"), Ok(68_256_000_000));
        assert_eq!(parse_time_ms("2100-03-01"), Ok(4_107_542_400_000));
        assert_eq!(parse_time_ms("9999-12-31"), Ok(253_402_214_400_000));
    }

    #[test]
    fn times_and_milliseconds_parse() {
        assert_eq!(parse_time_ms("2026-11-03T14:30:05Z"), Ok(1_793_716_205_000));
        assert_eq!(
            parse_time_ms("2026-11-03T14:30Z"),
            Ok(1_793_716_205_000 - 5_000)
        );
        assert_eq!(parse_time_ms("1793664000000"), Ok(1_793_664_000_000));
        assert_eq!(parse_time_ms("0"), Ok(0));
        assert!(parse_time_ms("99999999999999999999999").is_err());
    }

    #[test]
    fn impossible_dates_are_refused_with_a_hint() {
        for bad in [
            "",
            "yesterday",
            "2023-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "2026-04-00",
            "2026-1-5",
            "26-11-03",
            "2026/11/03",
            "2026-11-03-01",
            "1969-12-31",
            "2026-11-03T25:00Z",
            "2026-11-03T12:00:00+02:00",
            "2026-11-03T12:00:00",
            "-5",
            "1.5",
        ] {
            assert!(parse_time_ms(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_time_ms("2023-02-29")
            .unwrap_err()
            .contains("no day 29"));
        assert!(parse_time_ms("soon").unwrap_err().contains("YYYY-MM-DD"));
    }

    #[test]
    fn civil_days_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for day in (-800_000..3_000_000).step_by(97) {
            let (y, m, d) = civil_from_days(day);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), day, "{y}-{m}-{d}");
        }
        // Every day of a leap and a common year, in order.
        let mut day = days_from_civil(2024, 1, 1);
        for y in [2024, 2025] {
            for m in 1..=12 {
                for d in 1..=days_in_month(y, m) {
                    assert_eq!(days_from_civil(y, m, d), day);
                    day += 1;
                }
            }
        }
    }

    #[test]
    fn times_format_back() {
        assert_eq!(format_time(0), "1970-01-01");
        assert_eq!(format_time(1_793_664_000_000), "2026-11-03");
        assert_eq!(format_time(1_793_716_205_000), "2026-11-03T14:30:05Z");
        assert_eq!(format_time(1_793_716_205_042), "2026-11-03T14:30:05.042Z");
        for text in ["2024-02-29", "2026-11-03T14:30:05Z"] {
            assert_eq!(format_time(parse_time_ms(text).unwrap()), text);
        }
    }

    #[test]
    fn lot_amounts_parse() {
        let a: LotAmount = format!("{ID}:0=6000kg").parse().unwrap();
        assert_eq!(a.lot.to_string(), format!("{ID}:0"));
        assert_eq!(a.quantity.amount, 6_000_000);
        assert_eq!(a.quantity.unit, proto::Unit::Gram as i32);
        let b: LotAmount = format!("{ID}:3 = 69.5 kg").parse().unwrap();
        assert_eq!((b.lot.output, b.quantity.amount), (3, 69_500));
        let bare: LotAmount = format!("{ID}=12pcs").parse().unwrap();
        assert_eq!(bare.lot.output, 0);
        assert_eq!(bare.quantity.unit, proto::Unit::Piece as i32);
    }

    #[test]
    fn bad_lot_amounts_say_how_to_write_them() {
        let e = format!("{ID}:0").parse::<LotAmount>().unwrap_err();
        assert!(e.contains("LOT=QUANTITY") && e.contains("6000kg"), "{e}");
        let e = "3f2a:0=6000kg".parse::<LotAmount>().unwrap_err();
        assert!(
            e.contains("64 hex digits") && e.contains("LOT=QUANTITY"),
            "{e}"
        );
        let e = format!("{ID}:x=6000kg").parse::<LotAmount>().unwrap_err();
        assert!(e.contains("output"), "{e}");
        let e = format!("{ID}:0=6000").parse::<LotAmount>().unwrap_err();
        assert!(e.contains("1200kg"), "{e}");
        assert!(format!("{ID}:0=0kg").parse::<LotAmount>().is_err());
    }

    #[test]
    fn outputs_parse_with_optional_lot_codes() {
        let o: OutputSpec = "Roasted Coffee=5000kg".parse().unwrap();
        assert_eq!(o.commodity, "roasted coffee");
        assert_eq!(o.quantity.amount, 5_000_000);
        assert_eq!(o.lot_code, "");
        let o: OutputSpec = "roasted coffee = 5000kg @ R-118".parse().unwrap();
        assert_eq!(
            (o.commodity.as_str(), o.lot_code.as_str()),
            ("roasted coffee", "R-118")
        );
        assert!("roasted coffee"
            .parse::<OutputSpec>()
            .unwrap_err()
            .contains("COMMODITY=QUANTITY"));
        assert!("café=5kg".parse::<OutputSpec>().is_err());
        assert!("=5kg".parse::<OutputSpec>().is_err());
        assert!("coffee=lots".parse::<OutputSpec>().is_err());
    }

    #[test]
    fn statement_ids_accept_lot_ids() {
        assert_eq!(statement_id_arg(ID).unwrap().to_string(), ID);
        assert_eq!(
            statement_id_arg(&format!("{ID}:0")).unwrap().to_string(),
            ID
        );
        assert!(statement_id_arg("abc")
            .unwrap_err()
            .contains("64 hex digits"));
    }

    #[test]
    fn local_checks_match_the_node() {
        assert_eq!(
            commodity("--commodity", " Green Coffee ").unwrap(),
            "green coffee"
        );
        assert!(commodity("--commodity", "coffee_beans").is_err());
        assert!(commodity("--commodity", &"x".repeat(65)).is_err());
        assert_eq!(country("--country", "hn").unwrap(), "HN");
        assert!(country("--country", "HND").is_err());
        assert!(check_text("--reason", "  ", true).is_err());
        assert!(check_text("--region", "", false).is_ok());
        assert!(check_text("--region", "a\tb", false).is_err());
        assert!(check_text("--region", "line\nline", false).is_ok());
        assert!(check_text("--region", &"x".repeat(MAX_TEXT + 1), false).is_err());
        let per_lb = parse_price("USD 1.95/lb").unwrap();
        assert!(price_matches("--price", &per_lb, proto::Unit::Gram as i32).is_ok());
        let e = price_matches("--price", &per_lb, proto::Unit::Millilitre as i32).unwrap_err();
        assert!(e.to_string().contains("volume"), "{e}");
    }

    #[test]
    fn inputs_refuse_a_lot_named_twice() {
        let a: LotAmount = format!("{ID}:0=1kg").parse().unwrap();
        assert_eq!(
            lot_inputs("--lot", std::slice::from_ref(&a)).unwrap()[0].amount,
            1000
        );
        let e = lot_inputs("--lot", &[a.clone(), a]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
