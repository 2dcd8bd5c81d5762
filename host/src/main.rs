//! The `weir` command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use weir::admin::{self, Token};
use weir::scaffold;
use weir::testing;
use weir::{
    Ending, EngineSettings, Interrupter, Overrides, Pipeline, Place, PluginEngine, RunOptions,
    Topology, summary_lines,
};

/// `weir`'s exit statuses (README, "Exit status").
mod exit {
    /// The run finished (records may have been dead-lettered: the summary
    /// says so), the pipeline is valid, every test case passed.
    pub const FINISHED: u8 = 0;
    /// The run failed, a test case failed, or a command could not do its work.
    pub const FAILED: u8 = 1;
    /// Bad usage (clap's own errors exit 2 too) or an invalid pipeline file,
    /// plugin or test fixture.
    pub const INVALID: u8 = 2;
    /// Stopped by a signal: 128 + its number, as shells report it.
    pub const SIGINT: u8 = 130;
    pub const SIGTERM: u8 = 143;
}

/// An invalid pipeline file, plugin or fixture: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String);

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A stream processor whose per-record logic runs as sandboxed WebAssembly components"
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its inputs end (or Ctrl-C).
    Run {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
        /// No live progress and no summary line at the end (errors are still reported).
        #[arg(long)]
        quiet: bool,
        /// For development: when the plugin file of a step changes (a
        /// rebuild), swap the step to it once the file is complete.
        #[arg(long)]
        watch: bool,
        /// With `processing-guarantee: exactly-once`: discard the
        /// checkpoint of an interrupted run and start over, rather than
        /// resume from it.
        #[arg(long)]
        from_scratch: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a running pipeline's steps, plugin digests and counters, and
    /// the versions of each swapped step with the records each processed,
    /// from its admin API.
    Status {
        /// The pipeline file (its run file, in `.weir/` beside it, says
        /// where the admin API of each of its running processes is), or the
        /// admin API's address: IP:PORT (plain HTTP), http://HOST:PORT or
        /// https://HOST:PORT.
        #[arg(value_name = "PIPELINE|ADDRESS")]
        target: String,
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Replace a plugin step of a running pipeline with a new component, a
    /// new config, or both, without stopping it (through its admin API).
    ///
    /// The new version is checked (world, kind, init with its config,
    /// ports) before anything changes; a refusal says why, exits 1, and
    /// the old version keeps running.
    #[command(group(
        clap::ArgGroup::new("change").required(true).multiple(true).args(["plugin", "config"])
    ))]
    Swap {
        /// The pipeline file (its run files, in `.weir/` beside it, say
        /// where its running processes are), or the admin API's IP:PORT.
        #[arg(value_name = "PIPELINE|ADDRESS")]
        target: String,
        /// The step to swap.
        #[arg(long, value_name = "NAME")]
        step: String,
        /// The new component, read here and uploaded. Without it the step
        /// keeps its component (a config-only swap).
        #[arg(value_name = "PLUGIN.wasm")]
        plugin: Option<PathBuf>,
        /// The step's new config, as its `config:` in the pipeline file
        /// would hold it: JSON if FILE's name ends in `.json`, YAML
        /// otherwise. Without it the step keeps its config.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        rollback: RollbackArgs,
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        ca: CaArgs,
    },
    /// Check a pipeline file, its plugins and their configs without running it.
    Validate {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
        /// Also print the sub-topologies, their tasks, every source, step and
        /// sink, the internal topics and the delivery guarantee of each sink.
        #[arg(long)]
        print_topology: bool,
        /// The file this one replaces: say, per stateful step, whether its
        /// state carries on, starts empty, or is refused (a changed group-by
        /// key or aggregation under the same id); exits 1 when any is refused.
        #[arg(long, value_name = "OLD")]
        against: Option<PathBuf>,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
    /// Run a pipeline against fixture files and compare every sink with its expected file.
    Test {
        /// The pipeline file (YAML); its cases are in `tests/<file stem>/<case>/` beside it.
        pipeline: PathBuf,
        /// Folder of cases, or one case (default: the pipeline's own, see above).
        #[arg(long)]
        cases: Option<PathBuf>,
        /// Write the actual outputs as the expected files instead of comparing,
        /// less the run's details (partition header, read-time timestamps).
        #[arg(long)]
        bless: bool,
        /// Like --bless, but keep every field the sinks wrote, run details too.
        #[arg(long, conflicts_with = "bless")]
        bless_all: bool,
    },
    /// Show or reset a stopped pipeline's state: its stateful steps'
    /// stores under its state directory.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print a shell completion script (e.g. `weir completions bash > /etc/bash_completion.d/weir`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Subcommand)]
enum StateCommand {
    /// Each store of each task: its keys, their bytes, and the changelog
    /// offset it is restored up to (its checkpoint, on Kafka).
    List {
        #[command(flatten)]
        target: StateTarget,
    },
    /// Every key of the stores as JSON lines: `{"step", "task", "key",
    /// "value", "timestamp"}`, the value as the step last emitted it.
    Dump {
        #[command(flatten)]
        target: StateTarget,
    },
    /// Remove the stores: every task's folder, or with --step that step's
    /// store in each task. The next run starts them empty.
    Reset {
        #[command(flatten)]
        target: StateTarget,
        /// On Kafka, remove this machine's copy only (the next run
        /// restores it from the changelog topics, which keep it).
        #[arg(long, conflicts_with = "changelogs")]
        local: bool,
        /// On Kafka, also delete the changelog topics, so the next run
        /// starts the stores empty (refused while any process of the
        /// application runs; the group's input offsets are kept).
        #[arg(long)]
        changelogs: bool,
    },
}

/// Whose state `weir state` looks at.
#[derive(clap::Args)]
struct StateTarget {
    /// The pipeline file (YAML).
    pipeline: PathBuf,
    /// Only the store of the stateful step with this id.
    #[arg(long, value_name = "ID")]
    step: Option<String>,
    /// The state directory, if the pipeline was run with --state-dir.
    #[arg(long = "state-dir", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl StateTarget {
    /// The pipeline and its state directory.
    fn open(&self) -> Result<(Topology, PathBuf)> {
        let overrides = Overrides {
            state_dir: self.state_dir.clone(),
            ..Overrides::default()
        };
        let topo = build_with(&self.pipeline, &overrides)?;
        let dir = weir::state_inspect::state_dir(&topo).map_err(Invalid)?;
        weir::state_inspect::check_step(&topo, self.step.as_deref()).map_err(Invalid)?;
        Ok((topo, dir))
    }
}

/// Sources and sinks pointed elsewhere than the pipeline file says.
#[derive(clap::Args)]
struct EndpointArgs {
    /// Read source NAME from PATH (relative to the current folder) or stdin
    /// (`-`) instead; repeatable. Replacing a Kafka source means replacing
    /// every one (a pipeline reads Kafka or embedded sources, not both).
    #[arg(long = "input", value_name = "NAME=PATH|-", value_parser = assignment)]
    inputs: Vec<(String, String)>,
    /// Write sink NAME to PATH (relative to the current folder) or stdout
    /// (`-`) instead; repeatable.
    #[arg(long = "output", value_name = "NAME=PATH|-", value_parser = assignment)]
    outputs: Vec<(String, String)>,
    /// Keep the stateful steps' stores under DIR (relative to the current
    /// folder) instead of `state.dir` or the default
    /// ($XDG_STATE_HOME/weir/<application-id>).
    #[arg(long = "state-dir", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl EndpointArgs {
    fn overrides(&self) -> Overrides {
        let places = |all: &[(String, String)]| {
            all.iter()
                .map(|(name, place)| (name.clone(), Place::parse(place)))
                .collect()
        };
        Overrides {
            inputs: places(&self.inputs),
            outputs: places(&self.outputs),
            state_dir: self.state_dir.clone(),
        }
    }
}

/// Where a run serves its admin API (README, "Admin API").
#[derive(clap::Args)]
struct AdminArgs {
    /// Serve the admin API on this IP:PORT (port 0: one the OS chooses;
    /// the run file says which), or `off`. Without TLS only a loopback
    /// address is accepted.
    #[arg(long = "admin", value_name = "ADDR|off", default_value = weir::admin::DEFAULT_ADDRESS)]
    address: String,
    /// Serve the admin API over HTTPS with the certificate chain in FILE
    /// (PEM, the server's own first); needs --admin-tls-key.
    #[arg(long = "admin-tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --admin-tls-cert (PEM; readable by its owner only).
    #[arg(long = "admin-tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    token: TokenArgs,
}

impl AdminArgs {
    /// The server's certificate and key, when given.
    fn tls(&self) -> Result<Option<admin::ServerTls>, Invalid> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => admin::ServerTls::load(cert, key)
                .map(Some)
                .map_err(|e| Invalid(e.to_string())),
            // clap requires both or neither.
            _ => Ok(None),
        }
    }
}

/// What the CLI trusts when an admin API speaks HTTPS.
#[derive(clap::Args)]
struct CaArgs {
    /// Trust the certificates in FILE (PEM: the CA that signed the admin
    /// API's certificate, or that certificate itself) for https://
    /// addresses, instead of the built-in Mozilla roots.
    #[arg(long = "admin-ca", value_name = "FILE")]
    ca: Option<PathBuf>,
}

impl CaArgs {
    fn tls(&self) -> Result<admin::ClientTls, Invalid> {
        admin::ClientTls::load(self.ca.as_deref()).map_err(|e| Invalid(e.to_string()))
    }
}

/// `weir swap`'s automatic rollback (README, "Rollback").
#[derive(clap::Args)]
struct RollbackArgs {
    /// Put the new version on trial for its first N records (over every
    /// task), rolling back to the running version if too many fail.
    #[arg(
        long = "rollback-after",
        value_name = "N",
        requires = "max_failure_rate"
    )]
    records: Option<u64>,
    /// The share of the trial's records that may fail, from 0 (any failure
    /// rolls back) up to, not including, 1.
    #[arg(long = "rollback-above", value_name = "RATE", requires = "records")]
    max_failure_rate: Option<f64>,
}

impl RollbackArgs {
    fn options(&self) -> weir::SwapOptions {
        weir::SwapOptions {
            rollback: self
                .records
                .zip(self.max_failure_rate)
                .map(|(records, max_failure_rate)| weir::Rollback {
                    records,
                    max_failure_rate,
                }),
        }
    }
}

/// The admin API's bearer token.
#[derive(clap::Args)]
struct TokenArgs {
    /// Read the admin API's bearer token from FILE (readable by its owner
    /// only); without it, from the environment variable WEIR_ADMIN_TOKEN.
    #[arg(long = "admin-token-file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl TokenArgs {
    fn token(&self) -> Result<Option<Token>, Invalid> {
        Token::configured(self.file.as_deref()).map_err(|e| Invalid(e.to_string()))
    }
}

/// `NAME=PATH` or `NAME=-`.
fn assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, place)) if !name.is_empty() && !place.is_empty() => {
            Ok((name.to_string(), place.to_string()))
        }
        _ => Err(format!("expected NAME=PATH or NAME=-, got `{text}`")),
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a component's world, exports, imports, size, and whether this host can run it.
    Inspect {
        /// The component (`.wasm`).
        wasm: PathBuf,
    },
    /// Create a plugin crate that builds anywhere.
    ///
    /// The crate holds the plugin with its unit tests, a sample pipeline with
    /// a `weir test` case, and a copy of the weir Rust SDK (vendor/weir-sdk),
    /// so it builds with Rust and the wasm32-wasip2 target alone. Its README
    /// gives the commands: `cargo test`, then
    /// `cargo build --release --target wasm32-wasip2`.
    #[command(
        verbatim_doc_comment,
        after_help = scaffold::KINDS_HELP,
        after_long_help = scaffold::KINDS_LONG_HELP
    )]
    New {
        /// The plugin's name (the crate and the component are named after it).
        name: String,
        /// The language to write it in.
        #[arg(long, default_value = "rust", value_parser = scaffold::LangParser)]
        lang: scaffold::Lang,
        /// The step kind it implements, and so what it may emit for one input record.
        #[arg(long, value_enum, default_value = "filter")]
        kind: scaffold::Kind,
        /// Where to create it (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Depend on this weir-sdk folder (`guest-sdk/rust` of a checkout)
        /// instead of a copy of the SDK this weir carries.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            if e.downcast_ref::<Invalid>().is_some() {
                ExitCode::from(exit::INVALID)
            } else {
                ExitCode::from(exit::FAILED)
            }
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        // Restores of state on Kafka are rare and can be long: their
        // progress shows by default.
        0 => "warn,weir::runtime::state=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .with_target(false)
        .init();
}

/// Colour codes only for a person at a terminal: never when stderr is a
/// file or a pipe, nor when `NO_COLOR` is set (https://no-color.org).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The pipeline loaded and checked, its plugins started once; every
/// problem is [`Invalid`].
fn build(pipeline: &Path) -> Result<Topology> {
    build_with(pipeline, &Overrides::default())
}

/// The pipeline with its command-line replacements; a replacement it
/// cannot take is a usage error (exit status 2, as clap's own).
fn build_with(pipeline: &Path, overrides: &Overrides) -> Result<Topology> {
    let spec = Pipeline::load(pipeline).map_err(|e| Invalid(e.to_string()))?;
    let spec = spec.with_overrides(overrides).unwrap_or_else(|e| {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::InvalidValue, e)
            .exit()
    });
    Ok(Topology::build(spec, EngineSettings::default().cache_dir)
        .map_err(|e| Invalid(e.to_string()))?)
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run {
            pipeline,
            quiet,
            watch,
            from_scratch,
            endpoints,
            admin,
        } => run(
            &pipeline,
            RunFlags {
                quiet,
                watch,
                from_scratch,
            },
            &endpoints.overrides(),
            &admin,
        ),
        Command::Status { target, token, ca } => status(&target, &token, &ca),
        Command::Swap {
            target,
            step,
            plugin,
            config,
            rollback,
            token,
            ca,
        } => swap(
            &target,
            &step,
            plugin.as_deref(),
            config.as_deref(),
            rollback.options(),
            &token,
            &ca,
        ),
        Command::Validate {
            pipeline,
            print_topology,
            against,
            endpoints,
        } => validate(
            &pipeline,
            print_topology,
            against.as_deref(),
            &endpoints.overrides(),
        ),
        Command::Test {
            pipeline,
            cases,
            bless,
            bless_all,
        } => {
            let bless = match (bless, bless_all) {
                (_, true) => Some(testing::Bless::All),
                (true, false) => Some(testing::Bless::Portable),
                (false, false) => None,
            };
            test(&pipeline, cases.as_deref(), bless)
        }
        Command::State { command } => state(command),
        Command::Plugin {
            command: PluginCommand::Inspect { wasm },
        } => inspect(&wasm),
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    kind,
                    dir,
                    sdk,
                },
        } => new_plugin(&name, lang, kind, &dir, sdk),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `weir run`'s switches.
struct RunFlags {
    quiet: bool,
    watch: bool,
    from_scratch: bool,
}

/// `weir run`: until the inputs end, a failure, or a signal; then the
/// summary (unless `quiet`) and the exit status saying which.
fn run(
    pipeline: &Path,
    flags: RunFlags,
    overrides: &Overrides,
    admin: &AdminArgs,
) -> Result<ExitCode> {
    let RunFlags {
        quiet,
        watch,
        from_scratch,
    } = flags;
    let tls = admin.tls()?;
    let address =
        admin::parse_address(&admin.address, tls.is_some()).map_err(|e| Invalid(e.to_string()))?;
    let listen = match address {
        Some(addr) => Some(Listen {
            addr,
            tls,
            token: admin.token.token()?,
        }),
        None => None,
    };
    let topo = build_with(pipeline, overrides)?;
    if !quiet {
        // What a crash would do to each sink's output, said before any.
        eprintln!("weir: {}", weir::delivery_summary(&topo.pipeline));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signal = watch_signals(stop.clone(), topo.engine.interrupter())?;
    let metrics = Arc::new(weir::Metrics::default());
    // Swaps steps while the run lasts (the admin API's swap endpoint and
    // `--watch`).
    let control = weir::RunControl::new();
    let requested = Arc::new(AtomicBool::new(false));
    // Served while the run lasts; the server stops and the run file goes
    // when these are dropped, at the end of this function.
    let _admin = match listen {
        Some(listen) => Some(serve_admin(
            pipeline,
            &topo,
            listen,
            metrics.clone(),
            control.clone(),
            stop.clone(),
            requested.clone(),
        )?),
        None => None,
    };
    // Watches while the run lasts; stops when dropped.
    let _watch = if watch {
        let report = |event| eprintln!("weir: watch: {event}");
        Some(weir::watch_plugins(&topo, control.clone(), report)?)
    } else {
        None
    };
    let outcome = weir::run_reporting(
        &topo,
        RunOptions {
            progress: !quiet,
            stop: Some(stop),
            metrics: Some(metrics),
            control: Some(control),
            from_scratch,
            // Whether an exactly-once run resumes, and from where.
            announce: Some(Arc::new(move |note: &str| {
                if !quiet {
                    eprintln!("weir: {note}");
                }
            })),
            ..RunOptions::default()
        },
    );
    let mut stderr = std::io::stderr().lock();
    if let Some(e) = &outcome.error {
        let _ = writeln!(stderr, "error: {e}");
    }
    let (ending, code) = match (signal.load(Ordering::Relaxed), &outcome.error) {
        (SIGNAL_TERM, _) => (Ending::Interrupted("SIGTERM"), exit::SIGTERM),
        (SIGNAL_INT, _) => (Ending::Interrupted("SIGINT"), exit::SIGINT),
        // A stop through the admin API ends the run as SIGTERM does.
        _ if requested.load(Ordering::Relaxed) => {
            (Ending::Interrupted("POST /v1/stop"), exit::SIGTERM)
        }
        (_, Some(_)) => (Ending::Failed, exit::FAILED),
        (_, None) => (Ending::Finished, exit::FINISHED),
    };
    if !quiet {
        for line in summary_lines(&outcome.report, ending) {
            let _ = writeln!(stderr, "{line}");
        }
        if let Some(line) = state_line(&topo) {
            let _ = writeln!(stderr, "{line}");
        }
    }
    Ok(ExitCode::from(code))
}

/// The summary's state line of a stateful pipeline, read after the run
/// let go of its stores: how many stores this process keeps, with
/// RocksDB's estimates of their keys and bytes. `None` when the pipeline
/// keeps no state, or its stores cannot be read (another process holds
/// them).
fn state_line(topo: &Topology) -> Option<String> {
    if !topo.pipeline.is_stateful() {
        return None;
    }
    let dir = weir::state_inspect::state_dir(topo).ok()?;
    let totals = weir::state_inspect::totals(topo, &dir).ok()?;
    Some(format!(
        "weir: state: {} store{} in {}, about {} keys and {}",
        totals.stores,
        if totals.stores == 1 { "" } else { "s" },
        dir.display(),
        totals.keys,
        weir::byte_size(totals.bytes)
    ))
}

/// Where the admin API listens, whether over TLS, and the token guarding it.
struct Listen {
    addr: std::net::SocketAddr,
    tls: Option<admin::ServerTls>,
    token: Option<Token>,
}

/// The admin API of a run of `pipeline`, and its run file (none, with a
/// warning, when it cannot be written). `requested` notes a stop asked for
/// through the API.
// Each argument is a handle the run shares with its admin API.
#[allow(clippy::too_many_arguments)]
fn serve_admin(
    pipeline: &Path,
    topo: &Topology,
    listen: Listen,
    metrics: Arc<weir::Metrics>,
    control: Arc<weir::RunControl>,
    stop: Arc<AtomicBool>,
    requested: Arc<AtomicBool>,
) -> Result<(admin::AdminServer, Option<admin::RunFile>)> {
    let interrupter = topo.engine.interrupter();
    let state = admin::AdminState {
        status: Arc::new(admin::RunStatus::new(topo, metrics, control.clone())),
        control,
        stop: Arc::new(move || {
            requested.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            interrupter.interrupt();
            tracing::warn!(
                "stopping (POST /v1/stop): plugin calls interrupted, what was processed is passed on"
            );
        }),
        token: listen.token,
    };
    let server = admin::AdminServer::start(listen.addr, state, listen.tls)
        .map_err(|e| Invalid(e.to_string()))?;
    let info = admin::RunInfo {
        pipeline: topo.pipeline.name.clone(),
        pid: std::process::id(),
        admin: server.url().clone(),
    };
    // A pipeline in a folder this user cannot write still runs; only
    // finding it by its pipeline file does not work then.
    let file = admin::RunFile::write(pipeline, &info)
        .inspect_err(|e| {
            tracing::warn!(
                "{e}; `weir status` finds this run only by its address, {}",
                info.admin
            );
        })
        .ok();
    Ok((server, file))
}

/// The admin API of each running process `target` names: a pipeline
/// file's (from its run files, with their pids) or the one at an address.
fn running(target: &str) -> Result<Vec<(admin::AdminUrl, Option<u32>)>> {
    if let Ok(url) = target.parse() {
        return Ok(vec![(url, None)]);
    }
    let file = Path::new(target);
    anyhow::ensure!(
        file.is_file(),
        "`{target}` is neither a pipeline file nor an admin address (IP:PORT, \
         http://HOST:PORT or https://HOST:PORT)"
    );
    let runs = admin::live_runs(file);
    anyhow::ensure!(
        !runs.is_empty(),
        "{target} is not running (no run file of a live process in {})",
        admin::run_dir(file).display()
    );
    Ok(runs.into_iter().map(|r| (r.admin, Some(r.pid))).collect())
}

/// `weir status`: each running process of the pipeline (or the one at
/// the address) asked for its status, printed as a table.
fn status(target: &str, token: &TokenArgs, ca: &CaArgs) -> Result<ExitCode> {
    let token = token.token()?;
    let tls = ca.tls()?;
    for (i, (addr, _)) in running(target)?.into_iter().enumerate() {
        let reply = admin::request(&addr, &tls, "GET", "/v1/status", token.as_ref(), None)?;
        anyhow::ensure!(
            reply.status == 200,
            "the admin API at {addr} answered {}: {}",
            reply.status,
            reply.error()
        );
        let status: admin::Status = serde_json::from_str(&reply.body)
            .with_context(|| format!("the admin API at {addr} sent a status weir cannot read"))?;
        if i > 0 {
            println!();
        }
        print!("{status}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `weir swap` waits for its answer: compiling a large component
/// (an 18 MB Python one) on a busy machine takes a while.
const SWAP_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// `weir swap`: the component and config read here, uploaded to one
/// running process of the pipeline, and its answer printed as one line.
/// A refusal is exit status 1, with the server's reason.
fn swap(
    target: &str,
    step: &str,
    plugin: Option<&Path>,
    config: Option<&Path>,
    options: weir::SwapOptions,
    token: &TokenArgs,
    ca: &CaArgs,
) -> Result<ExitCode> {
    let token = token.token()?;
    let tls = ca.tls()?;
    let component = plugin
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| Invalid(format!("cannot read the component {}: {e}", p.display())))
        })
        .transpose()?;
    let config = config
        .map(|c| weir::read_step_config(c).map_err(|e| Invalid(e.to_string())))
        .transpose()?;
    let processes = running(target)?;
    let (addr, pid) = processes[0].clone();
    if processes.len() > 1 {
        let pids: Vec<String> = processes
            .iter()
            .filter_map(|(_, p)| p.map(|p| p.to_string()))
            .collect();
        eprintln!(
            "note: {target} runs in {} processes (pids {}); swapping in pid {}: on Kafka \
             the swap reaches the others through the control topic, embedded runs of \
             the file apply it when they next start",
            processes.len(),
            pids.join(", "),
            pid.map_or("?".to_string(), |p| p.to_string()),
        );
    }
    if let Some(rollback) = &options.rollback {
        rollback
            .check()
            .map_err(|e| Invalid(format!("--rollback-after/--rollback-above: {e}")))?;
    }
    let (content_type, body) =
        admin::swap_body(component.as_deref(), config.as_ref(), Some(&options));
    let upload = admin::Upload {
        content_type: &content_type,
        bytes: &body,
        wait: SWAP_WAIT,
    };
    let reply = admin::request(
        &addr,
        &tls,
        "POST",
        &admin::swap_path(step),
        token.as_ref(),
        Some(upload),
    )?;
    anyhow::ensure!(
        reply.status == 200,
        "{} (the admin API at {addr} answered {})",
        reply.error(),
        reply.status
    );
    let answer: admin::SwapAnswer = serde_json::from_str(&reply.body)
        .with_context(|| format!("the admin API at {addr} sent an answer weir cannot read"))?;
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

/// `weir validate`: the file checked, every plugin loaded and started once.
fn validate(
    pipeline: &Path,
    print_topology: bool,
    against: Option<&Path>,
    overrides: &Overrides,
) -> Result<ExitCode> {
    let topo = build_with(pipeline, overrides)?;
    let p = &topo.pipeline;
    let tasks = if p.reads_kafka() {
        format!(
            "a task per topic partition on {} worker threads",
            p.worker_count()
        )
    } else {
        format!(
            "{} partitions on {} worker threads",
            p.partitions,
            p.worker_count()
        )
    };
    println!(
        "{}: ok ({} sources, {} steps, {} sinks, {tasks})",
        pipeline.display(),
        p.sources.len(),
        p.steps.len(),
        p.sinks.len(),
    );
    if print_topology {
        print!("{}", topo.describe());
    }
    if let Some(old) = against {
        let before = Pipeline::load(old).map_err(|e| Invalid(e.to_string()))?;
        let verdicts = weir::upgrade_check::compare(&before, p);
        println!("state, against {}:", old.display());
        if verdicts.is_empty() {
            println!("  neither file has a stateful step");
        }
        for v in &verdicts {
            println!("  {v}");
        }
        if verdicts.iter().any(|v| v.refused()) {
            eprintln!(
                "weir: {} refused: a stateful step changed what it stores under an id it keeps",
                pipeline.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir test`: every fixture case run and compared (or blessed).
fn test(pipeline: &Path, cases: Option<&Path>, bless: Option<testing::Bless>) -> Result<ExitCode> {
    let topo = build(pipeline)?;
    let invalid = |e: testing::DriverError| Invalid(e.to_string());
    let cases = match cases {
        Some(dir) => testing::discover(dir).map_err(invalid)?,
        None => testing::for_pipeline(&topo.pipeline.file).map_err(invalid)?,
    };
    let mut results = Vec::new();
    for case in cases {
        results.push(testing::run_case(&topo, &case, bless).map_err(invalid)?);
    }
    if bless.is_some() {
        println!("wrote expected files for {} case(s)", results.len());
        return Ok(ExitCode::SUCCESS);
    }
    let (text, passed) = testing::report(&results);
    print!("{text}");
    // A case that fails (its outputs differ, or its run failed) is 1; a
    // fixture that cannot be read is 2, like an invalid pipeline.
    Ok(ExitCode::from(if passed {
        exit::FINISHED
    } else {
        exit::FAILED
    }))
}

/// `weir state list|dump|reset`.
fn state(command: StateCommand) -> Result<ExitCode> {
    use weir::state_inspect as inspect;
    match command {
        StateCommand::List { target } => {
            let (topo, dir) = target.open()?;
            let stores =
                inspect::list(&topo, &dir, target.step.as_deref()).map_err(anyhow::Error::msg)?;
            println!("state directory {}", dir.display());
            if stores.is_empty() {
                println!("no stores (the pipeline has not run here, or its state was reset)");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20} {:<6} {:>10} {:>12}  restored to",
                "step", "task", "keys", "bytes"
            );
            for s in stores {
                let restored = s
                    .restored_to
                    .map_or("-".to_string(), |o| format!("changelog offset {o}"));
                println!(
                    "{:<20} {:<6} {:>10} {:>12}  {restored}",
                    s.step,
                    s.task.to_string(),
                    s.keys,
                    s.bytes
                );
            }
        }
        StateCommand::Dump { target } => {
            let (topo, dir) = target.open()?;
            let mut stdout = std::io::stdout().lock();
            let mut failed = None;
            inspect::dump(&topo, &dir, target.step.as_deref(), &mut |line| {
                if failed.is_none()
                    && let Err(e) = writeln!(stdout, "{line}")
                {
                    failed = Some(e);
                }
            })
            .map_err(anyhow::Error::msg)?;
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
        StateCommand::Reset {
            target,
            local,
            changelogs,
        } => {
            let (topo, dir) = target.open()?;
            let p = &topo.pipeline;
            let stores: Vec<(String, String)> = (0..p.steps.len())
                .filter(|&j| {
                    target.step.is_none() || p.steps[j].id.as_deref() == target.step.as_deref()
                })
                .filter_map(|j| Some((p.steps[j].id.clone()?, p.changelog_topic_of(j)?)))
                .collect();
            let topics: Vec<&str> = stores.iter().map(|(_, t)| t.as_str()).collect();
            if p.reads_kafka() && !local && !changelogs {
                return Err(Invalid(format!(
                    "on Kafka the stores are also in their changelog topics ({}), from which the \
                     next run restores them: `--local` removes this machine's copy only, \
                     `--changelogs` deletes the topics too (once no process of the application \
                     runs), so the next run starts the stores empty",
                    topics.join(", ")
                ))
                .into());
            }
            if changelogs {
                let Some(kafka) = p.kafka.as_ref().filter(|_| p.reads_kafka()) else {
                    return Err(Invalid(
                        "`--changelogs` is for pipelines on Kafka; this one keeps its state on this machine only".into(),
                    )
                    .into());
                };
                let bootstrap =
                    weir::kafka_bootstrap(kafka, &p.file).map_err(|e| Invalid(e.to_string()))?;
                let deleted =
                    weir::delete_changelogs(kafka, &bootstrap, &stores).map_err(Invalid)?;
                for (topic, what) in deleted {
                    match what {
                        weir::ChangelogDeleted::Deleted => println!("deleted topic {topic}"),
                        weir::ChangelogDeleted::Absent => {
                            println!("no topic {topic} (nothing to delete)")
                        }
                    }
                }
            }
            let removed =
                inspect::reset(&topo, &dir, target.step.as_deref()).map_err(anyhow::Error::msg)?;
            if removed.is_empty() {
                println!("nothing to reset under {}", dir.display());
            }
            for r in removed {
                println!("removed {r}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir plugin inspect`.
fn inspect(wasm: &Path) -> Result<ExitCode> {
    let engine = PluginEngine::new(&EngineSettings::default())?;
    let info = engine.inspect(wasm)?;
    print!("{info}");
    Ok(if info.runnable.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `weir plugin new`.
fn new_plugin(
    name: &str,
    lang: scaffold::Lang,
    kind: scaffold::Kind,
    dir: &Path,
    sdk: Option<PathBuf>,
) -> Result<ExitCode> {
    let sdk = match &sdk {
        Some(path) => scaffold::Sdk::Path(path),
        None => scaffold::Sdk::Carried,
    };
    let root = scaffold::new_plugin(name, lang, kind, dir, sdk)?;
    println!("created {}", root.display());
    println!(
        "test and build it with: cd {} && cargo test && cargo build --release --target wasm32-wasip2",
        root.display()
    );
    println!("then: weir test example/pipeline.yaml (its README says more)");
    Ok(ExitCode::SUCCESS)
}

/// The signal that stopped a run, as [`watch_signals`] notes it.
const SIGNAL_INT: u8 = 2;
const SIGNAL_TERM: u8 = 15;

/// Ctrl-C (SIGINT) or SIGTERM: stop reading, interrupt the plugin calls
/// running (however long their time limit), pass on what was processed,
/// commit it, and exit 130 or 143. A second signal exits at once. Returns
/// the signal received (0 while none).
fn watch_signals(stop: Arc<AtomicBool>, interrupter: Interrupter) -> Result<Arc<AtomicU8>> {
    let received = Arc::new(AtomicU8::new(0));
    let noted = received.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                let mut last = 0;
                for round in 0..2 {
                    last = tokio::select! {
                        _ = int.recv() => SIGNAL_INT,
                        _ = term.recv() => SIGNAL_TERM,
                    };
                    if round == 0 {
                        noted.store(last, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                        interrupter.interrupt();
                        tracing::warn!(
                            "stopping: plugin calls interrupted, what was processed is passed on (signal again to exit now)"
                        );
                    }
                }
                std::process::exit(128 + i32::from(last));
            })
        })
        .context("cannot start the signal thread")?;
    Ok(received)
}
