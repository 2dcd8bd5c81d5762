//! A real Kafka broker for the tests, and small clients to load and read
//! topics around a `weir` process.
//!
//! The broker is `$KAFKA_BOOTSTRAP` when set (scripts/test starts one);
//! otherwise the first test that needs it starts one with `scripts/kafka`
//! on its own port and data folder (left running for the next test run;
//! `KAFKA_PORT=19292 WEIR_KAFKA_DIR=target/kafka-test scripts/kafka stop`
//! stops it). Every wait is bounded and says what it waited for.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{Fixture, cache_dir, repo, weir_bin};

const TEST_PORT: &str = "19292";

/// The broker's bootstrap servers, starting one if none is given.
pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP")
            && !b.is_empty()
        {
            return b;
        }
        let data = repo().join("target/kafka-test");
        let status = Command::new(repo().join("scripts/kafka"))
            .arg("start")
            .env("KAFKA_PORT", TEST_PORT)
            .env("WEIR_KAFKA_DIR", &data)
            .status()
            .expect("cannot run scripts/kafka");
        assert!(status.success(), "scripts/kafka start failed ({status})");
        format!("127.0.0.1:{TEST_PORT}")
    })
}

/// A name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn config() -> ClientConfig {
    config_for(bootstrap())
}

fn config_for(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// A broker of one test's own, for settings the shared one must not have:
/// started by `scripts/kafka` with `properties` (`key=value`) on free ports
/// and a fresh data folder, stopped when dropped.
pub struct OwnBroker {
    dir: tempfile::TempDir,
    port: u16,
    pub bootstrap: String,
}

impl OwnBroker {
    pub fn start(properties: &[&str]) -> OwnBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_pair();
        let broker = OwnBroker {
            dir,
            port,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let status = broker
            .script()
            .arg("start")
            .env("KAFKA_PROPERTIES", properties.join("\n"))
            .status()
            .expect("cannot run scripts/kafka");
        assert!(status.success(), "scripts/kafka start failed ({status})");
        broker
    }

    /// `scripts/kafka` pointed at this broker (`KAFKA_PORT`, `WEIR_KAFKA_DIR`).
    pub fn script(&self) -> Command {
        let mut c = Command::new(repo().join("scripts/kafka"));
        c.env("KAFKA_PORT", self.port.to_string())
            .env("WEIR_KAFKA_DIR", self.dir.path());
        c
    }

    /// The offsets `group` has committed on `topic`, by partition.
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        committed_with(config_for(&self.bootstrap), group, topic)
    }

    /// Each partition's start and end offsets (the first record still
    /// kept, the next to be written).
    pub fn watermarks(&self, topic: &str) -> BTreeMap<i32, (i64, i64)> {
        watermarks_with(config_for(&self.bootstrap), topic)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.script().arg("stop").stdout(Stdio::null()).status();
    }
}

/// A port whose successor is free too (the KRaft controller's, by default).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(first) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let port = first.local_addr().expect("bound address").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free neighbouring ports on 127.0.0.1");
}

/// Runs an admin client's request to its end.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

pub fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]);
}

/// Creates a topic with topic-level settings (`max.message.bytes`, ...).
pub fn create_topic_with(name: &str, partitions: i32, settings: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = config().create().expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in settings {
        topic = topic.set(key, value);
    }
    let results = block_on(admin.create_topics([&topic], &admin_options())).expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// The offsets `group` has committed on `topic`, by partition (only the
/// partitions that have one).
pub fn committed(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    committed_with(config(), group, topic)
}

fn committed_with(mut config: ClientConfig, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partition_count(&consumer, topic) {
        tpl.add_partition(topic, p);
    }
    // Not subscribed: asking does not join the group. A broker that has
    // just started may not have loaded the group's coordinator yet: that
    // answer is transient, so ask again (for a bounded time).
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(30)) {
            Ok(answer) => break answer,
            Err(e) if coordinator_not_ready(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("committed offsets of group {group} on {topic}: {e}"),
        }
    };
    answer
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Whether `e` says only that the group coordinator is not ready yet.
fn coordinator_not_ready(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::NotCoordinator | Code::CoordinatorLoadInProgress | Code::CoordinatorNotAvailable
        )
    )
}

/// Each partition's end offset (the next offset to be written).
pub fn end_offsets(topic: &str) -> BTreeMap<i32, i64> {
    end_offsets_with(config(), topic)
}

fn end_offsets_with(config: ClientConfig, topic: &str) -> BTreeMap<i32, i64> {
    watermarks_with(config, topic)
        .into_iter()
        .map(|(p, (_, high))| (p, high))
        .collect()
}

/// Each partition's start and end offsets on the shared broker (the first
/// record still kept, the next to be written).
pub fn watermarks(topic: &str) -> BTreeMap<i32, (i64, i64)> {
    watermarks_with(config(), topic)
}

/// How many partitions `topic` has (0 when it does not exist).
pub fn partitions(topic: &str) -> i32 {
    let consumer: BaseConsumer = config().create().expect("consumer");
    partition_count(&consumer, topic)
}

/// The partition Kafka's Java producer puts each of `keys` in among
/// `partitions` (its `BuiltInPartitioner.partitionForKey`, run on the
/// broker's own kafka-clients jar), by key.
pub fn java_partitions(keys: &[&str], partitions: i32) -> BTreeMap<String, i32> {
    let version = std::env::var("KAFKA_VERSION").unwrap_or_else(|_| "4.3.1".into());
    let home = std::env::var("HOME").expect("HOME");
    let lib = PathBuf::from(home).join(format!(".cache/weir/kafka/{version}/lib"));
    assert!(
        lib.is_dir(),
        "no Kafka jars at {} (scripts/kafka start fetches them)",
        lib.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("Partitions.java");
    std::fs::write(
        &source,
        "import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
public class Partitions {
    public static void main(String[] args) {
        int n = Integer.parseInt(args[0]);
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
            System.out.println(args[i] + \" \" + BuiltInPartitioner.partitionForKey(key, n));
        }
    }
}
",
    )
    .unwrap();
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(&source)
        .arg(partitions.to_string())
        .args(keys)
        .output()
        .expect("cannot run java");
    assert!(
        out.status.success(),
        "java failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, p) = l.rsplit_once(' ')?;
            Some((k.to_string(), p.parse().ok()?))
        })
        .collect()
}

fn watermarks_with(config: ClientConfig, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let consumer: BaseConsumer = config.create().expect("consumer");
    (0..partition_count(&consumer, topic))
        .map(|p| {
            let marks = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("offsets of {topic}: {e}"));
            (p, marks)
        })
        .collect()
}

fn partition_count(consumer: &BaseConsumer, topic: &str) -> i32 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32)
}

/// Deletes the named topics when dropped (at the end of a test, passed or
/// failed), so a long-lived development broker does not fill its disk.
pub struct Cleanup(Vec<String>);

impl Cleanup {
    pub fn topics(names: &[&str]) -> Cleanup {
        Cleanup(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(admin) = config().create::<AdminClient<DefaultClientContext>>() else {
            return;
        };
        let names: Vec<&str> = self.0.iter().map(String::as_str).collect();
        // Best effort: a topic that was never created is no problem.
        let _ = block_on(admin.delete_topics(&names, &admin_options()));
    }
}

/// A record as the tests write and read it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rec {
    pub key: Option<String>,
    pub value: Option<String>,
    pub timestamp: i64,
    pub headers: Vec<(String, Option<String>)>,
}

/// Now, in ms. Test records carry recent timestamps: the broker's
/// time-based retention deletes old-stamped records once a segment closes.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Rec {
    pub fn new(key: &str, value: &str) -> Rec {
        Rec {
            key: Some(key.into()),
            value: Some(value.into()),
            timestamp: now_ms(),
            headers: Vec::new(),
        }
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.value.as_deref().expect("a value")).expect("JSON value")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A record read back, with where it was.
#[derive(Debug, Clone)]
pub struct Read {
    pub rec: Rec,
    /// The key's bytes as they are (`rec.key` is them as lossy text).
    pub raw_key: Option<Vec<u8>>,
    pub partition: i32,
    pub offset: i64,
}

/// Writes `records` to `topic` (the Java client's partitioner for keys)
/// and waits until the broker has them all.
pub fn produce(topic: &str, records: &[Rec]) {
    let producer: ThreadedProducer<DefaultProducerContext> = config()
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for r in records {
        let mut base: BaseRecord<'_, str, str> = BaseRecord::to(topic).timestamp(r.timestamp);
        if let Some(k) = &r.key {
            base = base.key(k.as_str());
        }
        if let Some(v) = &r.value {
            base = base.payload(v.as_str());
        }
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        base = base.headers(headers);
        let mut pending = base;
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((_, back)) => {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
}

/// Reads `topic` from the start until `want` records arrived (then for
/// `settle` more, to catch extras), failing after `timeout`.
pub fn consume(topic: &str, want: usize, timeout: Duration, settle: Duration) -> Vec<Read> {
    try_consume(topic, want, timeout, settle).unwrap_or_else(|e| panic!("{e}"))
}

/// [`consume`] that says what went wrong instead of failing the test.
pub fn try_consume(
    topic: &str,
    want: usize,
    timeout: Duration,
    settle: Duration,
) -> Result<Vec<Read>, String> {
    let consumer: BaseConsumer = config()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let started = Instant::now();
    // The topic may be one weir creates as it starts.
    let partitions = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let n = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        if n > 0 {
            break n;
        }
        if started.elapsed() > timeout {
            return Err(format!("topic {topic} did not appear within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut enough_at: Option<Instant> = None;
    loop {
        if out.len() >= want && enough_at.is_none() {
            enough_at = Some(Instant::now());
        }
        if enough_at.is_some_and(|t| t.elapsed() >= settle) {
            return Ok(out);
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "waited {:?} for {want} records on topic {topic}, got {}",
                timeout,
                out.len()
            ));
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        out.push(to_read(&m.expect("consume")));
    }
}

fn to_read(m: &BorrowedMessage<'_>) -> Read {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), text(h.value)))
                .collect()
        })
        .unwrap_or_default();
    Read {
        rec: Rec {
            key: text(m.key()),
            value: text(m.payload()),
            timestamp: m.timestamp().to_millis().unwrap_or(-1),
            headers,
        },
        raw_key: m.key().map(<[u8]>::to_vec),
        partition: m.partition(),
        offset: m.offset(),
    }
}

/// Reads every partition of an existing topic from the start, a little at
/// a time, while a test watches a run.
pub struct Reader {
    consumer: BaseConsumer,
    /// Everything read so far, in the order it came.
    pub got: Vec<Read>,
}

impl Reader {
    pub fn new(topic: &str) -> Reader {
        let consumer: BaseConsumer = config()
            .set("group.id", unique("reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let partitions = partition_count(&consumer, topic);
        assert!(partitions > 0, "topic {topic} does not exist");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        Reader {
            consumer,
            got: Vec::new(),
        }
    }

    /// Takes what has arrived, waiting at most `wait` for the first record.
    pub fn poll(&mut self, wait: Duration) {
        let mut timeout = wait;
        while let Some(m) = self.consumer.poll(timeout) {
            self.got.push(to_read(&m.expect("consume")));
            timeout = Duration::ZERO;
        }
    }
}

/// The `kafka:` settings of a test pipeline.
pub struct Settings<'a> {
    pub threads: u32,
    pub commit_interval: &'a str,
    /// The producer's properties, a YAML flow mapping.
    pub producer: &'a str,
}

impl Default for Settings<'_> {
    /// Two tasks, commits every 200 ms, the producer as weir sets it up.
    fn default() -> Self {
        Settings {
            threads: 2,
            commit_interval: "200ms",
            producer: "{}",
        }
    }
}

/// A pipeline file for the test broker, with `{plugin:NAME}` filled in by
/// the fixture. The session timeout is short (6 s), so a killed member's
/// partitions move within seconds.
pub fn pipeline(app: &str, settings: &Settings<'_>, body: &str) -> Fixture {
    let text = format!(
        "name: {app}\nkafka:\n  bootstrap: {}\n  commit-interval: {}\n  threads: {}\n  consumer-properties: {{ session.timeout.ms: 6000, heartbeat.interval.ms: 500 }}\n  producer-properties: {}\n{body}",
        bootstrap(),
        settings.commit_interval,
        settings.threads,
        settings.producer,
    );
    Fixture::new(&text, &[])
}

/// Limits how fast the broker takes records from client `client_id`
/// (a Kafka client quota, set with scripts/kafka's kafka-configs).
pub fn throttle_producer(client_id: &str, bytes_per_second: u64) {
    let rate = format!("producer_byte_rate={bytes_per_second}");
    client_quota(client_id, &["--add-config", &rate]);
}

/// Lifts the limit [`throttle_producer`] set.
pub fn unthrottle_producer(client_id: &str) {
    client_quota(client_id, &["--delete-config", "producer_byte_rate"]);
}

/// The settings topic `topic` has that differ from the broker's defaults,
/// as `kafka-configs --describe` prints them (`cleanup.policy=compact`).
pub fn topic_configs(topic: &str) -> String {
    let out = Command::new(repo().join("scripts/kafka"))
        .args(["configs", "--bootstrap-server", bootstrap(), "--describe"])
        .args(["--entity-type", "topics", "--entity-name", topic])
        .output()
        .expect("cannot run scripts/kafka configs");
    assert!(out.status.success(), "describing topic {topic} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn client_quota(client_id: &str, change: &[&str]) {
    let status = Command::new(repo().join("scripts/kafka"))
        .args(["configs", "--bootstrap-server", bootstrap(), "--alter"])
        .args(["--entity-type", "clients", "--entity-name", client_id])
        .args(change)
        .stdout(Stdio::null())
        .status()
        .expect("cannot run scripts/kafka configs");
    assert!(
        status.success(),
        "changing the quota of {client_id} ({change:?}) failed"
    );
}

/// A `weir run` process; stopped with SIGINT (or killed) by the test.
pub struct WeirProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl WeirProcess {
    /// Starts `weir run` on the fixture's pipeline; its output goes to a log
    /// file in the fixture (printed when a test fails).
    pub fn start(fixture: &Fixture, log_name: &str) -> WeirProcess {
        WeirProcess::start_with(fixture, log_name, &[])
    }

    /// [`WeirProcess::start`] with more arguments to `weir run`.
    pub fn start_with(fixture: &Fixture, log_name: &str, args: &[&str]) -> WeirProcess {
        let log = fixture.path(log_name);
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(weir_bin())
            .arg("run")
            .arg(fixture.pipeline_path())
            .args(args)
            .env_remove("WEIR_ADMIN_TOKEN")
            .env("WEIR_CACHE_DIR", cache_dir())
            .env("RUST_LOG", "info")
            // Plain text, for the tests that read the log.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start weir");
        WeirProcess {
            child: Some(child),
            log,
        }
    }

    /// [`consume`], failing with this process's log.
    pub fn consume(
        &self,
        topic: &str,
        want: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Read> {
        try_consume(topic, want, timeout, settle)
            .unwrap_or_else(|e| panic!("{e}\nweir log:\n{}", self.log_text()))
    }

    /// Resident memory of the process now, in bytes.
    pub fn rss(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The partitions of `topic` this process was last assigned, from its
    /// log (`partitions assigned partitions=topic[0,2]`); empty before any.
    pub fn assigned(&self, topic: &str) -> Vec<i32> {
        let log = self.log_text();
        let Some(line) = log
            .lines()
            .rev()
            .find(|l| l.contains("partitions assigned"))
        else {
            return Vec::new();
        };
        let Some(start) = line.find(&format!("{topic}[")) else {
            return Vec::new();
        };
        let list = &line[start + topic.len() + 1..];
        let mut partitions: Vec<i32> = list[..list.find(']').unwrap_or(0)]
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        partitions.sort_unstable();
        partitions
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// SIGINT, then waits (bounded) for the process to end, clean or not;
    /// returns whether it stopped cleanly (exit status 130, stopped by
    /// SIGINT), and its log.
    pub fn stop_and_wait(mut self) -> (bool, String) {
        self.signal("-INT");
        let status = self.wait_status(Duration::from_secs(60));
        (status.code() == Some(130), self.log_text())
    }

    /// SIGINT, then waits (bounded) for a clean stop: exit status 130.
    pub fn stop(self) -> String {
        self.stop_within(Duration::from_secs(60))
    }

    /// [`WeirProcess::stop`], waiting at most `limit`.
    pub fn stop_within(mut self, limit: Duration) -> String {
        self.signal("-INT");
        let status = self.wait_status(limit);
        let log = self.log_text();
        assert_eq!(
            status.code(),
            Some(130),
            "weir exited with {status}:\n{log}"
        );
        log
    }

    /// Waits (at most `limit`) for the process to end.
    fn wait_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().ok();
                panic!(
                    "weir did not stop within {limit:?} of SIGINT:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) for the process to end on its own; returns whether
    /// it succeeded, and its log.
    pub fn wait(mut self) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.success(), self.log_text());
            }
            if Instant::now() > deadline {
                child.kill().ok();
                panic!("weir did not end within 60 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process dies at once, without committing or leaving.
    pub fn kill(mut self) {
        self.signal("-KILL");
        let _ = self.child.take().unwrap().wait();
    }

    /// Fails with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("weir exited early with {status}:\n{}", self.log_text());
        }
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
