//! Generation: greedy search (`num_beams == 1`) and beam search, batched, with the semantics of
//! transformers 4.11.3's `generate` as the reference calls it:
//!
//! - decoding starts from the given `decoder_input_ids` (the reference passes `[[de_DE]]`; no
//!   `decoder_start_token_id` is prepended);
//! - `max_length` counts the prompt; at length `max_length - 1` the `forced_eos_token_id` of
//!   the config is forced (all other scores −∞, EOS 0);
//! - greedy: argmax of the processed scores; finished rows continue with pad;
//! - beam search: log-softmax → forced EOS → + beam scores → top `2 * num_beams` over
//!   `num_beams * V` per entry → [`BeamCompat`] bookkeeping; the encoder runs once and its
//!   cross-attention keys/values are expanded per beam; the self-attention cache is reordered
//!   by the selected beams;
//! - rows (greedy) and batch entries (beam search) that are finished leave the decoder batch,
//!   so a batch costs what its running sequences cost (HF keeps decoding them with pad);
//! - output: sequences with the prompt, ending in EOS, right-padded with pad; beam search also
//!   returns each sequence's normalised score.

use tch::{Kind, Tensor};

pub use super::beam::BeamCompat;
use super::beam::{BeamRules, Hypotheses};
use super::encoder::EncoderInput;
use super::error::{arg_err, MbartError, Result};
use super::{MbartConfig, MbartForConditionalGeneration};

/// Settings of one `generate` call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Beams; 1 = greedy search.
    pub num_beams: usize,
    /// Maximum sequence length including the prompt (start token).
    pub max_length: usize,
    /// Exponent of the length normalisation of finished beams.
    pub length_penalty: f64,
    /// HF `early_stopping`: an entry is done as soon as it has `num_beams` finished
    /// hypotheses (the reference: false).
    pub early_stopping: bool,
    /// Force the config's `forced_eos_token_id` at `max_length - 1` (HF does when the config
    /// has one; mBART's default is 2).
    pub forced_eos: bool,
    /// Beam-search rules of which transformers release.
    pub compat: BeamCompat,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            num_beams: 1,
            max_length: 20,
            length_penalty: 1.0,
            early_stopping: false,
            forced_eos: true,
            compat: BeamCompat::Hf4_11,
        }
    }
}

/// Result of `generate`.
#[derive(Debug)]
pub struct GenerateOutput {
    /// `[B, L]` int64 on the CPU: prompt, generated tokens, EOS, then pad.
    pub sequences: Tensor,
    /// Beam search: `[B]` float32 normalised scores of the returned sequences.
    pub sequences_scores: Option<Tensor>,
    /// Greedy search: `[B, L - prompt]` float32 log-softmax of the processed scores at each
    /// chosen token; NaN after a row's EOS (its pad tokens are not scored).
    pub token_logprobs: Option<Tensor>,
}

impl GenerateOptions {
    /// Defaults as transformers 4.11.3 takes them from a model config: `early_stopping`,
    /// `num_beams`, `max_length` and `length_penalty` when the config has them (the reference
    /// passes `num_beams`, `max_length`, `length_penalty` explicitly; set them afterwards).
    pub fn from_config(cfg: &MbartConfig) -> Self {
        let d = GenerateOptions::default();
        let get = |k: &str| cfg.extra.get(k);
        GenerateOptions {
            num_beams: get("num_beams")
                .and_then(|v| v.as_u64())
                .map_or(d.num_beams, |v| v as usize),
            max_length: get("max_length")
                .and_then(|v| v.as_u64())
                .map_or(d.max_length, |v| v as usize),
            length_penalty: get("length_penalty")
                .and_then(|v| v.as_f64())
                .unwrap_or(d.length_penalty),
            early_stopping: get("early_stopping")
                .and_then(|v| v.as_bool())
                .unwrap_or(d.early_stopping),
            ..d
        }
    }
}

/// Generation settings a HF config can carry that 4.11.3's `generate` would apply but slt does
/// not implement: (key, value) for each one set to a non-neutral value.
pub fn unsupported_generation_settings(cfg: &MbartConfig) -> Vec<(String, serde_json::Value)> {
    use serde_json::Value;
    let neutral = |key: &str, v: &Value| match key {
        "do_sample" => v.as_bool() != Some(true),
        "min_length" | "no_repeat_ngram_size" | "encoder_no_repeat_ngram_size" => {
            v.as_u64().is_none_or(|n| n == 0)
        }
        "num_beam_groups" | "num_return_sequences" => v.as_u64().is_none_or(|n| n <= 1),
        "repetition_penalty" => v.as_f64().is_none_or(|x| x == 1.0),
        "diversity_penalty" => v.as_f64().is_none_or(|x| x == 0.0),
        "forced_bos_token_id" | "bad_words_ids" => v.is_null(),
        _ => true,
    };
    [
        "do_sample",
        "min_length",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "num_beam_groups",
        "num_return_sequences",
        "repetition_penalty",
        "diversity_penalty",
        "forced_bos_token_id",
        "bad_words_ids",
    ]
    .into_iter()
    .filter_map(|k| {
        cfg.extra
            .get(k)
            .filter(|v| !neutral(k, v))
            .map(|v| (k.to_string(), v.clone()))
    })
    .collect()
}

impl MbartForConditionalGeneration {
    /// Encodes `input` (eval mode) and generates from `decoder_input_ids` `[B, P]`.
    pub fn generate(
        &self,
        input: EncoderInput<'_>,
        attention_mask: Option<&Tensor>,
        decoder_input_ids: &Tensor,
        opts: &GenerateOptions,
    ) -> Result<GenerateOutput> {
        tch::no_grad(|| {
            let enc = self.encode(input, attention_mask, false)?;
            self.generate_from_encoder(&enc, attention_mask, decoder_input_ids, opts)
        })
    }

    /// Generates from precomputed encoder states `[B, S, D]` and their 1/0 mask `[B, S]`.
    pub fn generate_from_encoder(
        &self,
        encoder_hidden: &Tensor,
        attention_mask: Option<&Tensor>,
        decoder_input_ids: &Tensor,
        opts: &GenerateOptions,
    ) -> Result<GenerateOutput> {
        let b = encoder_hidden.size()[0];
        let size = decoder_input_ids.size();
        if size.len() != 2 || size[0] != b || size[1] < 1 || decoder_input_ids.kind() != Kind::Int64
        {
            return Err(arg_err(
                "decoder_input_ids",
                format!(
                    "expected int64 [{b}, P>=1], got {:?} {size:?}",
                    decoder_input_ids.kind()
                ),
            ));
        }
        if opts.num_beams == 0 {
            return Err(arg_err("num_beams", "must be >= 1"));
        }
        if let Some((key, value)) = unsupported_generation_settings(self.config())
            .into_iter()
            .next()
        {
            return Err(MbartError::Argument {
                name: "config",
                message: format!(
                    "config.json sets `{key}: {value}`, which transformers' generate would apply; \
                     slt implements plain greedy/beam search only"
                ),
            });
        }
        if opts.max_length as i64 <= size[1] {
            return Err(arg_err(
                "max_length",
                format!(
                    "{} leaves no room after the {}-token prompt",
                    opts.max_length, size[1]
                ),
            ));
        }
        if let Some(m) = attention_mask {
            if m.size() != [b, encoder_hidden.size()[1]] {
                return Err(arg_err(
                    "attention_mask",
                    format!(
                        "expected [{b}, {}], got {:?}",
                        encoder_hidden.size()[1],
                        m.size()
                    ),
                ));
            }
        }
        tch::no_grad(|| {
            if opts.num_beams == 1 {
                self.greedy(encoder_hidden, attention_mask, decoder_input_ids, opts)
            } else {
                self.beam_search(encoder_hidden, attention_mask, decoder_input_ids, opts)
            }
        })
    }

    fn forced_eos(&self, opts: &GenerateOptions) -> Option<i64> {
        if opts.forced_eos {
            self.config().forced_eos_token_id
        } else {
            None
        }
    }

    /// Next-token scores `[N, V]` (float32) of the last position.
    fn step_logits(&self, tokens: &Tensor, cache: &mut super::DecoderCache) -> Result<Tensor> {
        let h = self.decoder().forward_cached(tokens, cache)?;
        let last = h.select(1, h.size()[1] - 1);
        Ok(self.lm_logits(&last).to_kind(Kind::Float))
    }

    fn greedy(
        &self,
        enc: &Tensor,
        mask: Option<&Tensor>,
        prompt: &Tensor,
        opts: &GenerateOptions,
    ) -> Result<GenerateOutput> {
        let cfg = self.config();
        let (eos, pad) = (cfg.eos_token_id, cfg.pad_token_id);
        let device = enc.device();
        let b = enc.size()[0];
        let prompt_len = prompt.size()[1] as usize;
        let mut cache = self.decoder().init_cache(enc, mask);
        let prompt_cpu = prompt.to_device(tch::Device::Cpu);
        let mut seqs: Vec<Vec<i64>> = (0..b)
            .map(|i| Vec::<i64>::try_from(prompt_cpu.get(i)))
            .collect::<std::result::Result<_, _>>()?;
        let mut logprobs: Vec<Vec<f32>> = vec![Vec::new(); b as usize];
        // Rows still decoding; finished rows leave the batch and get pad tokens.
        let mut active: Vec<usize> = (0..b as usize).collect();
        let mut feed = prompt.to_device(device);
        let mut cur_len = prompt_len;
        loop {
            let mut scores = self.step_logits(&feed, &mut cache)?;
            if let Some(forced) = self.forced_eos(opts) {
                if cur_len == opts.max_length - 1 {
                    scores = force_token(&scores, forced);
                }
            }
            let next = scores.argmax(-1, true);
            let picked = scores.log_softmax(-1, Kind::Float).gather(1, &next, false);
            let next_cpu = Vec::<i64>::try_from(next.to_device(tch::Device::Cpu).view([-1]))?;
            let picked = Vec::<f32>::try_from(picked.to_device(tch::Device::Cpu).view([-1]))?;
            let mut running = vec![false; b as usize];
            let (mut keep, mut next_feed) = (Vec::new(), Vec::new());
            for (pos, &row) in active.iter().enumerate() {
                let tok = next_cpu[pos];
                seqs[row].push(tok);
                logprobs[row].push(picked[pos]);
                if tok != eos {
                    running[row] = true;
                    keep.push(pos as i64);
                    next_feed.push(tok);
                }
            }
            for (row, seq) in seqs.iter_mut().enumerate() {
                if seq.len() == cur_len {
                    seq.push(pad);
                    logprobs[row].push(f32::NAN);
                }
            }
            cur_len += 1;
            if keep.is_empty() || cur_len >= opts.max_length {
                break;
            }
            if keep.len() < active.len() {
                cache.index_select(&Tensor::from_slice(&keep).to_device(device));
                active.retain(|&row| running[row]);
            }
            feed = Tensor::from_slice(&next_feed)
                .to_device(device)
                .unsqueeze(1);
        }
        let sequences = Tensor::from_slice(&seqs.concat()).view([b, cur_len as i64]);
        let steps = (cur_len - prompt_len) as i64;
        let token_logprobs = Tensor::from_slice(&logprobs.concat()).view([b, steps]);
        Ok(GenerateOutput {
            sequences,
            sequences_scores: None,
            token_logprobs: Some(token_logprobs),
        })
    }

    fn beam_search(
        &self,
        enc: &Tensor,
        mask: Option<&Tensor>,
        prompt: &Tensor,
        opts: &GenerateOptions,
    ) -> Result<GenerateOutput> {
        let cfg = self.config();
        let device = enc.device();
        let k = opts.num_beams;
        let b = enc.size()[0] as usize;
        let v = cfg.vocab_size;
        if 2 * k as i64 > k as i64 * v {
            return Err(arg_err(
                "num_beams",
                format!("{k} beams need a vocabulary of at least 2"),
            ));
        }
        let prompt_len = prompt.size()[1] as usize;
        let rules = BeamRules {
            num_beams: k,
            eos: cfg.eos_token_id,
            pad: cfg.pad_token_id,
            length_penalty: opts.length_penalty,
            early_stopping: opts.early_stopping,
            max_length: opts.max_length,
            prompt_len,
            compat: opts.compat,
        };
        // Encoder states once per entry; cross-attention keys/values expanded per beam.
        let mut cache = self.decoder().init_cache(enc, mask);
        let expand = Tensor::arange(b as i64, (Kind::Int64, device))
            .repeat_interleave_self_int(k as i64, 0, None);
        cache.index_select(&expand);
        let prompt_cpu = prompt.to_device(tch::Device::Cpu);
        let prompt_rows: Vec<Vec<i64>> = (0..b as i64)
            .map(|i| Vec::<i64>::try_from(prompt_cpu.get(i)))
            .collect::<std::result::Result<_, _>>()?;
        let mut seqs: Vec<Vec<i64>> = (0..b * k).map(|r| prompt_rows[r / k].clone()).collect();
        let mut beam_scores_cpu: Vec<f32> = (0..b * k)
            .map(|r| if r % k == 0 { 0.0 } else { -1e9 })
            .collect();
        let mut hyps: Vec<Hypotheses> = (0..b).map(|_| Hypotheses::new(k)).collect();
        let mut done = vec![false; b];
        // Entries still searching; done entries leave the batch (rows `pos * k .. pos * k + k`
        // of the decoder batch belong to `active[pos]`).
        let mut active: Vec<usize> = (0..b).collect();
        let mut feed = prompt.to_device(device).index_select(0, &expand);
        let mut cur_len = prompt_len;
        loop {
            let n = active.len();
            let logits = self.step_logits(&feed, &mut cache)?;
            let mut scores = logits.log_softmax(-1, Kind::Float);
            if let Some(forced) = self.forced_eos(opts) {
                if cur_len == opts.max_length - 1 {
                    scores = force_token(&scores, forced);
                }
            }
            let running: Vec<f32> = active
                .iter()
                .flat_map(|&e| beam_scores_cpu[e * k..(e + 1) * k].iter().copied())
                .collect();
            let running = Tensor::from_slice(&running).to_device(device);
            let scores = (scores + running.unsqueeze(1)).view([n as i64, k as i64 * v]);
            let (top_scores, top_idx) = scores.topk(2 * k as i64, 1, true, true);
            let top_scores =
                Vec::<f32>::try_from(top_scores.to_device(tch::Device::Cpu).view([-1]))?;
            let top_idx = Vec::<i64>::try_from(top_idx.to_device(tch::Device::Cpu).view([-1]))?;

            let (mut keep, mut self_rows, mut next_feed) = (Vec::new(), Vec::new(), Vec::new());
            for (pos, &e) in active.iter().enumerate() {
                let span = pos * 2 * k..(pos + 1) * 2 * k;
                let beams = e * k..(e + 1) * k;
                let (step, is_done) = rules.step(
                    &mut hyps[e],
                    &top_scores[span.clone()],
                    &top_idx[span],
                    v,
                    &seqs[beams.clone()],
                    cur_len,
                );
                done[e] = is_done;
                let grown: Vec<Vec<i64>> = step
                    .sources
                    .iter()
                    .zip(&step.tokens)
                    .map(|(&j, &tok)| {
                        let mut seq = seqs[e * k + j].clone();
                        seq.push(tok);
                        seq
                    })
                    .collect();
                seqs.splice(beams.clone(), grown);
                beam_scores_cpu[beams].copy_from_slice(&step.scores);
                if !is_done {
                    keep.push(pos);
                    self_rows.extend(step.sources.iter().map(|&j| (pos * k + j) as i64));
                    next_feed.extend(step.tokens);
                }
            }
            cur_len += 1;
            if keep.is_empty() || cur_len >= opts.max_length {
                break;
            }
            if keep.len() < n {
                let rows: Vec<i64> = keep
                    .iter()
                    .flat_map(|&pos| (0..k).map(move |j| (pos * k + j) as i64))
                    .collect();
                cache.select_cross(&Tensor::from_slice(&rows).to_device(device));
                active = keep.iter().map(|&pos| active[pos]).collect();
            }
            cache.reorder_self(&Tensor::from_slice(&self_rows).to_device(device));
            feed = Tensor::from_slice(&next_feed)
                .to_device(device)
                .unsqueeze(1);
        }
        for e in 0..b {
            if !done[e] {
                rules.finalize(
                    &mut hyps[e],
                    &beam_scores_cpu[e * k..(e + 1) * k],
                    &seqs[e * k..(e + 1) * k],
                );
            }
        }
        let mut rows = Vec::with_capacity(b);
        let mut best_scores = Vec::with_capacity(b);
        for h in &hyps {
            let (score, tokens) = h
                .best()
                .ok_or_else(|| arg_err("num_beams", "beam search finished without a hypothesis"))?;
            rows.push(rules.output_tokens(tokens));
            best_scores.push(*score as f32);
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(prompt_len);
        let mut flat = Vec::with_capacity(b * width);
        for r in &rows {
            flat.extend_from_slice(r);
            flat.extend(std::iter::repeat_n(rules.pad, width - r.len()));
        }
        Ok(GenerateOutput {
            sequences: Tensor::from_slice(&flat).view([b as i64, width as i64]),
            sequences_scores: Some(Tensor::from_slice(&best_scores)),
            token_logprobs: None,
        })
    }
}

/// HF's `ForcedEOSTokenLogitsProcessor`: every score −∞ except `token`, which becomes 0.
fn force_token(scores: &Tensor, token: i64) -> Tensor {
    let forced = scores.full_like(f64::NEG_INFINITY);
    let _ = forced.narrow(1, token, 1).fill_(0.0);
    forced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_config() {
        let cfg = MbartConfig::from_json_str(
            r#"{"d_model": 8, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                "num_beams": 5, "max_length": 1024, "no_repeat_ngram_size": 0, "min_length": 3,
                "early_stopping": true, "bad_words_ids": null}"#,
            std::path::Path::new("config.json"),
        )
        .unwrap();
        let o = GenerateOptions::from_config(&cfg);
        assert_eq!(
            (o.num_beams, o.max_length, o.early_stopping),
            (5, 1024, true)
        );
        assert_eq!(o.length_penalty, 1.0);
        let bad = unsupported_generation_settings(&cfg);
        assert_eq!(bad, vec![("min_length".to_string(), serde_json::json!(3))]);
    }
}
