//! `hpn serve`: the store or archives as a read-only registry until Ctrl-C
//! or SIGTERM. Startup and warnings go to stderr, the access log to stdout
//! (one JSON object a line with --json).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hpn_serve::{AccessRecord, AccessSink, Limits, ServeError, ServeOptions, Server, Source, TlsFiles};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::ServeArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

pub async fn run(args: ServeArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let source =
        if args.inputs.is_empty() { Source::Store(settings.store_root.clone()) } else { Source::Archives(args.inputs) };
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let options = ServeOptions {
        keep_host: args.keep_host,
        tls,
        htpasswd: args.htpasswd,
        limits: Limits {
            max_connections: args.max_connections as usize,
            head_timeout: Duration::from_secs(args.header_timeout),
            ..Limits::default()
        },
        access_log: (!settings.quiet).then(|| access_log(settings.json)),
    };
    let server = Server::bind(source, args.addr, options).await.map_err(failure)?;
    for collision in server.collisions() {
        eprintln!(
            "hpn serve: {} and {} would both be {}; serving {}, use --keep-host to serve both under their hosts",
            collision.kept, collision.hidden, collision.served_as, collision.kept
        );
    }
    let repositories = server.repositories();
    let tags: usize = repositories.iter().map(|(_, tags)| tags).sum();
    eprintln!(
        "hpn serve: {} repositories ({tags} tags) from {}, listening on {scheme}://{}",
        repositories.len(),
        server.location(),
        server.local_addr()
    );
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|error| Failure::new(ExitStatus::Runtime, anyhow::anyhow!("cannot watch for SIGTERM: {error}")))?;
    let (stop_sender, stop) = tokio::sync::oneshot::channel();
    let stopped = async {
        let _ = stop.await;
    };
    let signals = async move {
        let status = tokio::select! {
            _ = tokio::signal::ctrl_c() => ExitStatus::Interrupted,
            _ = terminate.recv() => ExitStatus::Ok,
        };
        let _ = stop_sender.send(());
        status
    };
    let (served, status) = tokio::join!(server.run(stopped), signals);
    served.map_err(failure)?;
    eprintln!("hpn serve: stopped");
    Ok(status)
}

fn failure(error: ServeError) -> Failure {
    let status = match &error {
        ServeError::Store(_) | ServeError::Archive(_) | ServeError::Read { .. } => ExitStatus::Filesystem,
        ServeError::Tls { .. } | ServeError::Htpasswd { .. } => ExitStatus::Config,
        ServeError::Bind { .. } => {
            return Failure::new(ExitStatus::Runtime, anyhow::anyhow!("{error}; choose another address with --addr"));
        }
        ServeError::Accept(_) => ExitStatus::Network,
        _ => ExitStatus::General,
    };
    Failure::new(status, error)
}

/// One line per request on stdout: the common log format's fields, or JSON.
fn access_log(json: bool) -> AccessSink {
    Box::new(move |record: &AccessRecord<'_>| {
        let seconds = record.elapsed.as_secs_f64();
        if json {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            crate::print_line(serde_json::json!({
                "time": now,
                "remote": record.peer.to_string(),
                "user": record.user,
                "method": record.method,
                "target": record.target,
                "status": record.status,
                "bytes": record.bytes,
                "seconds": seconds,
            }));
        } else {
            out!(
                "{} {} \"{} {}\" {} {} {seconds:.3}s",
                record.peer,
                record.user.unwrap_or("-"),
                record.method,
                record.target,
                record.status,
                record.bytes
            );
        }
    })
}
