//! `slt bench g2t`: Gloss2Text batched beam search and training step, against HF transformers
//! on exactly the same model and batches (`benches/g2t_bench.py`).
//!
//! The network is built from a G2T config (default: the from-scratch Phoenix-2014T model, with
//! the vocabularies under its `model_dir`) and loaded from one of its checkpoints, so generation
//! runs with trained weights and realistic output lengths. With `--python` slt exports that
//! network to a temporary folder (HF `save_pretrained` layout + the gloss embedding + the
//! tokenised batches); the script loads it, and the two sides alternate batch by batch and step
//! by step, so that on a shared machine both see the same background load.
//!
//! Order: generation first (both sides hold identical weights, so their outputs are compared
//! sequence by sequence), then training steps (which change the weights).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use tch::{Device, Kind, Tensor};

use slt::config::{SltConfig, Task as TaskKind};
use slt::data::annotation::{read_annotations, SignRecord};
use slt::data::dataset::{annotation_path, Split};
use slt::model::mbart::{BeamCompat, GenerateOptions};
use slt::train::checkpoint::CheckpointDir;
use slt::train::optimizer::{Adam, AdamHyper};
use slt::train::task::Task;
use slt::train::tasks::gloss2text::{Gloss2TextTask, TextBatch};

use super::support::{
    median, seconds_list, set_threads, summarize, write_json_lines, Phases, PythonServer,
    ScratchDir,
};
use crate::cli::train::resolve_checkpoint;

/// The default model: the from-scratch Phoenix-2014T G2T config.
const PHOENIX_G2T: &str = "experiments/configs/SingleStream/phoenix-2014t_g2t_scratch.yaml";

/// Beam-search rules of the Rust side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// transformers 5.x, like the Python side (outputs comparable one to one).
    Hf5,
    /// transformers 4.11.3, which the reference pinned and `slt train` / `slt eval` use.
    Hf4_11,
}

/// HF attention implementation of the Python side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttnArg {
    /// Plain matmul-softmax-matmul (the reference's transformers 4.11 code path).
    Eager,
    /// `torch.nn.functional.scaled_dot_product_attention` (transformers' default today).
    Sdpa,
}

/// Options of `slt bench g2t`.
#[derive(Debug, Args)]
pub struct G2tArgs {
    /// G2T config: architecture, vocabularies (under its model_dir), optimizer, beam settings.
    #[arg(long, default_value = PHOENIX_G2T)]
    config: PathBuf,
    /// Weights: `auto` (best checkpoint, else the initial weights), `none` (initial weights),
    /// `best`, `latest` or a checkpoint name.
    #[arg(long, default_value = "auto")]
    checkpoint: String,
    /// Samples per batch (training step and generation); default: the config's batch_size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Dev batches to generate (in split order; 0 = the whole dev split).
    #[arg(long, default_value_t = 4)]
    generate_batches: usize,
    /// Beam-search rules of the Rust side.
    #[arg(long, value_enum, default_value = "hf5")]
    compat: CompatArg,
    /// Timed training steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed warm-up training steps (one untimed generation batch is run too).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Intra-op threads on both sides.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also run benches/g2t_bench.py with the Python of $SLT_PYTHON_ORACLE (set by ./setup.sh).
    #[arg(long)]
    python: bool,
    /// Attention implementation of the Python side.
    #[arg(long, value_enum, default_value = "eager")]
    attn: AttnArg,
    /// Write all results as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `slt bench g2t`.
pub fn g2t(args: G2tArgs) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    set_threads(args.threads)?;
    let config = SltConfig::load(&args.config, &[])
        .with_context(|| format!("loading {}", args.config.display()))?;
    if config.task != TaskKind::G2T {
        bail!(
            "{}: task {:?}, expected G2T",
            args.config.display(),
            config.task
        );
    }
    let batch_size = args.batch_size.unwrap_or(config.training.batch_size).max(1);
    let decode = config
        .training
        .validation
        .cfg
        .translation
        .with_context(|| {
            format!(
                "{}: no training.validation.cfg.translation (beam settings)",
                args.config.display()
            )
        })?;
    let options = GenerateOptions {
        compat: match args.compat {
            CompatArg::Hf5 => BeamCompat::Hf5,
            CompatArg::Hf4_11 => BeamCompat::Hf4_11,
        },
        ..slt::model::translation::TranslationNetwork::generate_options(&decode)
    };
    let mut task = Gloss2TextTask::new(&config, Device::Cpu)?;
    let weights = load_weights(&config, &mut task, &args.checkpoint)?;
    let train = read_split(&config, Split::Train)?;
    let dev = read_split(&config, Split::Dev)?;
    let train_batch = text_batch(&train[..batch_size.min(train.len())], 0);
    let gen_batches: Vec<TextBatch> = dev
        .chunks(batch_size)
        .take(if args.generate_batches == 0 {
            usize::MAX
        } else {
            args.generate_batches
        })
        .enumerate()
        .map(|(k, chunk)| text_batch(chunk, k * batch_size))
        .collect();
    let net = task.network();
    let mbart = net.model().config();
    println!(
        "G2T: {} ({} + {} layers × {}, FFN {}, text vocab {}, gloss vocab {}), weights: {weights}",
        args.config.display(),
        mbart.encoder_layers,
        mbart.decoder_layers,
        mbart.d_model,
        mbart.encoder_ffn_dim,
        mbart.vocab_size,
        net.gloss_tokenizer().len(),
    );
    println!(
        "generation: {} dev batches of {batch_size}, beams {}, max_length {}, length_penalty {}, \
         {:?} rules; training: {} warm-up + {} timed steps on {} train samples; {} threads, {} cores{}",
        gen_batches.len(),
        options.num_beams,
        options.max_length,
        options.length_penalty,
        options.compat,
        args.warmup,
        args.steps,
        train_batch.indices.len(),
        tch::get_num_threads(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if args.python {
            "; Rust and Python alternate"
        } else {
            ""
        }
    );

    let export = if args.python {
        Some(ScratchDir::create("slt-bench-g2t")?)
    } else {
        None
    };
    let mut python = match &export {
        Some(dir) => {
            export_inputs(
                &task,
                &config,
                dir.path(),
                &train_batch,
                &gen_batches,
                &options,
            )?;
            let mut server = PythonServer::spawn(
                "g2t_bench.py",
                &[
                    "--threads".to_string(),
                    args.threads.max(1).to_string(),
                    "--attn".to_string(),
                    format!("{:?}", args.attn).to_lowercase(),
                ],
            )?;
            let setup = server.request(&format!("setup {}", dir.path().display()))?;
            println!(
                "python: torch {}, transformers {}, {} attention, {} threads",
                setup["torch"].as_str().unwrap_or("?"),
                setup["transformers"].as_str().unwrap_or("?"),
                setup["attn"].as_str().unwrap_or("?"),
                setup["threads"].as_i64().unwrap_or(0)
            );
            Some(server)
        }
        None => None,
    };
    let mut lines = Vec::new();

    // Generation: one untimed batch each, then every batch, alternating.
    let pad = task.network().text_tokenizer().pad_id();
    if let Some(first) = gen_batches.first() {
        rust_generate(&task, first, &options)?;
        if let Some(py) = python.as_mut() {
            py.request("generate 0")?;
        }
    }
    let (mut rust_times, mut py_times) = (Vec::new(), Vec::new());
    let (mut tokens, mut same, mut compared) = (0i64, 0usize, 0usize);
    for (k, batch) in gen_batches.iter().enumerate() {
        let (seconds, rows) = rust_generate(&task, batch, &options)?;
        rust_times.push(seconds);
        tokens += rows.iter().map(|r| r.len() as i64).sum::<i64>();
        if let Some(py) = python.as_mut() {
            let reply = py.request(&format!("generate {k}"))?;
            py_times.push(
                reply["time_s"]
                    .as_f64()
                    .context("generate reply without time_s")?,
            );
            let py_rows: Vec<Vec<i64>> = serde_json::from_value(reply["sequences"].clone())
                .context("generate reply without sequences")?;
            for (r, p) in rows.iter().zip(&py_rows) {
                compared += 1;
                same += usize::from(r.as_slice() == strip_pad(p, pad));
            }
        }
    }
    let samples: usize = gen_batches.iter().map(|b| b.indices.len()).sum();
    let rust_total: f64 = rust_times.iter().sum();
    println!(
        "rust    generate {samples} samples in {rust_total:.2} s ({:.1} samples/s, {tokens} tokens); \
         per batch median {:.3} s ({})",
        samples as f64 / rust_total,
        median(&rust_times),
        seconds_list(&rust_times)
    );
    lines.push(serde_json::json!({
        "impl": "rust", "phase": "generate", "samples": samples, "batch_size": batch_size,
        "total_s": rust_total, "batch_times_s": rust_times, "tokens": tokens,
        "num_beams": options.num_beams, "max_length": options.max_length,
        "compat": format!("{:?}", options.compat), "threads": tch::get_num_threads(),
    }));
    if python.is_some() {
        let py_total: f64 = py_times.iter().sum();
        println!(
            "python  generate {samples} samples in {py_total:.2} s ({:.1} samples/s); per batch \
             median {:.3} s ({})",
            samples as f64 / py_total,
            median(&py_times),
            seconds_list(&py_times)
        );
        println!(
            "        generate python/rust = {:.2}×; identical sequences: {same}/{compared}",
            py_total / rust_total
        );
        lines.push(serde_json::json!({
            "impl": "python", "phase": "generate", "samples": samples, "batch_size": batch_size,
            "total_s": py_total, "batch_times_s": py_times, "identical_sequences": same,
            "compared": compared, "attn": format!("{:?}", args.attn).to_lowercase(),
        }));
    }

    // Training steps, alternating.
    let optimization = &config.training.optimization;
    let mut adam = Adam::new(
        task.var_store(),
        &optimization.learning_rate,
        AdamHyper::from_config(optimization),
    )?;
    let (mut rust_steps, mut py_steps) = (Vec::new(), Vec::new());
    for step in 0..args.warmup + args.steps {
        let start = Instant::now();
        adam.zero_grad()?;
        let loss = task.training_loss(&train_batch)?;
        let forward = Instant::now();
        loss.total.f_backward()?;
        let backward = Instant::now();
        adam.step()?;
        let end = Instant::now();
        let r = Phases {
            total: (end - start).as_secs_f64(),
            forward: (forward - start).as_secs_f64(),
            backward: (backward - forward).as_secs_f64(),
            optimizer: (end - backward).as_secs_f64(),
        };
        let p = match python.as_mut() {
            Some(py) => Some(Phases::from_reply(&py.request("step")?)?),
            None => None,
        };
        if step >= args.warmup {
            rust_steps.push(r);
            py_steps.extend(p);
        }
    }
    let label = format!("B={}", train_batch.indices.len());
    let (rust_median, mut rust_line) = summarize("rust", &label, &rust_steps, "");
    rust_line["impl"] = "rust".into();
    rust_line["phase"] = "train_step".into();
    rust_line["batch_size"] = train_batch.indices.len().into();
    lines.push(rust_line);
    if python.is_some() {
        let (py_median, mut py_line) = summarize("python", &label, &py_steps, "");
        println!(
            "        train step python/rust = {:.2}×",
            py_median / rust_median
        );
        py_line["impl"] = "python".into();
        py_line["phase"] = "train_step".into();
        py_line["batch_size"] = train_batch.indices.len().into();
        lines.push(py_line);
    }
    drop(python);
    drop(export);
    write_json_lines(args.json.as_deref(), &lines)
}

/// Loads the weights `--checkpoint` names; returns a description.
fn load_weights(config: &SltConfig, task: &mut Gloss2TextTask, which: &str) -> Result<String> {
    let ckpts = CheckpointDir::new(&config.training.model_dir, config.training.keep_last_ckpts);
    let name = match which {
        "none" => None,
        "auto" => ckpts.best()?,
        named => Some(resolve_checkpoint(&ckpts, named)?),
    };
    match name {
        Some(name) => {
            ckpts.load(&name)?.restore_model(task.var_store())?;
            Ok(format!("checkpoint {}/{name}", ckpts.path().display()))
        }
        None => {
            let summary = task.load_initial_weights()?;
            Ok(format!("initial weights ({})", summary.replace('\n', "; ")))
        }
    }
}

fn read_split(config: &SltConfig, split: Split) -> Result<Vec<SignRecord>> {
    let path = annotation_path(&config.data, split);
    read_annotations(path).with_context(|| format!("reading {}", path.display()))
}

/// The batch of `records`, which start at index `first` of their split.
fn text_batch(records: &[SignRecord], first: usize) -> TextBatch {
    TextBatch {
        indices: (first..first + records.len()).collect(),
        glosses: records.iter().map(|r| r.gloss.clone()).collect(),
        texts: records.iter().map(|r| r.text.clone()).collect(),
    }
}

fn str_refs(items: &[String]) -> Vec<&str> {
    items.iter().map(String::as_str).collect()
}

/// `row` without its trailing pads.
fn strip_pad(row: &[i64], pad: i64) -> &[i64] {
    let end = row.iter().rposition(|&t| t != pad).map_or(0, |i| i + 1);
    &row[..end]
}

/// Generates one batch (tokenisation included); returns the seconds and the sequences without
/// trailing pads.
fn rust_generate(
    task: &Gloss2TextTask,
    batch: &TextBatch,
    options: &GenerateOptions,
) -> Result<(f64, Vec<Vec<i64>>)> {
    let net = task.network();
    let start = Instant::now();
    let out = tch::no_grad(|| {
        let (embeds, mask) = net.embed_glosses(&str_refs(&batch.glosses))?;
        net.generate_from_embeds(&embeds, &mask, options)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let pad = net.text_tokenizer().pad_id();
    let sequences = out.sequences.to_kind(Kind::Int64);
    let rows = (0..sequences.size()[0])
        .map(|i| Vec::<i64>::try_from(sequences.get(i)).map(|row| strip_pad(&row, pad).to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((seconds, rows))
}

/// Writes `model/`, `inputs.safetensors` and `settings.json` for benches/g2t_bench.py.
fn export_inputs(
    task: &Gloss2TextTask,
    config: &SltConfig,
    dir: &Path,
    train_batch: &TextBatch,
    gen_batches: &[TextBatch],
    options: &GenerateOptions,
) -> Result<()> {
    let net = task.network();
    net.model().save_pretrained(&dir.join("model"))?;
    let mut tensors: Vec<(String, Tensor)> = vec![(
        "gloss_embedding".to_string(),
        net.gloss_embedding().detach().copy(),
    )];
    let mut gloss_inputs = |prefix: &str, glosses: &[String]| {
        let (ids, mask) = net
            .gloss_tokenizer()
            .encode_batch(&str_refs(glosses))
            .to_tensors(Device::Cpu);
        tensors.push((format!("{prefix}.gloss_ids"), ids));
        tensors.push((format!("{prefix}.gloss_mask"), mask));
    };
    gloss_inputs("train", &train_batch.glosses);
    for (k, batch) in gen_batches.iter().enumerate() {
        gloss_inputs(&format!("gen{k}"), &batch.glosses);
    }
    let (labels, decoder_input_ids) = net
        .text_tokenizer()
        .encode_targets(&str_refs(&train_batch.texts))?
        .to_tensors(Device::Cpu);
    tensors.push(("train.labels".to_string(), labels));
    tensors.push(("train.decoder_input_ids".to_string(), decoder_input_ids));
    let path = dir.join("inputs.safetensors");
    Tensor::write_safetensors(&tensors, &path)
        .with_context(|| format!("writing {}", path.display()))?;
    let optimization = &config.training.optimization;
    if !optimization.learning_rate.by_module.is_empty() {
        bail!("the Python baseline takes one learning rate; the config sets per-module rates");
    }
    let hyper = AdamHyper::from_config(optimization);
    let settings = serde_json::json!({
        "lr": optimization.learning_rate.default,
        "betas": hyper.betas,
        "eps": hyper.eps,
        "weight_decay": hyper.weight_decay,
        "label_smoothing": net.config().label_smoothing,
        "gloss_pad_id": net.gloss_tokenizer().pad_id(),
        "text_pad_id": net.text_tokenizer().pad_id(),
        "input_embed_scale": net.input_embed_scale(),
        "decoder_start_id": net.text_tokenizer().lang_id(),
        "num_beams": options.num_beams,
        "max_length": options.max_length,
        "length_penalty": options.length_penalty,
    });
    let path = dir.join("settings.json");
    std::fs::write(&path, serde_json::to_string_pretty(&settings)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
