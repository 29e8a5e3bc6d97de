//! Gloss2Text: annotated glosses → gloss embeddings → mBART (the reference's `task: G2T`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tch::nn::VarStore;
use tch::Device;

use crate::config::{GenerateConfig, SltConfig, TextLevel as ConfigTextLevel};
use crate::data::annotation::{read_annotations, SignRecord};
use crate::data::dataset::{annotation_path, DatasetError, Split};
use crate::data::sampler::SamplerCursor;
use crate::metrics::bleu::bleu;
use crate::metrics::rouge::rouge;
use crate::metrics::TextLevel;
use crate::model::translation::{artifacts_dir, TranslationNetwork, TranslationSetup};
use crate::train::task::{BatchStream, LossTerms, Prediction, Scores, Task, TaskError};

/// Gloss/sentence pairs of one batch.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// Dataset indices.
    pub indices: Vec<usize>,
    /// Annotated gloss strings.
    pub glosses: Vec<String>,
    /// Annotated sentences.
    pub texts: Vec<String>,
}

/// The Gloss2Text stage.
pub struct Gloss2TextTask {
    vs: VarStore,
    network: TranslationNetwork,
    /// Annotations per split, read once.
    records: Mutex<BTreeMap<Split, Arc<Vec<SignRecord>>>>,
    config: SltConfig,
}

impl std::fmt::Debug for Gloss2TextTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gloss2TextTask")
            .field("device", &self.vs.device())
            .finish_non_exhaustive()
    }
}

impl Gloss2TextTask {
    /// Reads the annotations and builds the translation network on `device`. From-scratch
    /// vocabularies are built from the training split and kept under
    /// `{model_dir}/translation/` so a resumed run or `slt eval` uses the same ids.
    pub fn new(config: &SltConfig, device: Device) -> Result<Self, TaskError> {
        // The reference seeds everything before building the model: same seed, same weights.
        tch::manual_seed(config.training.random_seed as i64);
        let translation = config
            .model
            .translation_network
            .as_ref()
            .ok_or(DatasetError::MissingKey("model.TranslationNetwork"))?;
        let train = Arc::new(
            read_annotations(annotation_path(&config.data, Split::Train))
                .map_err(DatasetError::from)?,
        );
        let texts: Vec<&str> = train.iter().map(|r| r.text.as_str()).collect();
        let glosses: Vec<&str> = train.iter().map(|r| r.gloss.as_str()).collect();
        let vs = VarStore::new(device);
        let artifacts_dir = artifacts_dir(&config.training.model_dir);
        let network = TranslationNetwork::build(
            &(vs.root() / "translation_network"),
            translation,
            &TranslationSetup {
                train_texts: &texts,
                train_glosses: &glosses,
                artifacts_dir: &artifacts_dir,
            },
        )?;
        let mut records = BTreeMap::new();
        records.insert(Split::Train, train);
        Ok(Gloss2TextTask {
            vs,
            network,
            records: Mutex::new(records),
            config: config.clone(),
        })
    }

    /// The network.
    pub fn network(&self) -> &TranslationNetwork {
        &self.network
    }

    fn records(&self, split: Split) -> Result<Arc<Vec<SignRecord>>, TaskError> {
        let mut cache = self
            .records
            .lock()
            .map_err(|_| TaskError::Other("annotation cache poisoned by a panic".into()))?;
        if let Some(records) = cache.get(&split) {
            return Ok(Arc::clone(records));
        }
        let records = Arc::new(
            read_annotations(annotation_path(&self.config.data, split))
                .map_err(DatasetError::from)?,
        );
        cache.insert(split, Arc::clone(&records));
        Ok(records)
    }

    fn batch(records: &[SignRecord], indices: Vec<usize>) -> Result<TextBatch, TaskError> {
        let mut glosses = Vec::with_capacity(indices.len());
        let mut texts = Vec::with_capacity(indices.len());
        for &i in &indices {
            let record = records.get(i).ok_or_else(|| {
                TaskError::Other(format!(
                    "sample index {i} is out of range ({} records)",
                    records.len()
                ))
            })?;
            glosses.push(record.gloss.clone());
            texts.push(record.text.clone());
        }
        Ok(TextBatch {
            indices,
            glosses,
            texts,
        })
    }

    fn level(&self) -> TextLevel {
        match self.config.data.level {
            ConfigTextLevel::Word => TextLevel::Word,
            ConfigTextLevel::Char => TextLevel::Char,
        }
    }
}

impl Task for Gloss2TextTask {
    type Batch = TextBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn split_len(&self, split: Split) -> Result<usize, TaskError> {
        Ok(self.records(split)?.len())
    }

    fn load_initial_weights(&mut self) -> Result<String, TaskError> {
        Ok(self.network.load_initial_weights()?.summary())
    }

    fn train_batches(
        &self,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        _seed: u64,
    ) -> Result<BatchStream<TextBatch>, TaskError> {
        let records = self.records(Split::Train)?;
        Ok(Box::new(plan.into_iter().map(move |(cursor, indices)| {
            Ok((cursor, Self::batch(&records, indices)?))
        })))
    }

    fn training_loss(&mut self, batch: &TextBatch) -> Result<LossTerms, TaskError> {
        let glosses: Vec<&str> = batch.glosses.iter().map(String::as_str).collect();
        let texts: Vec<&str> = batch.texts.iter().map(String::as_str).collect();
        let loss = self.network.loss(&glosses, &texts, true)?;
        let value = loss
            .f_double_value(&[])
            .map_err(TaskError::torch("reading the translation loss"))?;
        Ok(LossTerms {
            total: loss,
            samples: batch.indices.len(),
            parts: vec![("translation_loss", value)],
        })
    }

    fn predict(
        &mut self,
        split: Split,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        decode: &GenerateConfig,
    ) -> Result<Vec<Prediction>, TaskError> {
        let settings = decode.translation.ok_or_else(|| {
            TaskError::Other(
                "the decoding config has no `translation` section (num_beams, max_length, \
                 length_penalty)"
                    .into(),
            )
        })?;
        let records = self.records(split)?;
        let mut predictions = Vec::new();
        for (_, indices) in plan {
            let batch = Self::batch(&records, indices)?;
            let glosses: Vec<&str> = batch.glosses.iter().map(String::as_str).collect();
            let hypotheses = self.network.translate(&glosses, &settings)?;
            for ((index, hypothesis), (gloss, text)) in batch
                .indices
                .iter()
                .zip(hypotheses)
                .zip(batch.glosses.iter().zip(&batch.texts))
            {
                predictions.push(Prediction {
                    index: *index,
                    name: records[*index].name.clone(),
                    gloss_hyp: None,
                    gloss_ref: gloss.clone(),
                    text_hyp: Some(hypothesis),
                    text_ref: text.clone(),
                });
            }
        }
        Ok(predictions)
    }

    fn score(&self, predictions: &[Prediction]) -> Result<Scores, TaskError> {
        let references: Vec<&str> = predictions.iter().map(|p| p.text_ref.as_str()).collect();
        let hypotheses: Vec<&str> = predictions
            .iter()
            .map(|p| p.text_hyp.as_deref().unwrap_or(""))
            .collect();
        let level = self.level();
        let bleu = bleu(&references, &hypotheses, level)?;
        let rouge = rouge(&references, &hypotheses, level)?;
        Ok(Scores {
            bleu: Some(bleu.as_array()),
            rouge_l: Some(rouge),
            ..Scores::default()
        })
    }
}
