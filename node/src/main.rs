//! `fairtrail-node`: parse settings, set up logging, bind, and run until SIGINT or SIGTERM.

use clap::Parser;
use fairtrail_node::config::{Cli, Command};
use fairtrail_node::server;
use tracing_subscriber::EnvFilter;

/// jemalloc, not the C library's allocator. The node allocates on one thread and frees on
/// another all the time (a request is decoded on the runtime, verified, committed, and its
/// receipt built and dropped back on the runtime); glibc's allocator spent a third of the
/// runtime threads' time consolidating and relinking free chunks for that. Measured with the
/// load generator, alternating (BENCHMARKS.md): the node's CPU per streamed entry about 40%
/// lower, resident memory within a few percent.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FAIRTRAIL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairtrail-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.settings.resolve()?;
    match cli.command.unwrap_or(Command::Run) {
        Command::LogKey => {
            println!("{}", server::log_signer(&config)?.verifier().to_text());
            Ok(())
        }
        Command::Run => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let bind = |addr: std::net::SocketAddr| async move {
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
                };
                let grpc = bind(config.listen).await?;
                let http = bind(config.http_listen).await?;
                let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
                tracing::info!(data_dir = %config.data_dir.display(), "fairtrail-node starting");
                let listeners = server::Listeners { grpc, http };
                // Scripts and tests read this line to learn the ports (with --listen ...:0);
                // it comes once the node has recovered its data and is about to serve.
                let ready =
                    move || println!("fairtrail-node listening grpc={grpc_addr} http={http_addr}");
                server::run(config, listeners, ready, shutdown_signal()).await
            })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
