//! The side-by-side Kafka benchmark: the same topology (JSON filter
//! `amount >= 100`, then add `"checked": true`) run by weir and by Kafka
//! Streams over one preloaded input topic, each alone, plus the broker's raw
//! ceiling on this machine (a plain rdkafka consume-then-produce loop).
//!
//! Each contestant is a separate process, measured from outside the same
//! way: the clock and its CPU time (utime + stime from /proc) run from its
//! first output record to its last (start-up and group joining excluded),
//! and its peak RSS is VmHWM. "Done" is when the output topic holds every
//! expected record.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

pub(crate) const PARTITIONS: i32 = 4;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Record `i`'s amount: spread over 0..1000, so 90% pass the filter.
fn amount(i: usize) -> usize {
    (i * 7919) % 1000
}

/// A ~150-byte JSON object value.
pub fn value(i: usize) -> String {
    format!(
        r#"{{"id":{i},"customer":"c-{:05}","amount":{},"country":"DE","channel":"web","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
        i % 50_000,
        amount(i)
    )
}

fn passes(i: usize) -> bool {
    amount(i) >= 100
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

pub(crate) fn create_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for r in block_on(admin.create_topics([&new], &options))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("cannot create {t}: {e}"),
        }
    }
    Ok(())
}

/// Deletes a run's output topic, so runs do not pile up on the broker's disk.
pub(crate) fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for r in block_on(admin.delete_topics(&[topic], &options))? {
        if let Err((t, e)) = r {
            bail!("cannot delete {t}: {e}");
        }
    }
    Ok(())
}

/// Records in `topic` (sum of high watermarks; topics here are never
/// compacted or truncated).
fn count(consumer: &BaseConsumer, topic: &str) -> Result<i64> {
    let mut total = 0;
    for p in 0..PARTITIONS {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        total += hi - lo;
    }
    Ok(total)
}

/// Fills `topic` with `n` records unless it already holds them.
pub fn load(bootstrap: &str, topic: &str, n: usize) -> Result<()> {
    load_values(bootstrap, topic, n, value)
}

/// [`load`] with record `i`'s value `value(i)` (keys as [`load`]'s).
pub fn load_values(
    bootstrap: &str,
    topic: &str,
    n: usize,
    value: impl Fn(usize) -> String,
) -> Result<()> {
    // Current timestamps: the broker's time-based retention would delete
    // records stamped years ago as soon as their segment closes.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    load_records(bootstrap, topic, n, |i| Loaded {
        key: format!("c-{:05}", i % 50_000),
        value: value(i),
        timestamp: base + i as i64 / 1000,
        partition: None,
    })
}

/// One record [`load_records`] writes.
pub(crate) struct Loaded {
    pub key: String,
    pub value: String,
    pub timestamp: i64,
    /// `None`: the partitioner's choice for the key.
    pub partition: Option<i32>,
}

/// Fills `topic` (created with [`PARTITIONS`] partitions) with the `n`
/// records `record` makes, unless it holds them already.
pub(crate) fn load_records(
    bootstrap: &str,
    topic: &str,
    n: usize,
    record: impl Fn(usize) -> Loaded,
) -> Result<()> {
    create_topic(bootstrap, topic)?;
    let probe: BaseConsumer = client(bootstrap).create()?;
    let have = wait_for_topic(&probe, topic)?;
    if have == n as i64 {
        println!("input topic {topic} already holds {n} records");
        return Ok(());
    }
    if have != 0 {
        bail!("topic {topic} holds {have} records, not {n}: delete it or pick another name");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = client(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .create()?;
    let started = Instant::now();
    for i in 0..n {
        let r = record(i);
        let mut to = BaseRecord::<str, str>::to(topic)
            .key(&r.key)
            .payload(&r.value)
            .timestamp(r.timestamp);
        if let Some(p) = r.partition {
            to = to.partition(p);
        }
        send(&producer, to);
    }
    producer.flush(Duration::from_secs(300))?;
    println!(
        "loaded {n} records into {topic} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Queues `record`, waiting while the producer's queue is full.
fn send<K, P>(producer: &ThreadedProducer<DefaultProducerContext>, mut record: BaseRecord<'_, K, P>)
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
        }
    }
}

fn wait_for_topic(consumer: &BaseConsumer, topic: &str) -> Result<i64> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match count(consumer, topic) {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The raw ceiling: consume and produce the same bytes, nothing else;
/// offsets committed every second (no delivery tracking: an upper bound).
pub fn passthrough(bootstrap: &str, input: &str, output: &str, group: &str) -> Result<()> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // As weir sets it: the default stalls a fast consumer for a second.
        .set("fetch.queue.backoff.ms", "10")
        // The rest of weir's consumer settings (statistics feed its lag
        // display), so the ceiling pays what weir's client pays.
        .set("statistics.interval.ms", "1000")
        .create()?;
    let producer: ThreadedProducer<DefaultProducerContext> = client(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.kbytes", "65536")
        .set("statistics.interval.ms", "0")
        .create()?;
    consumer.subscribe(&[input])?;
    // SIGTERM (how `measure` ends each contestant) or SIGINT ends the loop;
    // signal-hook's handler only sets the flag, which is async-signal-safe.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("cannot handle signal {signal}"))?;
    }
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m?;
        let mut record = BaseRecord::<[u8], [u8]>::to(output);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        send(&producer, record);
        if last_commit.elapsed() >= Duration::from_secs(1) {
            let _ = consumer.commit_consumer_state(CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// `weir-bench kafka plain`'s options.
#[derive(clap::Args)]
pub struct Plain {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub input: String,
    #[arg(long)]
    pub output: String,
    #[arg(long)]
    pub group: String,
    /// Consume-then-produce loops, each with its own consumer in the group
    /// (weir's `threads`).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// How often each loop commits what it has consumed (asynchronously).
    #[arg(long, default_value_t = 1000)]
    pub commit_ms: u64,
}

/// The yardstick for the ceiling, written apart from `passthrough`: the
/// plainest rdkafka consume-then-produce loop with weir's own client
/// settings (`client_config` in host/src/io/kafka/mod.rs, copied here): one
/// `BaseConsumer` per thread in one group, `poll` a message at a time, one
/// shared `ThreadedProducer`, offsets committed asynchronously every commit
/// interval (no delivery tracking). Runs until SIGTERM, then flushes.
pub fn plain(p: &Plain) -> Result<()> {
    let producer: Arc<ThreadedProducer<DefaultProducerContext>> = Arc::new(
        client(&p.bootstrap)
            .set("client.id", format!("{}-producer", p.group))
            .set("partitioner", "murmur2_random")
            .set("enable.idempotence", "true")
            .set("queue.buffering.max.kbytes", "65536")
            .set("statistics.interval.ms", "0")
            .create()?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .with_context(|| format!("cannot handle signal {signal}"))?;
    }
    let loops: Vec<_> = (0..p.threads.max(1))
        .map(|_| {
            let consumer: BaseConsumer = client(&p.bootstrap)
                .set("client.id", format!("{}-consumer", p.group))
                .set("group.id", &p.group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("statistics.interval.ms", "1000")
                .set("fetch.queue.backoff.ms", "10")
                .create()?;
            consumer.subscribe(&[&p.input])?;
            let (producer, stop) = (producer.clone(), stop.clone());
            let (input, output) = (p.input.clone(), p.output.clone());
            let every = Duration::from_millis(p.commit_ms);
            Ok(std::thread::spawn(move || {
                plain_loop(&consumer, &producer, &input, &output, &stop, every)
            }))
        })
        .collect::<Result<_>>()?;
    for l in loops {
        l.join().map_err(|_| anyhow::anyhow!("a loop panicked"))??;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

fn plain_loop(
    consumer: &BaseConsumer,
    producer: &ThreadedProducer<DefaultProducerContext>,
    input: &str,
    output: &str,
    stop: &AtomicBool,
    every: Duration,
) -> Result<()> {
    // The next offset to commit, per partition of the input.
    let mut next = [None::<i64>; PARTITIONS as usize];
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            let mut record = BaseRecord::<[u8], [u8]>::to(output);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            if let Some(ts) = m.timestamp().to_millis() {
                record = record.timestamp(ts);
            }
            send(producer, record);
            next[m.partition() as usize] = Some(m.offset() + 1);
        }
        if last_commit.elapsed() >= every {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in next.iter().enumerate() {
                if let Some(o) = o {
                    tpl.add_partition_offset(input, p as i32, Offset::Offset(*o))?;
                }
            }
            if tpl.count() > 0 {
                let _ = consumer.commit(&tpl, CommitMode::Async);
            }
            last_commit = Instant::now();
        }
    }
    Ok(())
}

/// CPU time (user + system) and peak RSS of a running process.
pub(crate) fn usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').context("stat format")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (fields[11].parse::<u64>()? + fields[12].parse::<u64>()?) as f64 / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok((cpu, hwm_kib * 1024))
}

/// One contestant's measured run.
pub(crate) struct Measured {
    pub name: String,
    pub records: usize,
    pub wall: f64,
    pub cpu: f64,
    pub rss: u64,
    /// The broker's CPU seconds over the same span, when its pid is known.
    pub broker_cpu: Option<f64>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.wall
    }
    pub fn per_cpu(&self) -> f64 {
        self.records as f64 / self.cpu
    }
}

/// Starts `command`, waits for `want` records in `output`, measures, stops it.
fn measure(
    c: &Compare,
    name: &str,
    command: Command,
    output: &str,
    want: i64,
    log: &Path,
) -> Result<Measured> {
    let run = Run {
        bootstrap: &c.bootstrap,
        broker: c.broker_pid,
        records: c.records,
    };
    measure_run(&run, name, command, output, want, log)
}

/// Where a measured run happens and how much input it has.
pub(crate) struct Run<'a> {
    pub bootstrap: &'a str,
    pub broker: Option<u32>,
    pub records: usize,
}

/// [`measure`] for any benchmark: starts `command`, waits for `want`
/// records in `output`, measures, stops it (SIGTERM, a clean stop).
pub(crate) fn measure_run(
    run: &Run<'_>,
    name: &str,
    mut command: Command,
    output: &str,
    want: i64,
    log: &Path,
) -> Result<Measured> {
    let (bootstrap, broker, input_records) = (run.bootstrap, run.broker, run.records);
    create_topic(bootstrap, output)?;
    let probe: BaseConsumer = client(bootstrap).create()?;
    wait_for_topic(&probe, output)?;
    let file = std::fs::File::create(log)?;
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    let mut first: Option<(Instant, f64, Option<f64>)> = None;
    let broker_cpu = || broker.and_then(|b| usage(b).ok()).map(|(cpu, _)| cpu);
    let result = loop {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited early ({status}); see {}", log.display());
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("{name} did not finish within 30 minutes"));
        }
        let n = count(&probe, output)?;
        if std::env::var_os("WEIR_BENCH_TRACE").is_some() {
            eprintln!("trace {:.3} {name}: {n}", started.elapsed().as_secs_f64());
        }
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), usage(pid)?.0, broker_cpu()));
        }
        if n >= want {
            let (t0, cpu0, broker0) = first.expect("set above");
            let (cpu1, rss) = usage(pid)?;
            break Ok(Measured {
                name: name.to_string(),
                records: input_records,
                wall: t0.elapsed().as_secs_f64(),
                cpu: cpu1 - cpu0,
                rss,
                broker_cpu: broker0.zip(broker_cpu()).map(|(a, b)| b - a),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop(&mut child)?;
    result
}

/// Bytes under `path` (a state directory).
pub(crate) fn du(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// What both contestants of a run are given.
pub(crate) struct Contest<'a> {
    pub bootstrap: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub app: &'a str,
    pub threads: u32,
    pub commit_ms: u64,
    pub state: &'a Path,
}

/// The Kafka Streams peer's command for `topology` (`--ks-jar`, see
/// bench/kafka-streams), with `properties` (KEY=VALUE) added.
pub(crate) fn kafka_streams_command(
    jar: &Path,
    c: &Contest<'_>,
    topology: &str,
    properties: &[&str],
) -> Command {
    let mut cmd = Command::new("java");
    cmd.args(["-Xms512m", "-Xmx2g", "-jar"])
        .arg(jar)
        .args(["--bootstrap-servers", c.bootstrap])
        .args(["--input-topic", c.input, "--output-topic", c.output])
        .args(["--application-id", c.app])
        .args(["--threads", &c.threads.to_string()])
        .args(["--commit-interval-ms", &c.commit_ms.to_string()])
        .args(["--topology", topology])
        .arg("--property")
        .arg(format!("state.dir={}", c.state.display()));
    for p in properties {
        cmd.args(["--property", p]);
    }
    cmd
}

/// weir's command for the pipeline `yaml`, written to `file`, with its
/// state in the contest's directory.
pub(crate) fn weir_command(c: &Contest<'_>, file: &Path, yaml: &str) -> Result<Command> {
    std::fs::write(file, yaml)?;
    let weir_bin = std::env::current_exe()?
        .parent()
        .context("exe folder")?
        .join("weir");
    let mut cmd = Command::new(weir_bin);
    cmd.arg("run").arg(file).arg("--state-dir").arg(c.state);
    Ok(cmd)
}

/// Whether run `name` is among `--only`'s comma-separated list (all runs
/// when there is none).
pub(crate) fn selected(only: Option<&str>, name: &str) -> bool {
    only.is_none_or(|only| only.split(',').any(|o| o.trim() == name))
}

/// The last 30 lines of a run's log, for an error.
pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    format!(
        "log tail ({}):\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// SIGTERM (a clean stop), then waits up to a minute before SIGKILL.
pub(crate) fn stop(child: &mut Child) -> Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `weir-bench kafka compare`'s options.
#[derive(clap::Args)]
pub struct Compare {
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    #[arg(long, default_value_t = 5_000_000)]
    pub records: usize,
    /// The Kafka Streams peer (bench/kafka-streams/build prints it).
    #[arg(long)]
    pub ks_jar: PathBuf,
    /// The weir binary (default: next to this one).
    #[arg(long)]
    pub weir_bin: Option<PathBuf>,
    /// Processing threads of each contestant.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Only these runs, comma-separated: ceiling (`kafka passthrough`),
    /// plain (`kafka plain`), weir, kafka-streams (by default all).
    #[arg(long)]
    pub only: Option<String>,
    /// The broker's pid, to report its CPU time beside each run.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// Runs the ceiling, weir and Kafka Streams one after the other on the same
/// input and prints the table.
pub fn compare(c: &Compare) -> Result<()> {
    let input = format!("bench-input-{}", c.records);
    load(&c.bootstrap, &input, c.records)?;
    let want = (0..c.records).filter(|&i| passes(i)).count() as i64;
    let run_id = std::process::id();
    let dir = tempfile::tempdir()?;
    let commit_ms = 1000;
    let self_exe = std::env::current_exe()?;
    let mut results = Vec::new();
    let runs: [&str; 4] = ["ceiling", "plain", "weir", "kafka-streams"];
    for name in runs {
        if !selected(c.only.as_deref(), name) {
            continue;
        }
        let output = format!("bench-out-{name}-{run_id}");
        let app = format!("bench-{name}-{run_id}");
        let log = dir.path().join(format!("{name}.log"));
        let (command, expected) = match name {
            "ceiling" => {
                let mut cmd = Command::new(&self_exe);
                cmd.args(["kafka", "passthrough", "--bootstrap", &c.bootstrap])
                    .args(["--input", &input, "--output", &output, "--group", &app]);
                (cmd, c.records as i64)
            }
            "plain" => {
                let mut cmd = Command::new(&self_exe);
                cmd.args(["kafka", "plain", "--bootstrap", &c.bootstrap])
                    .args(["--input", &input, "--output", &output, "--group", &app])
                    .args(["--threads", &c.threads.to_string()])
                    .args(["--commit-ms", &commit_ms.to_string()]);
                (cmd, c.records as i64)
            }
            "weir" => {
                let pipeline = dir.path().join("pipeline.yaml");
                std::fs::write(
                    &pipeline,
                    weir_pipeline(c, &input, &output, &app, commit_ms)?,
                )?;
                let weir_bin = match &c.weir_bin {
                    Some(b) => b.clone(),
                    None => self_exe.parent().context("exe folder")?.join("weir"),
                };
                let mut cmd = Command::new(weir_bin);
                cmd.arg("run").arg(&pipeline);
                (cmd, want)
            }
            _ => {
                let mut cmd = Command::new("java");
                cmd.args(["-Xms512m", "-Xmx2g", "-jar"])
                    .arg(&c.ks_jar)
                    .args(["--bootstrap-servers", &c.bootstrap])
                    .args(["--input-topic", &input, "--output-topic", &output])
                    .args(["--application-id", &app])
                    .args(["--threads", &c.threads.to_string()])
                    .args(["--commit-interval-ms", &commit_ms.to_string()]);
                (cmd, want)
            }
        };
        println!("running {name} ...");
        let m = measure(c, name, command, &output, expected, &log)
            .with_context(|| format!("{name} {}", log_tail(&log)))?;
        delete_topic(&c.bootstrap, &output)?;
        println!(
            "  {:.2} s, {:.0} records/s, {:.0} per CPU-second, peak RSS {} MiB",
            m.wall,
            m.rate(),
            m.per_cpu(),
            m.rss >> 20
        );
        results.push(m);
    }
    print_table(c, &results);
    Ok(())
}

fn weir_pipeline(
    c: &Compare,
    input: &str,
    output: &str,
    app: &str,
    commit_ms: u64,
) -> Result<String> {
    let plugin = |name: &str| -> Result<String> {
        let p = crate::plugin_path(name)?;
        Ok(p.display().to_string())
    };
    Ok(format!(
        "name: {app}
batch-size: 1024
kafka:
  bootstrap: {bootstrap}
  threads: {threads}
  commit-interval: {commit_ms}ms
sources:
  in: {{ kind: kafka, topic: {input} }}
plugins:
  filter: {{ path: {filter} }}
  enrich: {{ path: {enrich} }}
steps:
  - {{ name: keep, kind: filter, plugin: filter, config: {{ field: amount, op: gte, value: 100 }} }}
  - {{ name: tag, kind: map, plugin: enrich, config: {{ set: {{ checked: true }} }} }}
sinks:
  out: {{ kind: kafka, topic: {output} }}
",
        bootstrap = c.bootstrap,
        threads = c.threads,
        filter = plugin("json_filter")?,
        enrich = plugin("enricher")?,
    ))
}

fn print_table(c: &Compare, results: &[Measured]) {
    println!();
    println!(
        "{} input records of ~{} bytes, {PARTITIONS} partitions, {} threads each, at-least-once, commit every 1 s, {} cores",
        c.records,
        value(0).len(),
        c.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| run | records | seconds | records/s | CPU s | records per CPU-second | peak RSS MiB | broker CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in results {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {} | {} |",
            m.name,
            m.records,
            m.wall,
            m.rate(),
            m.cpu,
            m.per_cpu(),
            m.rss >> 20,
            m.broker_cpu.map_or("-".to_string(), |b| format!("{b:.2}"))
        );
    }
    let find = |n: &str| results.iter().find(|m| m.name == n);
    if let Some(w) = find("weir") {
        println!();
        if let Some(k) = find("kafka-streams") {
            println!(
                "weir / Kafka Streams: {:.2}x records/s, {:.2}x records per CPU-second, {:.2}x peak RSS",
                w.rate() / k.rate(),
                w.per_cpu() / k.per_cpu(),
                w.rss as f64 / k.rss as f64
            );
        }
        // The raw ceiling is the faster of the two raw loops of the round:
        // `kafka passthrough` and the independently written `kafka plain`.
        let raw = [find("ceiling"), find("plain")]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.rate().total_cmp(&b.rate()));
        if let Some(r) = raw {
            println!(
                "weir / raw ceiling: {:.0}% of records/s, {:.0}% of records per CPU-second (ceiling: {})",
                100.0 * w.rate() / r.rate(),
                100.0 * w.per_cpu() / r.per_cpu(),
                r.name
            );
        }
    }
    if let (Some(p), Some(r)) = (find("plain"), find("ceiling")) {
        println!(
            "plain / passthrough: {:.2}x records/s, {:.2}x records per CPU-second{}",
            p.rate() / r.rate(),
            p.per_cpu() / r.per_cpu(),
            p.broker_cpu
                .zip(r.broker_cpu)
                .map_or(String::new(), |(a, b)| format!(
                    ", {:.2}x broker CPU",
                    a / b
                ))
        );
    }
}
