//! Copy one image between any two endpoints, named as skopeo names them:
//! `docker://REF`, `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
//! `docker-archive:FILE[:REF]`, or `store:REF` (the store in `HPN_EXAMPLE_STORE`,
//! default `./store`).
//!
//! ```sh
//! cargo run -p hpn-transfer --example copy_any -- docker://127.0.0.1:5000/team/app:1 oci:/tmp/layout
//! ```

use std::sync::Arc;

use hpn_fs::Durability;
use hpn_registry::{ClientOptions, RegistryClient};
use hpn_transfer::{EndpointContext, EndpointName, EngineOptions, NoReport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, destination] = args.as_slice() else {
        return Err("usage: copy_any SOURCE DESTINATION".into());
    };
    let (source, destination): (EndpointName, EndpointName) = (source.parse()?, destination.parse()?);
    let store = std::env::var_os("HPN_EXAMPLE_STORE").unwrap_or_else(|| "store".into());
    let context = EndpointContext::new(store.into(), Durability::Buffered)
        .with_registry(RegistryClient::new(ClientOptions::default())?);

    let report =
        hpn_transfer::copy(&source, &destination, &context, EngineOptions::default(), Arc::new(NoReport)).await?;
    let outcome = report.outcome?;
    println!("{} → {destination}: {}", report.image, outcome.digest);
    if let Some(archive) = report.archive {
        println!("wrote {} ({} bytes)", archive.path.display(), archive.size);
    }
    Ok(())
}
