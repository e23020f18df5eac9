use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use hpn_fs::Durability;
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
/// `runtime.retry.max_attempts`, …) plus hpn's own. Unknown keys (proxy,
/// logging, runtime.preferred, …) are ignored so existing hpn configs keep
/// working.
#[derive(Debug, Default)]
struct ConfigFile {
    /// Where it was read from, for error messages; `None` without a file.
    path: Option<PathBuf>,
    yaml: serde_yaml_ng::Value,
}

impl ConfigFile {
    /// The value of `setting`'s key, `None` if the file does not set it (or
    /// the setting has no key).
    fn get<T: DeserializeOwned>(&self, setting: &Setting) -> anyhow::Result<Option<T>> {
        let Some(key) = setting.key else { return Ok(None) };
        let invalid = |reason: String| {
            let path = self.path.as_deref().unwrap_or(Path::new("config.yaml"));
            anyhow!("config file {} is not valid: {key}: {reason}", path.display())
        };
        let mut value = &self.yaml;
        for (depth, part) in key.split('.').enumerate() {
            value = match value {
                serde_yaml_ng::Value::Null => return Ok(None),
                serde_yaml_ng::Value::Mapping(mapping) => match mapping.get(part) {
                    Some(value) => value,
                    None => return Ok(None),
                },
                _ => {
                    let section = key.split('.').take(depth).collect::<Vec<_>>().join(".");
                    return Err(invalid(format!("{section} is not a mapping")));
                }
            };
        }
        if value.is_null() {
            return Ok(None);
        }
        serde_yaml_ng::from_value(value.clone()).map(Some).map_err(|error| invalid(error.to_string()))
    }
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
    /// Images finished so far, for the report when Ctrl-C stops the run.
    pub tally: Option<std::sync::Arc<crate::progress::Tally>>,
}

impl Settings {
    pub fn resolve(global: &GlobalArgs) -> Result<Self, Failure> {
        Self::resolve_with(global, |name| std::env::var(name).ok(), &default_config_candidates())
            .map_err(|error| Failure::new(ExitStatus::Config, error))
    }

    fn resolve_with(
        global: &GlobalArgs,
        env: impl Fn(&str) -> Option<String>,
        candidates: &[PathBuf],
    ) -> anyhow::Result<Self> {
        let file = match &global.config {
            Some(path) => read_config(path)?,
            None => match candidates.iter().find(|path| path.is_file()) {
                Some(path) => read_config(path)?,
                None => ConfigFile::default(),
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
            tally: None,
        })
    }
}

/// Where docker and podman look for per-registry TLS files, in the order
/// they are searched.
pub(crate) const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/docker/certs.d", "/etc/containers/certs.d"];

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

fn default_config_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".hpn/config.yaml"));
    }
    candidates.push(PathBuf::from("/etc/hpn/config.yaml"));
    candidates.push(PathBuf::from("config.yaml"));
    candidates
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    tracing::info!(path = %path.display(), "using config file");
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))?;
    if !yaml.is_mapping() && !yaml.is_null() {
        return Err(anyhow!("config file {} is not valid: it is not a mapping of keys to values", path.display()));
    }
    Ok(ConfigFile { path: Some(path.to_owned()), yaml })
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
        Settings::resolve_with(&cli.global, |name| env.get(name).cloned(), &[path])
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
