//! `slt`: the command-line front end.
use clap::{Parser, Subcommand};

mod cli;

/// Sign language translation (SingleStream-SLT): data tools, training, evaluation.
#[derive(Debug, Parser)]
#[command(name = "slt", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `slt=debug`.
    #[arg(long, global = true, env = "SLT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Datasets: generate the synthetic set, pack frame trees into zips, validate.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Benchmarks that print measured figures.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// The end-to-end demo on built-in synthetic data.
    Demo(cli::demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The message chain names the file, key path or sample; a backtrace adds nothing.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log)?)
        .with_writer(std::io::stderr)
        .init();
    match args.command {
        Command::Data(command) => cli::data::run(command),
        Command::Bench(command) => cli::bench::run(command),
        Command::Demo(demo) => cli::demo::run(demo),
    }
}
