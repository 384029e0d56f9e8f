//! The consumer page's numbers, written as the reader's locale writes them (CLDR): the
//! region of the language tag counts, not only the language.

use super::{json, page};
use crate::util::http::DemoNode;

/// Numbers are written as the reader's region writes them (CLDR), not only their language:
/// Argentina "8.000 kg", "USD 2,10/lb" and "84%", Mexico "8,000 kg" and "USD 2.10/lb", `es`
/// alone (Spain) "8000 kg" but "18.000 kg", "2,10 USD/lb" and "84 %" (the spaces no-break
/// ones); English in Germany "83.334,73 USD" but "EUR 14,90/kg", and "84 %"; `?lang=` says
/// the same, and the JSON view never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_page_writes_numbers_as_the_readers_region_does() {
    let demo = DemoNode::start().await;
    let path = demo.path();
    let by_header = async |tag: &str| demo.get(&path, &[("Accept-Language", tag)]).await;

    // 1. Argentina: period grouping from four digits, decimal comma; Spanish texts.
    let ar = by_header("es-AR,es;q=0.9,en;q=0.5").await;
    let text = page(&ar);
    assert!(text.starts_with("<!doctype html><html lang=\"es\">"));
    for expected in [
        "18.000 kg coffee",
        "8.000 kg coffee",
        "confirmó haber recibido 12.000 kg el",
        "<dt>Precio</dt><dd>USD\u{a0}2,45/lb</dd>",
        "<dt>Precio</dt><dd>EUR\u{a0}14,90/kg</dd>",
        "Pagado: <tspan font-weight=\"700\">USD\u{a0}2,10/lb</tspan>",
        "Mínimo: <tspan font-weight=\"700\">USD\u{a0}1,80/lb</tspan>",
        "En total: USD\u{a0}83.334,73 a los agricultores, más USD\u{a0}7.936,64 de prima.",
        "<dd>84%</dd>",
        "href=\"?lang=en\"",
    ] {
        assert!(text.contains(expected), "the es-AR page lacks {expected:?}");
    }
    // (The verifier's own messages, folded away and marked English, stay as written.)
    for english in [
        "<dd>18,000 kg",
        "USD\u{a0}2.10/lb</tspan>",
        "USD\u{a0}83,334.73",
    ] {
        assert!(!text.contains(english), "the es-AR page says {english:?}");
    }

    // 2. Mexico: the same Spanish texts, English separators.
    let mx = by_header("es-MX").await;
    let text = page(&mx);
    for expected in [
        "18,000 kg coffee",
        "8,000 kg coffee",
        "confirmó haber recibido 12,000 kg el",
        "<dt>Precio</dt><dd>USD\u{a0}2.45/lb</dd>",
        "<dt>Precio</dt><dd>EUR\u{a0}14.90/kg</dd>",
        "Pagado: <tspan font-weight=\"700\">USD\u{a0}2.10/lb</tspan>",
        "En total: USD\u{a0}83,334.73 a los agricultores, más USD\u{a0}7,936.64 de prima.",
        "<dd>84%</dd>",
        "Firmado por",
    ] {
        assert!(text.contains(expected), "the es-MX page lacks {expected:?}");
    }
    assert!(
        !text.contains("USD\u{a0}2,10/lb"),
        "the es-MX page has a decimal comma"
    );
    assert_ne!(ar.header("etag"), mx.header("etag"));

    // 3. `es` alone, and a region CLDR does not know, write as Spain: four digits ungrouped,
    //    the currency after the amount.
    let es = by_header("es").await;
    let text = page(&es);
    for expected in [
        "18.000 kg coffee",
        "8000 kg coffee",
        "7936,64\u{a0}USD de prima",
        "<dt>Precio</dt><dd>2,45\u{a0}USD/lb</dd>",
        "<dd>84\u{a0}%</dd>",
        "Pagado: <tspan font-weight=\"700\">2,10\u{a0}USD/lb</tspan>",
    ] {
        assert!(text.contains(expected), "the es page lacks {expected:?}");
    }
    assert_eq!(by_header("es-ZZ").await.body, es.body);

    // 4. Regions that write alike share a page; `?lang=` with a region is the header's
    //    equal; the language switch's `?lang=es` keeps the reader's region.
    assert_eq!(by_header("es-CO").await.body, ar.body);
    assert_eq!(by_header("es-419").await.body, mx.body);
    let query = demo.get(&format!("{path}?lang=es-MX"), &[]).await;
    assert_eq!(query.body, mx.body);
    let switched = demo
        .get(
            &format!("{path}?lang=es"),
            &[("Accept-Language", "es-AR,en;q=0.5")],
        )
        .await;
    assert_eq!(switched.body, ar.body);

    // 5. English stays English; the JSON view is the same whoever asks.
    let en = page(&by_header("en-US").await);
    for expected in [
        "18,000 kg coffee",
        "In all: USD\u{a0}83,334.73 to the farmers",
        "<dd>84%</dd>",
    ] {
        assert!(en.contains(expected), "the English page lacks {expected:?}");
    }
    let en_de = page(&by_header("en-DE,en;q=0.8").await);
    assert!(en_de.starts_with("<!doctype html><html lang=\"en\">"));
    for expected in [
        "18.000 kg coffee",
        "In all: 83.334,73\u{a0}USD to the farmers",
        "<dt>Price</dt><dd>EUR\u{a0}14,90/kg</dd>",
        "<dd>84\u{a0}%</dd>",
    ] {
        assert!(
            en_de.contains(expected),
            "the en-DE page lacks {expected:?}"
        );
    }
    let report = async |tag: &str| {
        let headers = [("Accept", "application/json"), ("Accept-Language", tag)];
        demo.get(&path, &headers).await
    };
    let (json_en, json_ar) = (report("en").await, report("es-AR").await);
    assert_eq!(json_en.body, json_ar.body);
    let view = json(&json_ar);
    let harvest = &view["chain"]["journey"][0];
    assert_eq!(harvest["outputs"][0]["quantity"]["text"], "18,000 kg");
    assert_eq!(harvest["farmgate"]["paid"]["stated"], "USD 2.10/lb");
    assert_eq!(harvest["farmgate"]["total_paid"], "USD 83334.73");
}
