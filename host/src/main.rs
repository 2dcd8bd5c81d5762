//! The `weir` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use weir::scaffold;
use weir::testing;
use weir::{EngineSettings, Pipeline, PluginEngine, RunOptions, Topology};

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
        /// Never show live progress, even on a terminal.
        #[arg(long)]
        quiet: bool,
    },
    /// Check a pipeline file, its plugins and their configs without running it.
    Validate {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
        /// Also print the sub-topologies, their tasks, every source, step and
        /// sink, the internal topics and the delivery guarantee of each sink.
        #[arg(long)]
        print_topology: bool,
    },
    /// Run a pipeline against fixture files and compare every sink with its expected file.
    Test {
        /// The pipeline file (YAML); its cases are in `tests/` beside it.
        pipeline: PathBuf,
        /// Folder of cases (default: `tests/` beside the pipeline).
        #[arg(long)]
        cases: Option<PathBuf>,
        /// Write the actual outputs as the expected files instead of comparing.
        #[arg(long)]
        bless: bool,
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

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a component's world, exports, imports, size, and whether this host can run it.
    Inspect {
        /// The component (`.wasm`).
        wasm: PathBuf,
    },
    /// Create a buildable plugin crate.
    New {
        /// The plugin's name (the crate and the component are named after it).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// The step kind it implements: filter keeps or drops records, map
        /// emits exactly one per input, flat-map zero or more, branch routes
        /// each record to a named port, select-key changes only the key.
        #[arg(long, value_enum, default_value = "filter")]
        kind: scaffold::Kind,
        /// Where to create it (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The weir Rust SDK to depend on (default: the one this weir was built from).
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
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

fn build(pipeline: &Path) -> Result<Topology> {
    let spec = Pipeline::load(pipeline).map_err(anyhow::Error::msg)?;
    Topology::build(spec, EngineSettings::default().cache_dir).map_err(anyhow::Error::msg)
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { pipeline, quiet } => run(&pipeline, quiet),
        Command::Validate {
            pipeline,
            print_topology,
        } => validate(&pipeline, print_topology),
        Command::Test {
            pipeline,
            cases,
            bless,
        } => test(&pipeline, cases.as_deref(), bless),
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

/// `weir run`: until the inputs end or Ctrl-C.
fn run(pipeline: &Path, quiet: bool) -> Result<ExitCode> {
    let topo = build(pipeline)?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let report = weir::run(
        &topo,
        RunOptions {
            progress: !quiet,
            stop: Some(stop),
            ..RunOptions::default()
        },
    )?;
    let c = report.counts;
    tracing::info!(
        records_in = c.records_in,
        records_out = c.records_out,
        dead_lettered = c.dead_lettered,
        skipped = c.skipped,
        rejected_lines = c.rejected_lines,
        restarts = c.restarts,
        seconds = report.elapsed.as_secs_f64(),
        "pipeline `{}` finished",
        topo.pipeline.name
    );
    Ok(ExitCode::SUCCESS)
}

/// `weir validate`: the file checked, every plugin loaded and started once.
fn validate(pipeline: &Path, print_topology: bool) -> Result<ExitCode> {
    let topo = build(pipeline)?;
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
    Ok(ExitCode::SUCCESS)
}

/// `weir test`: every fixture case run and compared (or blessed).
fn test(pipeline: &Path, cases: Option<&Path>, bless: bool) -> Result<ExitCode> {
    let topo = build(pipeline)?;
    let dir = testing::cases_dir(&topo, cases);
    let mut results = Vec::new();
    for case in testing::discover(&dir)? {
        results.push(testing::run_case(&topo, &case, bless)?);
    }
    if bless {
        println!("wrote expected files for {} case(s)", results.len());
        return Ok(ExitCode::SUCCESS);
    }
    let (text, passed) = testing::report(&results);
    print!("{text}");
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    let sdk = sdk.unwrap_or_else(scaffold::default_sdk_path);
    let root = scaffold::new_plugin(name, lang, kind, dir, &sdk)?;
    println!("created {}", root.display());
    println!(
        "build it with: cd {} && cargo build --release",
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM: stop reading, finish in-flight batches, flush sinks.
/// A second signal exits at once.
fn watch_signals(stop: Arc<AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                for round in 0..2 {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    if round == 0 {
                        tracing::warn!(
                            "stopping: finishing in-flight records (signal again to exit now)"
                        );
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                std::process::exit(130);
            })
        })
        .context("cannot start the signal thread")?;
    Ok(())
}
