//! Every setting hpn takes, with each way to give it: a flag, an `HPN_*`
//! environment variable, a config-file key.
//!
//! This table is the one place their names are written. `config.rs` looks the
//! variables and keys up through it, `args.rs` names clap's variables from it,
//! and the settings table in README.md is rendered from it; the tests below
//! fail when the README, clap or the code's defaults disagree with it.
//! Flags are clap's: a setting names its long flag, and the rendered table
//! takes the short form and the value name from the clap definition.

/// One setting. Precedence is always flag > environment > config file > default.
#[derive(Debug)]
pub(crate) struct Setting {
    /// The long flag that sets it (without `--`), if there is one.
    #[cfg_attr(not(test), expect(dead_code, reason = "read only by the README renderer, which runs as a test"))]
    pub flag: Option<&'static str>,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// Its key in config.yaml, dotted for nested sections (`parallel.max_workers`).
    pub key: Option<&'static str>,
    /// The default, as the README shows it (Markdown).
    #[cfg_attr(not(test), expect(dead_code, reason = "read only by the README renderer, which runs as a test"))]
    pub default: &'static str,
    /// What it does, as the README shows it (Markdown).
    #[cfg_attr(not(test), expect(dead_code, reason = "read only by the README renderer, which runs as a test"))]
    pub meaning: &'static str,
}

pub(crate) const STORE: Setting = Setting {
    flag: Some("store"),
    env: "HPN_STORE",
    key: Some("store"),
    default: "`$XDG_CACHE_HOME/hpn/store`, else `~/.cache/hpn/store`",
    meaning: "the store, an OCI image layout that skopeo can read as `oci:DIR:REF`",
};

pub(crate) const CONFIG: Setting = Setting {
    flag: Some("config"),
    env: "HPN_CONFIG",
    key: None,
    default: "the first of `~/.hpn/config.yaml`, `/etc/hpn/config.yaml`, `./config.yaml`",
    meaning: "the config file; it takes the Go hpn's keys and warns about keys it does not know. A `./config.yaml` \
              found without being named cannot set `insecure_registries`, `registry` or `project`",
};

pub(crate) const JOBS: Setting = Setting {
    flag: Some("jobs"),
    env: "HPN_JOBS",
    key: Some("parallel.max_workers"),
    default: "4",
    meaning: "images transferred at once",
};

pub(crate) const REQUESTS_PER_HOST: Setting = Setting {
    flag: None,
    env: "HPN_REQUESTS_PER_HOST",
    key: Some("parallel.requests_per_host"),
    default: "6",
    meaning: "concurrent requests to one registry host, blob bodies included (1 to 256; measured in BENCHMARKS.md)",
};

pub(crate) const RETRIES: Setting = Setting {
    flag: Some("retries"),
    env: "HPN_RETRIES",
    key: Some("runtime.retry.max_attempts"),
    default: "5",
    meaning: "attempts per request before giving up",
};

pub(crate) const INSECURE_REGISTRIES: Setting = Setting {
    flag: Some("insecure-registry"),
    env: "HPN_INSECURE_REGISTRIES",
    key: Some("insecure_registries"),
    default: "none",
    meaning: "registries reached over plain HTTP or unverified TLS; loopback registries need no entry. \
              The flag repeats, the variable is a comma-separated list, the key a list; all of them add up. \
              `--tls-verify=false` (skopeo's spelling) names every registry of the command",
};

pub(crate) const CERTS_DIRS: Setting = Setting {
    flag: None,
    env: "HPN_CERTS_DIRS",
    key: None,
    default: "`/etc/docker/certs.d:/etc/containers/certs.d`",
    meaning: "directories (`:`-separated) searched, in order, for a registry's `HOST[:PORT]/` directory of TLS \
              files as docker and podman read them: `*.crt` are CAs trusted for it beside the system's, \
              `client.cert` with `client.key` the client certificate it may require",
};

pub(crate) const MIRRORS: Setting = Setting {
    flag: Some("mirror"),
    env: "HPN_MIRRORS",
    key: Some("mirrors"),
    default: "none; also the mirrors of `registries.conf` (`$CONTAINERS_REGISTRIES_CONF`, else \
              `~/.config/containers/registries.conf` or `/etc/containers/registries.conf`, and their \
              `registries.conf.d/*.conf`)",
    meaning: "where to read images from before their own registry: `--mirror docker.io=harbor.local/dockerhub-proxy` \
              (repeatable; the variable is a comma-separated list), or a list of `{prefix, locations: [...], \
              pull-from-mirror: all|digest-only}` under the key. Locations are tried in order, then the image's \
              own registry; images keep their own names in the store and archives; pushes never use mirrors",
};

pub(crate) const SYNC: Setting = Setting {
    flag: Some("sync"),
    env: "HPN_SYNC",
    key: Some("sync"),
    default: "off",
    meaning: "fsync every blob, index.json and archive before reporting success, so a power loss cannot take back \
              what hpn reported done (slower: see BENCHMARKS.md; the variable takes 1/0, true/false, yes/no). \
              Without it hpn leaves writing back to the kernel, as `docker save`, skopeo and `cp` do; a kill or \
              Ctrl-C never leaves a partial file under a final name either way, and a stored blob cut short by a \
              power loss is fetched again",
};

pub(crate) const STALL_TIMEOUT: Setting = Setting {
    flag: None,
    env: "HPN_STALL_TIMEOUT",
    key: Some("stall_timeout"),
    default: "60",
    meaning: "seconds a blob download may stay below `HPN_MIN_RATE` (or send nothing), or a registry take no byte \
              of an upload, before the request counts as broken and is retried or resumed (curl's `--speed-time`)",
};

pub(crate) const MIN_RATE: Setting = Setting {
    flag: None,
    env: "HPN_MIN_RATE",
    key: Some("min_rate"),
    default: "1024",
    meaning: "bytes per second a blob download must average over each `HPN_STALL_TIMEOUT` (curl's \
              `--speed-limit`); 0 only asks that some byte comes",
};

pub(crate) const RESPONSE_TIMEOUT: Setting = Setting {
    flag: None,
    env: "HPN_RESPONSE_TIMEOUT",
    key: Some("response_timeout"),
    default: "10",
    meaning: "seconds a registry may take to start answering a request before it is retried; a registry that \
              accepts connections and never answers fails after this times `HPN_RETRIES` (connecting has 10 s)",
};

pub(crate) const BODY_TIMEOUT: Setting = Setting {
    flag: None,
    env: "HPN_BODY_TIMEOUT",
    key: Some("body_timeout"),
    default: "30",
    meaning: "seconds a small answer (a manifest, a token, an error, a blob up to 1 MiB such as a config) may take \
              from the start of its answer to its last byte before the request is retried, however steadily it trickles",
};

pub(crate) const PLATFORM: Setting = Setting {
    flag: Some("platform"),
    env: "HPN_PLATFORM",
    key: Some("platform"),
    default: "the host's; for `push`, every platform the source has",
    meaning: "which platform of a multi-platform image to take, `os/arch[/variant]`; `--all-platforms` takes them all",
};

pub(crate) const SAVE_MODE: Setting = Setting {
    flag: Some("save-mode"),
    env: "HPN_SAVE_MODE",
    key: Some("modes.save_mode"),
    default: "1",
    meaning: "without `-o`, one archive per image in 1 = `./`, 2 = `./images/`, 3 = `./images/<project>/`",
};

pub(crate) const LOAD_MODE: Setting = Setting {
    flag: Some("load-mode"),
    env: "HPN_LOAD_MODE",
    key: Some("modes.load_mode"),
    default: "1",
    meaning: "without `-i`, load every archive in 1 = `./`, 2 = `./images/`, 3 = `./images/*/` recursively",
};

pub(crate) const PUSH_MODE: Setting = Setting {
    flag: Some("push-mode"),
    env: "HPN_PUSH_MODE",
    key: Some("modes.push_mode"),
    default: "1",
    meaning: "1 = `registry/image:tag`, 2 = `registry/project/image:tag`",
};

pub(crate) const REGISTRY: Setting = Setting {
    flag: Some("registry"),
    env: "HPN_REGISTRY",
    key: Some("registry"),
    default: "none",
    meaning: "the registry `push` sends to, `HOST[:PORT]` optionally followed by a path",
};

pub(crate) const PROJECT: Setting = Setting {
    flag: Some("project"),
    env: "HPN_PROJECT",
    key: Some("project"),
    default: "the image's own",
    meaning: "the project of push mode 2",
};

pub(crate) const CREATED: Setting = Setting {
    flag: Some("created"),
    // The reproducible-builds variable, as build tools set it for every program they run.
    env: "SOURCE_DATE_EPOCH",
    key: None,
    default: "none: every entry's mtime is 0 and no time is recorded",
    meaning: "`hpn save`: the archive's creation time, recorded in its bill of contents and as every entry's \
              mtime; RFC 3339 (`2024-05-01T12:00:00Z`) or seconds since 1970 (`@1714564800`; the variable's \
              bare seconds too). The same list saved with the same time gives the same bytes",
};

/// Every setting, in the README's order.
pub(crate) const ALL: &[&Setting] = &[
    &STORE,
    &CONFIG,
    &JOBS,
    &REQUESTS_PER_HOST,
    &RETRIES,
    &INSECURE_REGISTRIES,
    &CERTS_DIRS,
    &MIRRORS,
    &SYNC,
    &STALL_TIMEOUT,
    &MIN_RATE,
    &RESPONSE_TIMEOUT,
    &BODY_TIMEOUT,
    &PLATFORM,
    &SAVE_MODE,
    &CREATED,
    &LOAD_MODE,
    &PUSH_MODE,
    &REGISTRY,
    &PROJECT,
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fmt::Write;
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::*;
    use crate::args::Cli;

    const BEGIN: &str = "<!-- settings:begin -->\n";
    const END: &str = "<!-- settings:end -->";

    /// Every argument of the command line, in any subcommand.
    fn all_arguments(command: &clap::Command) -> Vec<clap::Arg> {
        let mut arguments: Vec<clap::Arg> = command.get_arguments().cloned().collect();
        for subcommand in command.get_subcommands() {
            arguments.extend(all_arguments(subcommand));
        }
        arguments
    }

    fn argument(long: &str) -> clap::Arg {
        all_arguments(&Cli::command())
            .into_iter()
            .find(|argument| argument.get_long() == Some(long))
            .unwrap_or_else(|| panic!("settings.rs names the flag --{long}, which args.rs does not define"))
    }

    /// `-j N`, `--jobs N`, as clap defines the flag.
    fn render_flag(long: &str) -> String {
        let argument = argument(long);
        let value = match argument.get_value_names() {
            Some(names) if argument.get_action().takes_values() => {
                format!(" {}", names.iter().map(|name| name.as_str()).collect::<Vec<_>>().join(" "))
            }
            _ => String::new(),
        };
        let long = format!("`--{long}{value}`");
        match argument.get_short() {
            Some(short) => format!("`-{short}{value}`, {long}"),
            None => long,
        }
    }

    fn render_table() -> String {
        let cell = |text: &str| text.replace('|', "\\|");
        let code = |text: Option<&str>| text.map_or_else(|| "—".to_owned(), |text| format!("`{text}`"));
        let mut table =
            String::from("| flag | environment | config.yaml | default | meaning |\n|---|---|---|---|---|\n");
        for setting in ALL {
            let flag = setting.flag.map_or_else(|| "—".to_owned(), render_flag);
            writeln!(
                table,
                "| {} | `{}` | {} | {} | {} |",
                cell(&flag),
                setting.env,
                code(setting.key),
                cell(setting.default),
                cell(setting.meaning)
            )
            .expect("writing to a String cannot fail");
        }
        table
    }

    #[test]
    fn readme_settings_table_is_the_rendered_one() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md is readable");
        let start = readme.find(BEGIN).expect("README.md has a <!-- settings:begin --> line") + BEGIN.len();
        let end = start + readme[start..].find(END).expect("README.md has a <!-- settings:end --> line");
        let expected = render_table();
        if readme[start..end] == expected {
            return;
        }
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, format!("{}{expected}{}", &readme[..start], &readme[end..]))
                .expect("README.md is writable");
            return;
        }
        panic!(
            "README.md's settings table differs from crates/cli/src/settings.rs. Regenerate it with\n  \
             UPDATE_README=1 cargo test -p hpn-cli settings\nor paste this between the markers:\n\n{expected}"
        );
    }

    #[test]
    fn clap_reads_the_variables_named_here() {
        for setting in ALL {
            if let Some(long) = setting.flag
                && let Some(env) = argument(long).get_env()
            {
                assert_eq!(env, setting.env, "--{long}");
            }
        }
        // A variable clap reads that the table does not list would be undocumented.
        for argument in all_arguments(&Cli::command()) {
            if let Some(env) = argument.get_env() {
                assert!(ALL.iter().any(|setting| setting.env == env), "{env:?} is not in settings.rs");
            }
        }
    }

    #[test]
    fn names_are_unique() {
        for names in [
            ALL.iter().filter_map(|setting| setting.flag).collect::<Vec<_>>(),
            ALL.iter().map(|setting| setting.env).collect(),
            ALL.iter().filter_map(|setting| setting.key).collect(),
        ] {
            let mut seen = HashSet::new();
            assert!(names.iter().all(|name| seen.insert(name)), "a name appears twice in {names:?}");
        }
    }

    #[test]
    fn defaults_shown_are_the_ones_used() {
        let client = hpn_registry::ClientOptions::default();
        assert_eq!(JOBS.default, crate::config::default_jobs().to_string());
        assert_eq!(RETRIES.default, crate::config::DEFAULT_ATTEMPTS.to_string());
        assert_eq!(REQUESTS_PER_HOST.default, client.max_requests_per_host.to_string());
        assert_eq!(STALL_TIMEOUT.default, client.stall_timeout.as_secs().to_string());
        assert_eq!(CERTS_DIRS.default, format!("`{}`", crate::config::DEFAULT_CERTS_DIRS.join(":")));
        assert_eq!(MIN_RATE.default, client.min_transfer_rate.to_string());
        assert_eq!(RESPONSE_TIMEOUT.default, client.response_timeout.as_secs().to_string());
        assert_eq!(BODY_TIMEOUT.default, client.body_timeout.as_secs().to_string());
        assert!(RESPONSE_TIMEOUT.meaning.contains(&format!("connecting has {} s", client.connect_timeout.as_secs())));
    }
}
