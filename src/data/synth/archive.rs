//! PNG encoding and the Phoenix-2014T-style video zip (`images/{name}/images{i:04}.png`).
//!
//! PNGs use fixed settings (RGB8, fast deflate, adaptive filtering) and the zip stores them
//! uncompressed with a fixed time stamp and permissions, so the bytes depend on the pixels only.
//! The zip is written under a temporary name in the output folder and renamed when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use super::SynthError;

/// Encodes interleaved RGB bytes as a PNG with fixed settings.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::with_capacity(rgb.len() / 2);
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    enc.set_filter(png::Filter::Adaptive);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Inner path of frame `index` (1-based) of video `name`, as in Phoenix-2014T's zip.
pub fn frame_entry(name: &str, index: usize) -> String {
    format!("images/{name}/images{index:04}.png")
}

/// A zip being written under a temporary name; [`VideoZip::finish`] renames it.
pub struct VideoZip {
    writer: ZipWriter<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
    bytes: u64,
}

impl VideoZip {
    /// Starts writing the zip that will be `dest` once finished.
    pub fn create(dest: &Path) -> Result<Self, SynthError> {
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "videos.zip".into());
        let tmp = dest.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|source| SynthError::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok(Self {
            writer: ZipWriter::new(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            dest: dest.to_path_buf(),
            bytes: 0,
        })
    }

    /// Appends one stored (uncompressed) entry.
    pub fn add(&mut self, entry: &str, data: &[u8]) -> Result<(), SynthError> {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .system(System::Unix);
        let zip_err = |source| SynthError::Zip {
            path: self.tmp.clone(),
            entry: entry.to_string(),
            source,
        };
        self.writer.start_file(entry, options).map_err(zip_err)?;
        self.writer
            .write_all(data)
            .map_err(|e| zip_err(zip::result::ZipError::Io(e)))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Bytes of entry data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the central directory, syncs, and renames the file to its final name.
    /// Returns the zip's size in bytes.
    pub fn finish(self) -> Result<u64, SynthError> {
        let Self {
            writer, tmp, dest, ..
        } = self;
        let io_err = |path: &Path, source| SynthError::Io {
            path: path.to_path_buf(),
            source,
        };
        let buf = writer.finish().map_err(|source| SynthError::Zip {
            path: tmp.clone(),
            entry: "(central directory)".into(),
            source,
        })?;
        let file = buf.into_inner().map_err(|e| io_err(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        let size = file.metadata().map_err(|e| io_err(&tmp, e))?.len();
        drop(file);
        std::fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e))?;
        Ok(size)
    }

    /// Removes the temporary file (after an error).
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        // Best effort: the error that led here is what gets reported.
        let _ = std::fs::remove_file(tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_and_is_deterministic() {
        let (w, h) = (5u32, 3u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
        let a = encode_png(&rgb, w, h).unwrap();
        assert_eq!(a, encode_png(&rgb, w, h).unwrap());
        let dec = png::Decoder::new(std::io::Cursor::new(&a));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
        assert_eq!(
            frame_entry("dev/synth-000003", 7),
            "images/dev/synth-000003/images0007.png"
        );
    }

    #[test]
    fn zip_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("videos.zip");
        let mut z = VideoZip::create(&dest).unwrap();
        z.add("images/a/images0001.png", b"abc").unwrap();
        assert!(!dest.exists());
        assert_eq!(z.data_bytes(), 3);
        let size = z.finish().unwrap();
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), size);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let z = VideoZip::create(&dir.path().join("other.zip")).unwrap();
        z.abandon();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
