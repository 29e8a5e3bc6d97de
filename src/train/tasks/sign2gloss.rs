//! Sign2Gloss: videos → S3D → visual head → CTC (the reference's `task: S2G`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::config::{DatasetName, GenerateConfig, SltConfig, TransformConfig};
use crate::data::dataset::{
    clip_pipeline, open_video_source, recognition_tokenizer, video_dataset, DatasetError, Split,
};
use crate::data::gloss::S2GGlossTokenizer;
use crate::data::loader::{LoaderOptions, VideoBatch, VideoDataset, VideoLoader};
use crate::data::sampler::SamplerCursor;
use crate::data::source::VideoSource;
use crate::metrics::wer::{wer_list, PhoenixCleanup};
use crate::model::recognition::RecognitionNetwork;
use crate::train::task::{BatchStream, LossTerms, Prediction, Scores, Task, TaskError};

/// The Sign2Gloss stage.
pub struct Sign2GlossTask {
    vs: VarStore,
    network: RecognitionNetwork,
    tokenizer: S2GGlossTokenizer,
    source: Arc<VideoSource>,
    datasets: Mutex<BTreeMap<Split, Arc<VideoDataset>>>,
    config: SltConfig,
    transform: TransformConfig,
    loader_threads: usize,
}

impl std::fmt::Debug for Sign2GlossTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sign2GlossTask")
            .field("glosses", &self.tokenizer.len())
            .field("device", &self.vs.device())
            .finish_non_exhaustive()
    }
}

impl Sign2GlossTask {
    /// Builds the network on `device` and opens the videos named by `config`.
    pub fn new(config: &SltConfig, device: Device) -> Result<Self, TaskError> {
        // The reference seeds everything before building the model: same seed, same weights.
        tch::manual_seed(config.training.random_seed as i64);
        let recognition = config
            .model
            .recognition_network
            .as_ref()
            .ok_or(DatasetError::MissingKey("model.RecognitionNetwork"))?;
        let transform = config
            .data
            .transform_cfg
            .clone()
            .ok_or(DatasetError::MissingKey("data.transform_cfg"))?;
        let tokenizer = recognition_tokenizer(config)?;
        let vs = VarStore::new(device);
        let network = RecognitionNetwork::new(
            &(vs.root() / "recognition_network"),
            recognition,
            tokenizer.len(),
        )?;
        let source = Arc::new(open_video_source(&config.data)?);
        Ok(Sign2GlossTask {
            vs,
            network,
            tokenizer,
            source,
            datasets: Mutex::new(BTreeMap::new()),
            config: config.clone(),
            transform,
            loader_threads: config.training.num_workers.max(1),
        })
    }

    /// The network.
    pub fn network(&self) -> &RecognitionNetwork {
        &self.network
    }

    fn dataset(&self, split: Split) -> Result<Arc<VideoDataset>, TaskError> {
        let mut datasets = self
            .datasets
            .lock()
            .map_err(|_| TaskError::Other("dataset cache poisoned by a panic".into()))?;
        if let Some(dataset) = datasets.get(&split) {
            return Ok(Arc::clone(dataset));
        }
        let dataset = Arc::new(video_dataset(
            &self.config,
            split,
            Arc::clone(&self.source),
        )?);
        datasets.insert(split, Arc::clone(&dataset));
        Ok(dataset)
    }

    fn loader(
        &self,
        split: Split,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        seed: u64,
    ) -> Result<VideoLoader, TaskError> {
        let pipeline = clip_pipeline(&self.transform, split)?;
        let options = LoaderOptions {
            seed,
            threads: self.loader_threads,
            prefetch_batches: 2,
        };
        Ok(VideoLoader::start(
            self.dataset(split)?,
            plan,
            pipeline,
            options,
        )?)
    }

    fn gloss_targets(&self, glosses: &[String]) -> Result<(Tensor, Tensor), TaskError> {
        let refs: Vec<&str> = glosses.iter().map(String::as_str).collect();
        let batch = self.tokenizer.encode_batch(&refs);
        let b = batch.batch_size() as i64;
        let labels = Tensor::from_slice(&batch.labels)
            .f_reshape([b, batch.max_len as i64])
            .map_err(TaskError::torch("shaping gloss labels"))?;
        let lengths = Tensor::from_slice(&batch.lengths);
        Ok((labels, lengths))
    }

    fn cleanup(&self) -> PhoenixCleanup {
        match self.config.data.dataset_name {
            DatasetName::Phoenix2014T | DatasetName::Phoenix2014 => PhoenixCleanup::Yes,
            DatasetName::CslDaily => PhoenixCleanup::No,
        }
    }
}

fn to_device(t: &Tensor, device: Device, what: &str) -> Result<Tensor, TaskError> {
    t.f_to_device(device)
        .and_then(|t| t.f_contiguous())
        .map_err(TaskError::torch(format!("moving {what} to {device:?}")))
}

impl Task for Sign2GlossTask {
    type Batch = VideoBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn split_len(&self, split: Split) -> Result<usize, TaskError> {
        Ok(self.dataset(split)?.records.len())
    }

    fn load_initial_weights(&mut self) -> Result<String, TaskError> {
        Ok(match self.network.load_configured_backbone(&self.vs)? {
            Some(report) => format!("S3D weights loaded: {report}"),
            None => "S3D: random initialisation (no pretrained checkpoint)".into(),
        })
    }

    fn set_frozen_blocks(&mut self, freeze_block: Option<usize>) -> Result<(), TaskError> {
        if let Some(k) = freeze_block {
            if k != self.network.frozen_blocks() {
                self.network.set_frozen_blocks(k)?;
            }
        }
        Ok(())
    }

    fn train_batches(
        &self,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        seed: u64,
    ) -> Result<BatchStream<VideoBatch>, TaskError> {
        let loader = self.loader(Split::Train, plan, seed)?;
        Ok(Box::new(loader.map(|item| {
            let batch = item?;
            Ok((batch.cursor, batch))
        })))
    }

    fn training_loss(&mut self, batch: &VideoBatch) -> Result<LossTerms, TaskError> {
        let device = self.vs.device();
        self.network.set_dropout_enabled(true);
        let videos = to_device(&batch.videos, device, "the videos")?;
        let lengths = to_device(&batch.lengths, device, "the video lengths")?;
        let out = self.network.forward_t(&videos, &lengths, true)?;
        let (labels, label_lengths) = self.gloss_targets(&batch.glosses)?;
        let labels = to_device(&labels, device, "the gloss labels")?;
        let loss = self.network.ctc_loss(&out, &labels, &label_lengths)?;
        let value = loss
            .f_double_value(&[])
            .map_err(TaskError::torch("reading the CTC loss"))?;
        Ok(LossTerms {
            total: loss,
            samples: batch.indices.len(),
            parts: vec![("recognition_loss", value)],
        })
    }

    fn predict(
        &mut self,
        split: Split,
        plan: Vec<(SamplerCursor, Vec<usize>)>,
        decode: &GenerateConfig,
    ) -> Result<Vec<Prediction>, TaskError> {
        let beam = decode
            .recognition
            .as_ref()
            .map_or(1, |r| r.beam_size.max(1));
        let device = self.vs.device();
        let loader = self.loader(split, plan, self.config.training.random_seed)?;
        self.network.set_dropout_enabled(false);
        let mut predictions = Vec::new();
        for item in loader {
            let batch = item?;
            let decoded = tch::no_grad(|| -> Result<_, TaskError> {
                let videos = to_device(&batch.videos, device, "the videos")?;
                let lengths = to_device(&batch.lengths, device, "the video lengths")?;
                let out = self.network.forward_t(&videos, &lengths, false)?;
                Ok(self.network.decode(&out, beam)?)
            })?;
            for (i, ids) in decoded.iter().enumerate() {
                let glosses = self.tokenizer.decode(ids).map_err(DatasetError::from)?;
                predictions.push(Prediction {
                    index: batch.indices[i],
                    name: batch.names[i].clone(),
                    gloss_hyp: Some(glosses.join(" ").to_uppercase()),
                    gloss_ref: batch.glosses[i].clone(),
                    text_hyp: None,
                    text_ref: batch.texts[i].clone(),
                });
            }
        }
        Ok(predictions)
    }

    fn score(&self, predictions: &[Prediction]) -> Result<Scores, TaskError> {
        let references: Vec<String> = predictions
            .iter()
            .map(|p| p.gloss_ref.to_uppercase())
            .collect();
        let hypotheses: Vec<&str> = predictions
            .iter()
            .map(|p| p.gloss_hyp.as_deref().unwrap_or(""))
            .collect();
        let wer = wer_list(&references, &hypotheses, self.cleanup())?;
        let rate = |n: usize| 100.0 * n as f64 / wer.ref_len.max(1) as f64;
        Ok(Scores {
            wer: Some(wer.wer),
            wer_del_ins_sub: Some([rate(wer.del), rate(wer.ins), rate(wer.sub)]),
            ..Scores::default()
        })
    }
}
