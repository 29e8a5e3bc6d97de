//! Unit tests of the synthetic dataset: option checks, counter-based streams, and that the
//! glosses' renderings are clearly distinct.

use super::*;

fn small() -> SynthOptions {
    SynthOptions {
        width: 64,
        height: 80,
        vocab_size: 20,
        progress: false,
        ..SynthOptions::default()
    }
}

/// Mean absolute difference of 4×4 block means (what a CNN's first layers see; pixel noise
/// averages out, hands and arms do not).
fn mad(a: &[Vec<u8>], b: &[Vec<u8>], width: usize) -> f64 {
    let blocks = |f: &[u8]| -> Vec<f64> {
        let height = f.len() / (width * 3);
        let mut out = Vec::new();
        for by in 0..height / 4 {
            for bx in 0..width / 4 {
                for c in 0..3 {
                    let mut s = 0u32;
                    for y in by * 4..by * 4 + 4 {
                        for x in bx * 4..bx * 4 + 4 {
                            s += u32::from(f[(y * width + x) * 3 + c]);
                        }
                    }
                    out.push(f64::from(s) / 16.0);
                }
            }
        }
        out
    };
    let (mut sum, mut n) = (0.0, 0usize);
    for (fa, fb) in a.iter().zip(b) {
        let (ba, bb) = (blocks(fa), blocks(fb));
        sum += ba.iter().zip(&bb).map(|(x, y)| (x - y).abs()).sum::<f64>();
        n += ba.len();
    }
    sum / n as f64
}

#[test]
fn glosses_look_different_but_noise_alone_does_not() {
    let opts = small();
    let (n, w) = (opts.vocab_size, opts.width as usize);
    for scene_seed in [11u64, 12] {
        let clips: Vec<Vec<Vec<u8>>> = (0..n)
            .map(|g| render_sign_clip(&opts, g, scene_seed, 1).unwrap())
            .collect();
        let other: Vec<Vec<Vec<u8>>> = (0..n)
            .map(|g| render_sign_clip(&opts, g, scene_seed, 2).unwrap())
            .collect();
        let same_max = (0..n)
            .map(|g| mad(&clips[g], &other[g], w))
            .fold(0.0, f64::max);
        let mut diff_min = f64::MAX;
        let mut worst = (0, 0);
        for (i, clip) in clips.iter().enumerate() {
            for (j, other_clip) in other.iter().enumerate().take(i) {
                let d = mad(clip, other_clip, w);
                if d < diff_min {
                    (diff_min, worst) = (d, (i, j));
                }
            }
        }
        eprintln!("scene {scene_seed}: same gloss max {same_max:.2}, different glosses min {diff_min:.2} {worst:?}");
        assert!(same_max > 0.05, "noise should change pixels ({same_max})");
        assert!(
            diff_min > 3.0 * same_max,
            "glosses {worst:?} look alike: {diff_min:.2} vs noise {same_max:.2}"
        );
    }
}

#[test]
fn clips_are_deterministic_and_sized() {
    let opts = small();
    let a = render_sign_clip(&opts, 3, 5, 6).unwrap();
    assert_eq!(a.len(), opts.frames_per_gloss as usize);
    assert!(a.iter().all(|f| f.len() == 64 * 80 * 3));
    assert_eq!(a, render_sign_clip(&opts, 3, 5, 6).unwrap());
    assert_ne!(a, render_sign_clip(&opts, 3, 5, 7).unwrap());
}

#[test]
fn streams_depend_on_every_counter() {
    let draw = |seed, purpose, c: &[u64]| stream(seed, purpose, c).random::<u64>();
    let base = draw(0, Purpose::Video, &[0, 1]);
    assert_eq!(base, draw(0, Purpose::Video, &[0, 1]));
    assert_ne!(base, draw(1, Purpose::Video, &[0, 1]));
    assert_ne!(base, draw(0, Purpose::Noise, &[0, 1]));
    assert_ne!(base, draw(0, Purpose::Video, &[1, 0]));
    assert_ne!(base, draw(0, Purpose::Video, &[0, 1, 0]));
}

#[test]
fn invalid_options_are_rejected_with_a_reason() {
    let cases = [
        SynthOptions {
            width: 0,
            ..small()
        },
        SynthOptions {
            frames_per_gloss: 1,
            ..small()
        },
        SynthOptions {
            vocab_size: 0,
            ..small()
        },
        SynthOptions {
            vocab_size: grammar::BUILTIN_GLOSSES + 1,
            ..small()
        },
        SynthOptions {
            num_signers: 0,
            ..small()
        },
        SynthOptions {
            noise_std: f32::NAN,
            ..small()
        },
        SynthOptions {
            train_size: 0,
            dev_size: 0,
            test_size: 0,
            ..small()
        },
    ];
    for opts in cases {
        let err = validate(&opts).unwrap_err();
        assert!(matches!(err, SynthError::InvalidOptions(_)), "{err}");
    }
    validate(&small()).unwrap();
}

#[test]
fn plans_follow_the_options() {
    let opts = small();
    let signs = sign_table(opts.vocab_size);
    let looks: Vec<SignerLook> = (0..3)
        .map(|k| SignerLook::random(&mut stream(0, Purpose::Signer, &[k])))
        .collect();
    let Chosen {
        vocabulary: vocab,
        per_split: sentences,
        pool,
    } = choose_sentences(&opts, [5, 2, 0]).unwrap();
    assert_eq!(vocab.len(), 20);
    assert_eq!(pool, None);
    assert_eq!(
        sentences.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![5, 2, 0]
    );
    for (i, s) in sentences[0].iter().enumerate() {
        let p = plan_video(&opts, 0, i, s.clone(), &looks, &signs);
        assert_eq!(p.name, format!("train/synth-{:06}", i + 1));
        assert!(p.signer < 3);
        let signed = p.frames.iter().filter(|f| f.label != 0).count();
        let g = s.ids.len();
        // Each gloss gets frames_per_gloss ±25 %.
        assert!(
            signed >= g * 6 && signed <= g * 10,
            "{signed} frames for {g} glosses"
        );
        let rec = record_of(&p);
        assert_eq!(rec.num_frames as usize, p.frames.len());
        assert_eq!(rec.alignments[0].1.split(' ').count(), p.frames.len());
        assert_eq!(rec.signer, format!("Signer{:02}", p.signer + 1));
    }
}

#[test]
fn isolated_clips_sign_one_gloss_each_and_cover_the_vocabulary_evenly() {
    let opts = SynthOptions {
        isolated_train: 40,
        ..small()
    };
    let Chosen { vocabulary, .. } = choose_sentences(&opts, [0, 0, 0]).unwrap();
    let clips = isolated_sentences(&opts, &vocabulary);
    assert_eq!(clips.len(), 40);
    let mut per_gloss = vec![0usize; vocabulary.len()];
    for s in &clips {
        assert_eq!(s.glosses.len(), 1, "{s:?}");
        assert_eq!(s.ids.len(), 1);
        let k = (s.ids[0] as usize) - SPECIALS.len();
        assert_eq!(s.glosses[0], vocabulary[k]);
        assert!(s.text.ends_with(" ."), "{s:?}");
        per_gloss[k] += 1;
    }
    assert!(per_gloss.iter().all(|&n| n == 2), "{per_gloss:?}");
    // From a source vocabulary the text is the lower-cased gloss.
    let vocab = vec!["REGEN".to_string(), "SONNE".to_string()];
    let s = grammar::single_gloss(&vocab, 3);
    assert_eq!(s.glosses, vec!["SONNE".to_string()]);
    assert_eq!(s.ids, vec![SPECIALS.len() as i64 + 1]);
    assert_eq!(s.text, "sonne .");
    // Only isolated clips is a valid request.
    validate(&SynthOptions {
        train_size: 0,
        dev_size: 0,
        test_size: 0,
        ..opts
    })
    .unwrap();
}
