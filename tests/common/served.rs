//! A running `hpn serve` of a test's workspace, read by the clients a test names.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::Workspace;

/// A running `hpn serve`, stopped with SIGTERM when dropped.
pub struct Served {
    pub child: Child,
    pub addr: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Served {
    /// `hpn serve --addr 127.0.0.1:0 ARGS`, once it says where it listens.
    pub fn start(work: &Workspace, args: &[&str]) -> Served {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let run = STARTED.fetch_add(1, Ordering::Relaxed);
        let stdout = work.path().join(format!("serve-{run}.out"));
        let stderr = work.path().join(format!("serve-{run}.err"));
        let child = work
            .command()
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("start hpn serve");
        let mut served = Served { child, addr: String::new(), stdout, stderr };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&served.stderr).unwrap_or_default();
            if let Some(at) = text.find("listening on ") {
                let url = text[at + "listening on ".len()..].lines().next().unwrap().trim();
                served.addr = url.split_once("://").unwrap().1.to_owned();
                return served;
            }
            if let Some(status) = served.child.try_wait().unwrap() {
                panic!("hpn serve exited ({status}) before listening:\n{text}");
            }
            assert!(started.elapsed() < Duration::from_secs(60), "hpn serve did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Sends `signal` and waits for the exit code.
    pub fn stop_with(mut self, signal: Signal) -> (i32, Duration) {
        let started = Instant::now();
        kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), signal).unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            assert!(started.elapsed() < Duration::from_secs(20), "hpn serve did not stop on {signal:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), Signal::TERM);
            let _ = self.child.wait();
        }
    }
}
