//! A relay for tests on 127.0.0.1 with a temporary data directory: served
//! in-process on the test's runtime, or as the real `tern-relay` binary in a
//! child process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tern_core::net::RelayAddress;
use tern_relay::{Config, Server};
use tern_transport::TrustPolicy;
use tern_transport::trust::BadFingerprint;

use crate::guard;

/// How clients reach a relay listening on `addr` whose certificate has the
/// SHA-256 `fingerprint` (as `tern-relay serve` prints it): pinned, under
/// the self-signed certificate's name.
pub fn pinned(addr: SocketAddr, fingerprint: &str) -> Result<RelayAddress, BadFingerprint> {
    Ok(RelayAddress::new(
        addr,
        tern_relay::tls::SELF_SIGNED_NAME,
        TrustPolicy::Pinned(fingerprint.parse()?),
    ))
}

/// A relay served in-process on an ephemeral port of 127.0.0.1 with its own
/// data directory (or one its configuration names).
pub struct TestRelay {
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its metrics address, when the configuration asked for one.
    pub metrics: Option<SocketAddr>,
    /// The SHA-256 fingerprint of its certificate.
    pub fingerprint: String,
    /// The data directory it was given (unused when the configuration names
    /// another one).
    pub dir: tempfile::TempDir,
    config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestRelay {
    /// Starts a relay with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a relay whose configuration `tune` adjusted (limits, data
    /// directory, TLS, push).
    ///
    /// # Panics
    /// When the relay cannot start.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        tune(&mut config);
        let mut relay = Self {
            addr: config.listen,
            metrics: None,
            fingerprint: String::new(),
            dir,
            config,
            stop: None,
            task: None,
        };
        relay.serve();
        relay
    }

    /// Starts serving `self.config`, recording where the relay listens.
    fn serve(&mut self) {
        let server = Server::start(self.config.clone()).unwrap();
        self.addr = server.local_addr().unwrap();
        self.metrics = server.metrics_addr();
        self.fingerprint = server.fingerprint().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        self.task = Some(tokio::spawn(server.run(async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// How clients reach this relay (certificate pinned).
    pub fn address(&self) -> RelayAddress {
        pinned(self.addr, &self.fingerprint).unwrap()
    }

    /// Shuts the relay down gracefully and waits until it has stopped.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            guard(task).await.unwrap();
        }
    }

    /// Shuts the relay down gracefully and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shut_down().await;
        self.dir
    }

    /// Shuts the relay down gracefully and starts it again on the same
    /// address, configuration and data directory (so the same certificate),
    /// as after an operator's restart.
    ///
    /// # Panics
    /// When the restarted relay cannot start or presents another
    /// certificate.
    pub async fn restart(&mut self) {
        self.shut_down().await;
        let fingerprint = std::mem::take(&mut self.fingerprint);
        self.config.listen = self.addr;
        self.serve();
        assert_eq!(self.fingerprint, fingerprint, "same certificate");
    }
}

/// The `tern-relay` binary of this build (`target/<profile>/tern-relay`,
/// next to the running test's `deps` directory), built with cargo first
/// when it is not there: crates other than tern-relay cannot ask cargo for
/// it.
///
/// # Panics
/// When the binary is missing and building it fails.
pub fn relay_binary() -> PathBuf {
    workspace_binary("tern-relay")
}

/// The `tern-loadgen` binary of this build, built first when missing (see
/// [`relay_binary`]).
///
/// # Panics
/// When the binary is missing and building it fails.
pub fn loadgen_binary() -> PathBuf {
    workspace_binary("tern-loadgen")
}

/// The binary `name` of the workspace package of the same name.
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", name, "--bin", name])
            .status()
            .unwrap();
        assert!(status.success(), "building {name} failed");
    }
    bin
}

/// The real `tern-relay` binary serving on an ephemeral port of 127.0.0.1
/// with a temporary data directory; killed when dropped.
pub struct RelayProcess {
    /// Its UDP address.
    pub addr: SocketAddr,
    /// The SHA-256 fingerprint of its certificate.
    pub fingerprint: String,
    bin: PathBuf,
    /// Holds the config file (and the data directory unless one was given).
    _scratch: tempfile::TempDir,
    data_dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl RelayProcess {
    /// Starts `bin` (in tern-relay's own tests
    /// `env!("CARGO_BIN_EXE_tern-relay")`, elsewhere [`relay_binary`]) and
    /// waits until it printed its address and fingerprint.
    ///
    /// # Panics
    /// When the relay cannot be started or exits before printing them.
    pub fn start(bin: impl Into<PathBuf>) -> Self {
        Self::start_configured(bin, "")
    }

    /// [`start`](Self::start) with `config` (TOML, as in a `--config`
    /// file; listen address and data directory are set by flags).
    ///
    /// # Panics
    /// As [`start`](Self::start), or when the file cannot be written.
    pub fn start_configured(bin: impl Into<PathBuf>, config: &str) -> Self {
        Self::start_on(bin, config, None)
    }

    /// [`start_configured`](Self::start_configured) keeping its data in
    /// `data_dir` (a test's small filesystem) instead of a temporary
    /// directory.
    ///
    /// # Panics
    /// As [`start`](Self::start), or when the file cannot be written.
    pub fn start_on(bin: impl Into<PathBuf>, config: &str, data_dir: Option<PathBuf>) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("relay.toml");
        std::fs::write(&path, config).unwrap();
        let mut relay = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            fingerprint: String::new(),
            bin: bin.into(),
            data_dir: data_dir.unwrap_or_else(|| scratch.path().join("data")),
            _scratch: scratch,
            config: path,
            child: None,
        };
        relay.spawn();
        relay
    }

    /// Spawns the binary on the data directory and reads where it listens.
    fn spawn(&mut self) {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut addr, mut fingerprint) = (None, None);
        while addr.is_none() || fingerprint.is_none() {
            let line = lines
                .next()
                .expect("the relay exited before printing its address")
                .unwrap();
            if let Some(a) = line.strip_prefix("tern-relay listening on ") {
                addr = Some(a.trim().parse().unwrap());
            } else if let Some(f) = line.strip_prefix("certificate sha256 fingerprint: ") {
                fingerprint = Some(f.trim().to_owned());
            }
        }
        self.addr = addr.unwrap();
        self.fingerprint = fingerprint.unwrap();
        self.child = Some(child);
    }

    /// How clients reach this relay (certificate pinned).
    pub fn address(&self) -> RelayAddress {
        pinned(self.addr, &self.fingerprint).unwrap()
    }

    /// The relay's data directory.
    pub fn dir(&self) -> &Path {
        &self.data_dir
    }

    /// The relay process's resident memory in KiB (`VmRSS` of
    /// `/proc/PID/status`; Linux only), `None` when not running.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    }

    /// Kills the relay with SIGKILL (no shutdown, as in a crash or power
    /// loss) and reaps it; the port then answers nothing. Does nothing if it
    /// is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the relay if it runs, then starts the binary again on the same
    /// data directory and port (same certificate, same address), as a node
    /// restarted after a crash.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
