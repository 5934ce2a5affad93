//! Cluster mode under faults: three `tern-relay` processes on one
//! PostgreSQL database and one NATS bus (each test starts its own
//! throw-away servers), one certificate for all nodes, while
//! `tern-loadgen --mode verify` keeps sending through them. Whatever
//! happens, every acknowledged message is stored exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tern_testkit::services::{NatsServer, PostgresServer};
use tern_testkit::{RelayProcess, TestCa, VerifyRun, relay_binary};

/// Devices sending (in pairs), spread over the nodes.
const DEVICES: usize = 12;

/// PostgreSQL, NATS and three relay nodes sharing one certificate.
struct Cluster {
    pg: PostgresServer,
    nats: NatsServer,
    nodes: Vec<RelayProcess>,
    _tls: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let pg = PostgresServer::start_with(&[("fsync", "off")]).unwrap();
        pg.create_database("relay").unwrap();
        let nats = NatsServer::start().unwrap();
        let tls = tempfile::tempdir().unwrap();
        let (cert, key) = TestCa::new().server_cert(&["localhost"]);
        let (cert_path, key_path) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let nodes: Vec<RelayProcess> = (1..=3)
            .map(|n| {
                let config = format!(
                    "[tls]\ncert = {cert:?}\nkey = {key:?}\n\
                     [store]\nbackend = \"postgres\"\nurl = {url:?}\npool_size = 8\n\
                     [cluster]\nnats_url = {nats:?}\nnode_id = \"n{n}\"\n",
                    cert = cert_path,
                    key = key_path,
                    url = pg.url("relay"),
                    nats = nats.url(),
                );
                RelayProcess::start_configured(relay_binary(), &config)
            })
            .collect();
        assert!(
            nodes.iter().all(|n| n.fingerprint == nodes[0].fingerprint),
            "one certificate for all nodes"
        );
        Self {
            pg,
            nats,
            nodes,
            _tls: tls,
        }
    }

    /// A verify load of `secs` seconds over every node.
    fn load(&self, secs: u64) -> VerifyRun {
        let addrs: Vec<_> = self.nodes.iter().map(|n| n.addr).collect();
        VerifyRun::start(&addrs, &self.nodes[0].fingerprint, DEVICES, secs)
    }
}

fn assert_exactly_once(load: VerifyRun, what: &str) {
    let report = load.finish();
    println!("{what}\n{}", report.text);
    assert_eq!((report.duplicates, report.lost), (0, 0), "{what}");
    assert!(
        report.acknowledged > 50,
        "the load kept sending: {report:?}"
    );
}

#[test]
fn killing_a_node_under_load_moves_its_devices_and_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start();
    let load = cluster.load(10);
    std::thread::sleep(Duration::from_secs(4));
    cluster.nodes[1].kill();
    std::thread::sleep(Duration::from_secs(3));
    cluster.nodes[1].restart();
    assert_exactly_once(
        load,
        "node n2 killed with SIGKILL under load, restarted 3 s later",
    );
}

#[test]
fn restarting_postgres_under_load_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start();
    let load = cluster.load(10);
    std::thread::sleep(Duration::from_secs(4));
    cluster.pg.kill().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cluster.pg.restart().unwrap();
    assert_exactly_once(
        load,
        "PostgreSQL killed with SIGKILL under load, restarted 2 s later",
    );
}

#[test]
fn restarting_nats_under_load_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start();
    let load = cluster.load(10);
    std::thread::sleep(Duration::from_secs(4));
    cluster.nats.kill().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cluster.nats.restart().unwrap();
    assert_exactly_once(load, "nats-server killed under load, restarted 2 s later");
}
