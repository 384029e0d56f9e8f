//! The node's HTTP side, for people and for caches: the GS1 Digital Link resolver and the
//! consumer page, its JSON view, bundle downloads, the latest checkpoint, the log's tiles,
//! Prometheus metrics and a health check. SPEC.md section "HTTP".

pub mod i18n;
pub mod page;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fairtrail_client::gs1::{self, ProductId};

use crate::metrics::Metrics;
use crate::provenance::{Provenance, ProvenanceError, Subject};
use crate::tiles::TileStore;
use i18n::{Lang, Locale};
use page::{PageCache, PageError};

/// What the HTTP handlers share.
pub struct HttpState {
    pub store: Arc<TileStore>,
    pub provenance: Arc<Provenance>,
    pub metrics: Arc<Metrics>,
    pub pages: PageCache,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/01/{gtin}/10/{batch}", get(product))
        .route("/01/{gtin}/10/{batch}/21/{serial}", get(product_serial))
        .route("/bundle/01/{gtin}/10/{batch}", get(bundle))
        .route(
            "/bundle/01/{gtin}/10/{batch}/21/{serial}",
            get(bundle_serial),
        )
        .fallback(not_found)
        .with_state(state)
}

/// Query parameters the pages understand.
#[derive(serde::Deserialize, Default)]
pub struct PageQuery {
    lang: Option<String>,
    format: Option<String>,
}

fn wants_json(headers: &HeaderMap, query: &PageQuery) -> bool {
    if query.format.as_deref() == Some("json") {
        return true;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

fn locale(headers: &HeaderMap, query: &PageQuery) -> Locale {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Locale::choose(query.lang.as_deref(), accept)
}

fn lang(headers: &HeaderMap, query: &PageQuery) -> Lang {
    locale(headers, query).lang
}

async fn home(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let locale = locale(&headers, &q);
    s.metrics.http("other", 200);
    html(StatusCode::OK, page::home(locale, s.store.snapshot().size))
}

async fn not_found(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let lang = lang(&headers, &q);
    s.metrics.http("other", 404);
    error_response(
        StatusCode::NOT_FOUND,
        lang,
        wants_json(&headers, &q),
        lang.t().no_such_page,
    )
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    s.metrics.http("metrics", 200);
    let body = s.metrics.render(s.store.snapshot().size);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn checkpoint(State(s): State<Arc<HttpState>>) -> Response {
    s.metrics.http("checkpoint", 200);
    let snapshot = s.store.snapshot();
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        snapshot.checkpoint.clone(),
    )
        .into_response()
}

/// Serves the log's C2SP tlog-tiles read-only, so mirrors, witnesses and tile clients can
/// read it without gRPC. Only paths of the tlog-tiles shape are served.
async fn tile(State(s): State<Arc<HttpState>>, Path(path): Path<String>) -> Response {
    let Some((kind, n, width)) = crate::tiles::paths::parse(&path) else {
        s.metrics.http("tile", 400);
        return (StatusCode::BAD_REQUEST, "not a tlog-tiles path\n").into_response();
    };
    // Only tiles the latest checkpoint covers are final; anything beyond does not exist yet.
    if !s.store.is_published(kind, n, width) {
        s.metrics.http("tile", 404);
        return (
            StatusCode::NOT_FOUND,
            "no such tile in the published tree\n",
        )
            .into_response();
    }
    // A partial tile is built from the published tree: its file on disk may be reused for
    // another tile as soon as it is superseded. A full tile never changes.
    let read = if width < crate::tiles::tree::TILE_WIDTH {
        let store = s.store.clone();
        tokio::task::spawn_blocking(move || store.partial_tile(kind, n, width))
            .await
            .map_err(|e| e.to_string())
            .and_then(|built| built.map_err(|e| e.to_string()))
            .and_then(|built| built.ok_or_else(|| "not published".to_owned()))
    } else {
        let file = s.store.dir().join("tile").join(&path);
        tokio::fs::read(&file).await.map_err(|e| e.to_string())
    };
    match read {
        Ok(bytes) => {
            s.metrics.http("tile", 200);
            let immutable = width >= crate::tiles::tree::TILE_WIDTH;
            let cache = if immutable {
                "public, max-age=31536000, immutable"
            } else {
                "public, max-age=60"
            };
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) => {
            s.metrics.http("tile", 404);
            (
                StatusCode::NOT_FOUND,
                "no such tile, or it failed its check on disk\n",
            )
                .into_response()
        }
    }
}

async fn product(
    State(s): State<Arc<HttpState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match path {
        Ok(Path((gtin, batch))) => resolve(s, gtin, batch, None, headers, q).await,
        Err(e) => bad_link_path(&s, &headers, &q, &e),
    }
}

async fn product_serial(
    State(s): State<Arc<HttpState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    match path {
        Ok(Path((gtin, batch, serial))) => resolve(s, gtin, batch, Some(serial), headers, q).await,
        Err(e) => bad_link_path(&s, &headers, &q, &e),
    }
}

/// A product link whose segments cannot even be decoded (not UTF-8): the same 400 page (or
/// JSON) as any other malformed link, in the reader's language.
fn bad_link_path(s: &HttpState, headers: &HeaderMap, q: &PageQuery, e: &PathRejection) -> Response {
    let (lang, json) = (lang(headers, q), wants_json(headers, q));
    s.metrics.http(if json { "json" } else { "page" }, 400);
    let message = format!("{} {}", lang.t().bad_link, e.body_text());
    error_response(StatusCode::BAD_REQUEST, lang, json, &message)
}

fn parse_product(
    gtin: &str,
    batch: &str,
    serial: Option<&str>,
) -> Result<ProductId, gs1::Gs1Error> {
    ProductId::new(gtin, batch, serial)
}

/// The Digital Link resolver: the consumer page, or its JSON view.
async fn resolve(
    s: Arc<HttpState>,
    gtin: String,
    batch: String,
    serial: Option<String>,
    headers: HeaderMap,
    q: PageQuery,
) -> Response {
    let locale = locale(&headers, &q);
    let lang = locale.lang;
    let json = wants_json(&headers, &q);
    let route = if json { "json" } else { "page" };
    let product = match parse_product(&gtin, &batch, serial.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            s.metrics.http(route, 400);
            let message = format!("{} {}", lang.t().bad_link, lang.gs1_error(&e));
            return error_response(StatusCode::BAD_REQUEST, lang, json, &message);
        }
    };
    let state = s.clone();
    let rendered =
        tokio::task::spawn_blocking(move || state.pages.get(&state, &product, locale, json)).await;
    let page = match rendered {
        Ok(Ok(page)) => page,
        Ok(Err(PageError::Provenance(ProvenanceError::NotFound(_)))) => {
            s.metrics.http(route, 404);
            return error_response(StatusCode::NOT_FOUND, lang, json, lang.t().unknown_product);
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "rendering a consumer page");
            s.metrics.http(route, 500);
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                json,
                lang.t().internal_error,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering task failed");
            s.metrics.http(route, 500);
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                json,
                lang.t().internal_error,
            );
        }
    };
    let etag = page.etag.clone();
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        s.metrics.http(route, 304);
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        s.metrics.http(route, 200);
        let content_type = if json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        };
        (
            [(header::CONTENT_TYPE, content_type)],
            Body::from(page.body.clone()),
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // A page is fixed for its checkpoint: caches may keep it a minute, then revalidate.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60, stale-while-revalidate=600"),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Language"),
    );
    response
}

async fn bundle(
    State(s): State<Arc<HttpState>>,
    Path((gtin, batch)): Path<(String, String)>,
) -> Response {
    bundle_download(s, gtin, batch, None).await
}

async fn bundle_serial(
    State(s): State<Arc<HttpState>>,
    Path((gtin, batch, serial)): Path<(String, String, String)>,
) -> Response {
    bundle_download(s, gtin, batch, Some(serial)).await
}

/// The provenance bundle as a file for `fairtrail verify --bundle`.
async fn bundle_download(
    s: Arc<HttpState>,
    gtin: String,
    batch: String,
    serial: Option<String>,
) -> Response {
    let product = match parse_product(&gtin, &batch, serial.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            s.metrics.http("bundle", 400);
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let provenance = s.provenance.clone();
    let name = format!(
        "fairtrail-{}-{}.bundle.json",
        product.gtin,
        product
            .batch
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let result =
        tokio::task::spawn_blocking(move || provenance.bundle(&Subject::Product(product))).await;
    match result {
        Ok(Ok(bundle)) => match page::bundle_json(&bundle) {
            Ok(text) => {
                s.metrics.http("bundle", 200);
                let disposition = format!("attachment; filename=\"{name}\"");
                let mut response =
                    ([(header::CONTENT_TYPE, "application/json")], text).into_response();
                if let Ok(v) = HeaderValue::from_str(&disposition) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, v);
                }
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "encoding a bundle");
                s.metrics.http("bundle", 500);
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        },
        Ok(Err(ProvenanceError::NotFound(m))) => {
            s.metrics.http("bundle", 404);
            (StatusCode::NOT_FOUND, format!("{m}\n")).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "building a bundle");
            s.metrics.http("bundle", 500);
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
        Err(_) => {
            s.metrics.http("bundle", 500);
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn error_response(status: StatusCode, lang: Lang, json: bool, message: &str) -> Response {
    if json {
        let body =
            serde_json::json!({ "error": { "status": status.as_u16(), "message": message } });
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    } else {
        html(status, page::error(lang, status.as_u16(), message))
    }
}

/// Serves HTTP on `listener` until `shutdown`. Requests have a deadline, so a slow or stuck
/// client holds a connection only so long.
/// With `tls`, every connection must complete a TLS handshake first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(30),
    ));
    match tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
