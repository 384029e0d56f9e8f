//! The gRPC `fairtrail.v1.ProvenanceService`: provenance bundles for products and lots, and
//! the participant and lot views, each entry with its inclusion proof against one checkpoint.
//! SPEC.md section "Provenance bundle".
//!
//! Building a bundle walks the sled indexes from the subject upstream: the statement that
//! made each lot, its inputs in turn, back to every harvest; then everything that bears on
//! those entries (declarations and key history of every signer and holder, certifications of
//! them with their revocations and certifiers, receipts of the transfers, disputes of any
//! entry). What the node includes is only a claim: the verifier checks everything it needs.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, TryLockError};

use fairtrail_client::entry::Leaf;
use fairtrail_client::envelope::{Envelope, KnownKeys, StatementId};
use fairtrail_client::gs1;
use fairtrail_client::keys::PublicKey;
use fairtrail_client::proto::{
    self, provenance_service_server::ProvenanceService, statement::Body,
};
use fairtrail_client::rules::records::{
    key, prefix, product_key, IdentityRecord, KeyRecord, LotId, LotRecord,
};
use fairtrail_client::rules::{self, StateRead};
use fairtrail_client::statement::Statement;
use tonic::{Request, Response, Status};

use crate::index::{Index, IndexError};
use crate::tiles::{Snapshot, StoreError, TileStore};

/// The most entries one bundle may hold: a guard against a request that would make the node
/// walk and prove an unbounded graph.
pub const MAX_BUNDLE_ENTRIES: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the provenance of this subject holds more than {MAX_BUNDLE_ENTRIES} entries; ask for a single lot")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("entry {index} cannot be read back: {reason}")]
    Corrupt { index: u64, reason: String },
    #[error("ledger state: {0}")]
    State(String),
}

impl From<rules::RuleError> for ProvenanceError {
    fn from(e: rules::RuleError) -> Self {
        ProvenanceError::State(e.to_string())
    }
}

/// The one place provenance errors become gRPC statuses.
pub fn status(e: ProvenanceError) -> Status {
    match e {
        ProvenanceError::InvalidArgument(m) => Status::invalid_argument(m),
        ProvenanceError::NotFound(m) => Status::not_found(m),
        ProvenanceError::TooLarge => Status::resource_exhausted(e.to_string()),
        other => {
            tracing::error!(error = %other, "internal error building provenance");
            Status::internal("internal error; the node's log has the details")
        }
    }
}

/// What a bundle is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Product(gs1::ProductId),
    Lot(LotId),
}

/// Reads and proves entries of one snapshot, and walks the indexes.
pub struct Provenance {
    store: Arc<TileStore>,
    index: Index,
    bundles: Mutex<BundleCache>,
    /// Keys already found to be valid curve points, so that decoding an entry does not
    /// decompress its signers' and issuer's keys again: the same cooperatives' and traders'
    /// keys sign most entries, and decompressing them was most of a bundle's cost.
    known: Mutex<KnownKeys>,
}

/// Bundles built against the latest checkpoint. A bundle depends on the log alone (the index
/// it is found through reflects every entry of a checkpoint before the checkpoint is
/// published: `sequencer`), so until the log grows the same subject gets the same bundle: a product scanned again and again
/// (a shelf of one coffee) is walked and proven once per checkpoint. A bundle against an
/// older checkpoint is never served: it could miss a revocation logged since.
#[derive(Default)]
struct BundleCache {
    size: u64,
    bundles: HashMap<Subject, Arc<proto::ProvenanceBundle>>,
}

/// Subjects whose bundles are kept for one checkpoint, at most: a flood of distinct subjects
/// cannot grow memory without end (about 16 KB a 10-step chain: 16 MB at most).
const BUNDLES_KEPT: usize = 1024;

/// The most entries of a kept bundle copied for an answer on the request's task (a 10-step
/// chain's has 18); a larger one is copied on the blocking pool.
const COPIED_INLINE: usize = 256;

/// A bundle in the making: the entries to include, and the work still to do.
struct Walk<'a> {
    p: &'a Provenance,
    snapshot: &'a Snapshot,
    entries: BTreeSet<u64>,
    participants: BTreeSet<PublicKey>,
    /// Keys checked by this build, for when another build holds the node-wide ones.
    known: KnownKeys,
}

impl Provenance {
    pub fn new(store: Arc<TileStore>, index: Index) -> Self {
        Provenance {
            store,
            index,
            bundles: Mutex::new(BundleCache::default()),
            known: Mutex::new(KnownKeys::default()),
        }
    }

    /// Reads and decodes entry `index`, checking keys against the node-wide known keys when
    /// no other build holds them, else against `local` (the build's own): concurrent builds
    /// never wait for each other.
    fn load(
        &self,
        snapshot: &Snapshot,
        index: u64,
        local: &mut KnownKeys,
    ) -> Result<(Envelope, Statement), ProvenanceError> {
        let leaf = self.store.leaf(snapshot, index)?;
        let corrupt = |reason: String| ProvenanceError::Corrupt { index, reason };
        let leaf = Leaf::decode(leaf.to_vec()).map_err(|e| corrupt(e.to_string()))?;
        let mut shared = match self.known.try_lock() {
            Ok(guard) => Some(guard),
            // A decode panicked elsewhere: the keys it holds are still valid ones (a key is
            // remembered only once it has passed).
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        let known: &mut KnownKeys = match shared.as_mut() {
            Some(guard) => guard,
            None => local,
        };
        let envelope =
            Envelope::decode_with(leaf.envelope, known).map_err(|e| corrupt(e.to_string()))?;
        let statement =
            Statement::decode_with(&envelope, known).map_err(|e| corrupt(e.to_string()))?;
        Ok((envelope, statement))
    }

    /// The index of a statement, if it is in the snapshot.
    fn index_of(
        &self,
        snapshot: &Snapshot,
        id: &StatementId,
    ) -> Result<Option<u64>, ProvenanceError> {
        Ok(rules::statement_index(&self.index, id)?.filter(|&i| i < snapshot.size))
    }

    fn identity_of(&self, key: &PublicKey) -> Result<Option<PublicKey>, ProvenanceError> {
        let record: Option<KeyRecord> = rules::key_record(&self.index, key)?;
        Ok(record.map(|r| r.identity))
    }

    /// Indexes listed under `prefix` that the snapshot holds (the index may run ahead of the
    /// snapshot by an in-flight commit).
    fn list(&self, snapshot: &Snapshot, prefix: &[u8]) -> Result<Vec<u64>, ProvenanceError> {
        Ok(self
            .index
            .list(prefix)?
            .into_iter()
            .filter(|&i| i < snapshot.size)
            .collect())
    }

    /// The provenance bundle of a product or lot.
    pub fn bundle(&self, subject: &Subject) -> Result<proto::ProvenanceBundle, ProvenanceError> {
        let snapshot = self.store.snapshot();
        if let Some(bundle) = self.cached(subject, snapshot.size) {
            return Ok((*bundle).clone());
        }
        let bundle = self.build(subject, &snapshot)?;
        // The copy is made, and the bundles of an older checkpoint are freed, outside the
        // lock, which request tasks take to look a bundle up ([`Provenance::kept`]).
        let kept = Arc::new(bundle.clone());
        let _dropped = match self.bundles.lock() {
            Ok(mut cache) => {
                let dropped = if cache.size != snapshot.size || cache.bundles.len() >= BUNDLES_KEPT
                {
                    std::mem::take(&mut cache.bundles)
                } else {
                    HashMap::new()
                };
                cache.size = snapshot.size;
                cache.bundles.insert(subject.clone(), kept);
                dropped
            }
            Err(_) => HashMap::new(),
        };
        Ok(bundle)
    }

    /// [`Provenance::bundle`] built afresh, without the bundles kept per checkpoint: what a
    /// request costs when its bundle is not kept (the benchmarks measure both).
    pub fn bundle_uncached(
        &self,
        subject: &Subject,
    ) -> Result<proto::ProvenanceBundle, ProvenanceError> {
        self.build(subject, &self.store.snapshot())
    }

    /// The bundle kept for `subject` against the latest checkpoint, if any (no build).
    pub fn kept(&self, subject: &Subject) -> Option<Arc<proto::ProvenanceBundle>> {
        self.cached(subject, self.store.snapshot().size)
    }

    /// The bundle already built for `subject` against the checkpoint of `size`, if any.
    fn cached(&self, subject: &Subject, size: u64) -> Option<Arc<proto::ProvenanceBundle>> {
        let cache = self.bundles.lock().ok()?;
        if cache.size != size {
            return None;
        }
        cache.bundles.get(subject).cloned()
    }

    /// Walks the indexes from `subject` and proves every entry found against `snapshot`.
    fn build(
        &self,
        subject: &Subject,
        snapshot: &Snapshot,
    ) -> Result<proto::ProvenanceBundle, ProvenanceError> {
        let mut walk = Walk {
            p: self,
            snapshot,
            entries: BTreeSet::new(),
            participants: BTreeSet::new(),
            known: KnownKeys::default(),
        };
        let proto_subject = match subject {
            Subject::Product(product) => {
                let serial = product.serial.as_deref().unwrap_or("");
                let found = self.product(snapshot, &product.gtin, &product.batch, serial)?;
                // A serial belongs to its batch: fall back to the batch's binding.
                let found = match found {
                    Some(i) => Some(i),
                    None if !serial.is_empty() => {
                        self.product(snapshot, &product.gtin, &product.batch, "")?
                    }
                    None => None,
                };
                let binding = found.ok_or_else(|| {
                    ProvenanceError::NotFound(format!(
                        "no product is bound to GTIN {} batch {}",
                        product.gtin, product.batch
                    ))
                })?;
                walk.chain_from(binding)?;
                proto::provenance_bundle::Subject::Product(proto::ProductKey {
                    gtin: product.gtin.clone(),
                    batch: product.batch.clone(),
                    serial: serial.to_owned(),
                })
            }
            Subject::Lot(lot) => {
                // The statement alone is not enough: it must have made this output.
                let record: Option<LotRecord> =
                    rules::get_record(&self.index, &key(prefix::LOT, &[&lot.bytes()]))?;
                let creator = record
                    .map(|r| r.created_at)
                    .filter(|&i| i < snapshot.size)
                    .ok_or_else(|| {
                        ProvenanceError::NotFound(format!("lot {lot} is not in the log"))
                    })?;
                walk.chain_from(creator)?;
                proto::provenance_bundle::Subject::Lot(lot.to_proto())
            }
        };
        walk.context()?;
        self.prove(snapshot, proto_subject, &walk.entries)
    }

    fn product(
        &self,
        snapshot: &Snapshot,
        gtin: &str,
        batch: &str,
        serial: &str,
    ) -> Result<Option<u64>, ProvenanceError> {
        let value = self
            .index
            .get(&product_key(gtin, batch, serial))
            .map_err(|e| ProvenanceError::State(e.to_string()))?;
        Ok(value
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
            .filter(|&i| i < snapshot.size))
    }

    /// Proves `entries` against the snapshot's checkpoint.
    fn prove(
        &self,
        snapshot: &Snapshot,
        subject: proto::provenance_bundle::Subject,
        entries: &BTreeSet<u64>,
    ) -> Result<proto::ProvenanceBundle, ProvenanceError> {
        let mut out = Vec::with_capacity(entries.len());
        for &index in entries {
            let leaf = self.store.leaf(snapshot, index)?;
            let proof = self.store.prove_inclusion(snapshot, index, snapshot.size)?;
            out.push(proto::BundleEntry {
                index,
                leaf: leaf.to_vec(),
                inclusion_proof: proof.iter().map(|h| h.to_vec()).collect(),
            });
        }
        Ok(proto::ProvenanceBundle {
            subject: Some(subject),
            checkpoint: snapshot.checkpoint.clone(),
            entries: out,
        })
    }

    /// A participant's declaration, key history, certifications (with their revocations and
    /// certifiers) and disputes it raised or received.
    pub fn participant(
        &self,
        key: &PublicKey,
    ) -> Result<(proto::ProvenanceBundle, PublicKey), ProvenanceError> {
        let snapshot = self.store.snapshot();
        let identity = self.identity_of(key)?.ok_or_else(|| {
            ProvenanceError::NotFound(format!("{key} has not declared itself in this log"))
        })?;
        let record: IdentityRecord =
            rules::get_record(&self.index, &key_of(prefix::IDENTITY, &identity))?.ok_or_else(
                || ProvenanceError::State(format!("identity {identity} has no record")),
            )?;
        let mut walk = Walk {
            p: self,
            snapshot: &snapshot,
            entries: BTreeSet::new(),
            participants: BTreeSet::new(),
            known: KnownKeys::default(),
        };
        walk.participants.insert(identity);
        walk.context()?;
        let bundle = self.prove(
            &snapshot,
            proto::provenance_bundle::Subject::Participant(key.as_bytes().to_vec()),
            &walk.entries,
        )?;
        Ok((bundle, record.current_key))
    }

    /// A lot, the statement that made it and every statement that consumed it.
    pub fn lot(
        &self,
        lot: &LotId,
    ) -> Result<(proto::ProvenanceBundle, LotRecord), ProvenanceError> {
        let snapshot = self.store.snapshot();
        let record: LotRecord = rules::get_record(&self.index, &key(prefix::LOT, &[&lot.bytes()]))?
            .ok_or_else(|| ProvenanceError::NotFound(format!("lot {lot} is not in the log")))?;
        let mut entries = BTreeSet::new();
        if let Some(i) = self.index_of(&snapshot, &lot.statement)? {
            entries.insert(i);
        }
        entries.extend(self.list(&snapshot, &key(prefix::BY_LOT, &[&lot.bytes()]))?);
        let bundle = self.prove(
            &snapshot,
            proto::provenance_bundle::Subject::Lot(lot.to_proto()),
            &entries,
        )?;
        Ok((bundle, record))
    }
}

fn key_of(p: u8, k: &PublicKey) -> Vec<u8> {
    key(p, &[k.as_bytes()])
}

fn input_lots(body: &Body) -> &[proto::LotInput] {
    match body {
        Body::Transfer(t) => &t.inputs,
        Body::Transformation(t) => &t.inputs,
        Body::ProductBinding(b) => &b.inputs,
        _ => &[],
    }
}

impl Walk<'_> {
    fn add(&mut self, index: u64) -> Result<bool, ProvenanceError> {
        if self.entries.len() >= MAX_BUNDLE_ENTRIES {
            return Err(ProvenanceError::TooLarge);
        }
        Ok(self.entries.insert(index))
    }

    /// The entry at `start` and, transitively, the statements that made every lot it
    /// consumed, with the receipts of transfers on the way.
    fn chain_from(&mut self, start: u64) -> Result<(), ProvenanceError> {
        let mut queue = VecDeque::from([start]);
        while let Some(index) = queue.pop_front() {
            if !self.add(index)? {
                continue;
            }
            let (envelope, statement) = self.p.load(self.snapshot, index, &mut self.known)?;
            for signer in envelope.signers() {
                if let Some(identity) = self.p.identity_of(&signer)? {
                    self.participants.insert(identity);
                }
            }
            if let Body::Transfer(t) = &statement.body {
                if let Ok(recipient) = PublicKey::from_bytes(&t.recipient) {
                    if let Some(identity) = self.p.identity_of(&recipient)? {
                        self.participants.insert(identity);
                    }
                }
                for receipt in self.p.list(
                    self.snapshot,
                    &key(prefix::BY_TRANSFER, &[statement.id.as_bytes()]),
                )? {
                    queue.push_back(receipt);
                }
            }
            for input in input_lots(&statement.body) {
                let Some(lot) = input.lot.as_ref().and_then(|l| LotId::try_from(l).ok()) else {
                    continue;
                };
                if let Some(creator) = self.p.index_of(self.snapshot, &lot.statement)? {
                    queue.push_back(creator);
                }
            }
        }
        Ok(())
    }

    /// Everything that bears on the chain's participants and entries: declarations, key
    /// history, certifications and their revocations and issuers, and disputes.
    fn context(&mut self) -> Result<(), ProvenanceError> {
        let mut certifiers = BTreeSet::new();
        let participants: Vec<PublicKey> = self.participants.iter().copied().collect();
        for identity in &participants {
            self.identity_entries(identity)?;
            for cert in self
                .p
                .list(self.snapshot, &key_of(prefix::BY_SUBJECT, identity))?
            {
                self.add(cert)?;
                let (envelope, statement) = self.p.load(self.snapshot, cert, &mut self.known)?;
                for revocation in self.p.list(
                    self.snapshot,
                    &key(prefix::BY_CERTIFICATION, &[statement.id.as_bytes()]),
                )? {
                    self.add(revocation)?;
                }
                if let Body::Certification(c) = &statement.body {
                    if let Ok(network) = PublicKey::from_bytes(&c.network) {
                        certifiers.extend(self.p.identity_of(&network)?);
                    }
                }
                for signer in envelope.signers() {
                    certifiers.extend(self.p.identity_of(&signer)?);
                }
            }
        }
        for identity in certifiers.difference(&self.participants.clone()) {
            self.identity_entries(identity)?;
        }
        // Disputes of anything in the bundle, and who raised them.
        let ids: Vec<u64> = self.entries.iter().copied().collect();
        for index in ids {
            let (_, statement) = self.p.load(self.snapshot, index, &mut self.known)?;
            for dispute in self.p.list(
                self.snapshot,
                &key(prefix::BY_DISPUTED, &[statement.id.as_bytes()]),
            )? {
                if self.add(dispute)? {
                    let (_, d) = self.p.load(self.snapshot, dispute, &mut self.known)?;
                    if let Some(identity) = self.p.identity_of(&d.issuer)? {
                        self.identity_entries(&identity)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A participant's declaration and key rotations.
    fn identity_entries(&mut self, identity: &PublicKey) -> Result<(), ProvenanceError> {
        let record: Option<IdentityRecord> =
            rules::get_record(&self.p.index, &key_of(prefix::IDENTITY, identity))?;
        if let Some(record) = record {
            if record.declared_at < self.snapshot.size {
                self.add(record.declared_at)?;
            }
        }
        for rotation in self
            .p
            .list(self.snapshot, &key_of(prefix::KEY_HISTORY, identity))?
        {
            self.add(rotation)?;
        }
        Ok(())
    }
}

fn lot_from(r: Option<&proto::LotRef>) -> Result<LotId, ProvenanceError> {
    let r = r.ok_or_else(|| {
        ProvenanceError::InvalidArgument("name a lot (statement id and output)".into())
    })?;
    LotId::try_from(r).map_err(|e| ProvenanceError::InvalidArgument(format!("lot: {e}")))
}

fn product_from(p: &proto::ProductKey) -> Result<gs1::ProductId, ProvenanceError> {
    let serial = if p.serial.is_empty() {
        None
    } else {
        Some(p.serial.as_str())
    };
    gs1::ProductId::new(&p.gtin, &p.batch, serial)
        .map_err(|e| ProvenanceError::InvalidArgument(e.to_string()))
}

/// The gRPC face of [`Provenance`]. Bundle building reads files, so it runs on the blocking
/// pool, off the async workers.
pub struct ProvenanceRpc(pub Arc<Provenance>);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProvenanceError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| status(ProvenanceError::State(e.to_string())))?
        .map_err(status)
}

#[tonic::async_trait]
impl ProvenanceService for ProvenanceRpc {
    async fn get_provenance(
        &self,
        request: Request<proto::GetProvenanceRequest>,
    ) -> Result<Response<proto::GetProvenanceResponse>, Status> {
        let subject = match request.into_inner().subject {
            Some(proto::get_provenance_request::Subject::Product(p)) => {
                Subject::Product(product_from(&p).map_err(status)?)
            }
            Some(proto::get_provenance_request::Subject::Lot(l)) => {
                Subject::Lot(lot_from(Some(&l)).map_err(status)?)
            }
            None => {
                return Err(Status::invalid_argument(
                    "name a product (GTIN and batch) or a lot",
                ))
            }
        };
        // A small bundle kept for the current checkpoint is a lookup and a short copy:
        // answered here, without handing the request to another thread. A build, or the copy
        // of a large bundle, goes to the blocking pool.
        let bundle = match self.0.kept(&subject) {
            Some(kept) if kept.entries.len() <= COPIED_INLINE => (*kept).clone(),
            Some(kept) => blocking(move || Ok((*kept).clone())).await?,
            None => {
                let p = self.0.clone();
                blocking(move || p.bundle(&subject)).await?
            }
        };
        Ok(Response::new(proto::GetProvenanceResponse {
            bundle: Some(bundle),
        }))
    }

    async fn get_participant(
        &self,
        request: Request<proto::GetParticipantRequest>,
    ) -> Result<Response<proto::GetParticipantResponse>, Status> {
        let key = PublicKey::from_bytes(&request.into_inner().public_key)
            .map_err(|e| Status::invalid_argument(format!("public_key: {e}")))?;
        let p = self.0.clone();
        let (bundle, current) = blocking(move || p.participant(&key)).await?;
        Ok(Response::new(proto::GetParticipantResponse {
            bundle: Some(bundle),
            current_key: current.as_bytes().to_vec(),
        }))
    }

    async fn get_lot(
        &self,
        request: Request<proto::GetLotRequest>,
    ) -> Result<Response<proto::GetLotResponse>, Status> {
        let lot = lot_from(request.into_inner().lot.as_ref()).map_err(status)?;
        let p = self.0.clone();
        let (bundle, record) = blocking(move || p.lot(&lot)).await?;
        Ok(Response::new(proto::GetLotResponse {
            bundle: Some(bundle),
            remaining: record.remaining,
            unit: record.unit,
            commodity: record.commodity,
            holder: record.holder.as_bytes().to_vec(),
        }))
    }
}
