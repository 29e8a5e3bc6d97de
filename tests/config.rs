//! The shipped experiment configs load with the paper's values, and loading errors and
//! overrides behave as documented (file + key path in every error; file < env < --set).

use std::fs;
use std::path::{Path, PathBuf};

use slt::config::{
    ConfigError, DatasetName, GlossFeatureSource, InputData, OptimizerKind, Override,
    SchedulerKind, SltConfig, Task, TextLevel, ValidationUnit, VlMapperKind,
};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/configs/SingleStream")
}

fn load(name: &str) -> SltConfig {
    let path = configs_dir().join(name);
    match SltConfig::load(&path, &[]) {
        Ok(config) => config,
        Err(error) => panic!("{error}"),
    }
}

fn shipped_config_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(configs_dir())
        .expect("configs folder is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_shipped_config_loads_and_round_trips() {
    let paths = shipped_config_paths();
    let names: Vec<String> = paths
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for dataset in ["phoenix-2014t", "csl-daily", "synthetic"] {
        for stage in ["s2g", "g2t", "s2t"] {
            let expected = format!("{dataset}_{stage}.yaml");
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
    }
    let written_dir = tempfile::tempdir().unwrap();
    for path in &paths {
        let config = SltConfig::load(path, &[]).unwrap_or_else(|error| panic!("{error}"));
        let stem = path.file_stem().unwrap().to_string_lossy();
        // `{dataset}_{task}[_{variant}]`, e.g. `phoenix-2014t_g2t_scratch`.
        let task = match stem.split('_').nth(1).unwrap_or_default() {
            "s2g" => Task::S2G,
            "g2t" => Task::G2T,
            _ => Task::S2T,
        };
        assert_eq!(config.task, task, "{}", path.display());

        let written = written_dir.path().join(path.file_name().unwrap());
        fs::write(&written, config.to_yaml().unwrap()).unwrap();
        let reloaded = SltConfig::load(&written, &[]).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(reloaded, config, "{} does not round-trip", path.display());
    }
}

#[test]
fn phoenix_s2g_has_paper_values() {
    let config = load("phoenix-2014t_s2g.yaml");
    assert_eq!(config.data.dataset_name, DatasetName::Phoenix2014T);
    assert_eq!(config.data.input_data, Some(InputData::Videos));
    assert_eq!(config.data.level, TextLevel::Word);
    let optimization = &config.training.optimization;
    assert_eq!(optimization.learning_rate.default, 1e-3);
    assert!(optimization.learning_rate.by_module.is_empty());
    assert_eq!(optimization.t_max, 40);
    assert_eq!(optimization.betas, [0.9, 0.998]);
    assert_eq!(optimization.weight_decay, 1e-3);
    assert_eq!(optimization.optimizer, OptimizerKind::Adam);
    assert_eq!(optimization.scheduler, SchedulerKind::CosineAnnealing);
    assert_eq!(config.training.batch_size, 1);
    assert_eq!(config.training.total_epoch, 40);
    assert_eq!(config.training.random_seed, 42, "reference default seed");
    let recognition = config.model.recognition_network.as_ref().unwrap();
    assert_eq!(recognition.s3d.use_block, 4);
    assert_eq!(recognition.s3d.freeze_block, 1);
    assert_eq!(
        recognition.s3d.pretrained_dir(),
        Some(Path::new("pretrained_models/s3ds_glosscls_ckpt"))
    );
    let transform = config.data.transform_cfg.as_ref().unwrap();
    assert_eq!(transform.center_crop_size, Some(224));
    assert_eq!(transform.bottom_area, 0.7);
    assert_eq!(config.testing.cfg.recognition.unwrap().beam_size, 5);
    let validation = &config.training.validation;
    assert_eq!(validation.unit, ValidationUnit::Epoch);
    assert_eq!(validation.cfg.recognition.unwrap().beam_size, 1);
}

#[test]
fn phoenix_s2t_has_per_module_rates_and_step_validation() {
    let config = load("phoenix-2014t_s2t.yaml");
    let rates = &config.training.optimization.learning_rate;
    assert_eq!(rates.default, 1e-3);
    assert_eq!(rates.by_module["mapper"], 1e-3);
    assert_eq!(rates.by_module["translation"], 1e-5);
    assert_eq!(rates.for_module("recognition_network"), 1e-3);
    assert_eq!(rates.for_module("translation_network"), 1e-5);
    assert_eq!(rates.for_module("vl_mapper"), 1e-3);
    assert_eq!(config.training.validation.unit, ValidationUnit::Step);
    assert_eq!(config.training.validation.freq, 1000);
    assert_eq!(config.training.random_seed, 17);
    let translation = config.model.translation_network.as_ref().unwrap();
    assert_eq!(translation.label_smoothing, 0.2);
    assert_eq!(translation.overwrite_cfg.dropout, Some(0.3));
    assert!(!translation.gloss_embedding.freeze);
    let mapper = config.model.vl_mapper.as_ref().unwrap();
    assert_eq!(mapper.kind, VlMapperKind::Projection);
    assert_eq!(mapper.in_features, Some(512));
    let testing = config.testing.cfg.translation.unwrap();
    assert_eq!((testing.num_beams, testing.max_length), (5, 100));
}

#[test]
fn csl_configs_have_paper_values() {
    let g2t = load("csl-daily_g2t.yaml");
    assert_eq!(g2t.data.dataset_name, DatasetName::CslDaily);
    assert_eq!(g2t.data.level, TextLevel::Char);
    assert_eq!(g2t.training.total_epoch, 4);
    assert_eq!(g2t.training.optimization.t_max, 80);
    assert_eq!(g2t.training.keep_last_ckpts, 20);
    assert_eq!(g2t.training.random_seed, 0);
    assert_eq!(g2t.training.validation.unit, ValidationUnit::Step);
    assert_eq!(g2t.testing.cfg.translation.unwrap().max_length, 500);

    let s2g = load("csl-daily_s2g.yaml");
    let transform = s2g.data.transform_cfg.as_ref().unwrap();
    assert_eq!(transform.csl_resize, [320, 320]);
    assert_eq!(transform.center_crop_size, Some(270));
    assert!(!transform.csl_cut);
    assert_eq!(s2g.training.random_seed, 44);

    let s2t = load("csl-daily_s2t.yaml");
    let recognition = s2t.model.recognition_network.as_ref().unwrap();
    assert_eq!(
        recognition.gloss_feature_ensemble,
        GlossFeatureSource::GlossProbabilities
    );
    assert_eq!(
        s2t.model.vl_mapper.as_ref().unwrap().kind,
        VlMapperKind::Embedding
    );
    assert_eq!(
        s2t.training
            .optimization
            .learning_rate
            .for_module("vl_mapper"),
        1e-4
    );
    assert_eq!(
        s2t.training.validation.cfg.translation.unwrap().max_length,
        60
    );
}

#[test]
fn synthetic_configs_point_at_the_synth_output() {
    let s2g = load("synthetic_s2g.yaml");
    assert!(s2g.data.synthetic);
    assert_eq!(s2g.data.dataset_name, DatasetName::Phoenix2014T);
    assert_eq!(
        s2g.data.zip_file.as_deref(),
        Some(Path::new("data/synthetic/videos.zip"))
    );
    assert_eq!(s2g.data.train, Path::new("data/synthetic/synthetic.train"));
    assert_eq!(s2g.training.batch_size, 8);
    let transform = s2g.data.transform_cfg.as_ref().unwrap();
    // S3D blocks 1-4 downsample space by 16; the eval crop must hold the whole (64-wide) frame.
    assert_eq!(
        transform.img_size % 16,
        0,
        "img_size {}",
        transform.img_size
    );
    assert!(transform.center_crop);
    assert!(transform
        .center_crop_size
        .is_some_and(|c| c >= 64 && c >= transform.img_size));
    assert_eq!(
        s2g.model
            .recognition_network
            .as_ref()
            .unwrap()
            .gloss_tokenizer
            .gloss2id_file,
        Path::new("data/synthetic/gloss2ids.pkl")
    );
    assert_eq!(
        s2g.training.model_dir,
        Path::new("experiments/outputs/SingleStream/synthetic_s2g")
    );
    let s2t = load("synthetic_s2t.yaml");
    assert_eq!(
        s2t.data.dev_head_rgb_input.as_deref(),
        Some(Path::new(
            "experiments/outputs/SingleStream/synthetic_s2g/extract_feature/head_rgb_input/dev.pkl"
        ))
    );
}

/// Writes the Phoenix S2G config with `edit` applied into a temp dir.
fn edited_s2g(edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let text = fs::read_to_string(configs_dir().join("phoenix-2014t_s2g.yaml")).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change the file");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yaml");
    fs::write(&path, edited).unwrap();
    (dir, path)
}

fn load_error(path: &Path, overrides: &[Override]) -> ConfigError {
    match SltConfig::load(path, overrides) {
        Ok(_) => panic!("{} loaded although it should not", path.display()),
        Err(error) => error,
    }
}

#[test]
fn misspelled_key_names_file_and_key_path() {
    let (_dir, path) = edited_s2g(|text| text.replace("  batch_size: 1", "  batch_sise: 1"));
    let error = load_error(&path, &[]).to_string();
    let expected = format!(
        "{}: training.batch_sise: unknown field `batch_sise`, expected one of",
        path.display()
    );
    assert!(error.starts_with(&expected), "{error}");

    let (_dir, path) = edited_s2g(|text| text.replace("GlossTokenizer:", "GlossTokeniser:"));
    let error = load_error(&path, &[]).to_string();
    assert!(
        error.contains("model.RecognitionNetwork.GlossTokeniser: unknown field `GlossTokeniser`"),
        "{error}"
    );
}

#[test]
fn wrong_type_names_file_and_key_path() {
    let (_dir, path) = edited_s2g(|text| text.replace("  batch_size: 1", "  batch_size: four"));
    let error = load_error(&path, &[]).to_string();
    assert_eq!(
        error,
        format!(
            "{}: training.batch_size: invalid type: string \"four\", expected usize",
            path.display()
        )
    );
    let (_dir, path) = edited_s2g(|text| text.replace("use_block: 4", "use_block: 4.5"));
    let error = load_error(&path, &[]).to_string();
    assert!(
        error
            .contains("model.RecognitionNetwork.s3d.use_block: invalid type: floating point `4.5`"),
        "{error}"
    );
}

#[test]
fn missing_required_key_is_named() {
    let (_dir, path) = edited_s2g(|text| text.replace("  total_epoch: 40\n", ""));
    let error = load_error(&path, &[]).to_string();
    assert_eq!(
        error,
        format!(
            "{}: training.total_epoch: missing required key",
            path.display()
        )
    );
    let (_dir, path) = edited_s2g(|text| {
        text.replace(
            "  zip_file: data/phoenix-2014t/phoenix-2014t-videos.zip\n",
            "",
        )
    });
    let error = load_error(&path, &[]).to_string();
    assert_eq!(
        error,
        format!("{}: data.zip_file: required for task S2G", path.display())
    );
}

#[test]
fn set_overrides_scalars_lists_and_sections() {
    let path = configs_dir().join("phoenix-2014t_s2t.yaml");
    let overrides = Override::parse_all(&[
        "training.batch_size=4",
        "training.optimization.betas=[0.8, 0.95]",
        "training.optimization.learning_rate.translation=2.0e-5",
        "model.VLMapper={type: projection, in_features: 512}",
        "model.TranslationNetwork.GlossEmbedding.freeze=true",
    ])
    .unwrap();
    let config = SltConfig::load(&path, &overrides).unwrap();
    assert_eq!(config.training.batch_size, 4);
    assert_eq!(config.training.optimization.betas, [0.8, 0.95]);
    assert_eq!(
        config
            .training
            .optimization
            .learning_rate
            .for_module("translation_network"),
        2.0e-5
    );
    assert_eq!(config.model.vl_mapper.unwrap().multistream_fuse, None);
    assert!(
        config
            .model
            .translation_network
            .unwrap()
            .gloss_embedding
            .freeze
    );
}

#[test]
fn env_overrides_use_camel_case_paths_and_ignore_other_slt_vars() {
    let path = configs_dir().join("phoenix-2014t_s2g.yaml");
    let env = [
        ("SLT_MODEL__RECOGNITIONNETWORK__S3D__FREEZE_BLOCK", "2"),
        ("SLT_TRAINING__OPTIMIZATION__BETAS", "[0.5, 0.6]"),
        ("SLT_VENV", "/somewhere/venv"),
        ("SLT_FIXTURES", "../shared/fixtures"),
        ("SLT_PYTHON_ORACLE", "/usr/bin/python3"),
        ("SLT_SKIP_BUILD", "1"),
        ("HOME", "/root"),
    ];
    let no_set: [&str; 0] = [];
    let config = SltConfig::load_with_env(&path, env, &no_set).unwrap();
    let recognition = config.model.recognition_network.as_ref().unwrap();
    assert_eq!(recognition.s3d.freeze_block, 2);
    assert_eq!(config.training.optimization.betas, [0.5, 0.6]);
    let untouched = SltConfig::load(&path, &[]).unwrap();
    assert_eq!(config.training.batch_size, untouched.training.batch_size);
}

#[test]
fn precedence_is_file_then_env_then_set() {
    let path = configs_dir().join("phoenix-2014t_s2g.yaml");
    let file_only = SltConfig::load(&path, &[]).unwrap();
    assert_eq!(file_only.training.batch_size, 1);
    assert_eq!(file_only.training.total_epoch, 40);

    let env = [
        ("SLT_TRAINING__BATCH_SIZE", "4"),
        ("SLT_TRAINING__TOTAL_EPOCH", "7"),
    ];
    let env_only = SltConfig::load_with_env(&path, env, &[] as &[&str]).unwrap();
    assert_eq!(env_only.training.batch_size, 4);
    assert_eq!(env_only.training.total_epoch, 7);

    let both = SltConfig::load_with_env(&path, env, &["training.batch_size=6"]).unwrap();
    assert_eq!(both.training.batch_size, 6, "--set wins over env");
    assert_eq!(both.training.total_epoch, 7, "env wins over the file");
}

#[test]
fn env_task_switch_is_validated() {
    let path = configs_dir().join("phoenix-2014t_s2g.yaml");
    let error = SltConfig::load_with_env(&path, [("SLT_TASK", "G2T")], &[] as &[&str])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("model.TranslationNetwork: required for task G2T"),
        "{error}"
    );
}

#[test]
fn resolve_paths_makes_reference_paths_absolute() {
    let mut config = load("phoenix-2014t_g2t.yaml");
    let base = Path::new("/checkout");
    config.resolve_paths(base);
    assert_eq!(
        config.data.train,
        base.join("data/phoenix-2014t/phoenix-2014t_cleaned.train")
    );
    let translation = config.model.translation_network.unwrap();
    assert_eq!(
        translation.text_tokenizer.pruneids_file,
        base.join("pretrained_models/mBart_de/map_ids.pkl")
    );
}
