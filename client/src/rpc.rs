//! A thin gRPC client for a Fairtrail node. It returns what the node said; checking it is
//! the caller's job with [`crate::receipt`], [`crate::checkpoint`] and [`crate::merkle`].

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto;
use crate::proto::ledger_service_client::LedgerServiceClient;
use crate::proto::provenance_service_client::ProvenanceServiceClient;

/// The node address used when none is given.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:50051";
/// Messages this client accepts from a node (a provenance bundle can be large).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{url} is not a node address (try http://127.0.0.1:50051)")]
    BadUrl {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot reach the node at {url}; is fairtrail-node running there?")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("TLS to {url}: {reason}")]
    Tls { url: String, reason: String },
    #[error("the node refused: {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
}

impl From<tonic::Status> for RpcError {
    fn from(s: tonic::Status) -> Self {
        RpcError::Status {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

impl RpcError {
    /// The gRPC code, when the node answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            RpcError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A connection to a node.
#[derive(Clone)]
pub struct NodeClient {
    pub ledger: LedgerServiceClient<Channel>,
    pub url: String,
}

impl NodeClient {
    /// Connects to `url`. An `https://` node is checked against the certificate authority in
    /// the PEM file named by `FAIRTRAIL_CA_CERT` (the CLI's `--ca-cert`), else the web's roots.
    pub async fn connect(url: &str) -> Result<Self, RpcError> {
        let ca = std::env::var_os("FAIRTRAIL_CA_CERT").map(std::path::PathBuf::from);
        Self::connect_with_ca(url, ca.as_deref()).await
    }

    /// Connects to `url`, trusting `ca` (a PEM file) for an `https://` node, or the web's
    /// roots when `None`.
    pub async fn connect_with_ca(
        url: &str,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, RpcError> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|source| RpcError::BadUrl {
                url: url.to_owned(),
                source,
            })?
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let tls = match ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| RpcError::Tls {
                        url: url.to_owned(),
                        reason: format!("cannot read the CA certificate {}: {e}", path.display()),
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|source| RpcError::BadUrl {
                    url: url.to_owned(),
                    source,
                })?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| RpcError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let ledger = LedgerServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(NodeClient {
            ledger,
            url: url.to_owned(),
        })
    }

    /// A client of the node's `ProvenanceService`, on a connection of its own to the same
    /// URL (so that `NodeClient` keeps its fields).
    pub async fn provenance(&self) -> Result<ProvenanceServiceClient<Channel>, RpcError> {
        Ok(ProvenanceServiceClient::new(channel(&self.url).await?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// The provenance bundle of a product or a lot, as the node sends it (unchecked: see
    /// [`crate::bundle::Bundle`] and [`crate::verify::verify_bundle`]).
    pub async fn get_provenance(
        &self,
        subject: proto::get_provenance_request::Subject,
    ) -> Result<proto::ProvenanceBundle, RpcError> {
        let response = self
            .provenance()
            .await?
            .get_provenance(proto::GetProvenanceRequest {
                subject: Some(subject),
            })
            .await?
            .into_inner();
        response.bundle.ok_or_else(|| RpcError::Status {
            code: tonic::Code::Internal,
            message: "the node answered without a bundle".into(),
        })
    }

    pub async fn submit(
        &mut self,
        envelope: proto::Envelope,
    ) -> Result<proto::SubmitResponse, RpcError> {
        Ok(self
            .ledger
            .submit(proto::SubmitRequest {
                envelope: Some(envelope),
            })
            .await?
            .into_inner())
    }

    pub async fn checkpoint(&mut self) -> Result<proto::GetCheckpointResponse, RpcError> {
        Ok(self
            .ledger
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await?
            .into_inner())
    }

    pub async fn entry(
        &mut self,
        key: proto::get_entry_request::Key,
    ) -> Result<proto::Entry, RpcError> {
        let response = self
            .ledger
            .get_entry(proto::GetEntryRequest { key: Some(key) })
            .await?
            .into_inner();
        response.entry.ok_or_else(|| RpcError::Status {
            code: tonic::Code::Internal,
            message: "the node answered without an entry".into(),
        })
    }

    pub async fn inclusion_proof(
        &mut self,
        leaf: proto::get_inclusion_proof_request::Leaf,
        tree_size: u64,
    ) -> Result<proto::GetInclusionProofResponse, RpcError> {
        Ok(self
            .ledger
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                leaf: Some(leaf),
                tree_size,
            })
            .await?
            .into_inner())
    }

    pub async fn consistency_proof(
        &mut self,
        from_size: u64,
        to_size: u64,
    ) -> Result<proto::GetConsistencyProofResponse, RpcError> {
        Ok(self
            .ledger
            .get_consistency_proof(proto::GetConsistencyProofRequest { from_size, to_size })
            .await?
            .into_inner())
    }
}

/// Connects to a node (as [`NodeClient::connect`] does).
async fn channel(url: &str) -> Result<Channel, RpcError> {
    Endpoint::from_shared(url.to_owned())
        .map_err(|source| RpcError::BadUrl {
            url: url.to_owned(),
            source,
        })?
        .connect_timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|source| RpcError::Connect {
            url: url.to_owned(),
            source,
        })
}
