//! Pull images from a registry into a store directory.
//!
//! ```sh
//! cargo run -p hpn-transfer --example pull_into_store -- /tmp/store 127.0.0.1:5000/team/app:1
//! ```
//! Loopback registries are spoken to over plain HTTP; any other host over HTTPS.

use std::sync::Arc;

use hpn_registry::{ClientOptions, RegistryClient};
use hpn_store::Store;
use hpn_transfer::{CopyJob, Engine, EngineOptions, NoReport, RegistrySource, StoreDestination};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let store_dir = args.next().ok_or("usage: pull_into_store STORE_DIR IMAGE...")?;
    let images = args.map(|image| image.parse()).collect::<Result<Vec<_>, _>>()?;

    let engine = Engine::new(
        Arc::new(RegistrySource::new(RegistryClient::new(ClientOptions::default())?)),
        Arc::new(StoreDestination::new(Arc::new(Store::open(store_dir.as_ref())?))),
        EngineOptions::default(),
        Arc::new(NoReport),
    );
    let jobs = CopyJob::same_names(images);
    for (job, result) in jobs.iter().zip(engine.copy_all(&jobs).await) {
        match result {
            Ok(outcome) => println!("{} {} ({} bytes moved)", job.source, outcome.digest, outcome.bytes_transferred),
            Err(error) => eprintln!("{}: {error}", job.source),
        }
    }
    Ok(())
}
