//! Hand-checked cases for the CTC loss and decoders.

use super::*;

/// Row-major `[t, v]` logits equal to the log of the given per-frame probabilities.
fn log_frames<const V: usize>(probs: &[[f64; V]]) -> (Vec<f32>, usize, usize) {
    let v = V;
    let data = probs
        .iter()
        .flat_map(|f| f.iter().map(|&p| p.ln() as f32))
        .collect();
    (data, probs.len(), v)
}

fn beam_path(logits: &[f32], t: usize, v: usize, w: usize) -> BeamPath {
    CtcBeamDecoder::new(w)
        .and_then(|mut d| d.decode(logits, t, v))
        .expect("valid input")
}

#[test]
fn all_blank_decodes_to_nothing() {
    let (x, t, v) = log_frames(&[[0.9, 0.05, 0.05]; 6]);
    for w in [1, 5, 10] {
        assert_eq!(
            ctc_beam_search(&x, t, v, w).expect("valid"),
            Vec::<usize>::new()
        );
    }
    assert_eq!(ctc_greedy(&x, t, v).expect("valid"), Vec::<usize>::new());
}

#[test]
fn zero_frames_decode_to_nothing_with_log_probability_zero() {
    let p = beam_path(&[], 0, 4, 3);
    assert!(p.ids.is_empty());
    assert_eq!(p.log_probability, 0.0);
}

#[test]
fn repeats_separated_by_blank_are_two_labels_then_merged_like_the_reference() {
    let (x, t, v) = log_frames(&[[0.02, 0.96, 0.02], [0.96, 0.02, 0.02], [0.02, 0.96, 0.02]]);
    // TF's path keeps both labels (merge_repeated=False) ...
    assert_eq!(beam_path(&x, t, v, 5).ids, vec![1, 1]);
    // ... and the reference's groupby then merges them.
    assert_eq!(ctc_beam_search(&x, t, v, 5).expect("valid"), vec![1]);
    // Best-path decoding keeps both (the blank separates them).
    assert_eq!(ctc_greedy(&x, t, v).expect("valid"), vec![1, 1]);
}

#[test]
fn repeats_without_blank_collapse() {
    let (x, t, v) = log_frames(&[[0.02, 0.96, 0.02], [0.02, 0.96, 0.02], [0.02, 0.02, 0.96]]);
    assert_eq!(beam_path(&x, t, v, 3).ids, vec![1, 2]);
    assert_eq!(ctc_greedy(&x, t, v).expect("valid"), vec![1, 2]);
}

#[test]
fn beam_one_is_not_best_path_decoding() {
    // Frame 0 clearly says "a"; frame 1 prefers "b" by a hair over blank, but the prefix "a"
    // (ending in "a" or in blank: 0.6 * (0.30 + 0.34) = 0.384) beats "a b" (0.6 * 0.36).
    let (x, t, v) = log_frames(&[[0.39, 0.60, 0.01], [0.34, 0.30, 0.36]]);
    assert_eq!(ctc_greedy(&x, t, v).expect("valid"), vec![1, 2]);
    let p = beam_path(&x, t, v, 1);
    assert_eq!(p.ids, vec![1]);
    assert!((f64::from(p.log_probability) - 0.384f64.ln()).abs() < 1e-5);
}

#[test]
fn graves_example_needs_a_second_beam() {
    // TF's own comment: P("") = 0.7 * 0.6 = 0.42 < P("a") = 0.58, best path says "".
    let (x, t, v) = log_frames(&[[0.7, 0.3], [0.6, 0.4]]);
    assert_eq!(ctc_greedy(&x, t, v).expect("valid"), Vec::<usize>::new());
    assert_eq!(beam_path(&x, t, v, 1).ids, Vec::<usize>::new());
    let p = beam_path(&x, t, v, 2);
    assert_eq!(p.ids, vec![1]);
    assert!((f64::from(p.log_probability) - 0.58f64.ln()).abs() < 1e-6);
}

/// Exact most probable labelling by enumerating every alignment (tiny `t`, `v` only).
fn brute_force_map(probs: &[Vec<f64>]) -> (Vec<usize>, f64) {
    let (t, v) = (probs.len(), probs[0].len());
    let mut by_labelling: std::collections::HashMap<Vec<usize>, f64> = Default::default();
    for code in 0..v.pow(t as u32) {
        let (mut c, mut p, mut labels, mut prev) = (code, 1.0, Vec::new(), 0);
        for frame in probs {
            let k = c % v;
            c /= v;
            p *= frame[k];
            if k != 0 && k != prev {
                labels.push(k);
            }
            prev = k;
        }
        *by_labelling.entry(labels).or_default() += p;
    }
    by_labelling
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one alignment")
}

#[test]
fn unpruned_beam_finds_the_exact_map_labelling() {
    let mut seed = 7u64;
    let mut uniform = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) * 0.9 + 0.05
    };
    for case in 0..20 {
        let (t, v) = (2 + case % 4, 3);
        let probs: Vec<Vec<f64>> = (0..t)
            .map(|_| {
                let raw: Vec<f64> = (0..v).map(|_| uniform()).collect();
                let s: f64 = raw.iter().sum();
                raw.into_iter().map(|p| p / s).collect()
            })
            .collect();
        let x: Vec<f32> = probs.iter().flatten().map(|&p| p.ln() as f32).collect();
        // Wide enough to keep every prefix: nothing is ever pruned.
        let p = beam_path(&x, t, v, 64);
        let (want, want_p) = brute_force_map(&probs);
        assert_eq!(p.ids, want, "case {case}");
        assert!(
            (f64::from(p.log_probability) - want_p.ln()).abs() < 1e-5,
            "case {case}"
        );
    }
}

#[test]
fn invalid_inputs_are_errors() {
    assert!(matches!(
        CtcBeamDecoder::new(0),
        Err(CtcError::BeamWidth(0))
    ));
    assert!(ctc_beam_search(&[0.0; 5], 2, 3, 1).is_err());
    assert!(ctc_beam_search(&[], 1, 0, 1).is_err());
    assert!(ctc_greedy(&[0.0; 5], 2, 3).is_err());
    assert!(decode_batch_f32(&[0.0; 12], (2, 2, 3), &[2, 3], 1).is_err());
    assert!(decode_batch_f32(&[0.0; 12], (2, 2, 3), &[2, -1], 1).is_err());
    assert!(decode_batch_f32(&[0.0; 12], (2, 2, 3), &[2], 1).is_err());
    assert!(decode_batch_f32(&[0.0; 11], (2, 2, 3), &[2, 2], 1).is_err());
    assert!(decode_batch_f32(&[0.0; 12], (2, 2, 3), &[2, 2], 0).is_err());
    assert!(decode_batch(
        &Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
        &[1, 1],
        1
    )
    .is_err());
}

#[test]
fn decode_batch_matches_per_sequence_decoding() {
    let (b, t, v) = (4usize, 7usize, 6usize);
    let logits = Tensor::randn([b as i64, t as i64, v as i64], (Kind::Float, Device::Cpu)) * 3.0;
    let lengths = [7i64, 3, 0, 5];
    let flat = Vec::<f32>::try_from(&logits.reshape([-1])).expect("f32 tensor");
    for w in [1, 4] {
        let got = decode_batch(&logits, &lengths, w).expect("valid");
        for (i, &len) in lengths.iter().enumerate() {
            let seq = &flat[i * t * v..(i + 1) * t * v];
            let want: Vec<i64> = ctc_beam_search(seq, len as usize, v, w)
                .expect("valid")
                .into_iter()
                .map(|id| id as i64)
                .collect();
            assert_eq!(got[i], want, "sequence {i}, beam {w}");
        }
    }
}

#[test]
fn loss_is_summed_nll_over_batch_size_with_impossible_samples_zeroed() {
    // Sample 0: T=1, target [1] -> NLL = -ln p(1). Sample 1: target [1, 1] needs 3 frames.
    let probs = [[0.25f32, 0.75], [0.5, 0.5]];
    let logits = Tensor::from_slice(&probs.concat())
        .reshape([2, 1, 2])
        .log()
        .set_requires_grad(true);
    let lp = logits.log_softmax(-1, Kind::Float);
    let targets = Tensor::from_slice(&[1i64, 1, 1, 1]).reshape([2, 2]);
    let input_lengths = Tensor::from_slice(&[1i64, 1]);
    let target_lengths = Tensor::from_slice(&[1i64, 2]);
    let loss = recognition_ctc_loss(&lp, &input_lengths, &targets, &target_lengths).expect("valid");
    let want = -(0.75f64.ln()) / 2.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);
    loss.backward();
    // d(-ln softmax_1)/d logits = softmax - onehot, divided by B = 2; sample 1 gets nothing.
    let grad = logits.grad();
    assert!((grad.double_value(&[0, 0, 0]) - 0.125).abs() < 1e-6);
    assert!((grad.double_value(&[0, 0, 1]) + 0.125).abs() < 1e-6);
    assert_eq!(grad.double_value(&[1, 0, 0]), 0.0);
    assert_eq!(grad.double_value(&[1, 0, 1]), 0.0);
    let nll = ctc_nll_per_sample(&lp, &input_lengths, &targets, &target_lengths).expect("valid");
    assert!((nll.double_value(&[0]) + 0.75f64.ln()).abs() < 1e-6);
    assert!(nll.double_value(&[1]).is_infinite());
}

#[test]
fn loss_rejects_bad_shapes_and_lengths() {
    let lp = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
    let targets = Tensor::ones([2, 2], (Kind::Int64, Device::Cpu));
    let ok = Tensor::from_slice(&[3i64, 2]);
    let lens = Tensor::from_slice(&[1i64, 2]);
    assert!(recognition_ctc_loss(&lp, &ok, &targets, &lens).is_ok());
    let too_long = Tensor::from_slice(&[4i64, 2]);
    assert!(matches!(
        recognition_ctc_loss(&lp, &too_long, &targets, &lens),
        Err(CtcError::Length { index: 0, .. })
    ));
    let short_targets = Tensor::from_slice(&[1i64, 3]);
    assert!(recognition_ctc_loss(&lp, &ok, &targets, &short_targets).is_err());
    let one = Tensor::from_slice(&[3i64]);
    assert!(recognition_ctc_loss(&lp, &one, &targets, &lens).is_err());
    assert!(recognition_ctc_loss(&lp.reshape([6, 4]), &ok, &targets, &lens).is_err());
}

#[test]
fn exact_ties_are_broken_like_tensorflow() {
    // One frame, integer logits: several labels (or blank) tie exactly. Expected ids are what
    // `tf.nn.ctc_beam_search_decoder` (TF 2.21) returned for these inputs; they follow from
    // gtl::TopN's heap moves, not from label order.
    let cases: [(&[f32], usize, &[usize]); 5] = [
        (&[0.0, 2.0, 2.0, 1.0, 2.0], 3, &[1]),
        (&[2.0, 0.0, 1.0, 1.0, 2.0, 0.0], 3, &[]),
        (&[1.0, 0.0, 2.0, 1.0, 0.0, 2.0], 3, &[2]),
        (&[0.0, 0.0, 1.0, 2.0, 1.0, 2.0], 4, &[3]),
        (&[1.0, 0.0, 0.0, 1.0, 1.0], 3, &[3]),
    ];
    for (x, w, want) in cases {
        assert_eq!(beam_path(x, 1, x.len(), w).ids, want, "{x:?} beam {w}");
    }
    // Wider beams sort more than 16 entries per step, through libstdc++'s introsort; a stable
    // sort would give [2, 1, 2] and [3, 4] here.
    let wide: [(&[f32], usize, usize, &[usize]); 2] = [
        (
            &[
                2., 0., 2., 0., 2., 2., 0., 0., 2., 0., 2., 2., 0., 2., 0., 0., 2., 0., 2., 2.,
            ],
            4,
            50,
            &[2, 1, 3],
        ),
        (
            &[
                0., 2., 0., 2., 1., 0., 2., 2., 0., 0., 0., 1., 2., 0., 1., 1., 1., 1., 0., 1., 2.,
                0., 0., 1.,
            ],
            8,
            50,
            &[7, 4],
        ),
    ];
    for (x, v, w, want) in wide {
        assert_eq!(beam_path(x, x.len() / v, v, w).ids, want, "{x:?} beam {w}");
    }
}
