//! The demo: a realistic fair-trade coffee chain written to a node and verified. Two
//! smallholder cooperatives (Honduras and Peru), a third-party certifier and a Participatory
//! Guarantee System, an importer, a roaster (green to roasted, within yield bounds) and a
//! retailer who binds GTIN + batch. Every statement is signed here and checked by the node;
//! the chain is then verified end to end against a trust policy written beside it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use ed25519_dalek::SigningKey;
use fairtrail_client::envelope::{self, StatementId};
use fairtrail_client::gs1::ProductId;
use fairtrail_client::keys::{generate_signing_key, PublicKey};
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto::{self, statement::Body};
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::rpc::NodeClient;
use fairtrail_client::rules::LotId;
use fairtrail_client::statement::{encode, now_ms};
use fairtrail_client::units::{parse_price, parse_quantity, DisplayQuantity};

use crate::Global;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The public base URL of the node's consumer pages, used in the printed Digital Link.
    /// Defaults to the HTTP address of the node the demo starts, or http://127.0.0.1:8080.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Where to write the trust policy the demo verified with.
    #[arg(long, default_value = "demo-policy.toml")]
    pub policy_out: PathBuf,
    /// When the demo started its own node: stop it at the end instead of keeping it serving.
    #[arg(long)]
    pub exit: bool,
}

/// A participant of the demo, with the key it signs with.
struct Party {
    name: &'static str,
    key: SigningKey,
}

impl Party {
    fn new(name: &'static str) -> Self {
        Party {
            name,
            key: generate_signing_key(),
        }
    }

    fn public(&self) -> PublicKey {
        PublicKey::from(&self.key.verifying_key())
    }

    fn bytes(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }
}

/// A node the demo started, stopped when dropped unless handed over to the user.
struct OwnNode {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes statements to the node and remembers what it got back.
struct Writer {
    client: NodeClient,
    log_key: NoteVerifier,
    count: usize,
}

impl Writer {
    async fn submit(
        &mut self,
        what: &str,
        statement: proto::Statement,
        signers: &[&SigningKey],
    ) -> anyhow::Result<StatementId> {
        let wire = envelope::sign(encode(&statement), signers);
        let id = StatementId::of_payload(&wire.payload);
        let response = self
            .client
            .submit(wire)
            .await
            .with_context(|| format!("submitting {what}"))?;
        let receipt = response
            .receipt
            .ok_or_else(|| anyhow!("no receipt for {what}"))?;
        // Nothing rests on the node's word: every receipt is checked as it arrives.
        let verified = ReceiptJson::from(&receipt)
            .verify(&self.log_key)
            .with_context(|| format!("the receipt for {what} does not verify"))?;
        self.count += 1;
        println!("  #{:<3} {what}", verified.index);
        Ok(id)
    }
}

fn header(issuer: &Party, body: Body) -> proto::Statement {
    proto::Statement {
        issuer: issuer.bytes(),
        issued_at_ms: now_ms(),
        references: Vec::new(),
        remark: String::new(),
        body: Some(body),
    }
}

fn declare(
    party: &Party,
    roles: &[proto::Role],
    org: proto::OrganisationType,
    country: &str,
    location: &str,
) -> proto::Statement {
    header(
        party,
        Body::ParticipantDeclaration(proto::ParticipantDeclaration {
            name: party.name.into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            organisation_type: org as i32,
            country: country.into(),
            location: location.into(),
            guardians: Vec::new(),
            guardian_threshold: 0,
        }),
    )
}

fn input(lot: LotId, amount: &str) -> anyhow::Result<proto::LotInput> {
    Ok(proto::LotInput {
        lot: Some(lot.to_proto()),
        amount: parse_quantity(amount)?.amount,
    })
}

fn day(year: i64, month: u32, day: u32) -> u64 {
    // Days from civil (Howard Hinnant's algorithm), for fixed demo dates.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400_000).unwrap_or(0)
}

/// Finds a binary installed beside this one (cargo builds the workspace's binaries into one
/// directory).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the fairtrail binary's own path")?;
    let path = me.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "{} was not found beside {}; build the whole workspace first (`cargo build --release`)",
            name,
            me.display()
        )
    }
}

fn start_node() -> anyhow::Result<(OwnNode, String, Option<String>)> {
    let binary = sibling_binary("fairtrail-node")?;
    let data_dir = std::env::temp_dir().join(format!(
        "fairtrail-demo-{}-{}",
        std::process::id(),
        now_ms()
    ));
    let policy = node_policy_path(&data_dir);
    let mut child = Command::new(&binary)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .arg("--policy")
        .arg(&policy)
        .env(
            "FAIRTRAIL_LOG",
            std::env::var("FAIRTRAIL_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from the node"))?;
    let node = OwnNode { child, data_dir };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("the node did not start")?;
    let grpc = field(&line, "grpc=")
        .ok_or_else(|| anyhow!("the node did not say where it listens: {line:?}"))?;
    let http = field(&line, "http=");
    Ok((
        node,
        format!("http://{grpc}"),
        http.map(|h| format!("http://{h}")),
    ))
}

/// Where a node the demo starts reads the trust policy of its consumer pages (the demo
/// writes it once the chain is in).
fn node_policy_path(data_dir: &Path) -> PathBuf {
    let mut name = data_dir.as_os_str().to_owned();
    name.push("-policy.toml");
    PathBuf::from(name)
}

fn field(line: &str, name: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .map(str::to_owned)
}

fn node_given() -> bool {
    std::env::var_os("FAIRTRAIL_NODE").is_some()
        || std::env::args().any(|a| a == "--node" || a.starts_with("--node="))
}

pub async fn demo(g: &Global, a: DemoArgs) -> anyhow::Result<u8> {
    let (own, url, http) = if node_given() {
        (None, g.node.clone(), None)
    } else {
        let (node, url, http) = start_node()?;
        println!(
            "started a node on {url} with a temporary data directory {}",
            node.data_dir.display()
        );
        (Some(node), url, http)
    };
    let public_url = a
        .public_url
        .clone()
        .or(http)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let mut client = NodeClient::connect(&url).await?;
    let log_key_text = client.checkpoint().await?.verifier_key;
    let log_key =
        NoteVerifier::from_text(&log_key_text).context("the node's verifier key is malformed")?;
    let mut w = Writer {
        client,
        log_key,
        count: 0,
    };
    let chain = write_chain(&mut w).await?;

    let product = ProductId::new(chain.gtin, &chain.batch, None)?;
    let consumer_url = product.url(&public_url);
    let policy = policy_text(&log_key_text, &chain);
    std::fs::write(&a.policy_out, &policy)
        .with_context(|| format!("cannot write {}", a.policy_out.display()))?;
    if let Some(node) = &own {
        let path = node_policy_path(&node.data_dir);
        std::fs::write(&path, &policy)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    println!(
        "\n{} statements written and their receipts verified.",
        w.count
    );
    print_chain(&chain);
    println!("\ntrust policy written to {}", a.policy_out.display());
    let code = verify_demo(g, &url, &product, &a.policy_out).await?;
    println!("\nconsumer page (GS1 Digital Link): {consumer_url}");
    println!("re-verify from this folder:       fairtrail --node {url} verify {consumer_url} --policy {}", a.policy_out.display());

    if let Some(node) = own {
        if a.exit {
            drop(node);
        } else {
            println!("\nthe node keeps serving at {url} (pages at {public_url}); press Ctrl-C to stop it.");
            let _ = tokio::signal::ctrl_c().await;
            drop(node);
        }
    }
    Ok(code)
}

async fn verify_demo(
    g: &Global,
    url: &str,
    product: &ProductId,
    policy: &Path,
) -> anyhow::Result<u8> {
    let mut global = g.clone();
    global.node = url.to_owned();
    let args = super::verify::VerifyArgs {
        product: vec![product.gtin.clone(), product.batch.clone()],
        lot: None,
        bundle: None,
        policy: policy.to_owned(),
    };
    println!(
        "\nverifying the chain as a retailer would, against {}:\n",
        policy.display()
    );
    super::verify::verify(&global, args).await
}

/// What the demo wrote, for printing and for the policy.
struct Chain {
    gtin: &'static str,
    batch: String,
    certifier: PublicKey,
    network: PublicKey,
    steps: Vec<String>,
}

async fn write_chain(w: &mut Writer) -> anyhow::Result<Chain> {
    use proto::OrganisationType as Org;
    use proto::Role;
    let honduras = Party::new("Cooperativa Cafetalera Montaña Verde");
    let peru = Party::new("Cooperativa Agraria Valle del Inambari");
    let certifier = Party::new("Certificadora Justa (third-party certification body)");
    let network = Party::new("Red Andina de Garantía Participativa");
    let members = [
        Party::new("Finca Los Alisos"),
        Party::new("Finca Santa Rosa"),
        Party::new("Finca El Mirador"),
    ];
    let importer = Party::new("Solidar Import eG");
    let roaster = Party::new("Tostadores Solidarios S.Coop.");
    let retailer = Party::new("La Colmena Consumer Cooperative");

    println!("writing a fair-trade coffee chain:");
    w.submit(
        "Honduran cooperative declares itself",
        declare(
            &honduras,
            &[Role::Producer, Role::Cooperative],
            Org::SmallholderAssociation,
            "HN",
            "Marcala, La Paz",
        ),
        &[&honduras.key],
    )
    .await?;
    w.submit(
        "Peruvian cooperative declares itself",
        declare(
            &peru,
            &[Role::Producer, Role::Cooperative],
            Org::SmallholderAssociation,
            "PE",
            "San Juan del Oro, Puno",
        ),
        &[&peru.key],
    )
    .await?;
    w.submit(
        "certification body declares itself",
        declare(
            &certifier,
            &[Role::Certifier],
            Org::CertificationBody,
            "DE",
            "Bonn",
        ),
        &[&certifier.key],
    )
    .await?;
    for m in &members {
        w.submit(
            &format!("PGS member {} declares itself", m.name),
            declare(m, &[Role::Producer], Org::FamilyFarm, "PE", "Sandia, Puno"),
            &[&m.key],
        )
        .await?;
    }
    let mut pgs = declare(
        &network,
        &[Role::Certifier],
        Org::ParticipatoryGuaranteeSystem,
        "PE",
        "Puno",
    );
    if let Some(Body::ParticipantDeclaration(d)) = &mut pgs.body {
        d.guardians = members.iter().map(Party::bytes).collect();
        d.guardian_threshold = 2;
    }
    w.submit(
        "PGS network declares its 3 members and quorum 2",
        pgs,
        &[&network.key],
    )
    .await?;
    w.submit(
        "importer declares itself",
        declare(
            &importer,
            &[Role::Trader],
            Org::WorkerCooperative,
            "DE",
            "Hamburg",
        ),
        &[&importer.key],
    )
    .await?;
    w.submit(
        "roaster declares itself",
        declare(
            &roaster,
            &[Role::Processor],
            Org::WorkerCooperative,
            "ES",
            "Zaragoza",
        ),
        &[&roaster.key],
    )
    .await?;
    w.submit(
        "retailer declares itself",
        declare(
            &retailer,
            &[Role::Retailer],
            Org::WorkerCooperative,
            "ES",
            "Madrid",
        ),
        &[&retailer.key],
    )
    .await?;

    let certify = |subject: &Party,
                   issuer: &Party,
                   scheme: &str,
                   roles: &[Role],
                   kind: proto::CertificationKind,
                   network: Vec<u8>| {
        header(
            issuer,
            Body::Certification(proto::Certification {
                subject: subject.bytes(),
                scheme: scheme.into(),
                certificate_id: format!(
                    "{}-{}",
                    scheme.to_uppercase().replace(' ', ""),
                    &subject.public().to_string()[8..16]
                ),
                commodities: vec!["coffee".into(), "roasted coffee".into()],
                roles: roles.iter().map(|r| *r as i32).collect(),
                valid_from_ms: day(2025, 1, 1),
                valid_until_ms: day(2028, 12, 31),
                kind: kind as i32,
                network,
            }),
        )
    };
    let third = proto::CertificationKind::ThirdParty;
    w.submit(
        "certifier certifies the Honduran cooperative (Fairtrade, coffee)",
        certify(
            &honduras,
            &certifier,
            "Fairtrade",
            &[Role::Producer, Role::Cooperative],
            third,
            vec![],
        ),
        &[&certifier.key],
    )
    .await?;
    w.submit(
        "certifier certifies the importer (Fairtrade, trader)",
        certify(
            &importer,
            &certifier,
            "Fairtrade",
            &[Role::Trader],
            third,
            vec![],
        ),
        &[&certifier.key],
    )
    .await?;
    w.submit(
        "certifier certifies the roaster (Fairtrade, processor)",
        certify(
            &roaster,
            &certifier,
            "Fairtrade",
            &[Role::Processor],
            third,
            vec![],
        ),
        &[&certifier.key],
    )
    .await?;
    let peer_cert = certify(
        &peru,
        &members[0],
        "Red Andina PGS",
        &[Role::Producer, Role::Cooperative],
        proto::CertificationKind::Participatory,
        network.bytes(),
    );
    w.submit(
        "2 of 3 PGS peers certify the Peruvian cooperative",
        peer_cert,
        &[&members[0].key, &members[1].key],
    )
    .await?;

    let harvest = |party: &Party,
                   quantity: &str,
                   price: &str,
                   country: &str,
                   region: &str,
                   farmers: u32,
                   code: &str|
     -> anyhow::Result<proto::Statement> {
        Ok(header(
            party,
            Body::Harvest(proto::Harvest {
                commodity: "coffee".into(),
                quantity: Some(parse_quantity(quantity)?),
                harvested_from_ms: day(2025, 11, 1),
                harvested_until_ms: day(2026, 2, 28),
                country: country.into(),
                region: region.into(),
                farmgate_price: Some(parse_price(price)?),
                premium: Some(parse_price("USD 0.20/lb")?),
                farmer_count: farmers,
                lot_code: code.into(),
            }),
        ))
    };
    let hn_harvest = w
        .submit(
            "Honduran harvest: 18,000 kg washed Arabica at USD 2.10/lb",
            harvest(
                &honduras,
                "18000kg",
                "USD 2.10/lb",
                "HN",
                "La Paz",
                212,
                "MV-2526-01",
            )?,
            &[&honduras.key],
        )
        .await?;
    let pe_harvest = w
        .submit(
            "Peruvian harvest: 12,000 kg washed Arabica at USD 1.95/lb",
            harvest(
                &peru,
                "12000kg",
                "USD 1.95/lb",
                "PE",
                "Puno",
                146,
                "VI-2526-07",
            )?,
            &[&peru.key],
        )
        .await?;
    let hn_lot = LotId {
        statement: hn_harvest,
        output: 0,
    };
    let pe_lot = LotId {
        statement: pe_harvest,
        output: 0,
    };

    let ship = |from: &Party,
                inputs: Vec<proto::LotInput>,
                to: &Party,
                price: &str,
                doc: &str|
     -> anyhow::Result<proto::Statement> {
        Ok(header(
            from,
            Body::Transfer(proto::Transfer {
                inputs,
                recipient: to.bytes(),
                price: Some(parse_price(price)?),
                document_reference: doc.into(),
            }),
        ))
    };
    let receive =
        |to: &Party, transfer: StatementId, amount: &str| -> anyhow::Result<proto::Statement> {
            Ok(header(
                to,
                Body::Receipt(proto::Receipt {
                    transfer: transfer.as_bytes().to_vec(),
                    outcome: proto::ReceiptOutcome::Confirmed as i32,
                    amount_received: parse_quantity(amount)?.amount,
                }),
            ))
        };
    let t1 = w
        .submit(
            "Honduran cooperative ships 12,000 kg to the importer",
            ship(
                &honduras,
                vec![input(hn_lot, "12000kg")?],
                &importer,
                "USD 2.45/lb",
                "B/L PCO-88412",
            )?,
            &[&honduras.key],
        )
        .await?;
    w.submit(
        "importer confirms receipt of 12,000 kg",
        receive(&importer, t1, "12000kg")?,
        &[&importer.key],
    )
    .await?;
    let t2 = w
        .submit(
            "Peruvian cooperative ships 8,000 kg to the importer",
            ship(
                &peru,
                vec![input(pe_lot, "8000kg")?],
                &importer,
                "USD 2.30/lb",
                "B/L CLL-20931",
            )?,
            &[&peru.key],
        )
        .await?;
    w.submit(
        "importer confirms receipt of 8,000 kg",
        receive(&importer, t2, "8000kg")?,
        &[&importer.key],
    )
    .await?;
    let t3 = w
        .submit(
            "importer ships 6,000 kg Honduran + 4,000 kg Peruvian to the roaster",
            ship(
                &importer,
                vec![
                    input(
                        LotId {
                            statement: t1,
                            output: 0,
                        },
                        "6000kg",
                    )?,
                    input(
                        LotId {
                            statement: t2,
                            output: 0,
                        },
                        "4000kg",
                    )?,
                ],
                &roaster,
                "USD 2.80/lb",
                "INV 2026-0311",
            )?,
            &[&importer.key],
        )
        .await?;
    w.submit(
        "roaster confirms receipt of 10,000 kg",
        receive(&roaster, t3, "10000kg")?,
        &[&roaster.key],
    )
    .await?;
    let roast = header(
        &roaster,
        Body::Transformation(proto::Transformation {
            inputs: vec![input(
                LotId {
                    statement: t3,
                    output: 0,
                },
                "10000kg",
            )?],
            outputs: vec![proto::LotOutput {
                commodity: "roasted coffee".into(),
                quantity: Some(parse_quantity("8400kg")?),
                lot_code: "TS-R-0412".into(),
            }],
            process: "roasting".into(),
        }),
    );
    let roasted = w
        .submit(
            "roaster roasts 10,000 kg green into 8,400 kg roasted (yield 84%)",
            roast,
            &[&roaster.key],
        )
        .await?;
    let t4 = w
        .submit(
            "roaster ships 2,500 kg roasted coffee to the retailer",
            ship(
                &roaster,
                vec![input(
                    LotId {
                        statement: roasted,
                        output: 0,
                    },
                    "2500kg",
                )?],
                &retailer,
                "EUR 14.90/kg",
                "ALB 7731",
            )?,
            &[&roaster.key],
        )
        .await?;
    w.submit(
        "retailer confirms receipt of 2,500 kg",
        receive(&retailer, t4, "2500kg")?,
        &[&retailer.key],
    )
    .await?;
    // From the clock in milliseconds: two demos on one node, even a second apart, bind
    // different batches (a batch is bound once). 11 characters, within GS1's 20 for AI 10.
    let batch = format!("L{}", now_ms() % 10_000_000_000);
    let gtin = "09506000134352";
    let label = header(
        &retailer,
        Body::ProductBinding(proto::ProductBinding {
            gtin: gtin.into(),
            batch: batch.clone(),
            serial: String::new(),
            inputs: vec![input(
                LotId {
                    statement: t4,
                    output: 0,
                },
                "2500kg",
            )?],
            product_name: "Café Solidario, whole bean, 500 g".into(),
        }),
    );
    w.submit(
        &format!("retailer binds GTIN {gtin} batch {batch} to the 2,500 kg"),
        label,
        &[&retailer.key],
    )
    .await?;

    let steps = vec![
        format!(
            "{}: {} harvested in La Paz, Honduras; farmers paid USD 2.10/lb + USD 0.20/lb premium",
            honduras.name,
            DisplayQuantity(18_000_000, proto::Unit::Gram as i32)
        ),
        format!(
            "{}: {} harvested in Puno, Peru; farmers paid USD 1.95/lb + USD 0.20/lb premium",
            peru.name,
            DisplayQuantity(12_000_000, proto::Unit::Gram as i32)
        ),
        format!(
            "{}: received 12,000 kg + 8,000 kg green coffee, shipped 10,000 kg to the roaster",
            importer.name
        ),
        format!(
            "{}: roasted 10,000 kg into 8,400 kg (84%), shipped 2,500 kg",
            roaster.name
        ),
        format!("{}: bound GTIN {gtin} batch {batch}", retailer.name),
    ];
    Ok(Chain {
        gtin,
        batch,
        certifier: certifier.public(),
        network: network.public(),
        steps,
    })
}

fn print_chain(chain: &Chain) {
    println!(
        "\nthe chain behind GTIN {} batch {}:",
        chain.gtin, chain.batch
    );
    for (i, step) in chain.steps.iter().enumerate() {
        println!("  {}. {step}", i + 1);
    }
}

/// The trust policy the demo verifies with: the log's key, the demo's certifier and PGS
/// network, and the published Fairtrade minimum price and premium for washed Arabica.
fn policy_text(log_key: &str, chain: &Chain) -> String {
    format!(
        r#"# Trust policy written by `fairtrail demo`. Re-verify with:
#   fairtrail verify <consumer URL> --policy demo-policy.toml
# See examples/policy.toml for every setting.
log_key = "{log_key}"
require_receipts = true
clock_skew_ms = 600000

# The demo's certification body, trusted for the Fairtrade scheme.
[certifiers]
Fairtrade = ["{certifier}"]

# The demo's Participatory Guarantee System: 2 distinct members must co-sign.
[pgs."Red Andina PGS"]
network = "{network}"
quorum = 2

# Fairtrade International, Fairtrade Minimum Price and Premium Table (coffee), effective
# 1 August 2023: washed Arabica USD 1.80/lb minimum, USD 0.20/lb Fairtrade Premium.
[commodities.coffee]
includes = ["roasted coffee"]
minimum_price = "USD 1.80/lb"
premium = "USD 0.20/lb"
certification_required = true
schemes = ["Fairtrade", "Red Andina PGS"]

# Roasting loses 12 to 22 percent of the green coffee's weight.
[yields.roasting]
min_per_mille = 780
max_per_mille = 880
"#,
        certifier = chain.certifier,
        network = chain.network,
    )
}
