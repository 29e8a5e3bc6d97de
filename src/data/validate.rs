//! `slt data validate`: check annotations against their frames before a long run finds out.
//!
//! For every record: each of its `num_frames` frames must exist and (unless decoding is
//! switched off) decode; the video's folder must not hold a different number of frames; every
//! gloss must be in the vocabulary (when one is given). Work is spread over a rayon pool.

use std::collections::BTreeMap;
use std::fmt;

use rayon::prelude::*;

use super::annotation::SignRecord;
use super::gloss::{split_python_whitespace, S2GGlossTokenizer};
use super::source::{SourceError, VideoSource};

/// One frame that is absent or unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameProblem {
    /// Annotation name of the video.
    pub video: String,
    /// 0-based frame position.
    pub frame: usize,
    /// Archive entry or file path.
    pub location: String,
    /// What is wrong (empty for a plain missing frame).
    pub reason: String,
}

/// A video whose folder holds another number of frames than annotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountMismatch {
    /// Annotation name of the video.
    pub video: String,
    /// `num_frames` in the annotation.
    pub annotated: usize,
    /// Frame files found in its folder.
    pub found: usize,
}

/// Everything `validate` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    /// Records checked.
    pub videos: usize,
    /// Frames looked up.
    pub frames: usize,
    /// Frames that do not exist.
    pub missing: Vec<FrameProblem>,
    /// Frames that exist but cannot be read or decoded.
    pub corrupt: Vec<FrameProblem>,
    /// Videos whose folder holds a different number of frames.
    pub count_mismatches: Vec<CountMismatch>,
    /// Glosses not in the vocabulary, with their number of occurrences.
    pub unknown_glosses: BTreeMap<String, usize>,
}

impl ValidationReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.count_mismatches.is_empty()
            && self.unknown_glosses.is_empty()
    }

    fn merge(mut self, other: Self) -> Self {
        self.videos += other.videos;
        self.frames += other.frames;
        self.missing.extend(other.missing);
        self.corrupt.extend(other.corrupt);
        self.count_mismatches.extend(other.count_mismatches);
        for (gloss, n) in other.unknown_glosses {
            *self.unknown_glosses.entry(gloss).or_insert(0) += n;
        }
        self
    }
}

/// How thoroughly to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// Only that each frame exists.
    Exists,
    /// Read and decode every frame.
    Decode,
}

/// Checks `records` against `source` (and `glosses`, when given).
pub fn validate(
    records: &[SignRecord],
    source: &VideoSource,
    glosses: Option<&S2GGlossTokenizer>,
    check: FrameCheck,
) -> ValidationReport {
    let folder_counts = source.frames_per_video();
    let mut report = records
        .par_iter()
        .map(|record| {
            let mut report = ValidationReport {
                videos: 1,
                frames: record.num_frames,
                ..ValidationReport::default()
            };
            for frame in 0..record.num_frames {
                let outcome = match check {
                    FrameCheck::Exists if source.frame_exists(&record.name, frame) => Ok(()),
                    FrameCheck::Exists => Err(SourceError::MissingFrame {
                        video: record.name.clone(),
                        frame,
                        location: source.location(&record.name, frame),
                    }),
                    FrameCheck::Decode => source.read_frame(&record.name, frame).map(|_| ()),
                };
                match outcome {
                    Ok(()) => {}
                    Err(SourceError::MissingFrame { location, .. }) => {
                        report.missing.push(FrameProblem {
                            video: record.name.clone(),
                            frame,
                            location,
                            reason: String::new(),
                        })
                    }
                    Err(other) => report.corrupt.push(FrameProblem {
                        video: record.name.clone(),
                        frame,
                        location: source.location(&record.name, frame),
                        reason: other.to_string(),
                    }),
                }
            }
            if let Some(counts) = &folder_counts {
                let found = counts.get(&record.name).copied().unwrap_or(0);
                if found != record.num_frames {
                    report.count_mismatches.push(CountMismatch {
                        video: record.name.clone(),
                        annotated: record.num_frames,
                        found,
                    });
                }
            }
            if let Some(tokenizer) = glosses {
                for token in split_python_whitespace(&record.gloss) {
                    let key = if tokenizer.lower_case() {
                        token.to_lowercase()
                    } else {
                        token.to_string()
                    };
                    if tokenizer.vocab().id(&key).is_none() {
                        *report.unknown_glosses.entry(token.to_string()).or_insert(0) += 1;
                    }
                }
            }
            report
        })
        .reduce(ValidationReport::default, ValidationReport::merge);
    let order = |p: &FrameProblem| (p.video.clone(), p.frame);
    report.missing.sort_by_key(order);
    report.corrupt.sort_by_key(order);
    report
        .count_mismatches
        .sort_by(|a, b| a.video.cmp(&b.video));
    report
}

/// Lines shown per problem kind before "… and N more".
const SHOWN: usize = 20;

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "checked {} videos, {} frames", self.videos, self.frames)?;
        let section = |f: &mut fmt::Formatter<'_>, title: &str, lines: Vec<String>| {
            if lines.is_empty() {
                return Ok(());
            }
            writeln!(f, "{title}: {}", lines.len())?;
            for line in lines.iter().take(SHOWN) {
                writeln!(f, "  {line}")?;
            }
            if lines.len() > SHOWN {
                writeln!(f, "  … and {} more", lines.len() - SHOWN)?;
            }
            Ok(())
        };
        section(
            f,
            "missing frames",
            self.missing
                .iter()
                .map(|p| format!("{} frame {}: {}", p.video, p.frame, p.location))
                .collect(),
        )?;
        section(
            f,
            "corrupt frames",
            self.corrupt
                .iter()
                .map(|p| format!("{} frame {}: {}", p.video, p.frame, p.reason))
                .collect(),
        )?;
        section(
            f,
            "frame-count mismatches",
            self.count_mismatches
                .iter()
                .map(|m| format!("{}: annotated {}, found {}", m.video, m.annotated, m.found))
                .collect(),
        )?;
        section(
            f,
            "unknown glosses",
            self.unknown_glosses
                .iter()
                .map(|(g, n)| format!("{g} ({n}×)"))
                .collect(),
        )?;
        if self.is_clean() {
            writeln!(f, "no problems found")?;
        }
        Ok(())
    }
}
