//! `slt bench metrics`: corpus BLEU-1..4 and ROUGE-L on a dev split's sentences, against
//! sacrebleu 1.4.2 and the reference's ROUGE-L formula in Python (`benches/metrics_bench.py`),
//! with the scores of both sides compared.
//!
//! Hypotheses come from a `results.jsonl` written by `slt eval` / validation (`text_hyp`,
//! `text_ref`), or, without `--results`, from the dev references themselves with every fifth
//! word dropped and every seventh replaced by the next sentence's first word (deterministic, so
//! that all n-gram orders and the brevity penalty are exercised).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use slt::config::SltConfig;
use slt::data::annotation::read_annotations;
use slt::data::dataset::{annotation_path, Split};
use slt::metrics::{bleu::bleu, rouge::rouge, TextLevel};
use slt::train::task::Prediction;

use super::support::{median, write_json_lines, ScratchDir};

/// Token level of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LevelArg {
    /// Whitespace words (Phoenix-2014T).
    Word,
    /// Characters (CSL-Daily).
    Char,
}

/// Options of `slt bench metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Config whose dev split supplies the references (and the default level).
    #[arg(
        long,
        default_value = "experiments/configs/SingleStream/phoenix-2014t_g2t_scratch.yaml"
    )]
    config: PathBuf,
    /// `results.jsonl` with `text_hyp` / `text_ref` per sample (e.g. from `slt eval`).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Token level; default: the config's `data.level`.
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// Timed repeats (the median is reported).
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Also run benches/metrics_bench.py with the Python of $SLT_PYTHON_ORACLE (needs
    /// sacrebleu 1.4.2 there; the script says how to install it).
    #[arg(long)]
    python: bool,
    /// Write the results as one JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `slt bench metrics`.
pub fn metrics(args: MetricsArgs) -> Result<()> {
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let config = SltConfig::load(&args.config, &[])
        .with_context(|| format!("loading {}", args.config.display()))?;
    let level = match args.level {
        Some(LevelArg::Word) => TextLevel::Word,
        Some(LevelArg::Char) => TextLevel::Char,
        None => match config.data.level {
            slt::config::TextLevel::Word => TextLevel::Word,
            slt::config::TextLevel::Char => TextLevel::Char,
        },
    };
    let (references, hypotheses, source) = match &args.results {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut refs = Vec::new();
            let mut hyps = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let p: Prediction = serde_json::from_str(line).with_context(|| {
                    format!("{} line {}: not a prediction", path.display(), i + 1)
                })?;
                let hyp = p.text_hyp.with_context(|| {
                    format!(
                        "{} line {}: no text_hyp (not a translation result)",
                        path.display(),
                        i + 1
                    )
                })?;
                refs.push(p.text_ref);
                hyps.push(hyp);
            }
            (refs, hyps, path.display().to_string())
        }
        None => {
            let path = annotation_path(&config.data, Split::Dev);
            let records =
                read_annotations(path).with_context(|| format!("reading {}", path.display()))?;
            let refs: Vec<String> = records.iter().map(|r| r.text.clone()).collect();
            let hyps = perturbed(&refs);
            (
                refs,
                hyps,
                format!("{} (perturbed references)", path.display()),
            )
        }
    };
    if references.is_empty() {
        bail!("{source}: no sentences");
    }
    println!(
        "BLEU-1..4 + ROUGE-L ({level:?} level) on {} sentences from {source}; {} repeats",
        references.len(),
        args.repeats
    );
    let (mut bleu_times, mut rouge_times) = (Vec::new(), Vec::new());
    let (mut bleu_scores, mut rouge_score) = ([0.0; 4], 0.0);
    for _ in 0..args.repeats {
        let start = Instant::now();
        bleu_scores = bleu(&references, &hypotheses, level)?.as_array();
        bleu_times.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        rouge_score = rouge(&references, &hypotheses, level)?;
        rouge_times.push(start.elapsed().as_secs_f64());
    }
    let ms = |t: &[f64]| median(t) * 1e3;
    println!(
        "rust    BLEU-1..4 {:.4}/{:.4}/{:.4}/{:.4} in {:.3} ms, ROUGE-L {rouge_score:.4} in {:.3} ms (median)",
        bleu_scores[0],
        bleu_scores[1],
        bleu_scores[2],
        bleu_scores[3],
        ms(&bleu_times),
        ms(&rouge_times)
    );
    let mut line = serde_json::json!({
        "sentences": references.len(), "level": format!("{level:?}"), "source": source,
        "rust": {"bleu": bleu_scores, "rouge_l": rouge_score, "bleu_times_s": bleu_times,
                 "rouge_times_s": rouge_times},
    });
    if args.python {
        let python = std::env::var("SLT_PYTHON_ORACLE")
            .context("--python needs SLT_PYTHON_ORACLE (run through ./setup.sh)")?;
        let dir = ScratchDir::create("slt-bench-metrics")?;
        let input = dir.path().join("input.json");
        let level_name = match level {
            TextLevel::Word => "word",
            TextLevel::Char => "char",
        };
        std::fs::write(
            &input,
            serde_json::to_vec(&serde_json::json!({
                "references": references, "hypotheses": hypotheses, "level": level_name,
            }))?,
        )
        .with_context(|| format!("writing {}", input.display()))?;
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/metrics_bench.py");
        let output = Command::new(&python)
            .arg(&script)
            .arg(&input)
            .arg(args.repeats.to_string())
            .output()
            .with_context(|| format!("running {python} {}", script.display()));
        drop(dir);
        let output = output?;
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let py: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("{} printed no JSON", script.display()))?;
        let get = |key: &str| -> Result<Vec<f64>> {
            serde_json::from_value(py[key].clone())
                .with_context(|| format!("{}: no {key} in its output", script.display()))
        };
        let (py_bleu, py_bleu_times, py_rouge_times) =
            (get("bleu")?, get("bleu_times_s")?, get("rouge_times_s")?);
        let py_rouge = py["rouge_l"]
            .as_f64()
            .context("no rouge_l in the Python output")?;
        println!(
            "python  BLEU-1..4 {:.4}/{:.4}/{:.4}/{:.4} in {:.3} ms, ROUGE-L {py_rouge:.4} in {:.3} ms \
             (median; sacrebleu {})",
            py_bleu.first().copied().unwrap_or(f64::NAN),
            py_bleu.get(1).copied().unwrap_or(f64::NAN),
            py_bleu.get(2).copied().unwrap_or(f64::NAN),
            py_bleu.get(3).copied().unwrap_or(f64::NAN),
            ms(&py_bleu_times),
            ms(&py_rouge_times),
            py["sacrebleu"].as_str().unwrap_or("?")
        );
        let max_diff = bleu_scores
            .iter()
            .zip(&py_bleu)
            .map(|(a, b)| (a - b).abs())
            .chain(std::iter::once((rouge_score - py_rouge).abs()))
            .fold(0.0f64, f64::max);
        println!(
            "        python/rust: BLEU {:.1}×, ROUGE-L {:.1}×; largest score difference {max_diff:.2e}",
            median(&py_bleu_times) / median(&bleu_times),
            median(&py_rouge_times) / median(&rouge_times)
        );
        line["python"] = py;
        line["max_score_difference"] = max_diff.into();
    }
    write_json_lines(args.json.as_deref(), &[line])
}

/// The references with every fifth word dropped and every seventh replaced by the first word
/// of the next sentence.
fn perturbed(references: &[String]) -> Vec<String> {
    references
        .iter()
        .enumerate()
        .map(|(i, sentence)| {
            let next_first = references
                .get((i + 1) % references.len())
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("und");
            sentence
                .split_whitespace()
                .enumerate()
                .filter(|(k, _)| k % 5 != 4)
                .map(|(k, w)| if k % 7 == 6 { next_first } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
