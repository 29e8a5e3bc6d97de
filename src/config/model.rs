//! The `model` section: `RecognitionNetwork` (S3D + visual head), `TranslationNetwork` (mBART)
//! and `VLMapper`, with the reference's CamelCase section names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schema::default_true;
use super::values::FfKernelSizes;

/// Value of `s3d.pretrained_ckpt` meaning "random initialisation".
pub const S3D_SCRATCH: &str = "scratch";

/// Output channels of the S3D after blocks 1..=5 (index = `use_block - 1`).
pub const S3D_BLOCK_CHANNELS: [usize; 5] = [64, 192, 480, 832, 1024];

/// The `model` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// S3D + visual head + CTC (S2G, S2T).
    #[serde(
        rename = "RecognitionNetwork",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub recognition_network: Option<RecognitionNetworkConfig>,
    /// mBART (G2T, S2T).
    #[serde(
        rename = "TranslationNetwork",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub translation_network: Option<TranslationNetworkConfig>,
    /// Visual-to-language mapper (S2T).
    #[serde(rename = "VLMapper", default, skip_serializing_if = "Option::is_none")]
    pub vl_mapper: Option<VlMapperConfig>,
    /// S2T loss weight of the recognition (CTC) loss; default 1.
    #[serde(default = "default_loss_weight")]
    pub recognition_weight: f64,
    /// S2T loss weight of the translation loss; default 1.
    #[serde(default = "default_loss_weight")]
    pub translation_weight: f64,
}

fn default_loss_weight() -> f64 {
    1.0
}

/// `model.RecognitionNetwork`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionNetworkConfig {
    /// The CTC gloss vocabulary.
    #[serde(rename = "GlossTokenizer")]
    pub gloss_tokenizer: RecognitionGlossTokenizerConfig,
    /// The S3D backbone (inert in S2T, which reads extracted features).
    pub s3d: S3dConfig,
    /// The visual head on top of the S3D features.
    pub visual_head: VisualHeadConfig,
    /// Stream fusion; SingleStream has only `empty` (default).
    #[serde(default)]
    pub fuse_method: FuseMethod,
    /// Which head output the VLMapper reads (`gloss_feature` by default).
    #[serde(default)]
    pub gloss_feature_ensemble: GlossFeatureSource,
    /// Keypoint heatmap settings: inert for the RGB-only SingleStream model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap_cfg: Option<HeatmapConfig>,
    /// Frames per chunk of the GPU augmentation pre-processing; default 16.
    #[serde(default = "default_preprocess_chunksize")]
    pub preprocess_chunksize: usize,
    /// S2T: freeze the whole recognition network; default false.
    #[serde(default)]
    pub freeze: bool,
}

fn default_preprocess_chunksize() -> usize {
    16
}

/// `RecognitionNetwork.GlossTokenizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecognitionGlossTokenizerConfig {
    /// Pickled `{gloss: id}` dict; blank (`<si>`/`<s>`) must be id 0.
    pub gloss2id_file: PathBuf,
    /// Lower-case glosses before lookup; default true.
    #[serde(default = "default_true")]
    pub lower_case: bool,
}

/// `RecognitionNetwork.s3d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3dConfig {
    /// Directory with the pretrained S3D checkpoint, or `scratch`; default `scratch`.
    #[serde(default = "default_s3d_pretrained")]
    pub pretrained_ckpt: PathBuf,
    /// Number of S3D blocks built (1..=5); default 5.
    #[serde(default = "default_use_block")]
    pub use_block: usize,
    /// Blocks `1..=freeze_block` are frozen (0 = none); default 0.
    #[serde(default)]
    pub freeze_block: usize,
    /// *slt extension*: momentum of the S3D BatchNorm running statistics; default 0.001 as the
    /// reference (whose S3D is pretrained). A randomly initialised S3D trained briefly needs
    /// a larger one (e.g. torch's default 0.1), or evaluation uses stale statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_momentum: Option<f64>,
}

fn default_s3d_pretrained() -> PathBuf {
    PathBuf::from(S3D_SCRATCH)
}
fn default_use_block() -> usize {
    5
}

impl S3dConfig {
    /// The pretrained checkpoint directory, or `None` for `scratch`.
    pub fn pretrained_dir(&self) -> Option<&Path> {
        (self.pretrained_ckpt != Path::new(S3D_SCRATCH)).then_some(self.pretrained_ckpt.as_path())
    }

    /// Channels of the S3D output for `use_block` (832 for 4), if `use_block` is valid.
    pub fn out_channels(&self) -> Option<usize> {
        self.use_block
            .checked_sub(1)
            .and_then(|index| S3D_BLOCK_CHANNELS.get(index).copied())
    }
}

/// `RecognitionNetwork.visual_head`; defaults are those of the reference's `VisualHead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisualHeadConfig {
    /// Width of the S3D features; default 832.
    #[serde(default = "default_head_input_size")]
    pub input_size: usize,
    /// Hidden width; default 512.
    #[serde(default = "default_head_hidden_size")]
    pub hidden_size: usize,
    /// Feed-forward inner width; default 2048.
    #[serde(default = "default_head_ff_size")]
    pub ff_size: usize,
    /// Add sinusoidal positional encoding; default true.
    #[serde(default = "default_true")]
    pub pe: bool,
    /// Kernel sizes of the two feed-forward convolutions; default 3 (both).
    #[serde(default)]
    pub ff_kernelsize: FfKernelSizes,
}

fn default_head_input_size() -> usize {
    832
}
fn default_head_hidden_size() -> usize {
    512
}
fn default_head_ff_size() -> usize {
    2048
}

/// `RecognitionNetwork.fuse_method` / `VLMapper.multistream_fuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FuseMethod {
    /// `empty`: a single stream, nothing to fuse.
    #[default]
    Empty,
}

/// `RecognitionNetwork.gloss_feature_ensemble`: the head output passed on as `gloss_feature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlossFeatureSource {
    /// `gloss_feature`: head output after the final LayerNorm (`hidden_size` wide).
    #[default]
    GlossFeature,
    /// `gloss_feature_norm`: the same, L2-normalised.
    GlossFeatureNorm,
    /// `gloss_logits`: vocabulary-wide logits.
    GlossLogits,
    /// `gloss_probabilities`: vocabulary-wide softmax (CSL-Daily S2T).
    GlossProbabilities,
    /// `gloss_probabilities_log`: vocabulary-wide log-softmax.
    GlossProbabilitiesLog,
}

impl GlossFeatureSource {
    /// Whether the output is as wide as the gloss vocabulary (else `hidden_size`).
    pub fn is_vocabulary_wide(self) -> bool {
        matches!(
            self,
            GlossFeatureSource::GlossLogits
                | GlossFeatureSource::GlossProbabilities
                | GlossFeatureSource::GlossProbabilitiesLog
        )
    }
}

/// `RecognitionNetwork.heatmap_cfg` (keypoint stream only; inert here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapConfig {
    /// Heatmap input side.
    pub input_size: usize,
    /// `[height, width]` of the heatmaps.
    pub map_size: [usize; 2],
    /// `[height, width]` of the raw frames.
    pub raw_size: [usize; 2],
    /// Gaussian sigma.
    pub sigma: f64,
    /// Keypoint confidence threshold.
    pub threshold: f64,
}

/// `model.TranslationNetwork`.
///
/// Two ways to get the mBART:
/// - **pretrained** (the reference): `pretrained_model_name_or_path` names a Hugging Face
///   directory (`config.json` + weights), `overwrite_cfg` changes its dropouts; with
///   `from_scratch: true` only its architecture is used and every weight starts random;
/// - **from scratch without a directory** (*slt extension*): no
///   `pretrained_model_name_or_path`, the architecture is given inline in `architecture`
///   ([`MbartArchitectureConfig`]) and `from_scratch: true` is required. The vocabulary size
///   comes from the text tokenizer (e.g. trained on the training sentences with
///   `TextTokenizer.level: word`), the gloss table size from the gloss vocabulary (built from
///   the training glosses when `GlossTokenizer.gloss2id_file` is left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationNetworkConfig {
    /// Hugging Face mBART directory (config + weights). Optional only for from-scratch models
    /// that give `architecture` instead (*slt extension*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained_model_name_or_path: Option<PathBuf>,
    /// *slt extension*: the mBART architecture of a from-scratch model without a pretrained
    /// directory (requires `from_scratch: true`; exclusive with `pretrained_model_name_or_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<MbartArchitectureConfig>,
    /// Keyword overrides of the mBART config (dropouts).
    #[serde(default)]
    pub overwrite_cfg: MbartOverrides,
    /// Text tokenizer (pretrained sentencepiece with a pruned vocabulary, or trained).
    #[serde(rename = "TextTokenizer")]
    pub text_tokenizer: TextTokenizerConfig,
    /// Gloss tokenizer of the translation input.
    #[serde(rename = "GlossTokenizer")]
    pub gloss_tokenizer: TranslationGlossTokenizerConfig,
    /// Gloss embedding table.
    #[serde(rename = "GlossEmbedding")]
    pub gloss_embedding: GlossEmbeddingConfig,
    /// Label smoothing of the translation loss (required by the reference).
    pub label_smoothing: f64,
    /// Freeze the shared text embedding (and the tied LM head); default false.
    #[serde(default)]
    pub freeze_txt_embed: bool,
    /// Checkpoint whose `translation_network.*` weights are loaded (strictly) after building:
    /// a reference `.ckpt` (`model_state`), an slt checkpoint directory (or its `ckpts`
    /// folder / `best` / `latest` pointer), or a `.safetensors` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ckpt: Option<PathBuf>,
    /// Factor on input embeddings; default `sqrt(d_model)` (known only once mBART is built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_embed_scale: Option<f64>,
    /// Suffix tokens after S2T features; default `gls`.
    #[serde(default)]
    pub gls_eos: GlsEos,
    /// Re-initialise all mBART weights (no pretrained weights are loaded); default false.
    #[serde(default)]
    pub from_scratch: bool,
}

/// `TranslationNetwork.architecture` (*slt extension*): an mBART built from scratch, with
/// Hugging Face `MBartConfig` key names. The vocabulary size is not given here (it is the text
/// tokenizer's); token ids are mBART's (`<s>` 0, `<pad>` 1, `</s>` 2, forced EOS 2); dropouts
/// come from `overwrite_cfg` (mBART defaults: dropout 0.1, attention and activation 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbartArchitectureConfig {
    /// Hidden size.
    pub d_model: usize,
    /// Number of encoder layers.
    pub encoder_layers: usize,
    /// Number of decoder layers.
    pub decoder_layers: usize,
    /// Attention heads per encoder layer (must divide `d_model`).
    pub encoder_attention_heads: usize,
    /// Attention heads per decoder layer (must divide `d_model`).
    pub decoder_attention_heads: usize,
    /// Encoder feed-forward width.
    pub encoder_ffn_dim: usize,
    /// Decoder feed-forward width.
    pub decoder_ffn_dim: usize,
    /// Longest input / output sequence (learned positions); default 1024.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Scale decoder token embeddings by `sqrt(d_model)`; default true (as mBART).
    #[serde(default = "default_true")]
    pub scale_embedding: bool,
    /// Feed-forward activation (`gelu`, `gelu_new`, `relu`, `silu`); default `gelu`.
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Standard deviation of the weight initialisation; default 0.02.
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    /// Probability of skipping a whole encoder layer in training; default 0.
    #[serde(default)]
    pub encoder_layerdrop: f64,
    /// Probability of skipping a whole decoder layer in training; default 0.
    #[serde(default)]
    pub decoder_layerdrop: f64,
}

fn default_max_positions() -> usize {
    1024
}
fn default_activation() -> String {
    "gelu".to_string()
}
fn default_init_std() -> f64 {
    0.02
}

/// Feed-forward activations an inline architecture may name.
pub const MBART_ACTIVATIONS: [&str; 6] = [
    "gelu",
    "gelu_new",
    "gelu_pytorch_tanh",
    "gelu_fast",
    "relu",
    "silu",
];

/// `TranslationNetwork.overwrite_cfg`: mBART config values set at load time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbartOverrides {
    /// Residual/embedding dropout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// Attention-probability dropout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_dropout: Option<f64>,
    /// Dropout after the feed-forward activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_dropout: Option<f64>,
}

fn path_is_empty(path: &Path) -> bool {
    path.as_os_str().is_empty()
}

/// `TranslationNetwork.TextTokenizer`.
///
/// `level: sentencepiece` (the reference) reads mBART's tokenizer from
/// `pretrained_model_name_or_path` and the prune map `pruneids_file`; both are required then.
/// The trained levels (*slt extension*) `word`, `char` and `bpe` learn the vocabulary from the
/// training sentences (saved under the model directory and read back on resume); the two
/// paths must be left out for them (an absent path is stored as the empty path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTokenizerConfig {
    /// Directory with the tokenizer files (`sentencepiece` only).
    #[serde(default, skip_serializing_if = "path_is_empty")]
    pub pretrained_model_name_or_path: PathBuf,
    /// Pickled `{original_id: pruned_id}` map (`sentencepiece` only).
    #[serde(default, skip_serializing_if = "path_is_empty")]
    pub pruneids_file: PathBuf,
    /// Target language code (`de_DE`, `zh_CN`): the decoder start token.
    pub tgt_lang: String,
    /// Tokenisation level; default `sentencepiece`.
    #[serde(default)]
    pub level: TextTokenizerLevel,
    /// *slt extension*: vocabulary size (special tokens included) of `level: bpe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
}

impl TextTokenizerConfig {
    /// The pretrained tokenizer directory, if given.
    pub fn pretrained_dir(&self) -> Option<&Path> {
        (!path_is_empty(&self.pretrained_model_name_or_path))
            .then_some(self.pretrained_model_name_or_path.as_path())
    }

    /// The prune map file, if given.
    pub fn prune_map_file(&self) -> Option<&Path> {
        (!path_is_empty(&self.pruneids_file)).then_some(self.pruneids_file.as_path())
    }
}

/// `TextTokenizer.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextTokenizerLevel {
    /// `sentencepiece`: mBART's own tokenizer.
    #[default]
    Sentencepiece,
    /// *slt extension* `word`: whitespace-separated words of the training sentences.
    Word,
    /// *slt extension* `char`: single characters of the training sentences.
    Char,
    /// *slt extension* `bpe`: BPE subwords learnt from the training sentences
    /// (`TextTokenizer.vocab_size` entries).
    Bpe,
}

impl TextTokenizerLevel {
    /// Whether the vocabulary is learnt from the training sentences (not pretrained).
    pub fn is_trained(self) -> bool {
        !matches!(self, TextTokenizerLevel::Sentencepiece)
    }
}

/// `TranslationNetwork.GlossTokenizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationGlossTokenizerConfig {
    /// Pickled `{gloss: id}` dict of the mBART gloss vocabulary. *slt extension*: when left
    /// out, the vocabulary is built from the training glosses (`<s>` 0, `<pad>` 1, `</s>` 2,
    /// `<unk>` 3, `src_lang` 4, then the glosses by frequency) and saved under the model
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gloss2id_file: Option<PathBuf>,
    /// Source language code appended after `</s>` (`de_DGS`, `zh_CSL`).
    pub src_lang: String,
    /// Lower-case glosses before lookup; default true.
    #[serde(default = "default_true")]
    pub lower_case: bool,
}

/// `TranslationNetwork.GlossEmbedding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlossEmbeddingConfig {
    /// `torch.save`d `{gloss: FloatTensor[d_model]}` initial rows; may be left out (*slt
    /// extension*) when `from_scratch` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gloss2embed_file: Option<PathBuf>,
    /// Freeze the gloss embedding; default false.
    #[serde(default)]
    pub freeze: bool,
    /// Random initialisation instead of `gloss2embed_file`; default false.
    #[serde(default)]
    pub from_scratch: bool,
    /// *slt extension*: standard deviation of the random rows (all rows when `from_scratch`,
    /// else those `gloss2embed_file` lacks); default 1 (torch's `nn.Embedding`, the
    /// reference). The `<pad>` row starts at zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
}

/// `TranslationNetwork.gls_eos`: which embedding table provides the S2T suffix rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlsEos {
    /// `gls`: `</s>` and the source-language code from the gloss embedding.
    #[default]
    Gls,
    /// `txt`: from the text embedding.
    Txt,
}

/// `model.VLMapper`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlMapperConfig {
    /// Mapper kind; default `projection`.
    #[serde(rename = "type", default)]
    pub kind: VlMapperKind,
    /// Freeze the mapper. The reference reads it only for `embedding` (where it is required);
    /// default false here.
    #[serde(default)]
    pub freeze: bool,
    /// Projection input width; default `visual_head.hidden_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_features: Option<usize>,
    /// Stream fusion; inert for a single stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multistream_fuse: Option<FuseMethod>,
}

/// `VLMapper.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlMapperKind {
    /// `projection`: Linear → ReLU → Linear from the head's hidden width to `d_model`.
    #[default]
    Projection,
    /// `embedding`: bias-free Linear from the gloss vocabulary to `d_model`, initialised from
    /// the gloss embeddings.
    Embedding,
}

impl VlMapperConfig {
    /// The projection input width: `in_features`, else the visual head's hidden width.
    pub fn projection_in_features(&self, recognition: &RecognitionNetworkConfig) -> usize {
        self.in_features
            .unwrap_or(recognition.visual_head.hidden_size)
    }
}
