//! Where video frames come from: a zip archive or a directory tree, in one of the reference's
//! frame layouts.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::decode::{decode_rgb_checked, resize_bicubic, DecodeError, Integrity, RgbFrame};
use super::zip_index::{ZipIndex, ZipIndexError};

/// How the frames of the video called `name` are named inside a source (spec §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameLayout {
    /// `images/{name}/images{i:04}.png`, i = 1..=num_frames (Phoenix-2014T, 210×260 PNG).
    Phoenix2014T,
    /// `sentence_frames-512x512/{name}/{i:06}.jpg`, i = 0..num_frames (CSL-Daily, 512² JPEG,
    /// resized to `csl_resize` after decoding).
    CslDaily,
    /// `{name}.avi_pid0_fn{i:06}-0.png`, i = 0..num_frames (Phoenix-2014).
    Phoenix2014,
}

impl FrameLayout {
    /// The path of frame `index` (0-based position in the video) of video `name`.
    pub fn frame_path(self, name: &str, index: usize) -> String {
        match self {
            Self::Phoenix2014T => format!("images/{name}/images{:04}.png", index + 1),
            Self::CslDaily => format!("sentence_frames-512x512/{name}/{index:06}.jpg"),
            Self::Phoenix2014 => format!("{name}.avi_pid0_fn{index:06}-0.png"),
        }
    }

    /// The folder holding one video's frames, where the layout has one (used to count frames).
    pub fn video_dir(self, name: &str) -> Option<String> {
        match self {
            Self::Phoenix2014T => Some(format!("images/{name}/")),
            Self::CslDaily => Some(format!("sentence_frames-512x512/{name}/")),
            Self::Phoenix2014 => None,
        }
    }
}

/// Errors reading one frame. They name the video, the frame and the file it came from.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The source itself could not be opened.
    #[error("{path}: neither a zip archive nor a directory")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// Opening the zip failed.
    #[error(transparent)]
    Zip(#[from] ZipIndexError),
    /// A frame file is absent.
    #[error("video '{video}' frame {frame}: {location} does not exist")]
    MissingFrame {
        /// Annotation name of the video.
        video: String,
        /// 0-based frame position.
        frame: usize,
        /// Archive entry or file path.
        location: String,
    },
    /// A frame file could not be read.
    #[error("video '{video}' frame {frame}: cannot read {location}: {reason}")]
    Unreadable {
        /// Annotation name of the video.
        video: String,
        /// 0-based frame position.
        frame: usize,
        /// Archive entry or file path.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A frame file was read but is not a decodable image.
    #[error("video '{video}' frame {frame}: {location}: {source}")]
    Decode {
        /// Annotation name of the video.
        video: String,
        /// 0-based frame position.
        frame: usize,
        /// Archive entry or file path.
        location: String,
        /// The decoder's error.
        source: DecodeError,
    },
}

/// The container of the frames.
#[derive(Debug)]
pub enum FrameStore {
    /// A zip archive (the reference's `zip_file`).
    Zip(ZipIndex),
    /// A directory whose relative paths follow the layout (an unpacked zip). For
    /// Phoenix-2014T, the official `fullFrame-210x260px` folder (without the `images/`
    /// level) is accepted too.
    Dir(PathBuf),
}

/// What happens to a frame right after decoding (CSL-Daily's `csl_cut` and `csl_resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameAdjust {
    /// Keep only this box, `(left, top, right, bottom)` in pixels, like PIL's `crop`.
    pub crop: Option<(usize, usize, usize, usize)>,
    /// Then resize to `(width, height)` with PIL's default bicubic filter.
    pub resize: Option<(usize, usize)>,
}

impl FrameAdjust {
    /// No change.
    pub const NONE: Self = Self {
        crop: None,
        resize: None,
    };

    fn apply(&self, frame: RgbFrame) -> RgbFrame {
        let frame = match self.crop {
            Some(rect) => crop_frame(&frame, rect),
            None => frame,
        };
        match self.resize {
            Some((w, h)) => resize_bicubic(&frame, w, h),
            None => frame,
        }
    }
}

/// PIL `Image.crop` semantics: the box may reach outside the image; outside pixels are zero.
fn crop_frame(
    frame: &RgbFrame,
    (left, top, right, bottom): (usize, usize, usize, usize),
) -> RgbFrame {
    let width = right.saturating_sub(left);
    let height = bottom.saturating_sub(top);
    let mut rgb = vec![0u8; width * height * 3];
    for y in 0..height.min(frame.height.saturating_sub(top)) {
        let src_row = (top + y) * frame.width;
        let cols = width.min(frame.width.saturating_sub(left));
        let src = &frame.rgb[(src_row + left) * 3..(src_row + left + cols) * 3];
        rgb[y * width * 3..(y * width + cols) * 3].copy_from_slice(src);
    }
    RgbFrame { width, height, rgb }
}

/// A frame store plus the layout and post-decode adjustment of one dataset.
#[derive(Debug)]
pub struct VideoSource {
    store: FrameStore,
    layout: FrameLayout,
    adjust: FrameAdjust,
}

impl VideoSource {
    /// Opens `path` — a zip archive or a directory — with the given layout; `adjust` is
    /// applied to every decoded frame.
    pub fn open(
        path: &Path,
        layout: FrameLayout,
        adjust: FrameAdjust,
    ) -> Result<Self, SourceError> {
        let store = if path.is_dir() {
            FrameStore::Dir(path.to_path_buf())
        } else if path.is_file() {
            FrameStore::Zip(ZipIndex::open(path)?)
        } else {
            return Err(SourceError::NotFound {
                path: path.to_path_buf(),
            });
        };
        Ok(Self {
            store,
            layout,
            adjust,
        })
    }

    /// The frame layout.
    pub fn layout(&self) -> FrameLayout {
        self.layout
    }

    /// The underlying store.
    pub fn store(&self) -> &FrameStore {
        &self.store
    }

    /// Where frame `index` of `video` lives, as shown in messages: `archive.zip@entry` or a path.
    pub fn location(&self, video: &str, index: usize) -> String {
        let inner = self.layout.frame_path(video, index);
        match &self.store {
            FrameStore::Zip(zip) => format!("{}@{inner}", zip.path().display()),
            FrameStore::Dir(root) => self.dir_path(root, &inner).display().to_string(),
        }
    }

    fn dir_path(&self, root: &Path, inner: &str) -> PathBuf {
        let direct = root.join(inner);
        if self.layout == FrameLayout::Phoenix2014T && !root.join("images").is_dir() {
            if let Some(stripped) = inner.strip_prefix("images/") {
                return root.join(stripped);
            }
        }
        direct
    }

    /// Whether frame `index` of `video` exists (without reading it).
    pub fn frame_exists(&self, video: &str, index: usize) -> bool {
        let inner = self.layout.frame_path(video, index);
        match &self.store {
            FrameStore::Zip(zip) => zip.contains(&inner),
            FrameStore::Dir(root) => self.dir_path(root, &inner).is_file(),
        }
    }

    /// The encoded bytes of frame `index` (0-based) of `video`.
    pub fn read_frame_bytes(
        &self,
        video: &str,
        index: usize,
    ) -> Result<Cow<'_, [u8]>, SourceError> {
        let inner = self.layout.frame_path(video, index);
        match &self.store {
            FrameStore::Zip(zip) => zip.read(&inner).map_err(|e| match e {
                ZipIndexError::Missing { .. } => SourceError::MissingFrame {
                    video: video.to_string(),
                    frame: index,
                    location: format!("{}@{inner}", zip.path().display()),
                },
                other => SourceError::Unreadable {
                    video: video.to_string(),
                    frame: index,
                    location: format!("{}@{inner}", zip.path().display()),
                    reason: other.to_string(),
                },
            }),
            FrameStore::Dir(root) => {
                let path = self.dir_path(root, &inner);
                std::fs::read(&path).map(Cow::Owned).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        SourceError::MissingFrame {
                            video: video.to_string(),
                            frame: index,
                            location: path.display().to_string(),
                        }
                    } else {
                        SourceError::Unreadable {
                            video: video.to_string(),
                            frame: index,
                            location: path.display().to_string(),
                            reason: e.to_string(),
                        }
                    }
                })
            }
        }
    }

    /// Reads and decodes frame `index` of `video` to RGB (resized when the source says so).
    pub fn read_frame(&self, video: &str, index: usize) -> Result<RgbFrame, SourceError> {
        let bytes = self.read_frame_bytes(video, index)?;
        // Zip entries are CRC-checked by the index; files from a directory are not.
        let integrity = match self.store {
            FrameStore::Zip(_) => Integrity::Verified,
            FrameStore::Dir(_) => Integrity::Unverified,
        };
        let frame =
            decode_rgb_checked(&bytes, integrity).map_err(|source| SourceError::Decode {
                video: video.to_string(),
                frame: index,
                location: self.location(video, index),
                source,
            })?;
        Ok(self.adjust.apply(frame))
    }

    /// Number of frame files stored for each video folder, keyed by annotation name
    /// (layouts with one folder per video only). Used by validation to find frame-count
    /// mismatches; `None` for layouts without per-video folders.
    pub fn frames_per_video(&self) -> Option<std::collections::HashMap<String, usize>> {
        let prefix = match self.layout {
            FrameLayout::Phoenix2014T => "images/",
            FrameLayout::CslDaily => "sentence_frames-512x512/",
            FrameLayout::Phoenix2014 => return None,
        };
        let mut counts = std::collections::HashMap::new();
        match &self.store {
            FrameStore::Zip(zip) => {
                for entry in zip.names() {
                    if let Some((video, _file)) = entry
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.rsplit_once('/'))
                    {
                        *counts.entry(video.to_string()).or_insert(0) += 1;
                    }
                }
            }
            FrameStore::Dir(root) => {
                let base = self.dir_path(root, prefix);
                for entry in walkdir::WalkDir::new(&base).into_iter().flatten() {
                    if !entry.file_type().is_file() {
                        continue;
                    }
                    let Ok(rel) = entry.path().strip_prefix(&base) else {
                        continue;
                    };
                    if let Some(parent) = rel.parent() {
                        let video = parent.to_string_lossy().replace('\\', "/");
                        *counts.entry(video).or_insert(0) += 1;
                    }
                }
            }
        }
        Some(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_follows_pil_and_pads_outside_with_zero() {
        let frame = RgbFrame {
            width: 3,
            height: 2,
            rgb: (0..18).collect(),
        };
        let cut = crop_frame(&frame, (1, 1, 4, 2));
        assert_eq!((cut.width, cut.height), (3, 1));
        assert_eq!(cut.rgb, vec![12, 13, 14, 15, 16, 17, 0, 0, 0]);
    }

    #[test]
    fn layouts_match_the_reference_paths() {
        let phoenix =
            FrameLayout::Phoenix2014T.frame_path("train/01April_2010_Thursday_heute-6694", 0);
        assert_eq!(
            phoenix,
            "images/train/01April_2010_Thursday_heute-6694/images0001.png"
        );
        let csl = FrameLayout::CslDaily.frame_path("S000000_P0000_T00", 12);
        assert_eq!(csl, "sentence_frames-512x512/S000000_P0000_T00/000012.jpg");
        let p14 = FrameLayout::Phoenix2014.frame_path("dev/x/1/*", 3);
        assert_eq!(p14, "dev/x/1/*.avi_pid0_fn000003-0.png");
    }

    #[test]
    fn directory_source_accepts_both_phoenix_trees() {
        let dir = tempfile::tempdir().unwrap();
        let frame = dir.path().join("train/v1");
        std::fs::create_dir_all(&frame).unwrap();
        std::fs::write(frame.join("images0001.png"), b"x").unwrap();
        let official =
            VideoSource::open(dir.path(), FrameLayout::Phoenix2014T, FrameAdjust::NONE).unwrap();
        assert!(official.frame_exists("train/v1", 0));
        assert!(!official.frame_exists("train/v1", 1));
        let err = official.read_frame("train/v1", 0).unwrap_err().to_string();
        assert!(
            err.contains("train/v1") && err.contains("images0001.png"),
            "{err}"
        );
        let missing = official.read_frame("train/v1", 1).unwrap_err().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
        assert_eq!(official.frames_per_video().unwrap()["train/v1"], 1);
    }
}
