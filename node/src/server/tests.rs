//! The disk reserve at the sequencer: a node whose disk fills refuses new statements while it
//! answers those already logged, never lets a commit write into the reserve, and takes new
//! statements again once space is freed, without a restart. Free space is faked; everything
//! else (the log, the index, the sequencer) is real.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fairtrail_client::{envelope, proto, statement};

use super::{Node, Started};
use crate::config::Settings;
use crate::diskspace::{commit_cost, entry_cost, DiskGuard, Space};
use crate::metrics::Metrics;
use crate::sequencer::{Accepted, SubmitError};

const MIB: u64 = 1024 * 1024;

/// The free space the fake measurement reports.
static FREE: AtomicU64 = AtomicU64::new(100 * MIB);

fn fake(_: &Path) -> std::io::Result<Space> {
    Ok(Space {
        bytes: FREE.load(Ordering::SeqCst),
        inodes: None,
    })
}

fn signed(key: &SigningKey, body: proto::statement::Body) -> proto::Envelope {
    let statement = proto::Statement {
        issuer: key.verifying_key().to_bytes().to_vec(),
        issued_at_ms: 1_700_000_000_000,
        references: Vec::new(),
        remark: String::new(),
        body: Some(body),
    };
    envelope::sign(statement::encode(&statement), &[key])
}

fn declaration(key: &SigningKey) -> proto::Envelope {
    signed(
        key,
        proto::statement::Body::ParticipantDeclaration(proto::ParticipantDeclaration {
            name: "Cooperativa del disco lleno".into(),
            roles: vec![proto::Role::Producer as i32],
            country: "HN".into(),
            ..Default::default()
        }),
    )
}

fn harvest(key: &SigningKey, lot_code: &str) -> proto::Envelope {
    let grams = |amount| proto::Quantity {
        amount,
        unit: proto::Unit::Gram as i32,
    };
    signed(
        key,
        proto::statement::Body::Harvest(proto::Harvest {
            commodity: "coffee".into(),
            quantity: Some(grams(69_000)),
            harvested_from_ms: 1_690_000_000_000,
            harvested_until_ms: 1_695_000_000_000,
            country: "HN".into(),
            region: "Marcala, La Paz".into(),
            farmgate_price: Some(proto::Price {
                currency: "USD".into(),
                minor_units: 450,
                per: Some(grams(1000)),
            }),
            premium: None,
            farmer_count: 12,
            lot_code: lot_code.to_owned(),
        }),
    )
}

fn is_disk_full(answer: Option<&Result<Accepted, SubmitError>>) -> bool {
    matches!(answer, Some(Err(SubmitError::DiskFull(m))) if m.contains("disk is nearly full"))
}

fn is_new(answer: Option<&Result<Accepted, SubmitError>>) -> bool {
    matches!(answer, Some(Ok(a)) if !a.existing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_stops_new_statements_and_space_freed_lets_them_in() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = Settings {
        data_dir: Some(dir.path().to_owned()),
        ..Settings::default()
    }
    .resolve()
    .expect("the default settings");
    let node = Node::open(&config).expect("a new data directory opens");
    let disk = DiskGuard::with_measure(&node.dirs, 1, fake);
    let metrics = Arc::new(Metrics::default());
    let Started {
        sequencer,
        handle,
        store,
        ..
    } = node
        .start_with_disk(64, metrics.clone(), &config.limits, disk)
        .expect("the sequencer starts");
    let paused = || metrics.submissions_paused.load(Ordering::Relaxed);
    let free = || metrics.disk_free_bytes.load(Ordering::Relaxed);
    let size = || store.snapshot().size;

    let key = SigningKey::from_bytes(&[42; 32]);
    let declared = handle.submit(declaration(&key)).await.expect("declared");
    let logged = harvest(&key, "A");
    let first = handle.submit(logged.clone()).await.expect("room for it");
    assert_eq!((paused(), free()), (0, 100 * MIB));

    // Below the reserve: the logged statement is answered, the new one refused, nothing
    // appended.
    FREE.store(MIB / 2, Ordering::SeqCst);
    let answers = handle
        .submit_all(vec![logged.clone(), harvest(&key, "B")])
        .await;
    match answers.first() {
        Some(Ok(again)) => {
            assert!(again.existing);
            assert_eq!(again.receipt.index, first.receipt.index);
        }
        other => panic!("the logged statement was not answered: {other:?}"),
    }
    assert!(is_disk_full(answers.get(1)), "{answers:?}");
    assert_eq!((paused(), free()), (1, MIB / 2));
    assert_eq!(size(), 2);

    // Space freed: taken at once, by the same sequencer.
    FREE.store(100 * MIB, Ordering::SeqCst);
    let taken = handle
        .submit(harvest(&key, "B"))
        .await
        .expect("taken once space is freed");
    assert!(!taken.existing);
    assert_eq!(taken.receipt.index, 2);
    assert_eq!((paused(), free()), (0, 100 * MIB));

    // Room above the reserve for the commit and one entry, not for two: a commit does not
    // write into the reserve. A commit is charged the partial bundle (the three leaves
    // logged so far, written again when the bundle completes) and a hash tile.
    let partial: u64 = [&declared, &first, &taken]
        .iter()
        .map(|a| a.receipt.leaf.len() as u64 + 2)
        .sum();
    let leaf_len = first.receipt.leaf.len();
    FREE.store(
        MIB + commit_cost(partial) + entry_cost(leaf_len) + entry_cost(leaf_len) / 2,
        Ordering::SeqCst,
    );
    let answers = handle
        .submit_all(vec![harvest(&key, "C"), harvest(&key, "D")])
        .await;
    assert!(is_new(answers.first()), "{answers:?}");
    assert!(is_disk_full(answers.get(1)), "{answers:?}");
    assert_eq!(paused(), 1, "an entry of the largest size would not fit");
    assert_eq!(size(), 4);

    // A statement the rules refuse gets their answer, disk or no disk.
    let unknown = SigningKey::from_bytes(&[43; 32]);
    match handle.submit(harvest(&unknown, "E")).await {
        Err(SubmitError::Rejected(e)) => assert!(e.to_string().contains("declared"), "{e}"),
        other => panic!("an undeclared producer's harvest: {other:?}"),
    }

    FREE.store(100 * MIB, Ordering::SeqCst);
    let taken = handle
        .submit(harvest(&key, "D"))
        .await
        .expect("taken once space is freed");
    assert_eq!(taken.receipt.index, 4);
    assert_eq!(paused(), 0);

    drop(handle);
    sequencer.join();
}
