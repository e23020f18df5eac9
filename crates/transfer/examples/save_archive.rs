//! Save images from a registry into one archive that `docker load` and
//! `podman load` accept, through a store that keeps each shared layer once.
//!
//! ```sh
//! cargo run -p hpn-transfer --example save_archive -- /tmp/store images.tar 127.0.0.1:5000/team/app:1
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use hpn_archive::ArchiveCompression;
use hpn_fs::Durability;
use hpn_registry::{ClientOptions, RegistryClient};
use hpn_store::Store;
use hpn_transfer::{ArchiveOptions, CopyJob, EngineOptions, NoReport, RegistrySource, SaveOutput};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: save_archive STORE_DIR ARCHIVE IMAGE...";
    let store_dir = args.next().ok_or(usage)?;
    let archive = PathBuf::from(args.next().ok_or(usage)?);
    let images = args.map(|image| image.parse()).collect::<Result<Vec<_>, _>>()?;

    let report = hpn_transfer::save(
        RegistrySource::new(RegistryClient::new(ClientOptions::default())?),
        Arc::new(Store::open(store_dir.as_ref())?),
        &CopyJob::same_names(images),
        SaveOutput::OneArchive(archive),
        ArchiveOptions::new(ArchiveCompression::None, Durability::Buffered),
        EngineOptions::default(),
        Arc::new(NoReport),
    )
    .await?;
    for result in &report.results {
        match result {
            Ok(outcome) => println!("saved {}", outcome.digest),
            Err(error) => eprintln!("failed: {error}"),
        }
    }
    for archive in &report.archives {
        println!("{} ({} bytes)", archive.path.display(), archive.size);
    }
    Ok(())
}
