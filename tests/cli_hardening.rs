//! What a hurried user does to hpn: output paths that are not files, a
//! config.yaml found in the working directory, names that match nothing, a
//! platform the store does not hold, piped progress, file names that say a
//! compression, and the Go hpn's flags.

mod common;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Workspace, archive_leftovers, seeded_registry_with, tar_list};
use hpn_testkit::{Dockerd, docker_client};

/// `hpn ARGS` with stdout piped into `consumer` (its stdin); returns hpn's
/// run (stdout empty: it went to the consumer) and the consumer's stdout.
fn hpn_into(work: &Workspace, args: &[&str], consumer: &mut Command) -> (common::Run, String) {
    let mut hpn = work.command();
    let mut hpn = hpn.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start hpn");
    let consumer =
        consumer.stdin(hpn.stdout.take().unwrap()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = String::new();
    hpn.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = hpn.wait().unwrap();
    let consumed = consumer.wait_with_output().unwrap();
    assert!(
        consumed.status.success(),
        "the consumer failed: {}\nhpn's stderr:\n{stderr}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let run = common::Run { code: status.code().unwrap_or(-1), stdout: String::new(), stderr };
    (run, String::from_utf8_lossy(&consumed.stdout).into_owned())
}

const ARCHIVE_ENTRIES: [&str; 4] = ["oci-layout", "index.json", "manifest.json", "repositories"];

#[test]
fn save_to_stdout_streams_a_tar_that_tar_and_docker_load_read() {
    let seeded = seeded_registry_with(&["app-a"]);
    let image = seeded.fixtures.image("app-a");
    let work = Workspace::new();

    for output in ["-", "/dev/stdout"] {
        let (run, listed) = hpn_into(&work, &["save", &image.reference, "-o", output], Command::new("tar").arg("-t"));
        run.assert_ok();
        let listed: Vec<&str> = listed.lines().collect();
        for entry in ARCHIVE_ENTRIES {
            assert!(listed.contains(&entry), "-o {output}: no {entry} in {listed:?}");
        }
        // The summary moved to stderr, out of the archive's way.
        assert!(run.stderr.contains("save: 1 image(s) ok"), "{}", run.stderr);
    }
    assert!(archive_leftovers(work.path()).is_empty() && archive_leftovers(Path::new("/dev")).is_empty());

    // A symbolic link to /proc/self/fd/1 is stdout too, and stays a link.
    let link = work.path().join("out.tar");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    let (run, listed) = hpn_into(&work, &["save", &image.reference, "-o", "out.tar"], Command::new("tar").arg("-t"));
    run.assert_ok();
    assert!(listed.lines().any(|entry| entry == "manifest.json"), "{listed}");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");

    let dockerd = Dockerd::start().expect("start dockerd");
    let client_config = work.path().join("docker-client");
    let mut load = Command::new(docker_client());
    load.arg("-H").arg(dockerd.host()).arg("load").env("DOCKER_CONFIG", &client_config);
    let (run, loaded) = hpn_into(&work, &["save", &image.reference, "-o", "-"], &mut load);
    run.assert_ok();
    assert!(loaded.contains("Loaded image"), "{loaded}");
    let inspected = dockerd.image_inspect(&image.tag_references[0]).expect("docker has the image");
    assert_eq!(inspected["Id"], image.amd64().config.digest.as_str());

    // copy to docker-archive:- streams too, its summary out of the way on stderr.
    let (run, listed) = hpn_into(&work, &["copy", &image.reference, "docker-archive:-"], Command::new("tar").arg("-t"));
    run.assert_ok();
    assert!(listed.lines().any(|entry| entry == "manifest.json"), "{listed}");
    assert!(run.stderr.contains("copy: 1 image(s) ok"), "{}", run.stderr);

    // No room on stdout for --json next to the archive, and no binary noise on a terminal.
    let run = work.hpn(["--json", "save", &image.reference, "-o", "-"]);
    run.assert_code(2);
    assert!(run.stderr.contains("--json"), "{}", run.stderr);
    let line = format!("{} save {} -o -", env!("CARGO_BIN_EXE_hpn"), image.reference);
    let output = in_a_terminal(&work, &line).output().expect("run script");
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{drawn}");
    assert!(drawn.contains("stdout is a terminal"), "{drawn}");
}

/// `script -qfec LINE`: LINE run on a terminal of its own, in the workspace's
/// environment; what it draws comes out on stdout.
fn in_a_terminal(work: &Workspace, line: &str) -> Command {
    let mut terminal = Command::new("script");
    terminal.args(["-qfec", line, "/dev/null"]).current_dir(work.path());
    for (name, value) in work.command().get_envs() {
        match value {
            Some(value) => terminal.env(name, value),
            None => terminal.env_remove(name),
        };
    }
    terminal
}

#[test]
fn save_onto_a_fifo_or_a_device_writes_through_and_never_replaces_it() {
    let seeded = seeded_registry_with(&["app-a"]);
    let image = seeded.fixtures.image("app-a");
    let work = Workspace::new();

    let fifo = work.path().join("pipe.tar");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // Read on a thread of its own: a full pipe would otherwise stop hpn mid-archive.
    let reader = Command::new("cat").arg(&fifo).stdout(Stdio::piped()).spawn().unwrap();
    let reader = std::thread::spawn(move || reader.wait_with_output().unwrap().stdout);
    work.hpn(["save", &image.reference, "-o", "pipe.tar"]).assert_ok();
    let streamed = work.path().join("streamed.tar");
    fs::write(&streamed, reader.join().unwrap()).unwrap();
    let listed = tar_list(&streamed);
    assert!(listed.iter().any(|entry| entry == "manifest.json"), "{listed:?}");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    assert!(archive_leftovers(work.path()).is_empty(), "{:?}", archive_leftovers(work.path()));

    // As root a rename would replace /dev/null itself.
    if rustix::process::geteuid().is_root() {
        let run = work.hpn(["save", &image.reference, "-o", "/dev/null"]);
        run.assert_ok();
        assert!(fs::symlink_metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");
    }

    let run = work.hpn(["save", &image.reference, "-o", "/dev/full"]);
    run.assert_code(6);
    assert!(run.stderr.contains("/dev/full"), "{}", run.stderr);
    assert!(run.stderr.contains("incomplete"), "{}", run.stderr);
    assert!(fs::symlink_metadata("/dev/full").unwrap().file_type().is_char_device());
    assert!(archive_leftovers(Path::new("/dev")).is_empty(), "{:?}", archive_leftovers(Path::new("/dev")));
}

#[test]
fn a_file_name_ending_in_a_compression_gets_it_and_a_mismatch_is_refused() {
    let seeded = seeded_registry_with(&["app-a"]);
    let image = seeded.fixtures.image("app-a");
    let work = Workspace::new();
    work.hpn(["save", &image.reference, "-o", "a.tar.gz"]).assert_ok();
    assert_eq!(fs::read(work.path().join("a.tar.gz")).unwrap()[..2], [0x1f, 0x8b], "not gzip");
    work.hpn(["save", &image.reference, "-o", "a.tar.zst"]).assert_ok();
    assert_eq!(fs::read(work.path().join("a.tar.zst")).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd], "not zstd");
    work.hpn(["copy", &image.reference, "docker-archive:c.tgz"]).assert_ok();
    assert_eq!(fs::read(work.path().join("c.tgz")).unwrap()[..2], [0x1f, 0x8b], "copy: not gzip");

    let run = work.hpn(["save", &image.reference, "-o", "b.tar.gz", "--compress", "zstd"]);
    run.assert_code(2);
    assert!(run.stderr.contains("b.tar.gz") && run.stderr.contains("--compress zstd"), "{}", run.stderr);
    assert!(!work.path().join("b.tar.gz").exists());
}

#[test]
fn a_name_that_matches_nothing_in_the_archives_is_an_error_naming_it() {
    let seeded = seeded_registry_with(&["app-a"]);
    let image = seeded.fixtures.image("app-a");
    let work = Workspace::new();
    work.hpn(["save", &image.reference, "-o", "a.tar"]).assert_ok();

    let run = work.hpn(["push", "-i", "a.tar", "-r", seeded.registry.addr(), "nothing-here:1"]);
    run.assert_code(4);
    assert!(run.stderr.contains("no image named docker.io/library/nothing-here:1 in a.tar"), "{}", run.stderr);
    assert!(run.stderr.contains(&image.reference), "the names it holds are listed: {}", run.stderr);

    // Into a store of its own: the save filled the workspace's.
    let store = work.path().join("loaded");
    let load_store = [("HPN_STORE", store.to_str().unwrap())];
    let run = work.hpn_with_env(["load", "-i", "a.tar", "nothing-here:1"], &load_store);
    run.assert_code(4);
    assert!(run.stderr.contains("no image named docker.io/library/nothing-here:1"), "{}", run.stderr);
    let listed = work.hpn_with_env(["store", "ls"], &load_store);
    assert!(listed.assert_ok().stdout.trim().is_empty(), "{}", listed.stdout);
    work.hpn_with_env(["load", "-i", "a.tar", &image.reference], &load_store).assert_ok();
    let listed = work.hpn_with_env(["store", "ls"], &load_store);
    assert!(listed.assert_ok().stdout.starts_with(&image.reference), "{}", listed.stdout);

    let run = work.hpn(["copy", "docker-archive:a.tar:nothing-here:1", "oci:layout"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("nothing-here"), "{}", run.stderr);
}

#[test]
fn pushing_a_platform_the_store_lacks_says_which_it_holds_and_how_to_get_it() {
    let seeded = seeded_registry_with(&["multi"]);
    let image = seeded.fixtures.image("multi");
    let work = Workspace::new();
    work.hpn(["pull", "--platform", "linux/amd64", &image.reference]).assert_ok();
    let run = work.hpn(["push", "--platform", "linux/arm64", "-r", seeded.registry.addr(), &image.reference]);
    run.assert_code(4);
    assert!(run.stderr.contains("holds the linux/amd64 image of this index but not linux/arm64"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("hpn pull --platform linux/arm64/v8 {}", image.reference)), "{}", run.stderr);
    assert!(!run.stderr.contains("store verify"), "{}", run.stderr);
}

#[test]
fn a_working_directory_config_cannot_turn_off_tls_or_redirect_pushes_unless_named() {
    let work = Workspace::new();
    work.file("config.yaml", "registry: 127.0.0.1:9\ninsecure_registries: [registry.example]\nparalel: {}\n");
    let run = work.hpn(["push", "app:1"]);
    run.assert_code(2);
    assert!(run.stderr.contains("no target registry"), "{}", run.stderr);
    assert!(run.stderr.contains("insecure_registries, registry keys are ignored"), "{}", run.stderr);
    assert!(run.stderr.contains("--config config.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("unknown key paralel (did you mean parallel"), "{}", run.stderr);

    // Named, it is the user's choice: the push goes to its registry (which is not there).
    let run = work.hpn(["--config", "config.yaml", "push", "app:1"]);
    assert!(!run.stderr.contains("no target registry"), "{}", run.stderr);

    // -v names the file in use; logs carry no colour codes into a file or pipe.
    fs::create_dir_all(work.path().join("home/.hpn")).unwrap();
    let home_config = work.file("home/.hpn/config.yaml", "parallel:\n  max_workers: 2\n");
    let run = work.hpn(["-v", "store", "ls"]);
    run.assert_ok();
    assert!(run.stderr.contains(&format!("using config file {}", home_config.display())), "{}", run.stderr);
    assert!(!run.stderr.contains('\x1b'), "ANSI codes in piped logs: {:?}", run.stderr);
}

#[test]
fn the_go_hpns_version_command_and_runtime_flags_are_accepted() {
    let work = Workspace::new();
    let version = format!("hpn {}", env!("CARGO_PKG_VERSION"));
    for args in [&["version"][..], &["-a", "version"]] {
        let run = work.hpn(args);
        run.assert_ok();
        assert_eq!(run.stdout.trim(), version);
    }
    let run = work.hpn(["--runtime", "docker", "--auto-fallback", "store", "ls"]);
    run.assert_ok();
    assert!(run.stderr.contains("--runtime is accepted") && run.stderr.contains("needs no container runtime"));
    assert!(run.stderr.contains("--auto-fallback is accepted"), "{}", run.stderr);
    work.hpn(["-a", "pull", "--runtime=podman", "--auto-fallback=false", "--help"]).assert_ok();
}

/// app-a and app-b (which share their base and runtime layers) behind a proxy
/// that sends blobs slowly enough that their largest layer takes `seconds`.
fn slow_pair(seconds: u64) -> common::Proxied {
    use hpn_testkit::{Fault, Rule};
    let proxied = common::proxied_registry(&["app-a", "app-b"]);
    let largest = ["app-a", "app-b"]
        .iter()
        .flat_map(|name| proxied.image(name).amd64().layers.iter().map(|layer| layer.size))
        .max()
        .unwrap();
    proxied.proxy.add(Rule::new("/blobs/sha256:", Fault::ThrottleResponse((largest / seconds).max(1))).method("GET"));
    proxied
}

#[test]
fn piped_progress_is_plain_periodic_and_says_when_an_image_waits_on_anothers_layer() {
    // More than one progress interval.
    let proxied = slow_pair(7);
    let work = Workspace::new();
    let run = work.hpn(["-v", "pull", "-j", "2", &proxied.reference("app-a"), &proxied.reference("app-b")]);
    run.assert_ok();
    let progress: Vec<&str> = run.stderr.lines().filter(|line| line.starts_with("progress images ")).collect();
    assert!(!progress.is_empty(), "no periodic progress line:\n{}", run.stderr);
    assert!(progress.iter().all(|line| line.contains("/2 done") && line.contains("fetched")), "{progress:?}");
    // app-a and app-b share their base and runtime layers: one fetches, the other says it waits.
    assert!(
        run.stderr.lines().any(|line| line.starts_with("waiting ") && line.contains("(fetched for ")),
        "no waiting line:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\x1b'), "ANSI codes in piped output: {:?}", run.stderr);
}

#[test]
fn on_a_terminal_an_overall_line_tops_the_bars_and_a_wait_is_shown_as_such() {
    let proxied = slow_pair(3);
    let work = Workspace::new();
    let line = format!(
        "{} pull -j 2 {} {}",
        env!("CARGO_BIN_EXE_hpn"),
        proxied.reference("app-a"),
        proxied.reference("app-b")
    );
    let output = in_a_terminal(&work, &line).env("NO_COLOR", "1").env("TERM", "xterm").output().expect("run script");
    let drawn = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{drawn}");
    assert!(drawn.contains("images 0/2 done") && drawn.contains("images 2/2 done"), "no overall line:\n{drawn}");
    assert!(drawn.contains("waiting for layer ") && drawn.contains("(fetched for "), "no wait shown:\n{drawn}");
    assert!(!drawn.contains("\x1b[32m"), "colour despite NO_COLOR:\n{drawn}");
}
