use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings;

/// Daemonless container image transfer: pull, save, load and push images
/// without a Docker daemon.
#[derive(Debug, Parser)]
#[command(name = "hpn", version, about, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Content-addressed store directory [default: ~/.cache/hpn/store]
    #[arg(long, global = true, env = settings::STORE.env, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Config file [default: first of ~/.hpn/config.yaml, /etc/hpn/config.yaml, ./config.yaml]
    #[arg(long, global = true, env = settings::CONFIG.env, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Registry to reach over plain HTTP or unverified TLS (repeatable). Loopback registries need no flag.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// `false`: every registry of this command is reached as with --insecure-registry (skopeo's spelling)
    #[arg(long, global = true, value_name = "BOOL", action = clap::ArgAction::Set, default_value_t = true)]
    pub tls_verify: bool,
    /// Read images under FROM from TO first, e.g. docker.io=harbor.local/dockerhub-proxy (repeatable;
    /// reads only, the image's own registry is tried last)
    #[arg(long = "mirror", global = true, value_name = "FROM=TO")]
    pub mirrors: Vec<String>,
    /// Images transferred at once [default: 4, or parallel.max_workers from the config]
    #[arg(short = 'j', long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Attempts per request before giving up [default: 5]
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: Option<u32>,
    /// Wait until everything written is on the disk (fsync) before reporting success, so a power
    /// loss cannot take it back; slower. Without it hpn leaves flushing to the kernel, as docker
    /// save, skopeo and cp do
    #[arg(long, global = true)]
    pub sync: bool,
    /// No progress and no summary; errors only
    #[arg(short, long, global = true, conflicts_with = "json")]
    pub quiet: bool,
    /// Print the summary as JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The Go hpn's container runtime choice; accepted so its scripts keep working, and unused
    #[arg(long, global = true, hide = true, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// The Go hpn's fallback between runtimes; accepted so its scripts keep working, and unused
    #[arg(long, global = true, hide = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auto_fallback: Option<String>,
}

impl GlobalArgs {
    /// The Go hpn's runtime flags given, as written: hpn reads them to say they do nothing.
    pub fn go_hpn_runtime_flags(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.runtime.is_some() {
            given.push("--runtime");
        }
        if self.auto_fallback.is_some() {
            given.push("--auto-fallback");
        }
        given
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull images from their registries into the store
    Pull(PullArgs),
    /// Pull images and write them as archives that docker load and podman load accept
    Save(SaveArgs),
    /// Read archives (docker save, hpn save, skopeo, crane, OCI) into the store
    Load(LoadArgs),
    /// Push images from the store or straight from archives to a registry
    Push(PushArgs),
    /// Copy images between any two places: registry, store, archive file, OCI layout directory
    Copy(CopyArgs),
    /// Inspect and maintain the store
    #[command(subcommand)]
    Store(StoreCommand),
    /// Check archives offline: re-hash every blob and check every image is complete
    Verify(VerifyArgs),
    /// Print hpn's version
    Version,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archives to check (docker save, hpn save, skopeo, OCI; `-` reads one from stdin)
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the images in the store
    Ls,
    /// Re-hash every blob and check every image's manifests, configs and layers are present
    Verify,
    /// Remove blobs no image needs (refused while another hpn process uses the store)
    Gc,
}

#[derive(Debug, Args)]
pub struct ImageSelection {
    /// Image references (nginx, nginx:1.25, host:5000/team/app@sha256:…)
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// File listing one image a line; blank lines and # comments are skipped (repeatable)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Platform to take from multi-platform images [default: the host's, e.g. linux/amd64]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Take every platform of multi-platform images
    #[arg(long)]
    pub all_platforms: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub selection: ImageSelection,
    #[command(flatten)]
    pub policy: PullPolicyArgs,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PullPolicyArgs {
    /// When to ask the registry about an image the store holds: always (a tag is looked up, changes
    /// fetched), missing (the store's copy is used), never (fail unless the store holds it). A
    /// digest reference the store holds never needs the registry
    #[arg(long = "pull", value_enum, value_name = "POLICY", default_value_t = PullPolicy::Always)]
    pub policy: PullPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    Always,
    Missing,
    Never,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub selection: ImageSelection,
    /// Write every image into this one archive (each shared layer once)
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "save_mode")]
    pub output: Option<PathBuf>,
    /// One archive per image, named like the Go hpn: 1 = ./, 2 = ./images/, 3 = ./images/<project>/
    #[arg(long, value_name = "MODE", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub save_mode: Option<u8>,
    /// Compress the whole archive
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub compress: Option<Compression>,
    #[command(flatten)]
    pub policy: PullPolicyArgs,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Images of the archives to load (default: all of them)
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Archive files to load (repeatable; `-` reads one from stdin)
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Without -i, load every *.tar[.gz|.zst] from: 1 = ./, 2 = ./images/, 3 = ./images/*/ recursively
    #[arg(long, value_name = "MODE", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub load_mode: Option<u8>,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Images to push: from the store, or the images of -i archives to pick (default: all of them)
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// File listing one image a line (repeatable)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Push from these archives instead of the store, without loading them first
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Target registry [env: HPN_REGISTRY; config: registry]
    #[arg(short = 'r', long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,
    /// Target project for --push-mode 2 [env: HPN_PROJECT; config: project; default: the image's own]
    #[arg(short = 'p', long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// 1 = registry/image:tag, 2 = registry/project/image:tag [config: modes.push_mode; default 1]
    #[arg(long, value_name = "MODE", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub push_mode: Option<u8>,
    /// Platform to take from multi-platform images [default: every platform the source has]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Take every platform of multi-platform images
    #[arg(long)]
    pub all_platforms: bool,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: docker://REF (or a bare REF), store:REF, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF]
    pub source: String,
    /// Destination, in the same forms; a registry destination needs a full name
    pub destination: String,
    /// Platform to take from multi-platform images [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Copy whole indexes with every platform
    #[arg(long)]
    pub all_platforms: bool,
    /// Compress an archive destination as a whole
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub compress: Option<Compression>,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn output_and_save_mode_exclude_each_other() {
        let parsed = Cli::try_parse_from(["hpn", "save", "nginx", "-o", "a.tar", "--save-mode", "2"]);
        assert_eq!(parsed.unwrap_err().kind(), clap::error::ErrorKind::ArgumentConflict);
        let parsed = Cli::try_parse_from(["hpn", "save", "--save-mode", "4", "nginx"]);
        assert!(parsed.is_err());
    }
}
