use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use hpn_fs::Durability;
use serde::Deserialize;

use crate::args::GlobalArgs;
use crate::exit::{ExitStatus, Failure};

const DEFAULT_JOBS: usize = 4;
const DEFAULT_ATTEMPTS: u32 = 5;

/// The parts of the Go hpn's `config.yaml` this hpn reads, plus `store`,
/// `platform`, `insecure_registries`, `sync` and `stall_timeout`. Unknown keys (proxy, logging,
/// runtime.preferred, …) are accepted and ignored so existing hpn configs
/// keep working.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    registry: Option<String>,
    project: Option<String>,
    store: Option<PathBuf>,
    platform: Option<String>,
    insecure_registries: Vec<String>,
    sync: Option<bool>,
    /// Seconds a response may send nothing before it counts as broken.
    stall_timeout: Option<f64>,
    parallel: ParallelSection,
    modes: ModesSection,
    runtime: RuntimeSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ParallelSection {
    max_workers: Option<usize>,
    /// hpn's own: concurrent requests per registry host (a tuning knob; see BENCHMARKS.md).
    requests_per_host: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ModesSection {
    save_mode: Option<u8>,
    load_mode: Option<u8>,
    push_mode: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuntimeSection {
    retry: RetrySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RetrySection {
    max_attempts: Option<u32>,
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
    /// Whether written files are fsynced before they count as written.
    pub durability: Durability,
    /// How long a response or blob body may send nothing before it is retried or resumed.
    pub stall_timeout: Option<Duration>,
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
        let env_number = |name: &str| -> anyhow::Result<Option<u64>> {
            env(name)
                .map(|value| {
                    value.trim().parse::<u64>().with_context(|| format!("{name}={value:?} is not a whole number"))
                })
                .transpose()
        };

        let store_root = match global.store.clone().or(file.store) {
            Some(root) => root,
            None => cache_dir().context("cannot find a default store directory; pass --store DIR")?.join("store"),
        };
        let jobs = match global.jobs {
            Some(jobs) => usize::from(jobs),
            None => env_number("HPN_JOBS")?.map(|n| n as usize).or(file.parallel.max_workers).unwrap_or(DEFAULT_JOBS),
        };
        if jobs == 0 {
            return Err(anyhow!("the number of parallel jobs must be at least 1"));
        }
        let requests_per_host =
            env_number("HPN_REQUESTS_PER_HOST")?.map(|n| n as usize).or(file.parallel.requests_per_host);
        if let Some(requests) = requests_per_host
            && !(1..=256).contains(&requests)
        {
            return Err(anyhow!("{requests} requests per host is not between 1 and 256"));
        }
        let attempts = match global.retries {
            Some(attempts) => attempts,
            None => env_number("HPN_RETRIES")?
                .map(|n| n as u32)
                .or(file.runtime.retry.max_attempts)
                .unwrap_or(DEFAULT_ATTEMPTS)
                .max(1),
        };
        let mode = |variable: &str, configured: Option<u8>, highest: u8| -> anyhow::Result<Option<u8>> {
            let mode = match env_number(variable)? {
                Some(mode) => Some(u8::try_from(mode).unwrap_or(u8::MAX)),
                None => configured,
            };
            match mode {
                Some(mode) if !(1..=highest).contains(&mode) => {
                    Err(anyhow!("mode {mode} from {variable} or the config file is not between 1 and {highest}"))
                }
                mode => Ok(mode),
            }
        };
        let default_save_mode = mode("HPN_SAVE_MODE", file.modes.save_mode, 3)?;
        let default_load_mode = mode("HPN_LOAD_MODE", file.modes.load_mode, 3)?;
        let default_push_mode = mode("HPN_PUSH_MODE", file.modes.push_mode, 2)?;
        let mut insecure_registries = global.insecure_registries.clone();
        if let Some(list) = env("HPN_INSECURE_REGISTRIES") {
            insecure_registries.extend(list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
        }
        insecure_registries.extend(file.insecure_registries);
        let sync = match env("HPN_SYNC") {
            _ if global.sync => true,
            Some(value) => match value.trim() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => return Err(anyhow!("HPN_SYNC={value:?} is not true or false (1/0, yes/no)")),
            },
            None => file.sync.unwrap_or(false),
        };
        let stall_timeout = match env("HPN_STALL_TIMEOUT") {
            Some(value) => Some(
                value.trim().parse::<f64>().with_context(|| format!("HPN_STALL_TIMEOUT={value:?} is not a number"))?,
            ),
            None => file.stall_timeout,
        };
        let stall_timeout = match stall_timeout {
            Some(seconds) if seconds > 0.0 && seconds <= 86_400.0 => Some(Duration::from_secs_f64(seconds)),
            Some(seconds) => return Err(anyhow!("a stall timeout of {seconds} s is not between 0 and 86400 seconds")),
            None => None,
        };
        Ok(Self {
            store_root,
            jobs,
            requests_per_host,
            attempts,
            insecure_registries,
            durability: if sync { Durability::Synced } else { Durability::Buffered },
            stall_timeout,
            default_platform: env("HPN_PLATFORM").or(file.platform),
            default_save_mode,
            default_load_mode,
            default_push_mode,
            registry: env("HPN_REGISTRY").or(file.registry),
            project: env("HPN_PROJECT").or(file.project),
            quiet: global.quiet,
            json: global.json,
            tally: None,
        })
    }
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
    serde_yaml_ng::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
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
        assert_eq!(resolve(&[], &[], None).unwrap().jobs, DEFAULT_JOBS);
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
