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
    /// Credentials for the registries of this command, as skopeo takes them (asks for the
    /// password on a terminal when it is left out); beats every auth file
    #[arg(long, global = true, value_name = "USER[:PASSWORD]")]
    pub creds: Option<CredsFlag>,
    /// Auth file to read credentials from (and login/logout to write), instead of
    /// $REGISTRY_AUTH_FILE, podman's auth.json and ~/.docker/config.json
    #[arg(long, global = true, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
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

/// `--creds USER[:PASSWORD]`; its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct CredsFlag {
    pub username: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for CredsFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredsFlag").field("username", &self.username).finish_non_exhaustive()
    }
}

impl std::str::FromStr for CredsFlag {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (username, password) = match text.split_once(':') {
            Some((username, password)) => (username, Some(password.to_owned())),
            None => (text, None),
        };
        if username.is_empty() {
            return Err("the user name is empty".to_owned());
        }
        Ok(Self { username: username.to_owned(), password })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull images from their registries into the store
    #[command(after_help = PULL_EXAMPLES)]
    Pull(PullArgs),
    /// Pull images and write them as archives that docker load and podman load accept
    #[command(after_help = SAVE_EXAMPLES)]
    Save(SaveArgs),
    /// Read archives (docker save, hpn save, skopeo, crane, OCI) into the store
    #[command(after_help = LOAD_EXAMPLES)]
    Load(LoadArgs),
    /// Push images from the store or straight from archives to a registry
    #[command(after_help = PUSH_EXAMPLES)]
    Push(PushArgs),
    /// Copy images between any two places: registry, store, archive file, OCI layout directory
    #[command(after_help = COPY_EXAMPLES)]
    Copy(CopyArgs),
    /// Inspect and maintain the store
    #[command(subcommand, after_help = STORE_EXAMPLES)]
    Store(StoreCommand),
    /// Check archives offline: re-hash every blob and check every image is complete
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
    /// Print hpn's version
    Version,
    /// Show an image's digest, platform, layers, environment and labels without pulling it
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Print the digest of an image's manifest or index (what `IMAGE@DIGEST` pins)
    #[command(after_help = DIGEST_EXAMPLES)]
    Digest(DigestArgs),
    /// List the tags of a repository in a registry
    #[command(after_help = TAGS_EXAMPLES)]
    Tags(TagsArgs),
    /// List the repositories of a registry (its /v2/_catalog)
    #[command(after_help = CATALOG_EXAMPLES)]
    Catalog(CatalogArgs),
    /// Give an image in a registry another tag, without moving any blob
    #[command(after_help = TAG_EXAMPLES)]
    Tag(TagArgs),
    /// Delete an image's manifest from a registry (every tag pointing at it goes too)
    #[command(after_help = DELETE_EXAMPLES)]
    Delete(DeleteArgs),
    /// Check credentials against a registry and save them where docker and podman read them
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// Remove the saved credentials of a registry
    #[command(after_help = LOGOUT_EXAMPLES)]
    Logout(LogoutArgs),
    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Serve the store, or archive files in place, read-only as a registry (docker pull, skopeo, podman)
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
}

const PULL_EXAMPLES: &str = "Examples:
  hpn pull nginx:1.25 alpine
  hpn pull -f images.txt --all-platforms
  hpn pull --pull missing -f images.txt   (only what the store lacks)
  hpn pull --mirror docker.io=harbor.local/dockerhub-proxy nginx";
const SAVE_EXAMPLES: &str = "Examples:
  hpn save -f images.txt -o images.tar
  hpn save nginx:1.25 -o nginx.tar.zst   (compressed as the name says)
  hpn save -f images.txt --save-mode 2   (one archive per image in ./images/)
  hpn save nginx:1.25 -o - | docker load
  hpn save -f images.txt -o images.tar --created 2024-05-01T00:00:00Z   (dated, still byte-reproducible)
  hpn save --dry-run -f images.txt -o images.tar
  hpn save -f images.txt -o update.tar --since site-inventory.json   (only what the site lacks)";
const LOAD_EXAMPLES: &str = "Examples:
  hpn load -i images.tar
  hpn load -i docker-save.tar -i skopeo.tar
  hpn load --load-mode 2   (every archive in ./images/)";
const PUSH_EXAMPLES: &str = "Examples:
  hpn push -f images.txt -r harbor.site:8443 --push-mode 2 -p prod
  hpn push -i images.tar -r registry.local:5000
  hpn push --dry-run -i images.tar -r registry.local:5000";
const COPY_EXAMPLES: &str = "Examples:
  hpn copy docker://src:5000/team/app:1 docker://dst:5000/team/app:1 --all-platforms
  hpn copy store:nginx:1.25 oci:/srv/layout:nginx:1.25
  hpn copy docker-archive:app.tar registry.local/app:1
  hpn copy -f images.txt -r registry.local/mirror      # every listed image, at once, registry to registry";
const STORE_EXAMPLES: &str = "Examples:
  hpn store ls
  hpn store rm nginx:1.25 && hpn store gc
  hpn store verify
  hpn store inventory -o site-inventory.json   (carry it back for hpn save --since)";
const VERIFY_EXAMPLES: &str = "Examples:
  hpn verify images.tar
  hpn --json verify bundle.tar docker-save.tar";
const SERVE_EXAMPLES: &str = "Examples:
  hpn serve   (the store on 127.0.0.1:5000)
  hpn serve -i bundle.tar --addr 0.0.0.0:5000 --htpasswd /etc/hpn/htpasswd --tls-cert c.pem --tls-key k.pem";
const INSPECT_EXAMPLES: &str = "Examples:
  hpn inspect nginx:1.25
  hpn inspect --platform linux/arm64 docker://quay.io/org/app:2
  hpn inspect --raw store:nginx:1.25 | jq .
  hpn inspect --image-config oci-archive:images.tar:nginx:1.25";
const DIGEST_EXAMPLES: &str = "Examples:
  hpn digest nginx:1.25
  hpn digest docker-archive:app.tar";
const TAGS_EXAMPLES: &str = "Examples:
  hpn tags nginx
  hpn tags --omit-digest-tags localhost:5000/team/app";
const CATALOG_EXAMPLES: &str = "Examples:
  hpn catalog localhost:5000
  hpn --json catalog harbor.example.com";
const TAG_EXAMPLES: &str = "Examples:
  hpn tag localhost:5000/team/app:1.4.2 stable";
const DELETE_EXAMPLES: &str = "Examples:
  hpn delete localhost:5000/team/app@sha256:…
  hpn delete --yes localhost:5000/team/app:old   (resolves the tag, deletes its manifest)";
const LOGIN_EXAMPLES: &str = "Examples:
  hpn login harbor.example.com -u alice
  echo \"$TOKEN\" | hpn login ghcr.io -u alice --password-stdin
  hpn --authfile ./auth.json login localhost:5000 -u ci";
const LOGOUT_EXAMPLES: &str = "Examples:
  hpn logout harbor.example.com";
const COMPLETIONS_EXAMPLES: &str = "Examples:
  hpn completions bash > /etc/bash_completion.d/hpn
  hpn completions zsh > \"${fpath[1]}/_hpn\"
  hpn completions fish > ~/.config/fish/completions/hpn.fish";

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// docker://REF (or a bare REF), store:REF, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF]
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print the manifest or index exactly as stored, nothing else
    #[arg(long, conflicts_with = "image_config")]
    pub raw: bool,
    /// Print the image config exactly as stored, nothing else (skopeo's `inspect --config`;
    /// hpn's --config names its config file)
    #[arg(long)]
    pub image_config: bool,
    /// The platform of a multi-platform image to describe [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Do not list the repository's tags (one request fewer; some registries refuse it)
    #[arg(long)]
    pub no_tags: bool,
}

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The image, in the forms `hpn inspect` takes
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository: nginx, quay.io/org/app, localhost:5000/team/app
    #[arg(value_name = "REPOSITORY")]
    pub repository: String,
    /// Hide the sha256-… tags signatures and attestations are stored under
    #[arg(long)]
    pub omit_digest_tags: bool,
    /// Tags asked for per request; the registry may send fewer [default: the registry's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub page_size: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The registry: localhost:5000, harbor.example.com
    #[arg(value_name = "HOST[:PORT]")]
    pub registry: String,
    /// Repositories asked for per request; the registry may send fewer [default: the registry's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub page_size: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to tag: REGISTRY/REPOSITORY:TAG or @DIGEST
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The new tag, in the same repository
    #[arg(value_name = "NEW_TAG")]
    pub new_tag: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The image: REGISTRY/REPOSITORY@DIGEST, or a tag, which is resolved to its digest first
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Do not ask for confirmation (needed when stdin is not a terminal)
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: harbor.example.com, localhost:5000 [default: docker.io]
    #[arg(value_name = "HOST[:PORT]", default_value = "docker.io")]
    pub registry: String,
    /// User name [default: asked on a terminal, or from --creds]
    #[arg(short, long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password (or access token) from stdin, the first line
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry [default: docker.io]
    #[arg(value_name = "HOST[:PORT]", default_value = "docker.io")]
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archives to check (docker save, hpn save, skopeo, OCI; `-` reads one from stdin)
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Also check each bill of contents' signature with this P-256 public key (PEM); a missing or
    /// wrong signature fails
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the images in the store, with their size and what removing each would free
    Ls,
    /// Remove images from the store by name, with the signatures, SBOMs and attestations attached to
    /// them alone; `hpn store gc` then frees their blobs
    Rm {
        /// Names as `hpn store ls` shows them, or as given to pull (nginx:1)
        #[arg(value_name = "REF", required = true)]
        refs: Vec<String>,
    },
    /// Re-hash every blob and check every image's manifests, configs and layers are present
    Verify,
    /// Remove blobs no image needs (refused while another hpn process uses the store)
    Gc,
    /// Write what the store holds (images, intact blobs) for `hpn save --since` to ship only the rest
    Inventory {
        /// Where to write it (replaced whole, never left half-written); stdout without it or with `-`
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ImageSelection {
    /// Image references (nginx, nginx:1.25, host:5000/team/app@sha256:…)
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// File listing one image a line; blank lines and # comments are skipped (repeatable; - is stdin)
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
    #[command(flatten)]
    pub referrers: ReferrerArgs,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ReferrerArgs {
    /// Leave signatures, SBOMs and attestations behind (cosign's sha256-<hex>.sig/.att/.sbom tags
    /// and OCI referrers, which travel by default)
    #[arg(long, conflicts_with = "referrers_type")]
    pub no_referrers: bool,
    /// Carry only attachments of this artifact type (repeatable), e.g. application/spdx+json or
    /// application/vnd.dev.cosign.simplesigning.v1+json for cosign signatures
    #[arg(long = "referrers-type", value_name = "ARTIFACT_TYPE")]
    pub referrers_type: Vec<String>,
}

impl ReferrerArgs {
    /// Which attachments travel.
    pub fn policy(&self) -> hpn_transfer::AttachmentPolicy {
        if self.no_referrers {
            hpn_transfer::AttachmentPolicy::none()
        } else {
            hpn_transfer::AttachmentPolicy::only(self.referrers_type.clone())
        }
    }
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
    /// Cut the -o archive into volumes NAME.001.tar, NAME.002.tar, … of at most SIZE bytes each
    /// (K, M, G: powers of 1024); an image that fits in one volume lies whole in one, which loads alone
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = parse_volume_size)]
    pub split: Option<u64>,
    /// A differential bundle: leave out what these earlier bundles (any volume, any archive format) or
    /// `hpn store inventory` files say the far side holds (repeatable; needs -o)
    #[arg(long, value_name = "PREVIOUS", requires = "output")]
    pub since: Vec<PathBuf>,
    /// Sign each bill of contents with this ECDSA P-256 private key (unencrypted PEM, PKCS#8 or
    /// SEC1); the signature goes beside it, as hpn-contents.json.sig
    #[arg(long, value_name = "KEY.pem")]
    pub sign_key: Option<PathBuf>,
    /// Record TIME as the archive's creation time: in the bill of contents (`created`) and as the
    /// mtime of every entry. RFC 3339 (2024-05-01T12:00:00Z) or seconds since 1970 (@1714564800).
    /// Without it entries have mtime 0 and no time is recorded, so the same images give the same bytes
    #[arg(long, value_name = "TIME", env = settings::CREATED.env, value_parser = parse_creation_time)]
    pub created: Option<hpn_archive::CreationTime>,
    #[command(flatten)]
    pub policy: PullPolicyArgs,
    #[command(flatten)]
    pub referrers: ReferrerArgs,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

/// A creation time for `--created` (or `SOURCE_DATE_EPOCH`), with an example of each form.
fn parse_creation_time(text: &str) -> Result<hpn_archive::CreationTime, String> {
    hpn_archive::CreationTime::parse(text)
        .map_err(|reason| format!("{reason}; give e.g. --created 2024-05-01T12:00:00Z or --created @1714564800"))
}

/// A volume size: bytes, or a number with K, M or G (powers of 1024; `KiB`,
/// `MB` and the like read the same).
fn parse_volume_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a size: give bytes, or a number with K, M or G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{text:?} has an unknown unit: use K, M or G (powers of 1024)")),
    };
    let size = number.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))?;
    if size == 0 {
        return Err("a volume size of 0 holds nothing".to_owned());
    }
    Ok(size)
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
    /// File listing one image a line (repeatable; - is stdin)
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
    #[command(flatten)]
    pub referrers: ReferrerArgs,
    /// Print what would be copied (source → destination, blobs new and already there, bytes) and
    /// write nothing: no store directory, no archive, no upload
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// SOURCE DESTINATION, each docker://REF (or a bare REF), store:REF, oci:DIR[:REF],
    /// oci-archive:FILE[:REF] or docker-archive:FILE[:REF] (a registry destination needs a full
    /// name); with -r, the images to copy into that registry
    #[arg(value_name = "SOURCE DESTINATION | IMAGE")]
    pub endpoints: Vec<String>,
    /// Copy every image given (and listed with -f) straight from its registry into this one, at
    /// once, named as `hpn push -r` names them; nothing goes through the store
    #[arg(short = 'r', long, value_name = "HOST[:PORT][/PATH]", conflicts_with = "compress")]
    pub registry: Option<String>,
    /// File listing one image a line to copy into -r's registry (repeatable; - is stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE", requires = "registry")]
    pub files: Vec<PathBuf>,
    /// Target project for --push-mode 2 [env: HPN_PROJECT; config: project; default: the image's own]
    #[arg(short = 'p', long, value_name = "PROJECT", requires = "registry")]
    pub project: Option<String>,
    /// With -r: 1 = registry/image:tag, 2 = registry/project/image:tag [config: modes.push_mode; default 1]
    #[arg(long, value_name = "MODE", requires = "registry", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub push_mode: Option<u8>,
    /// Platform to take from multi-platform images [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Copy whole indexes with every platform
    #[arg(long)]
    pub all_platforms: bool,
    /// Compress an archive destination as a whole
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub compress: Option<Compression>,
    #[command(flatten)]
    pub referrers: ReferrerArgs,
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; anything but loopback makes the images reachable from other machines
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5000")]
    pub addr: std::net::SocketAddr,
    /// Serve these archives (docker, hpn, skopeo, OCI) or OCI layout directories, read in place,
    /// instead of the store (repeatable)
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Serve names with their registry host (docker.io/library/nginx) instead of the path alone
    /// (library/nginx), when names of two registries collide
    #[arg(long)]
    pub keep_host: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require HTTP Basic auth by this htpasswd file of bcrypt entries (htpasswd -B)
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Connections served at once; more are refused with 429
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// Seconds a client may take to send a request head (slow clients are cut off)
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
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
    fn created_takes_rfc3339_or_epoch_seconds_and_names_the_flag_with_an_example_when_wrong() {
        let created = |value: &str| match Cli::try_parse_from(["hpn", "save", "nginx", "--created", value]) {
            Ok(Cli { command: Command::Save(args), .. }) => Ok(args.created.map(|time| time.unix_seconds())),
            Ok(_) => unreachable!("parsed as save"),
            Err(error) => Err(error),
        };
        assert_eq!(created("2024-05-01T12:00:00Z").unwrap(), Some(1_714_564_800));
        assert_eq!(created("@1714564800").unwrap(), Some(1_714_564_800));
        let error = created("last tuesday").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let message = error.to_string();
        assert!(message.contains("--created") && message.contains("--created @1714564800"), "{message}");
    }

    #[test]
    fn output_and_save_mode_exclude_each_other() {
        let parsed = Cli::try_parse_from(["hpn", "save", "nginx", "-o", "a.tar", "--save-mode", "2"]);
        assert_eq!(parsed.unwrap_err().kind(), clap::error::ErrorKind::ArgumentConflict);
        let parsed = Cli::try_parse_from(["hpn", "save", "--save-mode", "4", "nginx"]);
        assert!(parsed.is_err());
    }

    #[test]
    fn volume_sizes_take_bytes_or_powers_of_1024_and_need_an_output() {
        assert_eq!(parse_volume_size("4096"), Ok(4096));
        assert_eq!(parse_volume_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_volume_size("3m"), Ok(3 << 20));
        assert_eq!(parse_volume_size("4GiB"), Ok(4 << 30));
        assert!(parse_volume_size("0").is_err());
        assert!(parse_volume_size("1.5G").is_err());
        assert!(parse_volume_size("2T").unwrap_err().contains("unknown unit"));
        assert!(parse_volume_size("99999999999999G").is_err());
        let parsed = Cli::try_parse_from(["hpn", "save", "nginx", "--split", "1G"]);
        assert_eq!(parsed.unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn creds_flag_splits_at_the_first_colon_and_hides_the_password() {
        let cli = Cli::try_parse_from(["hpn", "tags", "r/a", "--creds", "alice:pa:ss"]).unwrap();
        let creds = cli.global.creds.unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_deref()), ("alice", Some("pa:ss")));
        assert!(!format!("{creds:?}").contains("pa:ss"));
        let cli = Cli::try_parse_from(["hpn", "tags", "r/a", "--creds", "bob"]).unwrap();
        assert_eq!(cli.global.creds.unwrap().password, None);
        assert!(Cli::try_parse_from(["hpn", "tags", "r/a", "--creds", ":x"]).is_err());
    }
}
