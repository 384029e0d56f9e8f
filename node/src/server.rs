//! Opening a node's data directory (lock, log key, origin, tiles, index) and serving it:
//! gRPC with health and reflection, graceful shutdown that drains the sequencer.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::entry::Leaf;
use fairtrail_client::envelope::{verify_batch, Envelope};
use fairtrail_client::keys::{
    generate_signing_key, read_signing_key, write_new_file, write_signing_key, KeyFileError,
};
use fairtrail_client::merkle;
use fairtrail_client::note::NoteSigner;
use fairtrail_client::proto;
use fairtrail_client::rules::records::{key, prefix};
use fairtrail_client::rules::{self, Overlay, Position, RuleError};
use fairtrail_client::statement::Statement;
use tokio::net::TcpListener;

use crate::config::{check_origin, Config, Limits, DEFAULT_ORIGIN};
use crate::diskspace::DiskGuard;
use crate::http::{self, page::PageCache, HttpState};
use crate::index::Index;
use crate::ledger::Ledger;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::provenance::{Provenance, ProvenanceRpc};
use crate::sequencer::{Guards, Sequencer, SequencerHandle};
use crate::tiles::{Snapshot, TileStore, TileWriter};

const KEY_FILE: &str = "log-key.pem";
const ORIGIN_FILE: &str = "origin";
const LOCK_FILE: &str = "LOCK";
/// Bundles can be larger than requests: allow answers up to this size.
const MAX_BUNDLE_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// An open data directory, recovered and ready to serve.
pub struct Node {
    pub store: Arc<TileStore>,
    pub index: Index,
    pub signer: NoteSigner,
    writer: TileWriter,
    /// Held for the node's life: a second node on the same directory would corrupt it.
    lock: fs::File,
    /// Where the log and its indexes live, for the disk reserve.
    dirs: Vec<PathBuf>,
}

/// Reads (or, for a new data directory, creates) the log key and origin. Safe to race with
/// another process doing the same: each file appears whole, and the first one written wins.
pub fn log_signer(config: &Config) -> anyhow::Result<NoteSigner> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
    set_private(dir);
    let key_path = dir.join(KEY_FILE);
    let key = if key_path.exists() {
        read_signing_key(&key_path)?
    } else {
        match write_signing_key(&key_path, &generate_signing_key()) {
            Ok(()) | Err(KeyFileError::Exists { .. }) => read_signing_key(&key_path)?,
            Err(e) => return Err(e.into()),
        }
    };
    let origin_path = dir.join(ORIGIN_FILE);
    let stored = match fs::read_to_string(&origin_path) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => anyhow::bail!("cannot read {}: {e}", origin_path.display()),
    };
    let origin = match (stored, &config.origin) {
        (Some(stored), Some(wanted)) if &stored != wanted => anyhow::bail!(
            "this log's origin is {stored:?}, fixed when it was created; --origin says {wanted:?}. \
             Drop --origin, or use another --data-dir for a new log"
        ),
        (Some(stored), _) => stored,
        (None, wanted) => {
            let origin = wanted.clone().unwrap_or_else(|| DEFAULT_ORIGIN.to_owned());
            check_origin(&origin)?;
            match write_new_file(&origin_path, format!("{origin}\n").as_bytes(), 0o600) {
                Ok(()) => origin,
                // Another process created the log first: its origin stands.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return log_signer(config);
                }
                Err(e) => anyhow::bail!("cannot write {}: {e}", origin_path.display()),
            }
        }
    };
    Ok(NoteSigner::new(&origin, key)?)
}

#[cfg(unix)]
fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn set_private(_dir: &Path) {}

fn lock(dir: &Path) -> anyhow::Result<fs::File> {
    let path: PathBuf = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own, for as long as we hold the File.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            anyhow::bail!(
                "another fairtrail-node is using {}; stop it first",
                dir.display()
            );
        }
    }
    Ok(file)
}

impl Node {
    /// Opens the data directory and brings it to a consistent state after any crash: tiles
    /// beyond the checkpoint are dropped, and the index is replayed from the log.
    pub fn open(config: &Config) -> anyhow::Result<Node> {
        fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
        })?;
        let lock = lock(&config.data_dir)?;
        let signer = log_signer(config)?;
        let (store, mut writer, checkpoint) = TileStore::open(
            &config.data_dir.join("log"),
            &signer.verifier(),
            config.tile_cache,
        )?;
        if checkpoint.is_none() {
            // A new log: its first checkpoint is the empty tree's.
            let note = Checkpoint {
                origin: signer.name().to_owned(),
                size: 0,
                root: merkle::empty_root(),
                extensions: vec![],
            }
            .sign(&signer)?;
            writer.commit(note, merkle::empty_root())?;
        }
        let index = Index::open_with(&config.data_dir.join("index"), config.index)?;
        reconcile(&store, &index)?;
        let dirs = std::iter::once(config.data_dir.join("log"))
            .chain(Index::directories(&config.data_dir.join("index")))
            .collect();
        Ok(Node {
            store,
            index,
            signer,
            writer,
            lock,
            dirs,
        })
    }

    /// Starts the sequencer over this node's log.
    pub fn start(
        self,
        queue: usize,
        metrics: Arc<Metrics>,
        limits: &Limits,
    ) -> anyhow::Result<Started> {
        let disk = DiskGuard::new(&self.dirs, limits.disk_reserve_mb);
        self.start_with_disk(queue, metrics, limits, disk)
    }

    /// [`Node::start`], with the disk reserve watched by `disk`.
    pub(crate) fn start_with_disk(
        self,
        queue: usize,
        metrics: Arc<Metrics>,
        limits: &Limits,
        disk: DiskGuard,
    ) -> anyhow::Result<Started> {
        let verifier_key = self.signer.verifier().to_text();
        let (sequencer, handle) = Sequencer::start(
            self.writer,
            self.index.clone(),
            self.signer,
            queue,
            metrics,
            Guards {
                admission: limits.admission.clone(),
                per_key: RateLimiter::new(
                    limits.rate_per_key,
                    limits.rate_per_key.saturating_mul(5),
                ),
                disk,
            },
        )?;
        Ok(Started {
            sequencer,
            handle,
            store: self.store,
            index: self.index,
            verifier_key,
            lock: self.lock,
        })
    }
}

/// A node whose sequencer runs.
pub struct Started {
    pub sequencer: Sequencer,
    pub handle: SequencerHandle,
    pub store: Arc<TileStore>,
    pub index: Index,
    pub verifier_key: String,
    /// The data directory's `LOCK`: to be held until the sequencer has stopped.
    pub lock: fs::File,
}

/// Brings the state level with the log: first the statement-id and leaf-hash indexes (they
/// depend on the log alone), then the ledger state, replaying through the rules the entries
/// it has not applied (after a crash, each may lag the log; neither leads it).
fn reconcile(store: &TileStore, index: &Index) -> anyhow::Result<()> {
    reconcile_hashes(store, index)?;
    let snapshot = store.snapshot();
    let mut applied = index.applied()?;
    if applied > snapshot.size {
        tracing::warn!(
            applied,
            size = snapshot.size,
            "the index is ahead of the log; rebuilding it"
        );
        index.clear_state()?;
        applied = 0;
    }
    if applied < snapshot.size {
        tracing::info!(
            from = applied,
            to = snapshot.size,
            "replaying the log into the index"
        );
    }
    while applied < snapshot.size {
        let (end, decoded) = leaves_from(store, &snapshot, applied)?;
        // The log on disk is checked against its signed root, not against its signatures:
        // check those too, so that state is never built from an entry nobody signed.
        let mut checked: Vec<(u64, &Leaf, Checked)> = Vec::new();
        let mut to_verify = Vec::new();
        for (i, leaf) in &decoded {
            match Envelope::try_from(leaf.envelope.clone()) {
                Ok(e) => to_verify.push((*i, leaf, e)),
                Err(e) => checked.push((*i, leaf, Err(e.to_string()))),
            }
        }
        let (meta, envelopes): (Vec<(u64, &Leaf)>, Vec<Envelope>) =
            to_verify.into_iter().map(|(i, l, e)| ((i, l), e)).unzip();
        for ((i, leaf), verified) in meta.into_iter().zip(verify_batch(envelopes)) {
            let outcome = verified.map_err(|e| e.to_string()).and_then(|v| {
                let envelope = v.into_envelope();
                Statement::decode(&envelope)
                    .map(|s| (envelope, s))
                    .map_err(|e| e.to_string())
            });
            checked.push((i, leaf, outcome));
        }
        checked.sort_by_key(|(i, _, _)| *i);
        let mut state = Overlay::new(index);
        let mut leaves = Vec::new();
        for (i, leaf, outcome) in checked {
            leaves.push((leaf.hash, i));
            replay(&mut state, leaf, i, outcome)?;
        }
        index.apply(state.into_writes(), &leaves, end)?;
        applied = end;
    }
    index.flush()?;
    Ok(())
}

/// Brings the statement-id and leaf-hash indexes level with the log. The first copy of a
/// statement keeps its index, as when it was sequenced.
fn reconcile_hashes(store: &TileStore, index: &Index) -> anyhow::Result<()> {
    let snapshot = store.snapshot();
    let (ids, leaves) = index.hashes_applied();
    if ids > snapshot.size || leaves > snapshot.size {
        tracing::warn!(
            ids,
            leaves,
            size = snapshot.size,
            "the hash indexes are ahead of the log; rebuilding them"
        );
        index.clear_hashes()?;
    }
    let (ids, leaves) = index.hashes_applied();
    let mut applied = ids.min(leaves);
    if applied < snapshot.size {
        tracing::info!(
            from = applied,
            to = snapshot.size,
            "replaying the log into the hash indexes"
        );
    }
    while applied < snapshot.size {
        let (end, decoded) = leaves_from(store, &snapshot, applied)?;
        let entries: Vec<_> = decoded
            .into_iter()
            .map(|(i, leaf)| (leaf.statement_id, leaf.hash, i))
            .collect();
        index.apply_hashes(&entries, end)?;
        applied = end;
    }
    Ok(())
}

/// The leaves from entry `from` to the end of its bundle (or of the snapshot), decoded, and
/// where they end: replay reads the log a bundle at a time.
fn leaves_from(
    store: &TileStore,
    snapshot: &Snapshot,
    from: u64,
) -> anyhow::Result<(u64, Vec<(u64, Leaf)>)> {
    let n = from / 256;
    let bundle = store.bundle(snapshot, n)?;
    let end = ((n + 1) * 256).min(snapshot.size);
    let mut decoded = Vec::with_capacity(end.saturating_sub(from) as usize);
    for i in from..end {
        let leaf = bundle
            .get((i - n * 256) as usize)
            .ok_or_else(|| anyhow::anyhow!("entry {i} missing from its bundle"))?;
        let leaf = Leaf::decode(leaf.to_vec()).map_err(|e| anyhow::anyhow!("entry {i}: {e}"))?;
        decoded.push((i, leaf));
    }
    Ok((end, decoded))
}

/// A logged entry's envelope and statement once checked again at start, or why not.
type Checked = Result<(Envelope, Statement), String>;

/// Re-applies one logged entry whose envelope has been checked (`outcome`). An entry that is
/// unsigned, malformed, or refused by the rules is reported (the auditor explains it) and
/// leaves no state but its statement index.
fn replay(
    state: &mut Overlay<'_>,
    leaf: &Leaf,
    index: u64,
    outcome: Checked,
) -> anyhow::Result<()> {
    let at = Position {
        index,
        integrated_at_ms: leaf.integrated_at_ms,
    };
    let result = outcome.and_then(|(e, s)| match rules::apply(state, &e, &s, at) {
        Err(RuleError::State(err)) => Ok(Err(anyhow::anyhow!("entry {index}: {err}"))),
        Err(err) => Err(err.to_string()),
        Ok(()) => Ok(Ok(())),
    });
    match result {
        Ok(inner) => inner,
        Err(reason) => {
            tracing::error!(index, %reason, "a logged entry fails its checks on replay");
            // It is in the log all the same: it can be read by its id, and resubmitting it
            // must not append it twice. A duplicate never takes over the first copy's index.
            if rules::statement_index(&*state, &leaf.statement_id)
                .map_err(|e| anyhow::anyhow!("entry {index}: {e}"))?
                .is_none()
            {
                state.put(
                    key(prefix::STATEMENT, &[leaf.statement_id.as_bytes()]),
                    index.to_be_bytes().to_vec(),
                );
            }
            Ok(())
        }
    }
}

/// Reads a TLS certificate chain and private key (PEM), refusing a key file that group or
/// others can read: it is as secret as the log key.
pub fn read_tls_files(cert: &Path, key: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(key)
            .map_err(|e| anyhow::anyhow!("cannot read TLS key {}: {e}", key.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "TLS key {} can be read by other users (mode {:o}); run `chmod 600 {}`",
                key.display(),
                mode & 0o777,
                key.display()
            );
        }
    }
    let cert_pem = fs::read(cert)
        .map_err(|e| anyhow::anyhow!("cannot read TLS certificate {}: {e}", cert.display()))?;
    let key_pem =
        fs::read(key).map_err(|e| anyhow::anyhow!("cannot read TLS key {}: {e}", key.display()))?;
    Ok((cert_pem, key_pem))
}

/// The listeners a node serves on, bound before it starts (so a caller can bind port 0
/// and learn the port).
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

/// Serves the node until `shutdown` completes or the sequencer fails, then drains: in-flight
/// requests finish and the sequencer commits its last batch.
/// `on_ready` runs once the data directory is open and recovered, just before serving.
pub async fn run(
    config: Config,
    listeners: Listeners,
    on_ready: impl FnOnce(),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = Node::open(&config)?;
    on_ready();
    let metrics = Arc::new(Metrics::default());
    let Started {
        sequencer,
        handle,
        store,
        index,
        verifier_key,
        lock: _lock,
    } = node.start(config.queue, metrics.clone(), &config.limits)?;
    // `_lock` is held to the end of this function: until the sequencer has stopped and the
    // index is flushed, no other node may open this directory.
    let Sequencer { threads, fatal } = sequencer;

    let limits = &config.limits;
    let per_connection = RateLimiter::new(
        limits.rate_per_connection,
        limits.rate_per_connection.saturating_mul(2),
    );
    let ledger = Ledger::new(
        handle,
        store.clone(),
        index.clone(),
        verifier_key.clone(),
        per_connection,
    );
    let ledger = proto::ledger_service_server::LedgerServiceServer::new(ledger)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let provenance = Arc::new(Provenance::new(store.clone(), index.clone()));
    let provenance_rpc = proto::provenance_service_server::ProvenanceServiceServer::new(
        ProvenanceRpc(provenance.clone()),
    )
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(MAX_BUNDLE_MESSAGE_BYTES.max(config.max_message_bytes));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::ledger_service_server::LedgerServiceServer<Ledger>>()
        .await;
    health_reporter
        .set_serving::<proto::provenance_service_server::ProvenanceServiceServer<ProvenanceRpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let public_url = match &config.public_url {
        Some(u) => u.clone(),
        None => format!("http://{}", listeners.http.local_addr()?),
    };
    let http_state = Arc::new(HttpState {
        store: store.clone(),
        provenance,
        metrics,
        pages: PageCache::new(config.policy.clone(), verifier_key, public_url),
    });

    // One stop signal for both servers: the caller's shutdown, or a sequencer failure.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let fatal_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let fatal_slot = fatal_error.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutting down: draining the sequencer"),
            Ok(e) = fatal => {
                if let Ok(mut slot) = fatal_slot.lock() { *slot = Some(e); }
            }
        }
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // TLS files are read (and their permissions checked) before anything is served.
    let tls = match &config.tls {
        Some((cert, key)) => Some(read_tls_files(cert, key)?),
        None => None,
    };
    let http_tls = match &tls {
        Some((cert, key)) => Some(crate::tls::server_config(cert, key)?),
        None => None,
    };
    let mut builder = tonic::transport::Server::builder();
    // Gathered writes suit the HTTP/2 encoder, the only writer of a plain-text connection
    // (tonic serves HTTP/2 alone here; see `crate::gather`).
    let gather = tls.is_none();
    if let Some((cert, key)) = tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let http = tokio::spawn(http::serve(
        listeners.http,
        http_tls,
        http_state,
        stopped(stop_rx.clone()),
    ));
    builder
        .timeout(limits.request_timeout)
        .max_concurrent_streams(Some(limits.max_streams))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .add_service(health)
        .add_service(reflection)
        .add_service(ledger)
        .add_service(provenance_rpc)
        .serve_with_incoming_shutdown(
            crate::limits::limit_connections(listeners.grpc, limits.max_connections, gather),
            stopped(stop_rx),
        )
        .await?;
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "the HTTP server stopped with an error");
    }

    // The server has dropped every handle to the sequencer: it finishes and stops.
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await?;
    index.flush()?;
    if let Some(e) = fatal_error.lock().ok().and_then(|s| s.clone()) {
        anyhow::bail!("the sequencer stopped after a storage failure: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
