//! Trade: a lot spent twice, a yield beyond the policy's bounds, farmers paid below the
//! minimum, a shipment never confirmed, a harvest disputed.

use fairtrail_client::proto;
use fairtrail_client::rpc::RpcError;
use tonic::Code;

use super::{knobs, reship, Scene};
use crate::util::assert_status;
use crate::util::chain::{Knobs, BATCH, GTIN};
use crate::util::writer::{amount, pk, take, transfer, Writer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_spend_is_refused_at_the_node() {
    let mut s = Scene::new(Knobs::default()).await;
    let lot = s.chain.export.lot(0);
    let importer = s.chain.keys.importer.clone();

    // 1. More than is left of the lot (2,000 kg of 12,000).
    let over = s
        .chain
        .w
        .try_write(&importer, reship(&s.chain, "2500kg"), &[])
        .await;
    assert_status(
        over,
        Code::FailedPrecondition,
        &format!("lot {lot} has 2,000 kg left, 2,500 kg asked"),
    );

    // 2. The same 2,000 kg sold twice at once, to the roaster and to the retailer: one sale
    //    is logged, the other refused, whichever the sequencer saw first.
    let to = |k| {
        transfer(
            vec![take(lot, "1500kg")],
            k,
            "USD 3.10/lb",
            "INV SCI-2026-1204",
        )
    };
    let sales = [
        Writer::envelope(&pk(&importer), to(&s.chain.keys.roaster), &[&importer]),
        Writer::envelope(&pk(&importer), to(&s.chain.keys.retailer), &[&importer]),
    ];
    let (mut a, mut b) = (s.chain.w.client.clone(), s.chain.w.client.clone());
    let [first, second] = sales;
    let (x, y) = tokio::join!(a.submit(first), b.submit(second));
    let refusals: Vec<RpcError> = [x, y].into_iter().filter_map(Result::err).collect();
    assert_eq!(
        refusals.len(),
        1,
        "exactly one sale is refused: {refusals:?}"
    );
    assert_eq!(
        refusals[0].code(),
        Some(Code::FailedPrecondition),
        "{:?}",
        refusals[0]
    );
    assert!(
        refusals[0]
            .to_string()
            .contains("has 500 kg left, 1,500 kg asked"),
        "{}",
        refusals[0]
    );

    // 3. The node's lot says what is left.
    let left = s
        .provenance()
        .await
        .get_lot(proto::GetLotRequest {
            lot: Some(lot.to_proto()),
        })
        .await
        .unwrap();
    assert_eq!(left.into_inner().remaining, amount("500kg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yield_beyond_the_bounds_fails() {
    let s = Scene::new(knobs(|k| k.roasted_output = "9600kg")).await;
    let v = s.verify().await;
    let f = v.assert_fails("yield_out_of_bounds", Some(s.chain.roasting.index));
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("960‰") && message.contains("780–880‰"),
        "{f}"
    );
    v.assert_only(&["yield_out_of_bounds"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_below_the_minimum_fails() {
    let s = Scene::new(knobs(|k| k.farmgate_price = "USD 1.79/lb")).await;
    let v = s.verify().await;
    let f = v.assert_fails("price_below_minimum", Some(s.chain.harvest.index));
    let expected = "USD 1.79/lb, is below the policy's minimum of USD 1.80/lb";
    assert!(f["message"].as_str().unwrap().contains(expected), "{f}");
    v.assert_only(&["price_below_minimum"]);
    assert_eq!(
        v.report["chain"]["journey"][0]["farmgate"]["meets_minimum"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_receipt_fails_when_required() {
    let s = Scene::new(knobs(|k| k.importer_receipt = false)).await;
    let v = s.verify().await;
    let f = v.assert_fails("receipt_missing", Some(s.chain.export.index));
    let expected =
        "Solidaridad Coffee Importers has not confirmed receiving 12,000 kg green coffee";
    assert!(f["message"].as_str().unwrap().starts_with(expected), "{f}");
    v.assert_only(&["receipt_missing"]);

    // Not required: the export stands on the cooperative's word, and says so.
    let edit = |p: String| p.replace("require_receipts = true", "require_receipts = false");
    let v = s.verify_with(&[GTIN, BATCH], edit).await;
    v.assert_verified();
    assert_eq!(
        v.report["chain"]["journey"][1]["entry"],
        s.chain.export.index
    );
    assert_eq!(
        v.report["chain"]["journey"][1]["assurance"],
        "self_declared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_dispute_is_a_warning() {
    let s = Scene::new(knobs(|k| k.dispute_harvest = true)).await;
    let dispute = s.chain.dispute.expect("the dispute");
    let v = s.verify().await;
    let f = v.assert_warns("open_dispute", Some(dispute.index));
    let message = f["message"].as_str().unwrap();
    assert!(
        message.starts_with("Observatorio Cafetalero disputes the harvest"),
        "{f}"
    );
    assert_eq!(
        v.findings().filter(|f| f["severity"] != "pass").count(),
        1,
        "{}",
        v.out.stdout
    );
    assert_eq!(
        v.report["chain"]["disputes"][0]["disputed_entry"],
        s.chain.harvest.index
    );
}

/// The node keeps the bundle it built for the latest checkpoint, so the same product asked
/// again is not walked again; but a statement logged since is in the next answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_logged_after_a_lookup_is_in_the_next_one() {
    let mut s = Scene::new(knobs(|_| {})).await;
    s.verify().await.assert_verified();
    s.verify().await.assert_verified(); // answered from the node's bundle cache
    let body = proto::statement::Body::Dispute(proto::Dispute {
        entry: s.chain.harvest.id.as_bytes().to_vec(),
        reason: "members report USD 1.60/lb paid at the collection centre".into(),
    });
    let monitor = s.chain.keys.monitor.clone();
    let dispute = s.chain.w.write(&monitor, body, &[]).await;
    s.verify()
        .await
        .assert_warns("open_dispute", Some(dispute.index));
}
