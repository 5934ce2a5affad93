//! Throw-away PostgreSQL and NATS servers for cluster-mode tests: each on a
//! free port of 127.0.0.1 with its data in a temporary directory, never the
//! system instances, so tests can kill and restart them.
//!
//! PostgreSQL comes from the newest `/usr/lib/postgresql/*/bin` (Debian's
//! `postgresql` package), NATS from `/usr/sbin/nats-server` (Debian's
//! `nats-server`). As root, the PostgreSQL server runs as user `postgres`
//! (initdb refuses root).

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start or to die.
const WAIT: Duration = Duration::from_secs(30);

/// Pause between two readiness probes.
const POLL: Duration = Duration::from_millis(100);

/// Environment variables that would steer libpq tools elsewhere.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGOPTIONS",
    "PGDATA",
];

/// A PostgreSQL server of its own on a free port of 127.0.0.1, its cluster
/// in a temporary directory; trust authentication for user `postgres`.
/// Stopped (`-m immediate`) and removed when dropped.
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
    running: bool,
    /// Holds `data/` (the cluster), `log` (the server log) and the socket.
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Creates a cluster (initdb) in a fresh temporary directory and starts
    /// it on a free port of 127.0.0.1; returns once it accepts connections.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra server settings, written to
    /// `postgresql.conf`, e.g. `&[("fsync", "off")]`.
    pub fn start_with(settings: &[(&str, &str)]) -> io::Result<Self> {
        // Settings go to postgresql.conf, where a restart finds them too.
        let port = free_port()?;
        let mut conf = format!("\n# tern-testkit\nport = {port}\nlisten_addresses = '127.0.0.1'\n");
        for (key, value) in settings {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad PostgreSQL setting name {key:?}"),
                ));
            }
            conf.push_str(&format!("{key} = {}\n", conf_value(value)));
        }
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new().prefix("tern-pg-").tempdir()?;
        conf.push_str(&format!(
            "unix_socket_directories = {}\n",
            conf_value(&dir.path().to_string_lossy())
        ));
        let as_postgres = is_root()?;
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir.path()))?;
        }
        let mut server = Self {
            port,
            bin,
            as_postgres,
            running: false,
            dir,
        };
        let data = server.data_dir();
        run(server.pg_tool("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]))?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        io::Write::write_all(&mut file, conf.as_bytes())?;
        server.launch()?;
        Ok(server)
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq / tokio-postgres key-value connection string for database
    /// `db` as user `postgres`:
    /// `host=127.0.0.1 port=PORT user=postgres dbname=DB`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// The server the tests of this process share (fsync off), started on
    /// first use and stopped once no test holds it any more.
    pub fn shared() -> io::Result<std::sync::Arc<Self>> {
        Self::shared_slot(0)
    }

    /// A second shared server, apart from [`Self::shared`]: for tests of
    /// data spread over two PostgreSQL instances.
    pub fn shared_other() -> io::Result<std::sync::Arc<Self>> {
        Self::shared_slot(1)
    }

    fn shared_slot(slot: usize) -> io::Result<std::sync::Arc<Self>> {
        static SHARED: std::sync::Mutex<[std::sync::Weak<PostgresServer>; 2]> =
            std::sync::Mutex::new([std::sync::Weak::new(), std::sync::Weak::new()]);
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(server) = shared[slot].upgrade() {
            return Ok(server);
        }
        let server = std::sync::Arc::new(Self::start_with(&[("fsync", "off")])?);
        shared[slot] = std::sync::Arc::downgrade(&server);
        Ok(server)
    }

    /// Creates a database with a name no other call of this process used
    /// and returns its connection string ([`Self::url`]).
    pub fn fresh_database(&self) -> io::Result<String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "t{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.create_database(&name)?;
        Ok(self.url(&name))
    }

    /// Creates database `name` (`[a-z0-9_]+`) with psql.
    pub fn create_database(&self, name: &str) -> io::Result<()> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad database name {name:?}: must be [a-z0-9_]+"),
            ));
        }
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .map(drop)
    }

    /// Runs `sql` (one `-c` command, which may hold several statements)
    /// with psql against database `db` and returns its stdout, for test
    /// assertions: rows only, unaligned, `|` between columns; it fails on
    /// the first SQL error.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql);
        for var in PG_ENV {
            psql.env_remove(var);
        }
        let out = run(&mut psql)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills the whole server with SIGKILL (postmaster and its children at
    /// once, as in a crash or power loss) and waits until they are dead and
    /// the port refuses connections (and, up to 5 s, until the postmaster
    /// is reaped). The cluster stays as the crash left it, so
    /// [`restart`](Self::restart) runs crash recovery. Does nothing if the
    /// server is not running.
    pub fn kill(&mut self) -> io::Result<()> {
        if !self.running {
            return Ok(());
        }
        let pid_file = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", pid_file.display())))?;
        let postmaster: u32 = text
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| {
                io::Error::other(format!("no PID in {}: {text:?}", pid_file.display()))
            })?;
        // Frozen, the postmaster forks no child we would miss.
        run(Command::new("kill")
            .arg("-STOP")
            .arg(postmaster.to_string()))?;
        let mut pids = children_of(postmaster);
        pids.push(postmaster);
        // Children may exit meanwhile, making kill complain: the wait below
        // is the check.
        let _ = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        self.running = false;
        wait_until(
            || Ok(pids.iter().all(|&pid| is_dead(pid)) && !accepts(self.port)),
            || format!("PostgreSQL (PID {postmaster}) still alive after SIGKILL"),
        )?;
        // A dead postmaster not yet reaped still answers kill(PID, 0), which
        // the next start takes for a running server. Init reaps it (here
        // about a second late); if it does not, drop its stale lock files.
        let reaped = Instant::now() + Duration::from_secs(5);
        while process_state(postmaster).is_some() && Instant::now() < reaped {
            std::thread::sleep(POLL);
        }
        if process_state(postmaster).is_some() {
            let socket_lock = self.dir.path().join(format!(".s.PGSQL.{}.lock", self.port));
            for lock in [pid_file, socket_lock] {
                match std::fs::remove_file(&lock) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Stops the server with `pg_ctl stop -m immediate` (no shutdown
    /// checkpoint: the next start runs crash recovery). Does nothing if the
    /// server is not running.
    pub fn stop(&mut self) -> io::Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir();
        run(self
            .pg_tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"]))?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same cluster and port (stopping it
    /// first if it runs); returns once it accepts connections.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.launch()
    }

    /// The cluster's directory.
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL server tool, run as user `postgres` when we are root.
    fn pg_tool(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(path);
            runuser
        } else {
            Command::new(path)
        };
        // Somewhere user postgres may enter.
        command.current_dir(self.dir.path());
        for var in PG_ENV {
            command.env_remove(var);
        }
        command
    }

    /// Starts the server on its cluster and waits until it is ready.
    fn launch(&mut self) -> io::Result<()> {
        let data = self.data_dir();
        let log = self.dir.path().join("log");
        let started = run(self
            .pg_tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-t", "30", "-w", "start"]));
        // Even a failed pg_ctl may leave a postmaster behind for Drop to stop.
        self.running = true;
        if let Err(e) = started {
            return Err(io::Error::new(
                e.kind(),
                format!("{e}\nserver log:\n{}", tail(&log)),
            ));
        }
        let mut ready = Command::new(self.bin.join("pg_isready"));
        ready
            .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        wait_until(
            || Ok(ready.status()?.success()),
            || {
                format!(
                    "PostgreSQL on port {} not ready after {WAIT:?}; server log:\n{}",
                    self.port,
                    tail(&log)
                )
            },
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A nats-server with JetStream on a free port of 127.0.0.1, its store in a
/// temporary directory; killed when dropped.
pub struct NatsServer {
    port: u16,
    bin: PathBuf,
    child: Option<Child>,
    /// Holds `js/` (the JetStream store) and `log` (the server's output).
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts nats-server with JetStream on a free port of 127.0.0.1;
    /// returns once it greets clients with its `INFO` line.
    pub fn start() -> io::Result<Self> {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let mut server = Self {
            port: free_port()?,
            bin,
            child: None,
            dir: tempfile::Builder::new().prefix("tern-nats-").tempdir()?,
        };
        server.launch()?;
        Ok(server)
    }

    /// Its client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (as in a crash) and reaps it; the port
    /// then refuses connections. Does nothing if it is not running.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and JetStream store
    /// (killing it first if it runs); returns once it is ready.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.launch()
    }

    /// Spawns the server and waits until it is ready.
    fn launch(&mut self) -> io::Result<()> {
        let log_path = self.dir.path().join("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.bin.display())))?;
        let child = self.child.insert(child);
        let port = self.port;
        let mut exited = None;
        let ready = wait_until(
            || {
                if let Some(status) = child.try_wait()? {
                    exited = Some(status);
                    return Ok(true);
                }
                Ok(nats_greets(port))
            },
            || format!("nats-server on port {port} not ready after {WAIT:?}"),
        );
        let failure = match (ready, exited) {
            (Ok(()), None) => return Ok(()),
            (Ok(()), Some(status)) => {
                self.child = None;
                io::Error::other(format!("nats-server exited ({status})"))
            }
            (Err(e), _) => e,
        };
        Err(io::Error::new(
            failure.kind(),
            format!("{failure}; its output:\n{}", tail(&log_path)),
        ))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Whether a NATS server on `port` accepts a connection and sends `INFO {`.
fn nats_greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    let mut greeting = [0u8; 6];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO {"
}

/// The newest PostgreSQL server binaries, `/usr/lib/postgresql/N/bin`.
fn postgres_bin_dir() -> io::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no /usr/lib/postgresql/*/bin/initdb: install the postgresql package",
        )
    })
}

/// Whether this process runs as root (`/proc/self` belongs to its user).
fn is_root() -> io::Result<bool> {
    Ok(std::fs::metadata("/proc/self")?.uid() == 0)
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// `127.0.0.1:port`.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1)).is_ok()
}

/// A `postgresql.conf` string value: single-quoted, quotes doubled.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Polls `done` until it holds, failing with `message` after [`WAIT`].
fn wait_until(
    mut done: impl FnMut() -> io::Result<bool>,
    message: impl FnOnce() -> String,
) -> io::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, message()));
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `command` to completion, failing with its stderr unless it
/// succeeds.
fn run(command: &mut Command) -> io::Result<Output> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{shown}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end(),
        )))
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// The state letter of process `pid` (`R`, `S`, `Z`, ...), `None` once it
/// is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...", where COMM may hold anything.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Whether process `pid` is gone or a zombie.
fn is_dead(pid: u32) -> bool {
    matches!(process_state(pid), None | Some('Z' | 'X'))
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                    ppid.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;

    #[test]
    fn postgres_survives_kill_and_restart() {
        let started = Instant::now();
        let mut pg = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
        eprintln!("postgres ready on {} in {:?}", pg.port(), started.elapsed());
        let port = pg.port();
        assert_ne!(port, 5432);
        assert_eq!(pg.psql("postgres", "SHOW fsync").unwrap(), "off\n");
        assert!(PostgresServer::start_with(&[("bad key", "1")]).is_err());
        assert_eq!(
            pg.url("t1"),
            format!("host=127.0.0.1 port={port} user=postgres dbname=t1")
        );
        pg.create_database("t1").unwrap();
        pg.psql("t1", "CREATE TABLE x(a int); INSERT INTO x VALUES (1)")
            .unwrap();
        assert!(pg.create_database("T1; DROP").is_err());
        assert!(pg.psql("t1", "SELECT * FROM missing").is_err());

        let killing = Instant::now();
        pg.kill().unwrap();
        eprintln!("postgres killed in {:?}", killing.elapsed());
        assert!(!accepts(port));
        assert!(pg.psql("t1", "SELECT 1").is_err());
        let restarting = Instant::now();
        pg.restart().unwrap();
        eprintln!("postgres restarted in {:?}", restarting.elapsed());
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql("t1", "SELECT a FROM x").unwrap(), "1\n");
        let log = std::fs::read_to_string(pg.dir.path().join("log")).unwrap();
        assert!(log.contains("automatic recovery in progress"), "{log}");

        pg.stop().unwrap();
        assert!(!accepts(port));
        pg.restart().unwrap();
        assert_eq!(pg.psql("t1", "SELECT count(*) FROM x").unwrap(), "1\n");
        let dir = pg.dir.path().to_owned();
        drop(pg);
        assert!(!dir.exists());
        assert!(!accepts(port));
    }

    /// The first line the NATS server on `port` sends.
    fn greeting(port: u16) -> io::Result<String> {
        let stream = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    }

    #[test]
    fn nats_survives_kill_and_restart() {
        let started = Instant::now();
        let mut nats = NatsServer::start().unwrap();
        eprintln!("nats ready on {} in {:?}", nats.port(), started.elapsed());
        let port = nats.port();
        assert_ne!(port, 4222);
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
        let info = greeting(port).unwrap();
        assert!(info.starts_with("INFO {"), "{info}");
        assert!(info.contains("\"jetstream\":true"), "{info}");

        nats.kill().unwrap();
        assert!(greeting(port).is_err());
        nats.restart().unwrap();
        assert_eq!(nats.port(), port);
        assert!(greeting(port).unwrap().starts_with("INFO {"));
        drop(nats);
        assert!(!accepts(port));
    }
}
