use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use hpn_fs::Durability;
use hpn_transfer::{MirrorLocation, Mirrors, PullFromMirror};
use serde::de::DeserializeOwned;

use crate::args::GlobalArgs;
use crate::exit::{ExitStatus, Failure};
use crate::settings::{self, Setting};

pub(crate) const DEFAULT_ATTEMPTS: u32 = 5;

/// Images at once when nothing says otherwise: hpn-transfer's default.
pub(crate) fn default_jobs() -> usize {
    hpn_transfer::Concurrency::default().images
}

/// A config.yaml, kept as YAML and read through the keys of [`settings`]: the
/// Go hpn's (`parallel.max_workers`, `modes.save_mode`,
/// `runtime.retry.max_attempts`, …) plus hpn's own. Keys of the Go hpn's that
/// hpn has no use for (under `proxy`, `logging`, `runtime`) are accepted
/// silently so existing configs keep working; any other key is warned about.
#[derive(Debug, Default)]
struct ConfigFile {
    /// Where it was read from, for error messages; `None` without a file.
    path: Option<PathBuf>,
    yaml: serde_yaml_ng::Value,
    /// Keys the file sets but may not, for where it was found: read as unset.
    withheld: Vec<&'static str>,
}

/// A value type a config key takes, with the words an error uses for it
/// (never a Rust type name).
trait ConfigValue: DeserializeOwned {
    const EXPECTED: &'static str;
}

impl ConfigValue for PathBuf {
    const EXPECTED: &'static str = "a path";
}
impl ConfigValue for String {
    const EXPECTED: &'static str = "a string";
}
impl ConfigValue for Vec<String> {
    const EXPECTED: &'static str = "a list of strings";
}
impl ConfigValue for Vec<ConfigMirror> {
    const EXPECTED: &'static str =
        "a list of mappings with prefix, locations and pull-from-mirror (all or digest-only)";
}
impl ConfigValue for bool {
    const EXPECTED: &'static str = "true or false";
}
impl ConfigValue for f64 {
    const EXPECTED: &'static str = "a number";
}
impl ConfigValue for usize {
    const EXPECTED: &'static str = "a whole number";
}
impl ConfigValue for u64 {
    const EXPECTED: &'static str = "a whole number";
}
impl ConfigValue for u32 {
    const EXPECTED: &'static str = "a whole number up to 4294967295";
}
impl ConfigValue for u8 {
    const EXPECTED: &'static str = "a whole number from 0 to 255";
}

/// A YAML value as an error message shows what was found instead.
fn describe_value(value: &serde_yaml_ng::Value) -> String {
    use serde_yaml_ng::Value;
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("{text:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

impl ConfigFile {
    /// The value of `setting`'s key, `None` if the file does not set it (or
    /// the setting has no key, or the key is withheld from this file).
    fn get<T: ConfigValue>(&self, setting: &Setting) -> anyhow::Result<Option<T>> {
        let Some(key) = setting.key else { return Ok(None) };
        if self.withheld.contains(&key) {
            return Ok(None);
        }
        let invalid = |reason: String| {
            let path = self.path.as_deref().unwrap_or(Path::new("config.yaml"));
            anyhow!("config file {} is not valid: {key}: {reason}", path.display())
        };
        let Some(value) = lookup(&self.yaml, key).map_err(invalid)? else { return Ok(None) };
        if value.is_null() {
            return Ok(None);
        }
        serde_yaml_ng::from_value(value.clone())
            .map(Some)
            .map_err(|_| invalid(format!("expected {}, found {}", T::EXPECTED, describe_value(value))))
    }
}

/// The value at a dotted `key`, `None` if a part of it is absent; an error
/// names the section on the way that is not a mapping.
fn lookup<'a>(yaml: &'a serde_yaml_ng::Value, key: &str) -> Result<Option<&'a serde_yaml_ng::Value>, String> {
    let mut value = yaml;
    for (depth, part) in key.split('.').enumerate() {
        value = match value {
            serde_yaml_ng::Value::Null => return Ok(None),
            serde_yaml_ng::Value::Mapping(mapping) => match mapping.get(part) {
                Some(value) => value,
                None => return Ok(None),
            },
            _ => {
                let section = key.split('.').take(depth).collect::<Vec<_>>().join(".");
                return Err(format!("{section} is not a mapping"));
            }
        };
    }
    Ok(Some(value))
}

/// Where a config file came from. One in the working directory may have been
/// put there by anyone who could write to it (a cloned repository, a shared
/// directory), so it is trusted less than one the user named or keeps in
/// their home or /etc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigOrigin {
    /// Named with `--config` or `HPN_CONFIG`.
    Named,
    /// `~/.hpn/config.yaml` or `/etc/hpn/config.yaml`.
    Trusted,
    /// `./config.yaml`, found without being named.
    WorkingDirectory,
}

/// Settings that lower security or send images elsewhere: a config file found
/// in the working directory sets them only when it is named with `--config`.
const NAMED_CONFIG_ONLY: [&Setting; 4] =
    [&settings::INSECURE_REGISTRIES, &settings::MIRRORS, &settings::REGISTRY, &settings::PROJECT];

/// Sections of the Go hpn's config hpn has no use for; keys under them are
/// not warned about unless they look like a mistyped key hpn reads.
const GO_HPN_SECTIONS: [&str; 3] = ["proxy", "logging", "runtime"];

/// Warnings for the keys of `yaml` that hpn does not read, each with the key
/// it was probably meant to be where one is close.
fn unknown_key_warnings(path: &Path, yaml: &serde_yaml_ng::Value) -> Vec<String> {
    let known: Vec<&str> = settings::ALL.iter().filter_map(|setting| setting.key).collect();
    // A key may be meant for a section too (`paralel` for `parallel`).
    let sections = known.iter().flat_map(|key| key.match_indices('.').map(|(end, _)| &key[..end]));
    let suggestions: Vec<&str> = known.iter().copied().chain(sections).collect();
    let mut unknown = Vec::new();
    collect_unknown_keys(yaml, "", &known, &suggestions, &mut unknown);
    unknown
        .into_iter()
        .map(|(key, suggestion)| {
            let hint = suggestion.map(|known| format!(" (did you mean {known}?)")).unwrap_or_default();
            format!("config file {}: unknown key {key}{hint} is ignored", path.display())
        })
        .collect()
}

fn collect_unknown_keys(
    value: &serde_yaml_ng::Value,
    prefix: &str,
    known: &[&'static str],
    suggestions: &[&'static str],
    unknown: &mut Vec<(String, Option<&'static str>)>,
) {
    let serde_yaml_ng::Value::Mapping(mapping) = value else { return };
    for (name, child) in mapping {
        let name = match name {
            serde_yaml_ng::Value::String(name) => name.clone(),
            other => describe_value(other),
        };
        let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        if known.contains(&key.as_str()) {
            continue;
        }
        let section = format!("{key}.");
        if known.iter().any(|known| known.starts_with(&section)) {
            // A section hpn reads; a non-mapping here is reported when its keys are read.
            collect_unknown_keys(child, &key, known, suggestions, unknown);
            continue;
        }
        let suggestion = closest_key(&key, suggestions);
        let in_go_section = GO_HPN_SECTIONS.iter().any(|go| key == *go || key.starts_with(&format!("{go}.")));
        if in_go_section && suggestion.is_none() {
            if child.is_mapping() {
                collect_unknown_keys(child, &key, known, suggestions, unknown);
            }
            continue;
        }
        unknown.push((key, suggestion));
    }
}

/// The known key or section `key` was most likely meant to be: a small edit
/// away, or the same last part in another section (`max_workers` for
/// `parallel.max_workers`).
fn closest_key(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let leaf = |key: &str| key.rsplit('.').next().unwrap_or_default().to_owned();
    known
        .iter()
        .map(|candidate| {
            let whole = strsim::levenshtein(key, candidate);
            let by_leaf = strsim::levenshtein(&leaf(key), &leaf(candidate));
            (whole.min(by_leaf), *candidate)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Effective settings: flag > `HPN_*` environment > config file > default.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store_root: PathBuf,
    pub jobs: usize,
    /// Concurrent requests per registry host, when not the client's default.
    pub requests_per_host: Option<usize>,
    pub attempts: u32,
    pub insecure_registries: Vec<String>,
    /// `false` (`--tls-verify=false`): every registry is reached as an insecure one.
    pub tls_verify: bool,
    /// Where per-registry CAs and client certificates are looked for.
    pub certs_dirs: Vec<PathBuf>,
    /// Where images are read from before their own registries.
    pub mirrors: std::sync::Arc<Mirrors>,
    /// Whether written files are fsynced before they count as written.
    pub durability: Durability,
    /// The window of the minimum rate: how long a blob body may stay below
    /// it (or send nothing) before it is retried or resumed.
    pub stall_timeout: Option<Duration>,
    /// How long a response head may take.
    pub response_timeout: Option<Duration>,
    /// How long a small body (manifest, config, token) may take in all.
    pub body_timeout: Option<Duration>,
    /// Bytes per second a blob body must average over the stall timeout.
    pub min_transfer_rate: Option<u64>,
    pub default_platform: Option<String>,
    pub default_save_mode: Option<u8>,
    pub default_load_mode: Option<u8>,
    pub default_push_mode: Option<u8>,
    /// Push target, `HOST[:PORT]` optionally followed by a path prefix.
    pub registry: Option<String>,
    pub project: Option<String>,
    pub quiet: bool,
    pub json: bool,
    /// `--creds`: for every registry of the command, before any auth file.
    pub creds: Option<crate::args::CredsFlag>,
    /// `--authfile`: the one auth file to read, and the one login writes.
    pub authfile: Option<PathBuf>,
    /// Images finished so far, for the report when Ctrl-C stops the run.
    pub tally: Option<std::sync::Arc<crate::progress::Tally>>,
    /// What the config file had that was ignored, for stderr.
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> Result<Self, Failure> {
        Self::resolve_with(global, |name| std::env::var(name).ok(), &default_config_candidates())
            .map_err(|error| Failure::new(ExitStatus::Config, error))
    }

    fn resolve_with(
        global: &GlobalArgs,
        env: impl Fn(&str) -> Option<String>,
        candidates: &[(PathBuf, ConfigOrigin)],
    ) -> anyhow::Result<Self> {
        let (file, warnings) = match &global.config {
            Some(path) => read_config(path, ConfigOrigin::Named)?,
            None => match candidates.iter().find(|(path, _)| path.is_file()) {
                Some((path, origin)) => read_config(path, *origin)?,
                None => (ConfigFile::default(), Vec::new()),
            },
        };
        let env_number = |setting: &Setting| -> anyhow::Result<Option<u64>> {
            let name = setting.env;
            env(name)
                .map(|value| {
                    value.trim().parse::<u64>().with_context(|| format!("{name}={value:?} is not a whole number"))
                })
                .transpose()
        };

        let file_store = file.get::<PathBuf>(&settings::STORE)?;
        let store_root = match global.store.clone().or(file_store) {
            Some(root) => root,
            None => cache_dir().context("cannot find a default store directory; pass --store DIR")?.join("store"),
        };
        let jobs = match global.jobs {
            Some(jobs) => usize::from(jobs),
            None => env_number(&settings::JOBS)?
                .map(|n| n as usize)
                .or(file.get(&settings::JOBS)?)
                .unwrap_or_else(default_jobs),
        };
        if jobs == 0 {
            return Err(anyhow!("the number of parallel jobs must be at least 1"));
        }
        let requests_per_host = match env_number(&settings::REQUESTS_PER_HOST)? {
            Some(requests) => Some(requests as usize),
            None => file.get(&settings::REQUESTS_PER_HOST)?,
        };
        if let Some(requests) = requests_per_host
            && !(1..=256).contains(&requests)
        {
            return Err(anyhow!("{requests} requests per host is not between 1 and 256"));
        }
        let attempts = match global.retries {
            Some(attempts) => attempts,
            None => env_number(&settings::RETRIES)?
                .map(|n| n as u32)
                .or(file.get(&settings::RETRIES)?)
                .unwrap_or(DEFAULT_ATTEMPTS)
                .max(1),
        };
        let mode = |setting: &Setting, highest: u8| -> anyhow::Result<Option<u8>> {
            let variable = setting.env;
            let mode = match env_number(setting)? {
                Some(mode) => Some(u8::try_from(mode).unwrap_or(u8::MAX)),
                None => file.get(setting)?,
            };
            match mode {
                Some(mode) if !(1..=highest).contains(&mode) => {
                    Err(anyhow!("mode {mode} from {variable} or the config file is not between 1 and {highest}"))
                }
                mode => Ok(mode),
            }
        };
        let default_save_mode = mode(&settings::SAVE_MODE, 3)?;
        let default_load_mode = mode(&settings::LOAD_MODE, 3)?;
        let default_push_mode = mode(&settings::PUSH_MODE, 2)?;
        let mut insecure_registries = global.insecure_registries.clone();
        if let Some(list) = env(settings::INSECURE_REGISTRIES.env) {
            insecure_registries.extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
        }
        insecure_registries.extend(file.get::<Vec<String>>(&settings::INSECURE_REGISTRIES)?.unwrap_or_default());
        let certs_dirs = match env(settings::CERTS_DIRS.env) {
            Some(list) => std::env::split_paths(&list).filter(|dir| !dir.as_os_str().is_empty()).collect(),
            None => DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
        };
        let mirrors = mirrors(global, &env, &file)?;
        insecure_registries.extend(mirrors.insecure_hosts());
        let file_sync = file.get::<bool>(&settings::SYNC)?;
        let sync = match env(settings::SYNC.env) {
            _ if global.sync => true,
            Some(value) => match value.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => {
                    let variable = settings::SYNC.env;
                    return Err(anyhow!("{variable}={value:?} is not true or false (1/0, yes/no)"));
                }
            },
            None => file_sync.unwrap_or(false),
        };
        let seconds = |setting: &Setting| -> anyhow::Result<Option<Duration>> {
            let file_seconds = file.get::<f64>(setting)?;
            let seconds = match env(setting.env) {
                Some(value) => {
                    let variable = setting.env;
                    Some(value.trim().parse::<f64>().with_context(|| format!("{variable}={value:?} is not a number"))?)
                }
                None => file_seconds,
            };
            match seconds {
                Some(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Ok(Some(Duration::from_secs_f64(seconds))),
                Some(seconds) => Err(anyhow!("{} of {seconds} s is not between 0 and 86400 seconds", setting.env)),
                None => Ok(None),
            }
        };
        let stall_timeout = seconds(&settings::STALL_TIMEOUT)?;
        let response_timeout = seconds(&settings::RESPONSE_TIMEOUT)?;
        let body_timeout = seconds(&settings::BODY_TIMEOUT)?;
        let min_transfer_rate = match env_number(&settings::MIN_RATE)? {
            Some(rate) => Some(rate),
            None => file.get::<u64>(&settings::MIN_RATE)?,
        };
        Ok(Self {
            store_root,
            jobs,
            requests_per_host,
            attempts,
            insecure_registries,
            tls_verify: global.tls_verify,
            certs_dirs,
            mirrors: std::sync::Arc::new(mirrors),
            durability: if sync { Durability::Synced } else { Durability::Buffered },
            stall_timeout,
            response_timeout,
            body_timeout,
            min_transfer_rate,
            default_platform: env(settings::PLATFORM.env).or(file.get(&settings::PLATFORM)?),
            default_save_mode,
            default_load_mode,
            default_push_mode,
            registry: env(settings::REGISTRY.env).or(file.get(&settings::REGISTRY)?),
            project: env(settings::PROJECT.env).or(file.get(&settings::PROJECT)?),
            quiet: global.quiet,
            json: global.json,
            creds: global.creds.clone(),
            authfile: global.authfile.clone(),
            tally: None,
            warnings,
        })
    }
}

/// Where docker and podman look for per-registry TLS files, in the order
/// they are searched.
pub(crate) const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/docker/certs.d", "/etc/containers/certs.d"];
/// A mirror rule of config.yaml's `mirrors:` list.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigMirror {
    prefix: String,
    locations: Vec<String>,
    #[serde(default)]
    pull_from_mirror: PullFromMirror,
}

/// The mirrors of every source, in the order they are tried: `--mirror`
/// flags, then `HPN_MIRRORS`, then config.yaml, then registries.conf.
fn mirrors(global: &GlobalArgs, env: &impl Fn(&str) -> Option<String>, file: &ConfigFile) -> anyhow::Result<Mirrors> {
    let mut mirrors = Mirrors::new();
    let from_env = env(settings::MIRRORS.env).unwrap_or_default();
    let pairs = global.mirrors.iter().map(|pair| ("--mirror", pair.as_str())).chain(
        from_env.split(',').map(str::trim).filter(|pair| !pair.is_empty()).map(|pair| (settings::MIRRORS.env, pair)),
    );
    for (origin, pair) in pairs {
        let (from, to) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("{origin} {pair:?}: expected FROM=TO, e.g. docker.io=mirror.local"))?;
        let location =
            MirrorLocation { location: to.to_owned(), pull_from_mirror: PullFromMirror::All, insecure: false };
        mirrors.add(from, location, origin)?;
    }
    let origin = file.path.as_deref().map_or_else(|| "config.yaml".to_owned(), |path| path.display().to_string());
    for rule in file.get::<Vec<ConfigMirror>>(&settings::MIRRORS)?.unwrap_or_default() {
        for location in rule.locations {
            let location = MirrorLocation { location, pull_from_mirror: rule.pull_from_mirror, insecure: false };
            mirrors.add(&rule.prefix, location, &origin)?;
        }
    }
    for path in registries_conf_files(env) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        mirrors.add_registries_conf(&text, &path)?;
    }
    Ok(mirrors)
}

/// The containers-registries.conf(5) files podman and skopeo would read:
/// `$CONTAINERS_REGISTRIES_CONF` alone, else the user's file or the system's,
/// then the drop-ins of `registries.conf.d`, in name order.
fn registries_conf_files(env: &impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    if let Some(path) = env("CONTAINERS_REGISTRIES_CONF").filter(|path| !path.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let user = env("HOME").map(|home| PathBuf::from(home).join(".config/containers"));
    let system = PathBuf::from("/etc/containers");
    let mut files: Vec<PathBuf> = user
        .iter()
        .chain([&system])
        .map(|dir| dir.join("registries.conf"))
        .filter(|path| path.is_file())
        .take(1)
        .collect();
    for dir in [Some(system), user].into_iter().flatten() {
        let Ok(entries) = std::fs::read_dir(dir.join("registries.conf.d")) else { continue };
        let mut drop_ins: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|extension| extension == "conf"))
            .collect();
        drop_ins.sort();
        files.extend(drop_ins);
    }
    files
}

/// hpn's cache directory: `$XDG_CACHE_HOME/hpn`, else `~/.cache/hpn`. The
/// default store lives in it, and hints such as where blobs were pushed. The
/// libraries take paths; only the command line looks at the environment.
pub(crate) fn cache_dir() -> anyhow::Result<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
        .ok_or_else(|| anyhow!("neither XDG_CACHE_HOME nor HOME is set"))
}

fn cache_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    // The XDG spec says relative values are invalid and must be ignored.
    let cache = xdg_cache_home
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| home.filter(|home| !home.is_empty()).map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("hpn"))
}

fn default_config_candidates() -> Vec<(PathBuf, ConfigOrigin)> {
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push((Path::new(&home).join(".hpn/config.yaml"), ConfigOrigin::Trusted));
    }
    candidates.push((PathBuf::from("/etc/hpn/config.yaml"), ConfigOrigin::Trusted));
    candidates.push((PathBuf::from("config.yaml"), ConfigOrigin::WorkingDirectory));
    candidates
}

/// Reads a config file, with warnings for what in it is ignored: unknown
/// keys, and the keys a working-directory file may not set unless named.
fn read_config(path: &Path, origin: ConfigOrigin) -> anyhow::Result<(ConfigFile, Vec<String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    tracing::info!("using config file {}", path.display());
    if text.trim().is_empty() {
        return Ok((ConfigFile::default(), Vec::new()));
    }
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))?;
    if !yaml.is_mapping() && !yaml.is_null() {
        return Err(anyhow!("config file {} is not valid: it is not a mapping of keys to values", path.display()));
    }
    let mut warnings = unknown_key_warnings(path, &yaml);
    let mut withheld = Vec::new();
    if origin == ConfigOrigin::WorkingDirectory {
        withheld = NAMED_CONFIG_ONLY
            .iter()
            .filter_map(|setting| setting.key)
            .filter(|key| lookup(&yaml, key).is_ok_and(|value| value.is_some_and(|value| !value.is_null())))
            .collect();
        if !withheld.is_empty() {
            warnings.push(format!(
                "config file {} is in the working directory and was not named, so its {} {} ignored \
                 (they lower security or send images elsewhere); to use them, name the file with --config {}",
                path.display(),
                withheld.join(", "),
                if withheld.len() == 1 { "key is" } else { "keys are" },
                path.display()
            ));
        }
    }
    Ok((ConfigFile { path: Some(path.to_owned()), yaml, withheld }, warnings))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;
    use crate::args::Cli;

    fn resolve(arguments: &[&str], env: &[(&str, &str)], config: Option<&str>) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        if let Some(text) = config {
            std::fs::write(&path, text).unwrap();
        }
        let mut argv = vec!["hpn", "--store", "/tmp/store"];
        argv.extend_from_slice(arguments);
        argv.extend_from_slice(&["pull", "x"]);
        let cli = Cli::try_parse_from(argv).unwrap();
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::resolve_with(&cli.global, |name| env.get(name).cloned(), &[(path, ConfigOrigin::Trusted)])
    }

    #[test]
    fn go_hpn_config_keys_are_read_and_unknown_ones_ignored() {
        let config = "registry: harbor.local\nproject: team\nparallel:\n  max_workers: 7\nmodes:\n  save_mode: 2\n\
                      runtime:\n  preferred: docker\n  retry:\n    max_attempts: 9\nproxy:\n  enabled: false\n";
        let settings = resolve(&[], &[], Some(config)).unwrap();
        assert_eq!(settings.jobs, 7);
        assert_eq!(settings.attempts, 9);
        assert_eq!(settings.default_save_mode, Some(2));
        assert_eq!(settings.registry.as_deref(), Some("harbor.local"));
        assert_eq!(settings.project.as_deref(), Some("team"));
        let settings = resolve(&[], &[("HPN_REGISTRY", "other:5000"), ("HPN_PUSH_MODE", "2")], Some(config)).unwrap();
        assert_eq!(settings.registry.as_deref(), Some("other:5000"));
        assert_eq!(settings.default_push_mode, Some(2));
    }

    fn resolve_from(origin: ConfigOrigin, arguments: &[&str], config: &str) -> (Settings, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let mut argv = vec!["hpn", "--store", "/tmp/store"];
        argv.extend_from_slice(arguments);
        argv.extend_from_slice(&["pull", "x"]);
        let cli = Cli::try_parse_from(argv).unwrap();
        let settings = Settings::resolve_with(&cli.global, |_| None, &[(path.clone(), origin)]).unwrap();
        (settings, path)
    }

    #[test]
    fn a_working_directory_config_redirects_or_lowers_security_only_when_named() {
        let config = "registry: evil.example\nproject: theirs\ninsecure_registries: [corp.example]\n\
                      parallel:\n  max_workers: 3\n";
        let (found, path) = resolve_from(ConfigOrigin::WorkingDirectory, &[], config);
        assert_eq!((found.registry, found.project), (None, None));
        assert!(found.insecure_registries.is_empty());
        assert_eq!(found.jobs, 3, "harmless keys still apply");
        let [warning] = found.warnings.as_slice() else { panic!("{:?}", found.warnings) };
        assert!(warning.contains("insecure_registries, registry, project keys are ignored"), "{warning}");
        assert!(warning.contains(&format!("--config {}", path.display())), "{warning}");

        let (trusted, _) = resolve_from(ConfigOrigin::Trusted, &[], config);
        assert_eq!(trusted.registry.as_deref(), Some("evil.example"));
        assert_eq!(trusted.insecure_registries, ["corp.example"]);
        assert!(trusted.warnings.is_empty(), "{:?}", trusted.warnings);
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("config.yaml");
        std::fs::write(&named, config).unwrap();
        let (named, _) = resolve_from(ConfigOrigin::WorkingDirectory, &["--config", named.to_str().unwrap()], "");
        assert_eq!(named.registry.as_deref(), Some("evil.example"));
        assert_eq!(named.project.as_deref(), Some("theirs"));
    }

    #[test]
    fn unknown_keys_are_warned_about_with_the_key_they_resemble() {
        let config = "parallel:\n  max_worker: 3\nmax_workers: 2\nregistyr: x\ncolour: red\n\
                      runtime:\n  preferred: docker\n  retry:\n    max_atempts: 2\nproxy:\n  enabled: false\n";
        let (settings, _) = resolve_from(ConfigOrigin::Trusted, &[], config);
        let warnings = settings.warnings.join("\n");
        for expected in [
            "unknown key parallel.max_worker (did you mean parallel.max_workers?)",
            "unknown key max_workers (did you mean parallel.max_workers?)",
            "unknown key registyr (did you mean registry?)",
            "unknown key colour is ignored",
            "unknown key runtime.retry.max_atempts (did you mean runtime.retry.max_attempts?)",
        ] {
            assert!(warnings.contains(expected), "no {expected:?} in\n{warnings}");
        }
        assert_eq!(settings.warnings.len(), 5, "the Go hpn's runtime.preferred and proxy are not warned about");
    }

    #[test]
    fn config_errors_say_what_was_expected_in_words() {
        for (config, expected) in [
            ("parallel:\n  max_workers: many\n", "parallel.max_workers: expected a whole number, found \"many\""),
            ("parallel:\n  max_workers: -2\n", "parallel.max_workers: expected a whole number, found -2"),
            ("sync: [1]\n", "sync: expected true or false, found a list"),
            ("modes:\n  save_mode: 300\n", "modes.save_mode: expected a whole number from 0 to 255, found 300"),
            ("insecure_registries: {a: 1}\n", "insecure_registries: expected a list of strings, found a mapping"),
            ("parallel: 4\n", "parallel.max_workers: parallel is not a mapping"),
        ] {
            let message = format!("{:#}", resolve(&[], &[], Some(config)).unwrap_err());
            assert!(message.contains(expected), "{message}");
            for rust in ["usize", "u32", "struct", "Vec", "bool", "sequence"] {
                assert!(!message.contains(rust), "{message}");
            }
        }
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let config = "parallel:\n  max_workers: 7\n";
        assert_eq!(resolve(&[], &[("HPN_JOBS", "3")], Some(config)).unwrap().jobs, 3);
        assert_eq!(resolve(&["-j", "2"], &[("HPN_JOBS", "3")], Some(config)).unwrap().jobs, 2);
        assert_eq!(resolve(&[], &[], None).unwrap().jobs, default_jobs());
    }

    #[test]
    fn bad_values_are_config_errors_naming_their_source() {
        let error = resolve(&[], &[], Some("parallel: [1, 2]\n")).unwrap_err();
        assert!(format!("{error:#}").contains("config.yaml"), "{error:#}");
        let error = resolve(&[], &[("HPN_JOBS", "many")], None).unwrap_err();
        assert!(error.to_string().contains("HPN_JOBS"), "{error}");
        assert!(resolve(&[], &[("HPN_SAVE_MODE", "5")], None).is_err());
        assert!(resolve(&[], &[("HPN_PUSH_MODE", "3")], None).is_err());
    }

    #[test]
    fn requests_per_host_comes_from_env_then_config_and_is_bounded() {
        let config = "parallel:\n  requests_per_host: 9\n";
        assert_eq!(resolve(&[], &[], Some(config)).unwrap().requests_per_host, Some(9));
        let from_env = resolve(&[], &[("HPN_REQUESTS_PER_HOST", "3")], Some(config)).unwrap();
        assert_eq!(from_env.requests_per_host, Some(3));
        assert_eq!(resolve(&[], &[], None).unwrap().requests_per_host, None);
        assert!(resolve(&[], &[("HPN_REQUESTS_PER_HOST", "0")], None).is_err());
    }

    #[test]
    fn cache_dir_follows_xdg_then_home() {
        let os = |text: &str| Some(OsString::from(text));
        assert_eq!(cache_dir_from(os("/xdg"), os("/home/u")), Some(PathBuf::from("/xdg/hpn")));
        // A relative XDG_CACHE_HOME is invalid per the spec and ignored.
        assert_eq!(cache_dir_from(os("rel"), os("/home/u")), Some(PathBuf::from("/home/u/.cache/hpn")));
        assert_eq!(cache_dir_from(None, os("/home/u")), Some(PathBuf::from("/home/u/.cache/hpn")));
        assert_eq!(cache_dir_from(None, os("")), None);
        assert_eq!(cache_dir_from(None, None), None);
    }

    #[test]
    fn sync_and_stall_timeout_come_from_flag_env_or_config() {
        assert_eq!(resolve(&[], &[], None).unwrap().durability, Durability::Buffered);
        assert_eq!(resolve(&["--sync"], &[], None).unwrap().durability, Durability::Synced);
        assert_eq!(resolve(&[], &[("HPN_SYNC", "1")], None).unwrap().durability, Durability::Synced);
        assert_eq!(resolve(&[], &[], Some("sync: true\n")).unwrap().durability, Durability::Synced);
        assert_eq!(resolve(&[], &[("HPN_SYNC", "no")], Some("sync: true\n")).unwrap().durability, Durability::Buffered);
        assert!(resolve(&[], &[("HPN_SYNC", "maybe")], None).is_err());
        let stall = resolve(&[], &[("HPN_STALL_TIMEOUT", "2.5")], Some("stall_timeout: 9\n")).unwrap();
        assert_eq!(stall.stall_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(resolve(&[], &[], Some("stall_timeout: 9\n")).unwrap().stall_timeout, Some(Duration::from_secs(9)));
        assert!(resolve(&[], &[("HPN_STALL_TIMEOUT", "-1")], None).is_err());
    }
}
