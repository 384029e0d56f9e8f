//! Keys: an old key refused after its rotation; a lost key recovered by guardians.

use fairtrail_client::keys::PublicKey;
use fairtrail_client::proto;
use tonic::Code;

use super::{reship, Scene};
use crate::util::assert_status;
use crate::util::chain::Knobs;
use crate::util::verdict::Verdict;
use crate::util::writer::{key, pk, receipt, rotation, Logged, Writer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_key_is_refused_after_its_rotation() {
    let mut s = Scene::new(Knobs::default()).await;
    let (importer, roaster, new_key) = (
        s.chain.keys.importer.clone(),
        s.chain.keys.roaster.clone(),
        key(18),
    );
    let rotated = s
        .chain
        .w
        .write(&importer, rotation(&new_key, false), &[&new_key])
        .await;

    // 1. The old key may not sign for the importer any more; the refusal names the rotation.
    let old = s
        .chain
        .w
        .try_write(&importer, reship(&s.chain, "500kg"), &[])
        .await;
    let expected = format!(
        "key {} was rotated away at entry {}",
        pk(&importer),
        rotated.index
    );
    assert_status(old, Code::FailedPrecondition, &expected);

    // 2. The new key ships what the old one could not; the verifier follows the rotation,
    //    and the product, shipped under the old key before the rotation, still verifies.
    let shipped = s
        .chain
        .w
        .write(&new_key, reship(&s.chain, "500kg"), &[])
        .await;
    s.chain
        .w
        .write(&roaster, receipt(&shipped, "500kg"), &[])
        .await;
    let v = s
        .verify_with(&["--lot", &shipped.lot(0).to_string()], |p| p)
        .await;
    v.assert_verified();
    assert_importer_keys(&v, &pk(&importer), &pk(&new_key), &rotated);
    s.verify().await.assert_verified();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_recovered_by_guardians_replaces_the_lost_key() {
    let mut s = Scene::new(Knobs::default()).await;
    let keys = &s.chain.keys;
    let (lost, new_key) = (pk(&keys.importer), key(19));
    let recovery = |signers: &[&ed25519_dalek::SigningKey]| {
        Writer::envelope(&lost, rotation(&new_key, true), signers)
    };

    // 1. One guardian is not enough (the importer named three, two of whom must sign), and
    //    a participant who is not a guardian does not count.
    let one = recovery(&[&new_key, &keys.coop, &keys.monitor]);
    let need = "key recovery: 1 distinct signatures of the participant's guardians, 2 needed";
    let refused = s.chain.w.submit(one).await;
    assert_status(refused, Code::FailedPrecondition, need);

    // 2. Two guardians recover the identity; the lost key is refused from then on.
    let two = recovery(&[&new_key, &keys.coop, &keys.roaster]);
    let recovered = s.chain.w.submit(two).await.expect("the recovery is logged");
    let (importer, roaster) = (keys.importer.clone(), keys.roaster.clone());
    let stolen = s
        .chain
        .w
        .try_write(&importer, reship(&s.chain, "500kg"), &[])
        .await;
    let expected = format!("key {lost} was rotated away at entry {}", recovered.index);
    assert_status(stolen, Code::FailedPrecondition, &expected);

    // 3. The new key speaks for the importer: the node says so, and the verifier accepts
    //    the guardians' recovery.
    let shipped = s
        .chain
        .w
        .write(&new_key, reship(&s.chain, "500kg"), &[])
        .await;
    s.chain
        .w
        .write(&roaster, receipt(&shipped, "500kg"), &[])
        .await;
    let request = proto::GetParticipantRequest {
        public_key: lost.as_bytes().to_vec(),
    };
    let answer = s
        .provenance()
        .await
        .get_participant(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.current_key, pk(&new_key).as_bytes());
    let v = s
        .verify_with(&["--lot", &shipped.lot(0).to_string()], |p| p)
        .await;
    v.assert_verified();
    assert_importer_keys(&v, &lost, &pk(&new_key), &recovered);
}

/// Asserts the report shows the importer's identity moving from `old` to `new` at `moved`.
#[track_caller]
fn assert_importer_keys(v: &Verdict, old: &PublicKey, new: &PublicKey, moved: &Logged) {
    let importer = v.report["chain"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Solidaridad Coffee Importers")
        .expect("the importer is a participant");
    let keys = importer["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{importer}");
    assert_eq!(keys[0]["key"], old.to_string());
    assert_eq!(keys[0]["retired_at_entry"], moved.index);
    assert_eq!(keys[1]["key"], new.to_string());
    assert_eq!(keys[1]["from_entry"], moved.index);
}
