//! The synthetic sign-video dataset (`slt data synth`): videos of a cartoon signer whose hands
//! perform one distinct motion pattern per gloss, in Phoenix-2014T's file layout.
//!
//! [`generate`] writes into `out_dir`:
//! - `videos.zip`: PNG frames `images/{name}/images{i:04}.png`, i = 1..=num_frames, names
//!   `train/synth-000001`, `dev/…`, `test/…`;
//! - `synthetic.train`, `synthetic.dev`, `synthetic.test`: gzip pickles in the reference's
//!   record format ([`crate::data::pickle::write_annotations`]); `alignments` holds one entry,
//!   `gloss_ids`: the vocabulary id signed in each frame (0 during rest and transitions);
//! - `gloss2ids.pkl`: `<si>`0 `<unk>`1 `<pad>`2 `</s>`3, then the glosses lower-cased.
//!
//! Sentences come from a built-in weather-forecast grammar ([`grammar::BuiltinGrammar`]) or,
//! with [`SynthOptions::source_annotations`], from a real annotation file restricted to its
//! `vocab_size` most frequent glosses ([`grammar::SourcePolicy`]). Gloss `k` of the vocabulary is
//! signed with pattern `k` of [`sign::sign_table`]. Signers (`Signer01`, …) differ in colours and
//! body size; every video also varies framing, lighting, background phase, speed (frames per
//! gloss ±25 %) and amplitude, and has mild Gaussian pixel noise.
//!
//! Every random choice is a pure function of (seed, split, video index, purpose), so the output
//! is byte-identical for equal options whatever the thread count.
//!
//! ```no_run
//! use slt::data::synth::{generate, SynthOptions};
//! let report = generate(&SynthOptions {
//!     out_dir: "data/synthetic".into(),
//!     width: 112,
//!     height: 112,
//!     ..SynthOptions::default()
//! })?;
//! println!("{} frames in {:.1} s", report.frames, report.wall_secs);
//! # Ok::<(), slt::data::synth::SynthError>(())
//! ```

pub mod archive;
pub mod grammar;
pub mod render;
pub mod sign;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::annotation::{read_annotations, AnnotationError};
use crate::data::pickle::{write_annotations, write_gloss_vocab, PickleError, SignRecordOut};
use archive::{encode_png, frame_entry, VideoZip};
pub use grammar::SourcePolicy;
use grammar::{BuiltinGrammar, Sentence, SPECIALS};
use render::{render_frame, render_still, Scene, SignerLook};
use sign::{sign_table, timeline, FramePose, GlossSign, TimelinePlan};

/// Options of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// Videos in the train split that sign a sentence.
    pub train_size: usize,
    /// Extra train videos that sign one gloss each (an isolated sign between rests), cycling
    /// through the vocabulary so every gloss gets the same number; they follow the sentence
    /// videos in the train split. Dev and test always sign sentences.
    pub isolated_train: usize,
    /// Videos in the dev split.
    pub dev_size: usize,
    /// Videos in the test split.
    pub test_size: usize,
    /// Frame width in pixels (Phoenix: 210).
    pub width: u32,
    /// Frame height in pixels (Phoenix: 260).
    pub height: u32,
    /// Mean frames per gloss (each video varies it by up to ±25 %).
    pub frames_per_gloss: u32,
    /// Frames of each transition between rest and glosses.
    pub transition_frames: u32,
    /// Number of glosses (top-N of the source file, or of the built-in list).
    pub vocab_size: usize,
    /// Number of signers (`Signer01` …).
    pub num_signers: usize,
    /// Standard deviation of the Gaussian pixel noise (0–255 scale); 0 disables it.
    pub noise_std: f32,
    /// Seed of all random choices.
    pub seed: u64,
    /// A real annotation file (e.g. `phoenix-2014t_cleaned.train`) to take sentences from.
    pub source_annotations: Option<PathBuf>,
    /// How source records are restricted to the vocabulary.
    pub source_policy: SourcePolicy,
    /// Longest gloss sequence taken from the source file.
    pub max_glosses: usize,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("data/synthetic"),
            train_size: 400,
            isolated_train: 0,
            dev_size: 50,
            test_size: 50,
            width: 210,
            height: 260,
            frames_per_gloss: 8,
            transition_frames: 3,
            vocab_size: 20,
            num_signers: 9,
            noise_std: 1.0,
            seed: 0,
            source_annotations: None,
            source_policy: SourcePolicy::KeepInVocab,
            max_glosses: 8,
            progress: true,
        }
    }
}

/// Names of the splits, in the order they are generated.
pub const SPLITS: [&str; 3] = ["train", "dev", "test"];

/// What [`generate`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthReport {
    /// The video zip.
    pub zip_path: PathBuf,
    /// Annotation files, in [`SPLITS`] order.
    pub annotation_paths: Vec<PathBuf>,
    /// The gloss vocabulary.
    pub vocab_path: PathBuf,
    /// Videos per split, in [`SPLITS`] order.
    pub videos: [usize; 3],
    /// Frames written in total.
    pub frames: u64,
    /// Size of the zip in bytes.
    pub zip_bytes: u64,
    /// Total size of the PNG frames in bytes.
    pub png_bytes: u64,
    /// The glosses (upper-case, vocabulary order; ids start at 4).
    pub vocabulary: Vec<String>,
    /// Records of the source file that passed the vocabulary filter (None for the built-in
    /// grammar); fewer than the videos requested means sentences repeat.
    pub source_sentences: Option<usize>,
    /// Wall-clock time of the whole generation in seconds.
    pub wall_secs: f64,
}

impl SynthReport {
    /// Videos generated per second of wall time.
    pub fn videos_per_sec(&self) -> f64 {
        self.videos.iter().sum::<usize>() as f64 / self.wall_secs.max(1e-9)
    }

    /// Frames generated per second of wall time.
    pub fn frames_per_sec(&self) -> f64 {
        self.frames as f64 / self.wall_secs.max(1e-9)
    }
}

/// Why the synthetic dataset could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The options are inconsistent.
    #[error("invalid synth options: {0}")]
    InvalidOptions(String),
    /// A file or folder could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the zip failed.
    #[error("cannot write zip {path} (entry {entry}): {source}")]
    Zip {
        /// The (temporary) zip file.
        path: PathBuf,
        /// The entry being written.
        entry: String,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },
    /// PNG encoding failed.
    #[error("cannot encode frame {entry} as PNG: {source}")]
    Png {
        /// Zip entry of the frame.
        entry: String,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
    /// Writing an annotation or vocabulary pickle failed.
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// The source annotation file could not be read.
    #[error("source annotations: {0}")]
    Source(#[from] AnnotationError),
    /// No record of the source file fits the vocabulary.
    #[error(
        "{path}: no record uses only the top {vocab_size} glosses with at most {max_glosses} \
         glosses; raise vocab_size or use SourcePolicy::DropOutOfVocab"
    )]
    NoSentences {
        /// The source annotation file.
        path: PathBuf,
        /// The requested vocabulary size.
        vocab_size: usize,
        /// The length limit.
        max_glosses: usize,
    },
}

/// Purposes of the counter-based random streams.
#[derive(Clone, Copy)]
enum Purpose {
    Signer = 1,
    Sentence = 2,
    Video = 3,
    Noise = 4,
    Pool = 5,
}

/// A ChaCha8 generator seeded by hashing (seed, purpose, counters) with SplitMix64.
fn stream(seed: u64, purpose: Purpose, counters: &[u64]) -> ChaCha8Rng {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut h = mix(seed ^ mix(purpose as u64));
    for &c in counters {
        h = mix(h ^ mix(c));
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// Everything needed to render one video, decided up front.
struct VideoPlan {
    split: usize,
    index: usize,
    name: String,
    signer: usize,
    sentence: Sentence,
    scene: Scene,
    frames: Vec<FramePose>,
}

fn validate(opts: &SynthOptions) -> Result<(), SynthError> {
    let bad = |m: String| Err(SynthError::InvalidOptions(m));
    if !(8..=4096).contains(&opts.width) || !(8..=4096).contains(&opts.height) {
        return bad(format!(
            "frame size {}x{} outside 8..=4096",
            opts.width, opts.height
        ));
    }
    if opts.frames_per_gloss < 2 {
        return bad(format!("frames_per_gloss {} < 2", opts.frames_per_gloss));
    }
    let max_vocab = if opts.source_annotations.is_some() {
        sign::MAX_SIGNS
    } else {
        grammar::BUILTIN_GLOSSES
    };
    if opts.vocab_size == 0 || opts.vocab_size > max_vocab {
        return bad(format!(
            "vocab_size {} outside 1..={max_vocab}",
            opts.vocab_size
        ));
    }
    if !(1..=99).contains(&opts.num_signers) {
        return bad(format!("num_signers {} outside 1..=99", opts.num_signers));
    }
    if !opts.noise_std.is_finite() || opts.noise_std < 0.0 {
        return bad(format!(
            "noise_std {} must be finite and >= 0",
            opts.noise_std
        ));
    }
    if opts.max_glosses == 0 {
        return bad("max_glosses must be >= 1".into());
    }
    if opts.train_size + opts.isolated_train + opts.dev_size + opts.test_size == 0 {
        return bad("no videos requested (train, dev and test sizes are all 0)".into());
    }
    Ok(())
}

/// The sentences of every video of every split.
struct Chosen {
    /// The glosses, vocabulary order.
    vocabulary: Vec<String>,
    /// Sentences per split, in [`SPLITS`] order.
    per_split: Vec<Vec<Sentence>>,
    /// Size of the source file's sentence pool, if any.
    pool: Option<usize>,
}

/// Chooses the vocabulary and the sentence of every video.
fn choose_sentences(opts: &SynthOptions, sizes: [usize; 3]) -> Result<Chosen, SynthError> {
    match &opts.source_annotations {
        None => {
            let g = BuiltinGrammar::new(opts.vocab_size);
            let per_split = (0..3)
                .map(|s| {
                    (0..sizes[s])
                        .map(|i| {
                            g.sample(&mut stream(
                                opts.seed,
                                Purpose::Sentence,
                                &[s as u64, i as u64],
                            ))
                        })
                        .collect()
                })
                .collect();
            Ok(Chosen {
                vocabulary: g.vocabulary(),
                per_split,
                pool: None,
            })
        }
        Some(path) => {
            let records = read_annotations(path)?;
            let src = grammar::from_records(
                &records,
                opts.vocab_size,
                opts.source_policy,
                opts.max_glosses,
            );
            if src.sentences.is_empty() {
                return Err(SynthError::NoSentences {
                    path: path.clone(),
                    vocab_size: opts.vocab_size,
                    max_glosses: opts.max_glosses,
                });
            }
            // A fixed shuffle; splits take consecutive runs (disjoint while the pool lasts).
            let mut order: Vec<usize> = (0..src.sentences.len()).collect();
            let mut rng = stream(opts.seed, Purpose::Pool, &[]);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            let mut next = 0usize;
            let per_split = sizes
                .iter()
                .map(|&n| {
                    (0..n)
                        .map(|_| {
                            let s = src.sentences[order[next % order.len()]].clone();
                            next += 1;
                            s
                        })
                        .collect()
                })
                .collect();
            Ok(Chosen {
                pool: Some(src.sentences.len()),
                vocabulary: src.vocabulary,
                per_split,
            })
        }
    }
}

/// The `isolated_train` single-gloss sentences, cycling through the vocabulary.
fn isolated_sentences(opts: &SynthOptions, vocabulary: &[String]) -> Vec<Sentence> {
    let builtin = opts
        .source_annotations
        .is_none()
        .then(|| BuiltinGrammar::new(opts.vocab_size));
    (0..opts.isolated_train)
        .map(|i| match &builtin {
            Some(g) => g.single(i),
            None => grammar::single_gloss(vocabulary, i),
        })
        .collect()
}

fn plan_video(
    opts: &SynthOptions,
    split: usize,
    index: usize,
    sentence: Sentence,
    looks: &[SignerLook],
    signs: &[GlossSign],
) -> VideoPlan {
    let mut rng = stream(opts.seed, Purpose::Video, &[split as u64, index as u64]);
    let signer = rng.random_range(0..looks.len());
    let scene = Scene::random(&looks[signer], &mut rng);
    let speed: f32 = rng.random_range(0.8..1.2);
    let sign_frames = sentence
        .ids
        .iter()
        .map(|_| {
            let n = opts.frames_per_gloss as f32 * speed * rng.random_range(0.95..1.05);
            (n.round() as u32).max(2)
        })
        .collect();
    let plan = TimelinePlan {
        lead_in: rng.random_range(2..=4),
        lead_out: rng.random_range(2..=4),
        transition: opts.transition_frames,
        sign_frames,
        amplitude: rng.random_range(0.85..1.15),
    };
    let glosses: Vec<(i64, GlossSign)> = sentence
        .ids
        .iter()
        .map(|&id| (id, signs[(id as usize) - SPECIALS.len()]))
        .collect();
    let frames = timeline(&glosses, &plan);
    VideoPlan {
        split,
        index,
        name: format!("{}/synth-{:06}", SPLITS[split], index + 1),
        signer,
        sentence,
        scene,
        frames,
    }
}

/// Renders and PNG-encodes frame `f` of `plan`.
fn encode_frame(
    opts: &SynthOptions,
    plan: &VideoPlan,
    still: &render::Canvas,
    f: usize,
) -> Result<Vec<u8>, SynthError> {
    let counters = [plan.split as u64, plan.index as u64, f as u64];
    let mut rng = stream(opts.seed, Purpose::Noise, &counters);
    let mut buf = Vec::new();
    let rgb = render_frame(
        still,
        &plan.scene,
        &plan.frames[f],
        opts.noise_std,
        &mut rng,
        &mut buf,
    );
    encode_png(&rgb, opts.width, opts.height).map_err(|source| SynthError::Png {
        entry: frame_entry(&plan.name, f + 1),
        source,
    })
}

/// Generates the dataset described by `opts` (see the module docs).
pub fn generate(opts: &SynthOptions) -> Result<SynthReport, SynthError> {
    let start = Instant::now();
    validate(opts)?;
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).map_err(|source| SynthError::Io {
        path: out.clone(),
        source,
    })?;
    let sizes = [opts.train_size, opts.dev_size, opts.test_size];
    let Chosen {
        vocabulary,
        mut per_split,
        pool: source_sentences,
    } = choose_sentences(opts, sizes)?;
    let isolated = isolated_sentences(opts, &vocabulary);
    per_split[0].extend(isolated);
    let sizes = [per_split[0].len(), sizes[1], sizes[2]];
    let signs = sign_table(vocabulary.len());
    let looks: Vec<SignerLook> = (0..opts.num_signers)
        .map(|k| SignerLook::random(&mut stream(opts.seed, Purpose::Signer, &[k as u64])))
        .collect();

    let plans: Vec<VideoPlan> = per_split
        .into_iter()
        .enumerate()
        .flat_map(|(s, list)| {
            list.into_iter()
                .enumerate()
                .map(move |(i, sent)| (s, i, sent))
        })
        .map(|(s, i, sent)| plan_video(opts, s, i, sent, &looks, &signs))
        .collect();

    let zip_path = out.join("videos.zip");
    let mut zip = VideoZip::create(&zip_path)?;
    let bar = progress_bar(opts.progress, plans.len() as u64);
    let written = write_videos(opts, &plans, &mut zip, &bar);
    bar.finish_and_clear();
    let frames = match written {
        Ok(frames) => frames,
        Err(e) => {
            zip.abandon();
            return Err(e);
        }
    };
    let png_bytes = zip.data_bytes();
    let zip_bytes = zip.finish()?;

    let mut annotation_paths = Vec::new();
    for (s, split) in SPLITS.iter().enumerate() {
        let records: Vec<SignRecordOut> = plans
            .iter()
            .filter(|p| p.split == s)
            .map(record_of)
            .collect();
        let path = out.join(format!("synthetic.{split}"));
        write_annotations(&path, &records, true)?;
        annotation_paths.push(path);
    }
    let vocab_path = out.join("gloss2ids.pkl");
    let entries: Vec<(String, i64)> = SPECIALS
        .iter()
        .map(|s| s.to_string())
        .chain(vocabulary.iter().map(|g| g.to_lowercase()))
        .enumerate()
        .map(|(i, g)| (g, i as i64))
        .collect();
    write_gloss_vocab(&vocab_path, &entries)?;

    Ok(SynthReport {
        zip_path,
        annotation_paths,
        vocab_path,
        videos: sizes,
        frames,
        zip_bytes,
        png_bytes,
        vocabulary,
        source_sentences,
        wall_secs: start.elapsed().as_secs_f64(),
    })
}

/// Renders all videos in parallel, chunk by chunk, and appends their frames in order.
fn write_videos(
    opts: &SynthOptions,
    plans: &[VideoPlan],
    zip: &mut VideoZip,
    bar: &indicatif::ProgressBar,
) -> Result<u64, SynthError> {
    let chunk = (rayon::current_num_threads() * 4).max(8);
    let mut frames = 0u64;
    for group in plans.chunks(chunk) {
        let stills: Vec<render::Canvas> = group
            .par_iter()
            .map(|p| render_still(&p.scene, opts.width, opts.height))
            .collect();
        let jobs: Vec<(usize, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(v, p)| (0..p.frames.len()).map(move |f| (v, f)))
            .collect();
        let pngs: Vec<Vec<u8>> = jobs
            .par_iter()
            .map(|&(v, f)| encode_frame(opts, &group[v], &stills[v], f))
            .collect::<Result<_, _>>()?;
        for (&(v, f), png) in jobs.iter().zip(&pngs) {
            zip.add(&frame_entry(&group[v].name, f + 1), png)?;
        }
        frames += pngs.len() as u64;
        bar.inc(group.len() as u64);
    }
    Ok(frames)
}

fn progress_bar(wanted: bool, len: u64) -> indicatif::ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "synth {bar:40.cyan/blue} {pos}/{len} videos [{elapsed_precise} < {eta}]",
    ) {
        bar.set_style(style);
    }
    bar
}

fn record_of(p: &VideoPlan) -> SignRecordOut {
    let labels: Vec<String> = p.frames.iter().map(|f| f.label.to_string()).collect();
    SignRecordOut {
        name: p.name.clone(),
        signer: format!("Signer{:02}", p.signer + 1),
        gloss: p.sentence.glosses.join(" "),
        text: p.sentence.text.clone(),
        num_frames: p.frames.len() as u32,
        alignments: vec![("gloss_ids".into(), labels.join(" "))],
    }
}

/// Renders gloss `gloss` (0-based position in the vocabulary) alone, for inspection and tests:
/// `frames_per_gloss` frames of RGB bytes (`width × height × 3`), no rest or transitions. The
/// signer and framing come from `scene_seed`, the pixel noise from `noise_seed`.
pub fn render_sign_clip(
    opts: &SynthOptions,
    gloss: usize,
    scene_seed: u64,
    noise_seed: u64,
) -> Result<Vec<Vec<u8>>, SynthError> {
    validate(opts)?;
    if gloss >= sign::MAX_SIGNS {
        return Err(SynthError::InvalidOptions(format!(
            "gloss {gloss} outside 0..{}",
            sign::MAX_SIGNS
        )));
    }
    let sign = sign_table(gloss + 1)[gloss];
    let mut rng = stream(scene_seed, Purpose::Video, &[]);
    let look = SignerLook::random(&mut rng);
    let scene = Scene::random(&look, &mut rng);
    let plan = TimelinePlan {
        lead_in: 0,
        lead_out: 0,
        transition: 0,
        sign_frames: vec![opts.frames_per_gloss],
        amplitude: 1.0,
    };
    let frames = timeline(&[(gloss as i64 + 4, sign)], &plan);
    let still = render_still(&scene, opts.width, opts.height);
    let mut noise = stream(noise_seed, Purpose::Noise, &[]);
    let mut buf = Vec::new();
    Ok(frames
        .iter()
        .map(|f| render_frame(&still, &scene, f, opts.noise_std, &mut noise, &mut buf))
        .collect())
}

#[cfg(test)]
mod tests;
