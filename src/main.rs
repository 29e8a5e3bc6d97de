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
    /// Train a stage (S2G, G2T) as its config says; resumable.
    Train(cli::train::TrainArgs),
    /// Evaluate a checkpoint on dev/test: per-sample hypotheses and corpus scores.
    Eval(cli::train::EvalArgs),
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            // The message chain names the file, key path or sample; a backtrace adds nothing.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Cli) -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log)?)
        .with_writer(std::io::stderr)
        .init();
    let done = |()| std::process::ExitCode::SUCCESS;
    match args.command {
        Command::Data(command) => cli::data::run(command).map(done),
        Command::Bench(command) => cli::bench::run(command).map(done),
        Command::Demo(demo) => cli::demo::run(demo),
        Command::Train(train) => cli::train::run_train(train),
        Command::Eval(eval) => cli::train::run_eval(eval),
    }
}
