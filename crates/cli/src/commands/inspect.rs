//! `hpn inspect` and `hpn digest`: an image's manifest, config and summary
//! read from any endpoint, nothing copied.

use std::io::Write as _;

use anyhow::anyhow;
use hpn_oci::Platform;
use hpn_transfer::{EndpointContext, EndpointName, PlatformChoice};

use super::{endpoint_context, platform_choice, transfer_failure};
use crate::args::{DigestArgs, InspectArgs};
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};

/// Prints skopeo-inspect-style JSON, or with `--raw` / `--image-config` the
/// stored bytes exactly.
pub async fn run(args: InspectArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let (name, context) = open(&args.image, settings)?;
    let platform =
        match platform_choice(args.platform.as_deref(), false, settings, PlatformChoice::One(Platform::host()))? {
            PlatformChoice::One(platform) => platform,
            _ => Platform::host(),
        };
    if args.raw {
        let manifest = hpn_transfer::inspect_manifest(&context, &name).await.map_err(transfer_failure)?;
        return write_bytes(&manifest.bytes);
    }
    if args.image_config {
        let config = hpn_transfer::inspect_config(&context, &name, &platform).await.map_err(transfer_failure)?;
        return write_bytes(&config);
    }
    let inspection =
        hpn_transfer::inspect(&context, &name, &platform, !args.no_tags).await.map_err(transfer_failure)?;
    let text = serde_json::to_string_pretty(&inspection)
        .map_err(|error| Failure::new(ExitStatus::General, anyhow!("cannot render the inspection: {error}")))?;
    out!("{text}");
    Ok(ExitStatus::Ok)
}

/// Prints the digest of the top manifest or index, as `crane digest` does.
pub async fn digest(args: DigestArgs, settings: &Settings) -> Result<ExitStatus, Failure> {
    let (name, context) = open(&args.image, settings)?;
    let manifest = hpn_transfer::inspect_manifest(&context, &name).await.map_err(transfer_failure)?;
    out!("{}", manifest.digest);
    Ok(ExitStatus::Ok)
}

fn open(image: &str, settings: &Settings) -> Result<(EndpointName, EndpointContext), Failure> {
    let name = image.parse::<EndpointName>().map_err(|error| Failure::new(ExitStatus::BadArguments, anyhow!(error)))?;
    let context = endpoint_context(settings, name.uses_registry())?;
    Ok((name, context))
}

/// The bytes as they are: no newline added, so `| sha256sum` gives the digest.
fn write_bytes(bytes: &[u8]) -> Result<ExitStatus, Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitStatus::Ok),
        // A reader that closed the pipe has what it wanted.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitStatus::Ok),
        Err(error) => Err(Failure::new(ExitStatus::General, anyhow!("cannot write to stdout: {error}"))),
    }
}
