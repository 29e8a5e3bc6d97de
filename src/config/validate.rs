//! Semantic validation after deserialising: what each task needs, value ranges, and
//! consistency between sections. Every problem names its key path in the file's spelling.

use super::error::{ValidationProblem, ValidationProblems};
use super::model::{
    ModelConfig, RecognitionNetworkConfig, TextTokenizerLevel, TranslationNetworkConfig,
    VlMapperConfig, VlMapperKind, MBART_ACTIVATIONS, S3D_BLOCK_CHANNELS,
};
use super::schema::{DataConfig, GenerateConfig, SltConfig, Task, TrainingConfig, TransformConfig};
use super::values::MODEL_MODULE_NAMES;

/// Collects problems while walking the config.
#[derive(Default)]
struct Problems(Vec<ValidationProblem>);

impl Problems {
    fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ValidationProblem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn require(&mut self, present: bool, key: &str, task: Task) {
        if !present {
            self.push(key, format!("required for task {task:?}"));
        }
    }

    fn positive(&mut self, value: usize, key: &str) {
        if value == 0 {
            self.push(key, "must be > 0");
        }
    }

    fn finite_at_least(&mut self, value: f64, minimum: f64, key: &str) {
        if !value.is_finite() || value < minimum {
            self.push(
                key,
                format!("must be a finite number >= {minimum}, got {value}"),
            );
        }
    }

    fn fraction(&mut self, value: f64, key: &str) {
        if !(0.0..1.0).contains(&value) {
            self.push(key, format!("must be in [0, 1), got {value}"));
        }
    }
}

/// Checks `config`; returns every problem found.
pub(crate) fn validate(config: &SltConfig) -> Result<(), ValidationProblems> {
    let mut problems = Problems::default();
    check_task_needs(config, &mut problems);
    check_data(&config.data, &mut problems);
    check_training(config, &mut problems);
    check_generate(
        &config.testing.cfg,
        config.task,
        "testing.cfg",
        &mut problems,
    );
    check_model(&config.model, &mut problems);
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationProblems(problems.0))
    }
}

fn check_task_needs(config: &SltConfig, problems: &mut Problems) {
    let task = config.task;
    let data = &config.data;
    let model = &config.model;
    if task.does_recognition() {
        problems.require(
            model.recognition_network.is_some(),
            "model.RecognitionNetwork",
            task,
        );
    }
    if task.does_translation() {
        problems.require(
            model.translation_network.is_some(),
            "model.TranslationNetwork",
            task,
        );
    }
    match task {
        Task::S2G => {
            problems.require(data.zip_file.is_some(), "data.zip_file", task);
            problems.require(data.transform_cfg.is_some(), "data.transform_cfg", task);
        }
        Task::G2T => {}
        Task::S2T => {
            problems.require(model.vl_mapper.is_some(), "model.VLMapper", task);
            let features = [
                ("data.train_head_rgb_input", &data.train_head_rgb_input),
                ("data.dev_head_rgb_input", &data.dev_head_rgb_input),
                ("data.test_head_rgb_input", &data.test_head_rgb_input),
            ];
            for (key, path) in features {
                problems.require(path.is_some(), key, task);
            }
        }
    }
}

fn check_data(data: &DataConfig, problems: &mut Problems) {
    if data.input_streams.is_empty() {
        problems.push("data.input_streams", "must name at least one stream (rgb)");
    }
    if let Some(transform) = &data.transform_cfg {
        check_transform(transform, problems);
    }
}

fn check_transform(transform: &TransformConfig, problems: &mut Problems) {
    const KEY: &str = "data.transform_cfg";
    problems.positive(transform.img_size, &format!("{KEY}.img_size"));
    if !(transform.bottom_area > 0.0 && transform.bottom_area <= 1.0) {
        problems.push(
            &format!("{KEY}.bottom_area"),
            format!("must be in (0, 1], got {}", transform.bottom_area),
        );
    }
    let (ratio_min, ratio_max) = (transform.aspect_ratio_min, transform.aspect_ratio_max);
    if !(ratio_min.is_finite() && ratio_min > 0.0) {
        problems.push(
            &format!("{KEY}.aspect_ratio_min"),
            format!("must be > 0, got {ratio_min}"),
        );
    }
    if !(ratio_max.is_finite() && ratio_max >= ratio_min) {
        problems.push(
            &format!("{KEY}.aspect_ratio_max"),
            format!("must be >= aspect_ratio_min ({ratio_min}), got {ratio_max}"),
        );
    }
    match transform.center_crop_size {
        Some(0) => problems.push(&format!("{KEY}.center_crop_size"), "must be > 0"),
        None if transform.center_crop => problems.push(
            &format!("{KEY}.center_crop_size"),
            "required when center_crop is true",
        ),
        _ => {}
    }
    for (axis, size) in ["height", "width"].iter().zip(transform.csl_resize) {
        if size == 0 {
            problems.push(&format!("{KEY}.csl_resize"), format!("{axis} must be > 0"));
        }
    }
    let temporal = transform.temporal_augmentation;
    if !(temporal.tmin.is_finite() && temporal.tmin > 0.0) {
        problems.push(
            &format!("{KEY}.temporal_augmentation.tmin"),
            format!("must be > 0, got {}", temporal.tmin),
        );
    }
    if !(temporal.tmax.is_finite() && temporal.tmax >= temporal.tmin) {
        problems.push(
            &format!("{KEY}.temporal_augmentation.tmax"),
            format!("must be >= tmin ({}), got {}", temporal.tmin, temporal.tmax),
        );
    }
}

fn check_training(config: &SltConfig, problems: &mut Problems) {
    let training: &TrainingConfig = &config.training;
    problems.positive(training.batch_size, "training.batch_size");
    problems.positive(training.total_epoch, "training.total_epoch");
    problems.positive(training.validation.freq, "training.validation.freq");
    check_generate(
        &training.validation.cfg,
        config.task,
        "training.validation.cfg",
        problems,
    );

    let optimization = &training.optimization;
    const OPT: &str = "training.optimization";
    let rates = &optimization.learning_rate;
    problems.finite_at_least(rates.default, 0.0, &format!("{OPT}.learning_rate.default"));
    for (key, rate) in &rates.by_module {
        problems.finite_at_least(*rate, 0.0, &format!("{OPT}.learning_rate.{key}"));
    }
    for module in MODEL_MODULE_NAMES {
        let matching: Vec<&str> = rates.matching_keys(module).collect();
        if matching.len() > 1 {
            problems.push(
                &format!("{OPT}.learning_rate"),
                format!(
                    "keys {} all match module `{module}`; use one key per module",
                    matching.join(", ")
                ),
            );
        }
    }
    problems.finite_at_least(
        optimization.weight_decay,
        0.0,
        &format!("{OPT}.weight_decay"),
    );
    if !(optimization.eps.is_finite() && optimization.eps > 0.0) {
        problems.push(
            &format!("{OPT}.eps"),
            format!("must be > 0, got {}", optimization.eps),
        );
    }
    for (index, beta) in optimization.betas.iter().enumerate() {
        problems.fraction(*beta, &format!("{OPT}.betas[{index}]"));
    }
    problems.positive(optimization.t_max, &format!("{OPT}.t_max"));
    problems.finite_at_least(optimization.eta_min, 0.0, &format!("{OPT}.eta_min"));
    problems.positive(config.training.log_every_steps, "training.log_every_steps");
    if let Some(every) = config.training.checkpoint_every_steps {
        problems.positive(every, "training.checkpoint_every_steps");
    }
    let bn_momentum = config
        .model
        .recognition_network
        .as_ref()
        .and_then(|recognition| recognition.s3d.bn_momentum);
    if let Some(momentum) = bn_momentum {
        if !(momentum > 0.0 && momentum <= 1.0) {
            problems.push(
                "model.RecognitionNetwork.s3d.bn_momentum",
                format!("must be in (0, 1], got {momentum}"),
            );
        }
    }

    check_frozen_block_schedule(config, problems);
}

fn check_frozen_block_schedule(config: &SltConfig, problems: &mut Problems) {
    let schedule = &config.training.frozen_block_schedule;
    if schedule.is_empty() {
        return;
    }
    const KEY: &str = "training.frozen_block_schedule";
    let use_block = config
        .model
        .recognition_network
        .as_ref()
        .map(|recognition| recognition.s3d.use_block);
    if use_block.is_none() {
        problems.push(
            KEY,
            "needs model.RecognitionNetwork (it schedules s3d.freeze_block)",
        );
    }
    let mut previous_epoch: Option<usize> = None;
    for (index, step) in schedule.iter().enumerate() {
        if previous_epoch.is_some_and(|previous| step.epoch <= previous) {
            problems.push(
                &format!("{KEY}[{index}].epoch"),
                format!(
                    "epochs must be strictly increasing, got {} after {}",
                    step.epoch,
                    previous_epoch.unwrap_or_default()
                ),
            );
        }
        if step.epoch >= config.training.total_epoch {
            problems.push(
                &format!("{KEY}[{index}].epoch"),
                format!(
                    "must be < training.total_epoch ({}), got {}",
                    config.training.total_epoch, step.epoch
                ),
            );
        }
        let limit = use_block.unwrap_or(S3D_BLOCK_CHANNELS.len());
        if step.freeze_block > limit.min(S3D_BLOCK_CHANNELS.len()) {
            problems.push(
                &format!("{KEY}[{index}].freeze_block"),
                format!(
                    "must be in 0..={limit} (s3d.use_block), got {}",
                    step.freeze_block
                ),
            );
        }
        previous_epoch = Some(step.epoch);
    }
}

fn check_generate(cfg: &GenerateConfig, task: Task, key: &str, problems: &mut Problems) {
    if task.does_recognition() {
        match &cfg.recognition {
            None => problems.require(false, &format!("{key}.recognition"), task),
            Some(recognition) => problems.positive(
                recognition.beam_size,
                &format!("{key}.recognition.beam_size"),
            ),
        }
    }
    if task.does_translation() {
        match &cfg.translation {
            None => problems.require(false, &format!("{key}.translation"), task),
            Some(translation) => {
                problems.positive(
                    translation.num_beams,
                    &format!("{key}.translation.num_beams"),
                );
                if translation.max_length < 2 {
                    problems.push(
                        &format!("{key}.translation.max_length"),
                        format!(
                            "must be >= 2 (it counts the start token), got {}",
                            translation.max_length
                        ),
                    );
                }
                if !translation.length_penalty.is_finite() {
                    problems.push(
                        &format!("{key}.translation.length_penalty"),
                        "must be a finite number",
                    );
                }
            }
        }
    }
}

fn check_model(model: &ModelConfig, problems: &mut Problems) {
    problems.finite_at_least(model.recognition_weight, 0.0, "model.recognition_weight");
    problems.finite_at_least(model.translation_weight, 0.0, "model.translation_weight");
    if let Some(recognition) = &model.recognition_network {
        check_recognition(recognition, problems);
    }
    if let Some(translation) = &model.translation_network {
        check_translation(translation, problems);
    }
    if let (Some(mapper), Some(recognition)) = (&model.vl_mapper, &model.recognition_network) {
        check_vl_mapper(mapper, recognition, problems);
    }
}

fn check_recognition(recognition: &RecognitionNetworkConfig, problems: &mut Problems) {
    const KEY: &str = "model.RecognitionNetwork";
    let s3d = &recognition.s3d;
    match s3d.out_channels() {
        None => problems.push(
            &format!("{KEY}.s3d.use_block"),
            format!("must be in 1..=5, got {}", s3d.use_block),
        ),
        Some(channels) => {
            if s3d.freeze_block > s3d.use_block {
                problems.push(
                    &format!("{KEY}.s3d.freeze_block"),
                    format!(
                        "must be in 0..=use_block ({}), got {}",
                        s3d.use_block, s3d.freeze_block
                    ),
                );
            }
            if recognition.visual_head.input_size != channels {
                problems.push(
                    &format!("{KEY}.visual_head.input_size"),
                    format!(
                        "must equal the S3D output width for use_block {} ({channels}), got {}",
                        s3d.use_block, recognition.visual_head.input_size
                    ),
                );
            }
        }
    }
    let head = &recognition.visual_head;
    problems.positive(head.hidden_size, &format!("{KEY}.visual_head.hidden_size"));
    problems.positive(head.ff_size, &format!("{KEY}.visual_head.ff_size"));
    if head.ff_kernelsize.0.contains(&0) {
        problems.push(
            &format!("{KEY}.visual_head.ff_kernelsize"),
            "kernel sizes must be > 0",
        );
    }
    problems.positive(
        recognition.preprocess_chunksize,
        &format!("{KEY}.preprocess_chunksize"),
    );
}

fn check_translation(translation: &TranslationNetworkConfig, problems: &mut Problems) {
    const KEY: &str = "model.TranslationNetwork";
    problems.fraction(
        translation.label_smoothing,
        &format!("{KEY}.label_smoothing"),
    );
    let dropouts = [
        ("dropout", translation.overwrite_cfg.dropout),
        (
            "attention_dropout",
            translation.overwrite_cfg.attention_dropout,
        ),
        (
            "activation_dropout",
            translation.overwrite_cfg.activation_dropout,
        ),
    ];
    for (name, value) in dropouts {
        if let Some(value) = value {
            problems.fraction(value, &format!("{KEY}.overwrite_cfg.{name}"));
        }
    }
    check_translation_source(translation, problems);
    check_text_tokenizer(translation, problems);
    let embedding = &translation.gloss_embedding;
    if embedding.from_scratch && embedding.freeze {
        problems.push(
            &format!("{KEY}.GlossEmbedding.freeze"),
            "a gloss embedding trained from scratch cannot be frozen",
        );
    }
    if embedding.gloss2embed_file.is_none() && !embedding.from_scratch {
        problems.push(
            &format!("{KEY}.GlossEmbedding.gloss2embed_file"),
            "required unless GlossEmbedding.from_scratch is true",
        );
    }
    if let Some(std) = embedding.init_std {
        if !(std.is_finite() && std > 0.0) {
            problems.push(
                &format!("{KEY}.GlossEmbedding.init_std"),
                format!("must be > 0, got {std}"),
            );
        }
    }
    if let Some(scale) = translation.input_embed_scale {
        if !(scale.is_finite() && scale > 0.0) {
            problems.push(
                &format!("{KEY}.input_embed_scale"),
                format!("must be > 0, got {scale}"),
            );
        }
    }
}

/// Where the mBART comes from: a pretrained directory, or an inline architecture.
fn check_translation_source(translation: &TranslationNetworkConfig, problems: &mut Problems) {
    const KEY: &str = "model.TranslationNetwork";
    match (
        &translation.pretrained_model_name_or_path,
        &translation.architecture,
    ) {
        (None, None) => problems.push(
            &format!("{KEY}.pretrained_model_name_or_path"),
            "required (or, for a model trained from scratch, `architecture`)",
        ),
        (Some(_), Some(_)) => problems.push(
            &format!("{KEY}.architecture"),
            "give either pretrained_model_name_or_path or architecture, not both",
        ),
        _ => {}
    }
    let Some(arch) = &translation.architecture else {
        return;
    };
    let key = format!("{KEY}.architecture");
    if !translation.from_scratch {
        problems.push(
            &format!("{KEY}.from_scratch"),
            "must be true when the architecture is given inline (there are no weights to load)",
        );
    }
    let sizes = [
        ("d_model", arch.d_model),
        ("encoder_attention_heads", arch.encoder_attention_heads),
        ("decoder_attention_heads", arch.decoder_attention_heads),
        ("encoder_ffn_dim", arch.encoder_ffn_dim),
        ("decoder_ffn_dim", arch.decoder_ffn_dim),
        ("max_position_embeddings", arch.max_position_embeddings),
    ];
    for (name, value) in sizes {
        problems.positive(value, &format!("{key}.{name}"));
    }
    for (name, heads) in [
        ("encoder_attention_heads", arch.encoder_attention_heads),
        ("decoder_attention_heads", arch.decoder_attention_heads),
    ] {
        if heads > 0 && arch.d_model % heads != 0 {
            problems.push(
                &format!("{key}.{name}"),
                format!("must divide d_model ({}), got {heads}", arch.d_model),
            );
        }
    }
    if !MBART_ACTIVATIONS.contains(&arch.activation_function.as_str()) {
        problems.push(
            &format!("{key}.activation_function"),
            format!(
                "must be one of {}, got `{}`",
                MBART_ACTIVATIONS.join(", "),
                arch.activation_function
            ),
        );
    }
    if !(arch.init_std.is_finite() && arch.init_std > 0.0) {
        problems.push(
            &format!("{key}.init_std"),
            format!("must be > 0, got {}", arch.init_std),
        );
    }
    problems.fraction(arch.encoder_layerdrop, &format!("{key}.encoder_layerdrop"));
    problems.fraction(arch.decoder_layerdrop, &format!("{key}.decoder_layerdrop"));
}

fn check_text_tokenizer(translation: &TranslationNetworkConfig, problems: &mut Problems) {
    const KEY: &str = "model.TranslationNetwork.TextTokenizer";
    let text = &translation.text_tokenizer;
    let files = [
        ("pretrained_model_name_or_path", text.pretrained_dir()),
        ("pruneids_file", text.prune_map_file()),
    ];
    if text.level.is_trained() {
        for (name, path) in files {
            if path.is_some() {
                problems.push(
                    &format!("{KEY}.{name}"),
                    format!("only used by level sentencepiece, not {:?}", text.level),
                );
            }
        }
        if !translation.from_scratch {
            problems.push(
                "model.TranslationNetwork.from_scratch",
                format!(
                    "must be true with a trained text tokenizer (level {:?}): pretrained \
                     weights have another vocabulary",
                    text.level
                ),
            );
        }
    } else {
        for (name, path) in files {
            if path.is_none() {
                problems.push(&format!("{KEY}.{name}"), "required for level sentencepiece");
            }
        }
    }
    match (text.level, text.vocab_size) {
        (TextTokenizerLevel::Bpe, None) => {
            problems.push(&format!("{KEY}.vocab_size"), "required for level bpe");
        }
        (TextTokenizerLevel::Bpe, Some(size)) if size <= BASE_TEXT_SPECIALS => problems.push(
            &format!("{KEY}.vocab_size"),
            format!("must exceed the {BASE_TEXT_SPECIALS} special tokens, got {size}"),
        ),
        (TextTokenizerLevel::Bpe, Some(_)) | (_, None) => {}
        (level, Some(_)) => problems.push(
            &format!("{KEY}.vocab_size"),
            format!("only used by level bpe, not {level:?}"),
        ),
    }
}

/// `<s>`, `<pad>`, `</s>`, `<unk>` and the language token of a trained text tokenizer.
const BASE_TEXT_SPECIALS: usize = 5;

fn check_vl_mapper(
    mapper: &VlMapperConfig,
    recognition: &RecognitionNetworkConfig,
    problems: &mut Problems,
) {
    let source = recognition.gloss_feature_ensemble;
    let source_key = "model.RecognitionNetwork.gloss_feature_ensemble";
    match mapper.kind {
        VlMapperKind::Embedding => {
            if !source.is_vocabulary_wide() {
                problems.push(
                    source_key,
                    format!(
                        "VLMapper type embedding reads a vocabulary-wide output \
                         (gloss_probabilities, gloss_logits, gloss_probabilities_log), got {source:?}"
                    ),
                );
            }
        }
        VlMapperKind::Projection => {
            if source.is_vocabulary_wide() && mapper.in_features.is_none() {
                problems.push(
                    "model.VLMapper.in_features",
                    format!("required when the projection reads the vocabulary-wide {source:?}"),
                );
            }
            let hidden = recognition.visual_head.hidden_size;
            if !source.is_vocabulary_wide() && mapper.projection_in_features(recognition) != hidden
            {
                problems.push(
                    "model.VLMapper.in_features",
                    format!(
                        "must equal visual_head.hidden_size ({hidden}) for {source:?}, got {}",
                        mapper.projection_in_features(recognition)
                    ),
                );
            }
        }
    }
}
