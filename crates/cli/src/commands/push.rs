use std::sync::Arc;

use hpn_oci::Reference;
use hpn_transfer::{CopyJob, Engine, PlatformChoice, StoreSource};

use super::{copy_from_archives, engine_options, open_store, platform_choice, registry_destination, reporter, summary};
use crate::args::PushArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::image_list::{ImageList, Rejected};
use crate::summary::Summary;

/// Where images are pushed and how they are renamed on the way: the Go hpn's
/// push modes.
#[derive(Debug, Clone)]
struct PushTarget {
    /// `HOST[:PORT]`.
    registry: String,
    /// A path the user put after the host (`-r harbor.local/mirror`), kept in front.
    prefix: Option<String>,
    /// 1: `registry/image:tag`; 2: `registry/project/image:tag`.
    mode: u8,
    /// Mode 2's project from flag, env or config; else each image's own.
    project: Option<String>,
}

impl PushTarget {
    fn name_for(&self, source: &Reference) -> Result<Reference, String> {
        let image = source.repository().rsplit('/').next().unwrap_or(source.repository());
        let mut path: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        if self.mode == 2 {
            path.push(self.project.as_deref().unwrap_or_else(|| own_project(source)));
        }
        path.push(image);
        Reference::new(&self.registry, &path.join("/"), source.tag(), source.digest().cloned())
            .map_err(|error| format!("cannot name {source} in {}: {error}", self.registry))
    }
}

/// The project an image already belongs to: the first component of its
/// repository path (`team` in `harbor.local/team/app`), `library` when the
/// path has no project (`nginx`, `host:5000/app`).
pub fn own_project(reference: &Reference) -> &str {
    match reference.repository().split_once('/') {
        Some((project, _)) => project,
        None => "library",
    }
}

pub async fn run(args: PushArgs, settings: &Settings) -> Result<Summary, Failure> {
    let registry = args.registry.clone().or_else(|| settings.registry.clone()).ok_or_else(|| {
        Failure::new(
            ExitStatus::BadArguments,
            anyhow::anyhow!("no target registry: pass -r REGISTRY, set HPN_REGISTRY, or put registry: in the config"),
        )
    })?;
    let (host, prefix) = match registry.trim_end_matches('/').split_once('/') {
        Some((host, prefix)) => (host.to_owned(), Some(prefix.to_owned())),
        None => (registry.clone(), None),
    };
    let target = PushTarget {
        registry: host,
        prefix,
        mode: args.push_mode.or(settings.default_push_mode).unwrap_or(1),
        project: args.project.clone().or_else(|| settings.project.clone()),
    };
    let platforms = platform_choice(args.platform.as_deref(), args.all_platforms, settings, PlatformChoice::Available)?;
    let options = engine_options(platforms, settings);
    let destination = Arc::new(registry_destination(settings)?);

    if !args.inputs.is_empty() {
        let wanted = if args.images.is_empty() && args.files.is_empty() {
            None
        } else {
            Some(ImageList::collect(&args.images, &args.files)?.references())
        };
        let run = copy_from_archives(&args.inputs, destination, &options, settings, wanted.as_deref(), |name| {
            target.name_for(name)
        })
        .await;
        return Ok(run.into_summary("push"));
    }

    let mut list = ImageList::collect(&args.images, &args.files)?;
    let mut jobs = Vec::new();
    let mut pushed = Vec::new();
    for image in &list.images {
        match target.name_for(&image.reference) {
            Ok(destination) => {
                jobs.push(CopyJob { index: jobs.len(), source: image.reference.clone(), destination });
                pushed.push(image.reference.clone());
            }
            Err(reason) => {
                list.rejected.push(Rejected { origin: "push target".to_owned(), text: image.written.clone(), reason })
            }
        }
    }
    let engine =
        Engine::new(Arc::new(StoreSource::new(open_store(settings)?)), destination, options, reporter(settings));
    let results = engine.copy_all(&jobs).await;
    Ok(summary("push", pushed, results, list.rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(registry: &str, prefix: Option<&str>, mode: u8, project: Option<&str>) -> PushTarget {
        PushTarget {
            registry: registry.to_owned(),
            prefix: prefix.map(str::to_owned),
            mode,
            project: project.map(str::to_owned),
        }
    }

    fn name(target: &PushTarget, source: &str) -> String {
        target.name_for(&source.parse().unwrap()).unwrap().to_string()
    }

    #[test]
    fn push_modes_name_images_like_the_go_hpn() {
        let simple = target("harbor.local", None, 1, None);
        assert_eq!(name(&simple, "nginx:1.25"), "harbor.local/nginx:1.25");
        assert_eq!(name(&simple, "quay.io/prometheus/alertmanager:v0.30.1"), "harbor.local/alertmanager:v0.30.1");

        let own = target("harbor.local", None, 2, None);
        assert_eq!(name(&own, "nginx:1.25"), "harbor.local/library/nginx:1.25");
        assert_eq!(name(&own, "quay.io/prometheus/alertmanager:v1"), "harbor.local/prometheus/alertmanager:v1");

        let project = target("harbor.local:8443", None, 2, Some("prod"));
        assert_eq!(name(&project, "quay.io/prometheus/alertmanager:v1"), "harbor.local:8443/prod/alertmanager:v1");

        let prefixed = target("harbor.local", Some("mirror"), 1, None);
        assert_eq!(name(&prefixed, "nginx"), "harbor.local/mirror/nginx:latest");

        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(name(&simple, &format!("team/app@{digest}")), format!("harbor.local/app@{digest}"));
        assert!(target("bad host", None, 1, None).name_for(&"nginx".parse().unwrap()).is_err());
    }
}
