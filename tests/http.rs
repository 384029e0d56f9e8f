//! The node's HTTP side end to end, against a real node: the demo product's consumer page in
//! English and Spanish (its numbers in the reader's region: `numbers`), its JSON view and
//! proof bundle, GS1 Digital Link errors, caching, the operator's policy, the checkpoint,
//! tiles, metrics and health.

use base64::Engine;
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::merkle::{leaf_hash, MemoryTree};
use serde_json::Value;

use crate::util::chain::{Chain, Knobs, BATCH, GTIN};
use crate::util::http::{get, install_policy, path_arg, DemoNode, Response};
use crate::util::verdict::{fairtrail_in, EXIT_VERIFIED};
use crate::util::TestNode;

/// The consumer page's numbers in the reader's region.
mod numbers;

/// The most a consumer page may weigh: it must load quickly on a cheap phone.
const MAX_PAGE_BYTES: usize = 60 * 1024;

/// Checks what every consumer page must be, and returns its text: HTML, self-contained (no
/// script, no fetched resource of any kind), under the size limit, cacheable.
#[track_caller]
fn page(r: &Response) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.body.len() < MAX_PAGE_BYTES,
        "the page weighs {} bytes",
        r.body.len()
    );
    let text = r.text();
    let lower = text.to_ascii_lowercase();
    for banned in ["<script", "src=", "@import", "url(", "@font-face", "<link"] {
        assert!(!lower.contains(banned), "the page contains {banned:?}");
    }
    assert!(
        r.header("etag").is_some_and(|e| e.starts_with('"')),
        "{r:?}"
    );
    assert!(
        r.header("cache-control")
            .is_some_and(|c| c.contains("max-age")),
        "{r:?}"
    );
    text
}

/// The journey's steps, in order: each `<li class="step">` up to the next.
fn steps(page: &str) -> Vec<&str> {
    page.split("<li class=\"step\"").skip(1).collect()
}

fn json(r: &Response) -> Value {
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_page_speaks_english_and_spanish() {
    let demo = DemoNode::start().await;
    let path = demo.path();

    // 1. English by default: the product, the verdict with its reasons, each step with
    //    its actor, the price charts, the certifications and the proof.
    let en = demo.get(&path, &[]).await;
    let text = page(&en);
    assert!(text.starts_with("<!doctype html><html lang=\"en\">"));
    for expected in [
        "Café Solidario, whole bean, 500 g",
        &demo.gtin,
        &demo.batch,
        "class=\"badge ok\"",
        "<span>Verified</span>",
        "Farmers were paid at least the fair-trade minimum price and premium.",
        "Paid: <tspan font-weight=\"700\">USD\u{a0}2.10/lb</tspan>",
        "Minimum: <tspan font-weight=\"700\">USD\u{a0}1.80/lb</tspan>",
        "212 farming households.",
        "Red Andina PGS",
        "Finca Los Alisos, Finca Santa Rosa (2 signatures required)",
        "certified by peer farmers",
        "certified by an independent body",
        "confirmed by the other party",
        "self-declared",
        "Every check passed.",
        "href=\"?lang=es\"",
        &format!("/bundle{path}\""),
    ] {
        assert!(
            text.contains(expected),
            "the English page lacks {expected:?}"
        );
    }
    let journey = steps(&text);
    assert_eq!(
        journey.len(),
        demo.actors.len(),
        "one step per journey step"
    );
    for (step, actor) in journey.iter().zip(&demo.actors) {
        assert!(
            step.contains(actor),
            "a step lacks its actor {actor}: {step}"
        );
        assert!(step.contains("Signed by"), "{step}");
    }
    assert!(journey[0].contains("data-kind=\"harvest\""));
    assert!(journey[4].contains("data-kind=\"transfer\""));
    assert!(journey[5].contains("data-kind=\"transformation\"") && journey[5].contains("84%"));
    assert!(journey[7].contains("data-kind=\"product_binding\""));
    assert_eq!(
        text.matches("<svg role=\"img\" aria-labelledby=").count(),
        2
    );
    assert_eq!(
        text.matches("</title>").count(),
        3,
        "the page's and each chart's title"
    );

    // 2. Spanish by ?lang=es and by Accept-Language: the same page, its own ETag.
    let es = demo.get(&format!("{path}?lang=es"), &[]).await;
    let texto = page(&es);
    assert!(texto.starts_with("<!doctype html><html lang=\"es\">"));
    for expected in [
        "<span>Verificado</span>",
        "El recorrido",
        "Lo que se pagó a los agricultores",
        "Pagado: <tspan font-weight=\"700\">2,10\u{a0}USD/lb</tspan>",
        "certificado por productores pares",
        "Descargar el paquete de pruebas",
    ] {
        assert!(
            texto.contains(expected),
            "the Spanish page lacks {expected:?}"
        );
    }
    for english in [
        "The journey",
        "Verified<",
        "What the farmers were paid",
        "Signed by",
    ] {
        assert!(
            !texto.contains(english),
            "the Spanish page says {english:?}"
        );
    }
    let journey = steps(&texto);
    assert_eq!(journey.len(), demo.actors.len());
    for (step, actor) in journey.iter().zip(&demo.actors) {
        assert!(
            step.contains(actor) && step.contains("Firmado por"),
            "{step}"
        );
    }
    let by_header = demo
        .get(&path, &[("Accept-Language", "es-ES,es;q=0.9")])
        .await;
    assert_eq!(by_header.body, es.body);
    assert_eq!(by_header.header("etag"), es.header("etag"));
    assert_ne!(
        es.header("etag"),
        en.header("etag"),
        "each language has its own ETag"
    );

    // 3. A conditional request for an unchanged page is answered 304, still cacheable.
    let etag = en.header("etag").unwrap();
    let again = demo.get(&path, &[("If-None-Match", etag)]).await;
    assert_eq!(again.status, 304, "{again:?}");
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag));
    assert!(again.header("cache-control").is_some());
    let other_language = demo
        .get(&format!("{path}?lang=es"), &[("If-None-Match", etag)])
        .await;
    assert_eq!(
        other_language.status, 200,
        "the English ETag does not match the Spanish page"
    );

    // 4. The GTIN-13 form of the same product resolves to the same page.
    let gtin13 = demo
        .gtin
        .strip_prefix('0')
        .expect("the demo's GTIN-14 starts with 0");
    let short = demo
        .get(&format!("/01/{gtin13}/10/{}", demo.batch), &[])
        .await;
    assert_eq!(short.status, 200, "{short:?}");
    assert_eq!(short.body, en.body);

    // 5. The JSON view: the verifier's report, under the operator's policy.
    for (target, headers) in [
        (path.clone(), vec![("Accept", "application/json")]),
        (format!("{path}?format=json"), vec![]),
    ] {
        let report = json(&demo.get(&target, &headers).await);
        assert_eq!(report["verdict"], "verified", "{report}");
        assert_eq!(report["trust_policy"]["state"], "operator");
        assert_eq!(report["chain"]["product"]["gtin"], demo.gtin.as_str());
        assert_eq!(report["chain"]["journey"].as_array().map(Vec::len), Some(8));
        assert_eq!(report["steps"].as_array().map(Vec::len), Some(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_links_get_plain_error_pages() {
    let node = TestNode::start().await;
    let addr = node.http_addr();
    let key = std::fs::read_to_string(node.data_dir().join("log-key.pem")).unwrap();
    let secret = key.lines().nth(1).expect("the key file has a body line");

    // Each malformed link is refused with a page saying what is wrong with it.
    for (target, says) in [
        ("/01/09506000134353/10/L1", "check digit"),
        ("/01/09506000134353/10/L1?lang=es", "dígito de control"),
        ("/01/0950600013435X/10/L1", "must be 8, 12, 13 or 14 digits"),
        ("/01/123456789/10/L1", "must be 8, 12, 13 or 14 digits"),
        ("/01/950600013435/10/L1", "check digit"),
        ("/01/09506000134352/10/L%20001", "batch &quot;L 001&quot;"),
        ("/01/09506000134352/10/L%C3%A9", "batch"),
        (
            "/01/09506000134352/10/ABCDEFGHIJKLMNOPQRSTU",
            "1 to 20 characters",
        ),
        ("/01/09506000134352/10/L1/21/%7B1%7D", "serial"),
    ] {
        let r = get(addr, target, &[]).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(
            r.text().contains(says),
            "{target} does not say {says:?}: {r:?}"
        );
    }
    let r = get(
        addr,
        "/01/0950600013435X/10/L1",
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!(
        (r.status, &json(&r)["error"]["status"]),
        (400, &Value::from(400))
    );

    // An unknown product, in both languages and as JSON.
    let unknown = "/01/09506000134352/10/NOPE";
    let r = get(addr, unknown, &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.text().contains("This product is not in the record."),
        "{r:?}"
    );
    let r = get(addr, unknown, &[("Accept-Language", "es")]).await;
    assert!(
        r.text().contains("Este producto no está en el registro."),
        "{r:?}"
    );
    let r = get(addr, unknown, &[("Accept", "application/json")]).await;
    assert_eq!(
        (r.status, &json(&r)["error"]["status"]),
        (404, &Value::from(404))
    );
    let r = get(addr, &format!("/bundle{unknown}"), &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = get(addr, "/bundle/01/09506000134353/10/L1", &[]).await;
    assert!(r.status == 400 && r.text().contains("check digit"), "{r:?}");

    // Unknown paths, and every attempt to climb out of the tile directory to the log key.
    let r = get(addr, "/no/such/page", &[]).await;
    assert!(r.status == 404 && r.text().contains("There is no page at this address."));
    for target in [
        "/tile/../../log-key.pem",
        "/tile/../log-key.pem",
        "/tile/%2e%2e/%2e%2e/log-key.pem",
        "/tile/0/%2e%2e/%2e%2e/log-key.pem",
        "/tile/..%2f..%2flog-key.pem",
        "/tile/entries/..%2F..%2Flog-key.pem",
        "/01/..%2f..",
        "/01/..%2f..%2flog-key.pem/10/x",
        "/bundle/01/..%2f../10/..%2flog-key.pem",
        "/log-key.pem",
        "/../log-key.pem",
        "/%2e%2e/log-key.pem",
    ] {
        let r = get(addr, target, &[]).await;
        assert!(matches!(r.status, 400 | 404), "{target}: {r:?}");
        let text = r.text();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(secret),
            "{target}: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_download_verifies_offline_with_the_node_stopped() {
    let mut demo = DemoNode::start().await;
    let r = demo.get(&format!("/bundle{}", demo.path()), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let expected = format!(
        "attachment; filename=\"fairtrail-{}-{}.bundle.json\"",
        demo.gtin, demo.batch
    );
    assert_eq!(r.header("content-disposition"), Some(expected.as_str()));
    let bundle = json(&r);
    assert_eq!(bundle["format"], "fairtrail-bundle/v1");
    assert_eq!(bundle["subject"]["product"]["batch"], demo.batch.as_str());
    let file = demo.dir.path().join("downloaded.bundle.json");
    std::fs::write(&file, &r.body).unwrap();

    demo.node.stop().await;
    let args = [
        "verify",
        "--bundle",
        "downloaded.bundle.json",
        "--policy",
        "demo-policy.toml",
    ];
    let out = fairtrail_in(demo.dir.path(), &args).await;
    assert_eq!(out.status.code(), Some(EXIT_VERIFIED), "{out:?}");
    assert!(out.stdout.contains("Verdict: VERIFIED"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_tiles_metrics_and_health() {
    let demo = DemoNode::start().await;
    let r = demo.get("/healthz", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    for _ in 0..2 {
        page(&demo.get(&demo.path(), &[]).await);
    }

    // The checkpoint is the log's signed note.
    let r = demo.get("/checkpoint", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let checkpoint = SignedCheckpoint::verify(&r.text(), &demo.node.verifier().await)
        .expect("the served checkpoint verifies with the log key")
        .checkpoint;
    let size = checkpoint.size;
    assert!(size > 20, "the demo wrote its chain: {size}");

    // The first level-0 tile holds the leaf hashes: they rebuild the checkpoint's root, and
    // each is the hash of the leaf the bundle carries.
    let width = size.min(256);
    let tile = if width == 256 {
        "/tile/0/000".to_owned()
    } else {
        format!("/tile/0/000.p/{width}")
    };
    let r = demo.get(&tile, &[]).await;
    assert_eq!(r.status, 200, "{tile}: {r:?}");
    assert_eq!(r.body.len() as u64, 32 * width);
    let hashes: Vec<[u8; 32]> = r.body.chunks(32).map(|c| c.try_into().unwrap()).collect();
    if size <= 256 {
        let mut tree = MemoryTree::new();
        hashes.iter().for_each(|h| tree.push_leaf_hash(*h));
        assert_eq!(
            tree.root(),
            checkpoint.root,
            "the tile rebuilds the checkpoint's root"
        );
    }
    let bundle = json(&demo.get(&format!("/bundle{}", demo.path()), &[]).await);
    for entry in bundle["entries"].as_array().unwrap() {
        let index = entry["index"].as_u64().unwrap() as usize;
        let leaf = base64::engine::general_purpose::STANDARD
            .decode(entry["leaf"].as_str().unwrap())
            .unwrap();
        if let Some(hash) = hashes.get(index) {
            assert_eq!(leaf_hash(&leaf), *hash, "entry {index}");
        }
    }
    let beyond = demo.get(&format!("/tile/0/000.p/{}", width + 1), &[]).await;
    assert_eq!(beyond.status, 404, "{beyond:?}");

    // Metrics: the tree size, and the requests above counted by route and status class.
    let r = demo.get("/metrics", &[]).await;
    assert_eq!(r.status, 200);
    let metrics = r.text();
    assert!(
        metrics.contains(&format!("\nfairtrail_tree_size {size}\n")),
        "{metrics}"
    );
    let count = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(count("fairtrail_http_requests_total{route=\"page\",code=\"2xx\"}") >= 2);
    assert!(count("fairtrail_http_requests_total{route=\"checkpoint\",code=\"2xx\"}") >= 1);
    assert!(count("fairtrail_http_requests_total{route=\"tile\",code=\"2xx\"}") >= 1);
    assert!(count("fairtrail_http_requests_total{route=\"tile\",code=\"4xx\"}") >= 1);
    assert!(count("fairtrail_http_requests_total{route=\"bundle\",code=\"2xx\"}") >= 1);
}

/// A policy file that is missing or broken is the operator's mistake: pages are still
/// served, never say "Verified", and say plainly that certifications and prices were not
/// judged, until the file is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_policy_is_the_operators_mistake_not_the_readers() {
    let demo = DemoNode::without_policy().await;
    let path = demo.path();
    let partly = |r: &Response| {
        let text = page(r);
        assert!(text.contains("<span>Only partly checked</span>"), "{r:?}");
        assert!(!text.contains("<span>Verified</span>"));
        assert!(text.contains("trust policy could not be read"));
        assert_eq!(steps(&text).len(), 8, "the journey is still shown");
    };
    partly(&demo.get(&path, &[]).await);
    let report = json(&demo.get(&path, &[("Accept", "application/json")]).await);
    assert_eq!(report["trust_policy"]["state"], "unreadable", "{report}");
    assert!(report["trust_policy"]["error"]
        .as_str()
        .unwrap()
        .contains("cannot read"));

    demo.set_policy("this is [[not a policy");
    partly(&demo.get(&path, &[]).await);
    let report = json(&demo.get(&path, &[("Accept", "application/json")]).await);
    assert!(
        report["trust_policy"]["error"]
            .as_str()
            .unwrap()
            .contains("TOML"),
        "{report}"
    );

    let policy = std::fs::read_to_string(demo.dir.path().join("demo-policy.toml")).unwrap();
    demo.set_policy(&policy);
    let text = page(&demo.get(&path, &[]).await);
    assert!(
        text.contains("<span>Verified</span>"),
        "the fixed policy is read again"
    );
}

/// A chain that underpays its farmers and is disputed: the page says so in plain words, in
/// both languages, with the verifier's detail behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chain_says_plainly_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let node = TestNode::start_with_args(|_| {}, vec!["--policy".into(), path_arg(&policy)]).await;
    let knobs = Knobs {
        farmgate_price: "USD 1.50/lb",
        dispute_harvest: true,
        ..Knobs::default()
    };
    let chain = Chain::write(&node, knobs).await;
    install_policy(&policy, &chain.policy_toml(&node.log_key().await));
    let path = format!("/01/{GTIN}/10/{BATCH}");

    let text = page(&get(node.http_addr(), &path, &[]).await);
    for expected in [
        "class=\"badge fail\"",
        "<span>Not verified</span>",
        "Farmers were paid less than the fair-trade minimum price.",
        "Paid: below the minimum",
        "Someone has disputed a step of this journey.",
        "Observatorio Cafetalero",
        "members report USD 1.60/lb paid at the collection centre",
        "href=\"#disputes\">disputed</a>",
    ] {
        assert!(text.contains(expected), "the page lacks {expected:?}");
    }
    assert!(!text.contains("Every check passed."));

    let texto = page(&get(node.http_addr(), &format!("{path}?lang=es"), &[]).await);
    for expected in [
        "<span>No verificado</span>",
        "A los agricultores se les pagó menos del precio mínimo de comercio justo.",
        "Alguien ha reclamado un paso de este recorrido.",
        "<summary>Detalles (en inglés)</summary><p lang=\"en\">",
    ] {
        assert!(
            texto.contains(expected),
            "the Spanish page lacks {expected:?}"
        );
    }

    let report = json(&get(node.http_addr(), &path, &[("Accept", "application/json")]).await);
    assert_eq!(report["verdict"], "failed");
    let problems: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["findings"].as_array().unwrap())
        .filter_map(|f| f["problem"].as_str())
        .collect();
    assert!(problems.contains(&"price_below_minimum") && problems.contains(&"open_dispute"));
}
