//! Recognition loss (CTC) and CTC decoding, exactly as the reference does them.
//!
//! * [`recognition_ctc_loss`]: `torch.nn.CTCLoss(blank=0, zero_infinity=True, reduction='sum')`
//!   on `[T, B, V]` log-probabilities, divided by the batch size (samples whose loss is
//!   infinite count in the divisor but contribute 0 and no gradient).
//! * [`decode_batch`] / [`ctc_beam_search`]: the reference's `RecognitionNetwork.decode` —
//!   TensorFlow's `ctc_beam_search_decoder` (reproduced bit for bit in [`beam`], blank = id 0),
//!   then consecutive duplicates merged. Beam width 1 is *not* best-path decoding.
//! * [`ctc_greedy`]: textbook best-path decoding, for completeness; the reference never uses it.
//!
//! ```text
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --lib model::ctc
//! SLT_SKIP_BUILD=1 ./setup.sh cargo test --release --test ctc_parity
//! ```

pub mod beam;
mod error;
mod stl;

use rayon::prelude::*;
use tch::{Device, Kind, Reduction, Tensor};

pub use beam::{ctc_beam_search, merge_repeats, BeamPath, CtcBeamDecoder};
pub use error::CtcError;

/// Id of the CTC blank (the gloss vocabulary's `<si>`/`<s>`, asserted 0 by the reference).
pub const BLANK_ID: i64 = 0;

fn shape_err(what: &'static str, expected: impl Into<String>, got: &[i64]) -> CtcError {
    CtcError::Shape {
        what,
        expected: expected.into(),
        got: format!("{got:?}"),
    }
}

/// The reference's recognition loss: CTC negative log-likelihood summed over the batch and
/// divided by the batch size `B`.
///
/// * `log_probs`: `[B, T, V]` log-softmax outputs (gradients flow through it);
/// * `input_lengths`: `[B]` valid frames per sample;
/// * `targets`: `[B, S]` gloss ids padded with anything (only the first `target_lengths[b]`
///   ids of row `b` are read; blank 0 must not occur in them);
/// * `target_lengths`: `[B]`.
///
/// Samples whose target cannot be aligned (e.g. longer than their input) get loss 0 and zero
/// gradient (`zero_infinity`), but still count in `B`. Returns a scalar on `log_probs`' device.
pub fn recognition_ctc_loss(
    log_probs: &Tensor,
    input_lengths: &Tensor,
    targets: &Tensor,
    target_lengths: &Tensor,
) -> Result<Tensor, CtcError> {
    let (lp, targets, input_lengths, target_lengths, b) =
        ctc_inputs(log_probs, input_lengths, targets, target_lengths)?;
    let sum = Tensor::f_ctc_loss_tensor(
        &lp,
        &targets,
        &input_lengths,
        &target_lengths,
        BLANK_ID,
        Reduction::Sum,
        true,
    )?;
    Ok(sum.f_div_scalar(b as f64)?)
}

/// Per-sample CTC negative log-likelihoods `[B]` without zeroing (`+inf` where the target is
/// impossible) — the `reduction='none', zero_infinity=False` loss, for diagnostics and tests.
pub fn ctc_nll_per_sample(
    log_probs: &Tensor,
    input_lengths: &Tensor,
    targets: &Tensor,
    target_lengths: &Tensor,
) -> Result<Tensor, CtcError> {
    let (lp, targets, input_lengths, target_lengths, _) =
        ctc_inputs(log_probs, input_lengths, targets, target_lengths)?;
    Ok(Tensor::f_ctc_loss_tensor(
        &lp,
        &targets,
        &input_lengths,
        &target_lengths,
        BLANK_ID,
        Reduction::None,
        false,
    )?)
}

/// Validates the loss inputs and brings them into the layout `ctc_loss` takes:
/// `[T, B, V]` log-probs, int64 targets and lengths.
fn ctc_inputs(
    log_probs: &Tensor,
    input_lengths: &Tensor,
    targets: &Tensor,
    target_lengths: &Tensor,
) -> Result<(Tensor, Tensor, Tensor, Tensor, i64), CtcError> {
    let size = log_probs.size();
    let &[b, t, v] = size.as_slice() else {
        return Err(shape_err("log_probs", "[B, T, V]", &size));
    };
    if b == 0 || v == 0 {
        return Err(shape_err("log_probs", "[B, T, V] with B, V > 0", &size));
    }
    let tsize = targets.size();
    if tsize.len() != 2 || tsize[0] != b {
        return Err(shape_err("targets", format!("[{b}, S]"), &tsize));
    }
    for (what, lengths, max) in [
        ("input_lengths", input_lengths, t),
        ("target_lengths", target_lengths, tsize[1]),
    ] {
        let lsize = lengths.size();
        if lsize != [b] {
            return Err(shape_err(what, format!("[{b}]"), &lsize));
        }
        let values =
            Vec::<i64>::try_from(&lengths.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)?;
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, &x)| x < 0 || x > max) {
            return Err(CtcError::Length {
                what,
                index,
                value,
                max: max as usize,
            });
        }
    }
    Ok((
        log_probs.f_transpose(0, 1)?,
        targets.f_to_kind(Kind::Int64)?,
        input_lengths.f_to_kind(Kind::Int64)?,
        target_lengths.f_to_kind(Kind::Int64)?,
        b,
    ))
}

/// Best-path (greedy) decoding of `t` frames of `v` scores (row-major `[t, v]`, blank = id 0):
/// per-frame argmax (first maximum on ties), consecutive repeats merged, blanks dropped.
///
/// Not what the reference uses (it always runs TF's beam search, see [`ctc_beam_search`]);
/// kept for quick diagnostics.
pub fn ctc_greedy(logits: &[f32], t: usize, v: usize) -> Result<Vec<usize>, CtcError> {
    let needed = t.checked_mul(v).filter(|&n| n <= logits.len() && v > 0);
    let Some(needed) = needed else {
        return Err(CtcError::Shape {
            what: "logits",
            expected: format!("at least t * v = {t} * {v} values with v > 0"),
            got: format!("{} values", logits.len()),
        });
    };
    let mut out = Vec::new();
    let mut prev = None;
    for frame in logits[..needed].chunks_exact(v) {
        let mut best = 0;
        for (j, &x) in frame.iter().enumerate() {
            if x > frame[best] {
                best = j;
            }
        }
        if best != BLANK_ID as usize && prev != Some(best) {
            out.push(best);
        }
        prev = Some(best);
    }
    Ok(out)
}

/// Decodes a batch given as row-major `[b, t, v]` logits: sequence `i` uses its first
/// `input_lengths[i]` frames. Sequences run in parallel (rayon), one decoder per worker.
/// Returns model ids per sequence, duplicates merged — the reference's output.
pub fn decode_batch_f32(
    logits: &[f32],
    (b, t, v): (usize, usize, usize),
    input_lengths: &[i64],
    beam_width: usize,
) -> Result<Vec<Vec<i64>>, CtcError> {
    if beam_width == 0 {
        return Err(CtcError::BeamWidth(beam_width));
    }
    let per_seq = t
        .checked_mul(v)
        .filter(|&n| n.checked_mul(b) == Some(logits.len()) && v > 0);
    let Some(per_seq) = per_seq else {
        return Err(CtcError::Shape {
            what: "logits",
            expected: format!("b * t * v = {b} * {t} * {v} values with v > 0"),
            got: format!("{} values", logits.len()),
        });
    };
    if input_lengths.len() != b {
        return Err(shape_err(
            "input_lengths",
            format!("[{b}]"),
            &[input_lengths.len() as i64],
        ));
    }
    let mut lengths = Vec::with_capacity(b);
    for (index, &value) in input_lengths.iter().enumerate() {
        match usize::try_from(value) {
            Ok(len) if len <= t => lengths.push(len),
            _ => {
                return Err(CtcError::Length {
                    what: "input_lengths",
                    index,
                    value,
                    max: t,
                })
            }
        }
    }
    if per_seq == 0 {
        return Ok(vec![Vec::new(); b]);
    }
    logits
        .par_chunks(per_seq)
        .zip(lengths.par_iter())
        .map_init(
            || CtcBeamDecoder::new(beam_width),
            |decoder, (seq, &len)| {
                let decoder = decoder
                    .as_mut()
                    .map_err(|_| CtcError::BeamWidth(beam_width))?;
                let path = decoder.decode(seq, len, v)?;
                Ok(merge_repeats(&path.ids)
                    .into_iter()
                    .map(|id| id as i64)
                    .collect())
            },
        )
        .collect()
}

/// The reference's `RecognitionNetwork.decode(gloss_logits, beam_size, input_lengths)`:
/// `logits` is `[B, T, V]` (any float kind, any device; copied to host f32 once), blank = 0.
/// Returns each sequence's gloss ids with consecutive duplicates merged.
pub fn decode_batch(
    logits: &Tensor,
    input_lengths: &[i64],
    beam_width: usize,
) -> Result<Vec<Vec<i64>>, CtcError> {
    let size = logits.size();
    let &[b, t, v] = size.as_slice() else {
        return Err(shape_err("logits", "[B, T, V]", &size));
    };
    let host = logits
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_reshape([b * t * v])?;
    let data = Vec::<f32>::try_from(&host)?;
    decode_batch_f32(
        &data,
        (b as usize, t as usize, v as usize),
        input_lengths,
        beam_width,
    )
}

#[cfg(test)]
mod tests;
