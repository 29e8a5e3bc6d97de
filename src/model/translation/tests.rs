//! Unit tests of the from-scratch path (no Python): vocabularies kept under the artefacts
//! directory, parameter names, freezing, S2T inputs and `load_ckpt` round trips.
//! Parity with transformers is in `tests/translation.rs`.

use std::path::Path;

use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

use super::*;
use crate::config::TranslationDecodeConfig;
use crate::model::mbart::io::write_safetensors;

const TEXTS: [&str; 4] = [
    "am tag regen im norden .",
    "morgen sonne im süden .",
    "regen und wind .",
    "im norden schnee .",
];
const GLOSSES: [&str; 4] = [
    "TAG REGEN NORD",
    "MORGEN SONNE SUED",
    "REGEN WIND",
    "NORD SCHNEE",
];

fn scratch_config(extra: serde_json::Value) -> TranslationNetworkConfig {
    let mut value = json!({
        "architecture": {
            "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
            "encoder_attention_heads": 2, "decoder_attention_heads": 2,
            "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "max_position_embeddings": 64
        },
        "overwrite_cfg": {"dropout": 0.1},
        "TextTokenizer": {"level": "word", "tgt_lang": "de_DE"},
        "GlossTokenizer": {"src_lang": "de_DGS"},
        "GlossEmbedding": {"from_scratch": true, "init_std": 0.02},
        "label_smoothing": 0.1,
        "from_scratch": true
    });
    if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        for (key, item) in extra {
            base.insert(key.clone(), item.clone());
        }
    }
    serde_json::from_value(value).expect("valid TranslationNetworkConfig")
}

fn build(vs: &nn::VarStore, cfg: &TranslationNetworkConfig, dir: &Path) -> TranslationNetwork {
    let setup = TranslationSetup {
        train_texts: &TEXTS,
        train_glosses: &GLOSSES,
        artifacts_dir: dir,
    };
    TranslationNetwork::build(&(vs.root() / NETWORK_PATH), cfg, &setup).expect("build")
}

#[test]
fn scratch_build_saves_vocabularies_and_names_parameters() {
    tch::manual_seed(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = scratch_config(json!({}));
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs, &cfg, dir.path());
    assert!(dir.path().join("text_tokenizer/tokenizer.json").is_file());
    assert!(dir.path().join(GLOSS_VOCAB_FILE).is_file());
    // 5 specials + 12 words; 5 specials + 8 glosses.
    assert_eq!(net.text_tokenizer().vocab_size(), 17);
    assert_eq!(net.gloss_tokenizer().len(), 13);
    assert_eq!(net.model().config().vocab_size, 17);
    assert_eq!(net.input_embed_scale(), 4.0);
    let vars = vs.variables();
    for name in [
        "translation_network.gloss_embedding.weight",
        "translation_network.model.final_logits_bias",
        "translation_network.model.model.shared.weight",
        "translation_network.model.model.encoder.layers.0.self_attn.q_proj.weight",
        "translation_network.model.model.decoder.layers.0.encoder_attn.out_proj.bias",
    ] {
        assert!(vars.contains_key(name), "{name} missing: {:?}", vars.keys());
    }
    assert_eq!(
        vars["translation_network.gloss_embedding.weight"].size(),
        [13, 16]
    );
    let pad_row = net.gloss_embedding().get(1).abs().sum(Kind::Double);
    assert_eq!(pad_row.double_value(&[]), 0.0);

    // A second build without training data reads the same vocabularies back.
    let vs2 = nn::VarStore::new(Device::Cpu);
    let setup = TranslationSetup::saved_only(dir.path());
    let again = TranslationNetwork::build(&(vs2.root() / NETWORK_PATH), &cfg, &setup)
        .expect("build from saved artefacts");
    assert_eq!(
        again.gloss_tokenizer().vocab().glosses(),
        net.gloss_tokenizer().vocab().glosses()
    );
    assert_eq!(
        again.text_tokenizer().hf_tokenizer().get_vocab(true),
        net.text_tokenizer().hf_tokenizer().get_vocab(true)
    );
    // Nothing saved and nothing to learn from: a clear error naming the directory.
    let empty = tempfile::tempdir().expect("tempdir");
    let vs3 = nn::VarStore::new(Device::Cpu);
    let err = TranslationNetwork::build(
        &(vs3.root() / NETWORK_PATH),
        &cfg,
        &TranslationSetup::saved_only(empty.path()),
    )
    .expect_err("no artefacts");
    assert!(err.to_string().contains("text_tokenizer"), "{err}");
}

#[test]
fn saved_tokenizer_of_another_level_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = nn::VarStore::new(Device::Cpu);
    build(&vs, &scratch_config(json!({})), dir.path());
    let chars = scratch_config(json!({"TextTokenizer": {"level": "char", "tgt_lang": "de_DE"}}));
    let setup = TranslationSetup::saved_only(dir.path());
    let err = TranslationNetwork::build(&(vs.root() / "other"), &chars, &setup)
        .expect_err("level mismatch");
    assert!(err.to_string().contains("delete the directory"), "{err}");
}

#[test]
fn loss_trains_only_unfrozen_parameters_and_translation_decodes() {
    tch::manual_seed(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = scratch_config(json!({
        "GlossEmbedding": {"from_scratch": false, "freeze": true},
        "freeze_txt_embed": true
    }));
    // A frozen gloss table needs rows from a file in the reference; here it stays random.
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs, &cfg, dir.path());
    assert!(!net.gloss_embedding().requires_grad());
    assert!(!net.model().shared().requires_grad());
    let loss = net.loss(&GLOSSES, &TEXTS, true).expect("loss");
    assert!(loss.double_value(&[]).is_finite());
    loss.backward();
    let vars = vs.variables();
    let q = &vars["translation_network.model.model.encoder.layers.0.self_attn.q_proj.weight"];
    assert!(q.grad().defined(), "trainable parameter without gradient");
    assert!(!net.gloss_embedding().grad().defined());
    assert!(!net.model().shared().grad().defined());

    let err = net
        .loss(&GLOSSES[..2], &TEXTS, false)
        .expect_err("size mismatch");
    assert!(err.to_string().contains("sentences"), "{err}");
    for num_beams in [1, 3] {
        let opts = TranslationDecodeConfig {
            num_beams,
            max_length: 8,
            length_penalty: 1.0,
        };
        let out = net.translate(&GLOSSES[..3], &opts).expect("translate");
        assert_eq!(out.len(), 3);
        for sentence in out {
            assert!(sentence.split_whitespace().count() <= 7, "{sentence}");
        }
    }
}

#[test]
fn feature_inputs_get_the_gloss_suffix_and_mask() {
    tch::manual_seed(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs, &scratch_config(json!({})), dir.path());
    let features = Tensor::randn([2, 4, 16], (Kind::Float, Device::Cpu));
    let (embeds, mask) = net
        .prepare_feature_inputs(&features, &[4, 2])
        .expect("inputs");
    assert_eq!(embeds.size(), [2, 6, 16]);
    let mask: Vec<i64> = Vec::try_from(mask.view([-1])).expect("mask");
    assert_eq!(mask, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    let scale = net.input_embed_scale();
    let table = net.gloss_embedding();
    let eos = net.gloss_tokenizer().eos_id();
    let lang = net.gloss_tokenizer().lang_id();
    let close = |a: &Tensor, b: &Tensor| a.allclose(b, 1e-6, 1e-6, false);
    assert!(close(
        &embeds.get(1).narrow(0, 0, 2),
        &(features.get(1).narrow(0, 0, 2) * scale)
    ));
    assert!(close(&embeds.get(1).get(2), &(table.get(eos) * scale)));
    assert!(close(&embeds.get(1).get(3), &(table.get(lang) * scale)));
    assert_eq!(
        embeds
            .get(1)
            .narrow(0, 4, 2)
            .abs()
            .sum(Kind::Double)
            .double_value(&[]),
        0.0
    );
    assert!(close(&embeds.get(0).get(5), &(table.get(lang) * scale)));
    assert!(net.prepare_feature_inputs(&features, &[5, 1]).is_err());
    assert!(net.prepare_feature_inputs(&features, &[1]).is_err());
}

/// The network's tensors under their checkpoint names.
fn network_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.starts_with(NETWORK_PREFIX))
        .map(|(name, t)| (name, t.detach().copy()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn load_ckpt_reads_slt_checkpoints_strictly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = dir.path().join("translation");
    tch::manual_seed(4);
    let vs_a = nn::VarStore::new(Device::Cpu);
    build(&vs_a, &scratch_config(json!({})), &artifacts);
    let saved = network_tensors(&vs_a);
    let ckpts = dir.path().join("ckpts");
    let epoch = ckpts.join("epoch_01");
    std::fs::create_dir_all(&epoch).expect("mkdir");
    write_safetensors(&epoch.join("model.safetensors"), &saved).expect("write");
    std::fs::write(ckpts.join("best"), "epoch_01\n").expect("pointer");

    for target in [ckpts.clone(), ckpts.join("best"), epoch.clone()] {
        tch::manual_seed(5);
        let cfg = scratch_config(json!({"load_ckpt": target}));
        let vs_b = nn::VarStore::new(Device::Cpu);
        let net = build(&vs_b, &cfg, &artifacts);
        let report = net.load_initial_weights().expect("load_ckpt");
        assert_eq!(report.checkpoint.as_ref().map(|c| c.1), Some(saved.len()));
        for ((name, want), (_, got)) in saved.iter().zip(network_tensors(&vs_b)) {
            assert!(want.equal(&got), "{name} differs after load_ckpt");
        }
    }

    // An extra translation_network entry breaks the strict load.
    let mut extra = saved;
    extra.push((
        "translation_network.vl_bias".to_string(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    ));
    let file = dir.path().join("extra.safetensors");
    write_safetensors(&file, &extra).expect("write");
    let vs_c = nn::VarStore::new(Device::Cpu);
    let net = build(
        &vs_c,
        &scratch_config(json!({"load_ckpt": file})),
        &artifacts,
    );
    let err = net.load_initial_weights().expect_err("strict");
    assert!(
        err.to_string().contains("translation_network.vl_bias"),
        "{err}"
    );
}

#[test]
fn inline_architecture_needs_from_scratch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = scratch_config(json!({"from_scratch": false}));
    let vs = nn::VarStore::new(Device::Cpu);
    let setup = TranslationSetup {
        train_texts: &TEXTS,
        train_glosses: &GLOSSES,
        artifacts_dir: dir.path(),
    };
    let err = TranslationNetwork::build(&(vs.root() / NETWORK_PATH), &cfg, &setup)
        .expect_err("not from scratch");
    assert!(err.to_string().contains("from_scratch"), "{err}");
}
