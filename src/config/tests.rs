//! Unit tests of loading, overrides, validation and writing, on small in-memory configs.
//! The shipped configs are tested in `tests/config.rs`.

use std::path::{Path, PathBuf};

use super::*;

/// A minimal valid S2G config.
const S2G: &str = "\
task: S2G
data:
  dataset_name: phoenix-2014t
  zip_file: data/v.zip
  train: data/a.train
  dev: data/a.dev
  test: data/a.test
  level: word # word or char
  transform_cfg:
    temporal_augmentation: {tmin: 0.5, tmax: 1.5}
training:
  model_dir: out/s2g
  shuffle: true
  batch_size: 1
  total_epoch: 4
  keep_last_ckpts: 2
  validation:
    unit: epoch
    freq: 1
    cfg:
      recognition: {beam_size: 1}
  optimization:
    learning_rate: {default: 1.0e-3}
    betas: [0.9, 0.998]
    scheduler: cosineannealing
testing:
  cfg:
    recognition: {beam_size: 5}
model:
  RecognitionNetwork:
    GlossTokenizer: {gloss2id_file: data/g.pkl}
    s3d: {use_block: 4, freeze_block: 1}
    visual_head: {input_size: 832}
";

fn load(yaml: &str, overrides: &[&str]) -> Result<SltConfig, ConfigError> {
    let overrides = Override::parse_all(overrides)?;
    SltConfig::from_yaml_str(yaml, "t.yaml", &overrides)
}

fn load_err(yaml: &str, overrides: &[&str]) -> String {
    match load(yaml, overrides) {
        Ok(config) => panic!("expected an error, loaded {config:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn minimal_config_gets_reference_defaults() {
    let config = load(S2G, &[]).unwrap();
    assert_eq!(config.task, Task::S2G);
    assert_eq!(config.data.level, TextLevel::Word);
    assert_eq!(config.data.input_streams, [InputStream::Rgb]);
    assert_eq!(config.data.pad_length, PadLength::PadToMax);
    assert_eq!(config.data.pad, PadMode::Replicate);
    let transform = config.data.transform_cfg.as_ref().unwrap();
    assert_eq!(transform.img_size, 224);
    assert_eq!(transform.bottom_area, 0.2);
    assert!(transform.csl_cut);
    assert_eq!(transform.csl_resize, [320, 320]);
    assert_eq!(config.training.num_workers, 2);
    assert_eq!(config.training.random_seed, 42);
    assert!(!config.training.overwrite);
    let optimization = &config.training.optimization;
    assert_eq!(optimization.optimizer, OptimizerKind::Adam);
    assert_eq!(optimization.weight_decay, 0.0);
    assert_eq!(optimization.eps, 1e-8);
    assert_eq!(optimization.t_max, 20);
    let recognition = config.model.recognition_network.as_ref().unwrap();
    assert_eq!(recognition.visual_head.hidden_size, 512);
    assert_eq!(recognition.visual_head.ff_kernelsize, FfKernelSizes([3, 3]));
    assert_eq!(
        recognition.gloss_feature_ensemble,
        GlossFeatureSource::GlossFeature
    );
    assert_eq!(recognition.s3d.pretrained_dir(), None);
    assert!(recognition.gloss_tokenizer.lower_case);
    assert_eq!(config.model.recognition_weight, 1.0);
}

#[test]
fn unknown_key_is_named_with_path() {
    let yaml = S2G.replace("  batch_size: 1", "  batch_sise: 1");
    let error = load_err(&yaml, &[]);
    assert!(
        error.starts_with(
            "t.yaml: training.batch_sise: unknown field `batch_sise`, expected one of"
        ),
        "{error}"
    );
}

#[test]
fn wrong_type_is_named_with_path() {
    let yaml = S2G.replace("batch_size: 1", "batch_size: four");
    let error = load_err(&yaml, &[]);
    assert_eq!(
        error,
        "t.yaml: training.batch_size: invalid type: string \"four\", expected usize"
    );
    let yaml = S2G.replace("betas: [0.9, 0.998]", "betas: [0.9, x]");
    let error = load_err(&yaml, &[]);
    assert!(
        error.starts_with("t.yaml: training.optimization.betas[1]: invalid type: string \"x\""),
        "{error}"
    );
}

#[test]
fn missing_key_is_named() {
    let yaml = S2G.replace("  shuffle: true\n", "");
    assert_eq!(
        load_err(&yaml, &[]),
        "t.yaml: training.shuffle: missing required key"
    );
    let yaml = S2G.replace("task: S2G\n", "");
    assert_eq!(load_err(&yaml, &[]), "t.yaml: task: missing required key");
}

#[test]
fn unknown_enum_value_is_named() {
    let error = load_err(S2G, &["task=S2X"]);
    assert!(
        error.starts_with("t.yaml: task: unknown variant `S2X`"),
        "{error}"
    );
    assert!(error.contains("(value set by --set task=S2X)"), "{error}");
    let error = load_err(S2G, &["data.dataset_name=phoenix"]);
    assert!(
        error.contains("data.dataset_name: unknown variant `phoenix`"),
        "{error}"
    );
}

#[test]
fn set_overrides_scalars_lists_and_camel_case_paths() {
    let config = load(
        S2G,
        &[
            "training.batch_size=4",
            "training.optimization.betas=[0.8, 0.9]",
            "model.RecognitionNetwork.s3d.freeze_block=2",
            "training.optimization.learning_rate.default=5e-4",
            "data.synthetic=true",
        ],
    )
    .unwrap();
    assert_eq!(config.training.batch_size, 4);
    assert_eq!(config.training.optimization.betas, [0.8, 0.9]);
    assert_eq!(config.training.optimization.learning_rate.default, 5e-4);
    let recognition = config.model.recognition_network.unwrap();
    assert_eq!(recognition.s3d.freeze_block, 2);
    assert!(config.data.synthetic);
}

#[test]
fn env_overrides_apply_and_cli_wins() {
    let path = Path::new("t.yaml");
    let env = [
        ("SLT_TRAINING__BATCH_SIZE", "4"),
        ("SLT_TRAINING__TOTAL_EPOCH", "3"),
        ("SLT_MODEL__RECOGNITIONNETWORK__S3D__FREEZE_BLOCK", "2"),
        ("SLT_VENV", "/not/a/config/key"),
    ];
    let mut overrides = Override::from_env(env).unwrap();
    overrides.extend(Override::parse_all(&["training.batch_size=6"]).unwrap());
    let config = SltConfig::from_yaml_str(S2G, &path.to_string_lossy(), &overrides).unwrap();
    assert_eq!(config.training.batch_size, 6);
    assert_eq!(config.training.total_epoch, 3);
    assert_eq!(config.freeze_block_at_epoch(0), Some(2));
}

#[test]
fn bad_override_value_names_its_origin() {
    let overrides = Override::from_env([("SLT_TRAINING__BATCH_SIZE", "four")]).unwrap();
    let error = SltConfig::from_yaml_str(S2G, "t.yaml", &overrides)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "t.yaml: training.batch_size: invalid type: string \"four\", expected usize \
         (value set by SLT_TRAINING__BATCH_SIZE=four)"
    );
    let error = load_err(S2G, &["training.batch_size.x=1"]);
    assert!(
        error.starts_with(
            "t.yaml: cannot apply --set training.batch_size.x=1: training.batch_size: is a number"
        ),
        "{error}"
    );
}

#[test]
fn task_requirements_are_checked() {
    let yaml = S2G.replace("  zip_file: data/v.zip\n", "");
    assert_eq!(
        load_err(&yaml, &[]),
        "t.yaml: data.zip_file: required for task S2G"
    );
    let error = load_err(S2G, &["task=S2T"]);
    for key in [
        "model.TranslationNetwork: required for task S2T",
        "model.VLMapper: required for task S2T",
        "data.train_head_rgb_input: required for task S2T",
        "testing.cfg.translation: required for task S2T",
        "training.validation.cfg.translation: required for task S2T",
    ] {
        assert!(error.contains(key), "{key} not in {error}");
    }
    let error = load_err(S2G, &["model.RecognitionNetwork="]);
    assert!(
        error.contains("model.RecognitionNetwork: required for task S2G"),
        "{error}"
    );
}

#[test]
fn ranges_are_checked() {
    let cases = [
        (
            "model.RecognitionNetwork.s3d.use_block=6",
            "model.RecognitionNetwork.s3d.use_block: must be in 1..=5",
        ),
        (
            "model.RecognitionNetwork.s3d.freeze_block=5",
            "model.RecognitionNetwork.s3d.freeze_block: must be in 0..=use_block (4)",
        ),
        (
            "model.RecognitionNetwork.visual_head.input_size=1024",
            "visual_head.input_size: must equal the S3D output width for use_block 4 (832)",
        ),
        (
            "training.validation.freq=0",
            "training.validation.freq: must be > 0",
        ),
        ("training.batch_size=0", "training.batch_size: must be > 0"),
        (
            "training.optimization.betas=[0.9, 1.0]",
            "training.optimization.betas[1]: must be in [0, 1)",
        ),
        (
            "training.optimization.learning_rate={default: 1.0, recognition: 2.0, network: 3.0}",
            "keys network, recognition all match module `recognition_network`",
        ),
        (
            "data.transform_cfg.center_crop=true",
            "data.transform_cfg.center_crop_size: required when center_crop is true",
        ),
        (
            "data.transform_cfg.temporal_augmentation={tmin: 1.5, tmax: 0.5}",
            "temporal_augmentation.tmax: must be >= tmin",
        ),
    ];
    for (set, expected) in cases {
        let error = load_err(S2G, &[set]);
        assert!(
            error.contains(expected),
            "--set {set}: `{expected}` not in `{error}`"
        );
    }
}

#[test]
fn frozen_block_schedule_is_validated_and_applied() {
    let config = load(
        S2G,
        &["training.frozen_block_schedule=[{epoch: 1, freeze_block: 3}, {epoch: 3, freeze_block: 0}]"],
    )
    .unwrap();
    let by_epoch: Vec<Option<usize>> = (0..4)
        .map(|epoch| config.freeze_block_at_epoch(epoch))
        .collect();
    assert_eq!(by_epoch, [Some(1), Some(3), Some(3), Some(0)]);

    let error = load_err(
        S2G,
        &["training.frozen_block_schedule=[{epoch: 2, freeze_block: 1}, {epoch: 2, freeze_block: 2}]"],
    );
    assert!(
        error.contains(
            "training.frozen_block_schedule[1].epoch: epochs must be strictly increasing"
        ),
        "{error}"
    );
    let error = load_err(
        S2G,
        &["training.frozen_block_schedule=[{epoch: 0, freeze_block: 6}]"],
    );
    assert!(
        error.contains("training.frozen_block_schedule[0].freeze_block: must be in 0..=4"),
        "{error}"
    );
    let error = load_err(
        S2G,
        &["training.frozen_block_schedule=[{epoch: 4, freeze_block: 1}]"],
    );
    assert!(
        error.contains("must be < training.total_epoch (4)"),
        "{error}"
    );
    let error = load_err(
        S2G,
        &["training.frozen_block_schedule=[{epoch: 0, block: 1}]"],
    );
    assert!(
        error.contains("training.frozen_block_schedule[0].block: unknown field `block`"),
        "{error}"
    );
}

#[test]
fn yaml_output_round_trips() {
    let config = load(
        S2G,
        &[
            "training.frozen_block_schedule=[{epoch: 1, freeze_block: 2}]",
            "data.pad_length=64",
            "training.optimization.optimizer=adamw",
        ],
    )
    .unwrap();
    let text = config.to_yaml().unwrap();
    assert!(text.starts_with("task: S2G\ndata:\n"), "{text}");
    let reloaded = SltConfig::from_yaml_str(&text, "written.yaml", &[]).unwrap();
    assert_eq!(reloaded, config);
}

#[test]
fn resolve_paths_joins_relative_paths_only() {
    let mut config = load(S2G, &["data.dev=/abs/a.dev"]).unwrap();
    config.resolve_paths(Path::new("/base"));
    assert_eq!(config.data.train, PathBuf::from("/base/data/a.train"));
    assert_eq!(config.data.dev, PathBuf::from("/abs/a.dev"));
    assert_eq!(
        config.data.zip_file,
        Some(PathBuf::from("/base/data/v.zip"))
    );
    assert_eq!(config.training.model_dir, PathBuf::from("/base/out/s2g"));
    let recognition = config.model.recognition_network.as_ref().unwrap();
    assert_eq!(
        recognition.gloss_tokenizer.gloss2id_file,
        PathBuf::from("/base/data/g.pkl")
    );
    assert_eq!(recognition.s3d.pretrained_ckpt, PathBuf::from(S3D_SCRATCH));
}
