//! Beam-search bookkeeping on the CPU: the finished hypotheses of one batch entry and the
//! per-step selection of next beams, following transformers 4.11.3's `BeamSearchScorer` /
//! `BeamHypotheses` (the reference) or, with [`BeamCompat::Hf5`], the vectorised beam search of
//! transformers ≥ 4.50 (checked against 5.24).

/// Which transformers release's beam-search rules to follow. They differ only in details: the
/// length used to normalise finished scores, when a batch entry counts as done, and how
/// hypotheses that reach `max_length` without EOS are scored. With a one-token prompt and
/// forced EOS (the reference's setting) they give the same results except in rare cases of the
/// early-stop test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BeamCompat {
    /// transformers 4.11.3, which the reference pinned: finished score = Σ log p / len^lp with
    /// len = hypothesis length incl. the prompt, excl. EOS; an entry is done when it holds
    /// `num_beams` hypotheses and the worst one is ≥ best candidate score of the step /
    /// cur_len^lp (cur_len before appending, incl. the prompt); open beams at `max_length`
    /// are finished with len = `max_length`.
    #[default]
    Hf4_11,
    /// transformers 5.x: len = generated tokens incl. EOS, excl. the prompt; the done test uses
    /// the best still-running beam; at `max_length` the top `num_beams` candidates finish.
    Hf5,
}

/// Finished hypotheses of one batch entry (`BeamHypotheses`).
#[derive(Debug, Clone)]
pub(crate) struct Hypotheses {
    /// (normalised score, tokens) in insertion order.
    pub beams: Vec<(f64, Vec<i64>)>,
    worst: f64,
    capacity: usize,
}

impl Hypotheses {
    pub fn new(capacity: usize) -> Self {
        Hypotheses {
            beams: Vec::with_capacity(capacity + 1),
            worst: 1e9,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.beams.len()
    }

    pub fn worst(&self) -> f64 {
        self.worst
    }

    /// `BeamHypotheses.add` with an already normalised score.
    pub fn add(&mut self, score: f64, tokens: Vec<i64>) {
        if self.len() < self.capacity || score > self.worst {
            self.beams.push((score, tokens));
            if self.len() > self.capacity {
                // sorted([(s, idx)]): lowest score, ties by lowest index.
                let mut order: Vec<(f64, usize)> = self
                    .beams
                    .iter()
                    .enumerate()
                    .map(|(i, (s, _))| (*s, i))
                    .collect();
                order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                self.beams.remove(order[0].1);
                self.worst = order[1].0;
            } else {
                self.worst = self.worst.min(score);
            }
        }
    }

    /// The best hypothesis: Python's `sorted(beams, key=score).pop()` (among equal scores, the
    /// one inserted last).
    pub fn best(&self) -> Option<&(f64, Vec<i64>)> {
        let mut best: Option<&(f64, Vec<i64>)> = None;
        for h in &self.beams {
            if best.is_none_or(|b| h.0 >= b.0) {
                best = Some(h);
            }
        }
        best
    }
}

/// Per-run constants of the beam step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BeamRules {
    pub num_beams: usize,
    pub eos: i64,
    pub pad: i64,
    pub length_penalty: f64,
    pub early_stopping: bool,
    pub max_length: usize,
    pub prompt_len: usize,
    pub compat: BeamCompat,
}

/// Next beams of one batch entry.
#[derive(Debug, Default)]
pub(crate) struct EntryStep {
    pub scores: Vec<f32>,
    pub tokens: Vec<i64>,
    /// Beam index within the entry (0..num_beams).
    pub sources: Vec<usize>,
}

impl BeamRules {
    fn normalise(&self, sum_logprobs: f32, len: usize) -> f64 {
        match self.compat {
            BeamCompat::Hf4_11 => f64::from(sum_logprobs) / (len as f64).powf(self.length_penalty),
            BeamCompat::Hf5 => {
                f64::from(sum_logprobs / (len as f64).powf(self.length_penalty) as f32)
            }
        }
    }

    /// Processes the `2 * num_beams` sorted candidates (`scores`, flat `indices` into
    /// `num_beams * vocab`) of one entry that is not done; `seqs` are the entry's running
    /// sequences (length `cur_len`). Returns the next beams and whether the entry is done.
    pub fn step(
        &self,
        hyps: &mut Hypotheses,
        scores: &[f32],
        indices: &[i64],
        vocab: i64,
        seqs: &[Vec<i64>],
        cur_len: usize,
    ) -> (EntryStep, bool) {
        let k = self.num_beams;
        let at_max = self.compat == BeamCompat::Hf5 && cur_len + 1 >= self.max_length;
        let mut next = EntryStep::default();
        let mut best_running: Option<f32> = None;
        for (rank, (&score, &flat)) in scores.iter().zip(indices).enumerate() {
            let (beam, token) = ((flat / vocab) as usize, flat % vocab);
            if token == self.eos || at_max {
                if rank < k {
                    let (len, tokens) = match self.compat {
                        BeamCompat::Hf4_11 => (cur_len, seqs[beam].clone()),
                        BeamCompat::Hf5 => {
                            let mut t = seqs[beam].clone();
                            t.push(token);
                            (cur_len + 1 - self.prompt_len, t)
                        }
                    };
                    hyps.add(self.normalise(score, len), tokens);
                }
            } else if next.tokens.len() < k {
                best_running.get_or_insert(score);
                next.scores.push(score);
                next.tokens.push(token);
                next.sources.push(beam);
            }
            if next.tokens.len() == k {
                break;
            }
        }
        // Hf5 keeps finished candidates (score − 1e9) when fewer than k continue (only at
        // `max_length`, where the run ends anyway); keep the shapes full.
        while next.tokens.len() < k {
            next.scores.push(-1e9);
            next.tokens.push(self.pad);
            next.sources.push(0);
        }
        let done = hyps.len() >= k
            && (self.early_stopping
                || match self.compat {
                    BeamCompat::Hf4_11 => {
                        let best = scores.first().copied().unwrap_or(f32::NEG_INFINITY);
                        hyps.worst() >= self.normalise(best, cur_len)
                    }
                    BeamCompat::Hf5 => {
                        let best = best_running.unwrap_or(-1e9);
                        self.normalise(best, cur_len + 1 - self.prompt_len) <= hyps.worst()
                    }
                });
        (next, done)
    }

    /// At the end of the loop (4.11 `finalize`): open beams of entries that are not done
    /// become hypotheses with len = their length (Hf5 finished them in the last step).
    pub fn finalize(&self, hyps: &mut Hypotheses, beam_scores: &[f32], seqs: &[Vec<i64>]) {
        if self.compat == BeamCompat::Hf4_11 {
            for (s, seq) in beam_scores.iter().zip(seqs) {
                hyps.add(self.normalise(*s, seq.len()), seq.clone());
            }
        }
    }

    /// The output row of a hypothesis: 4.11 appends EOS when it fits in `max_length`.
    pub fn output_tokens(&self, tokens: &[i64]) -> Vec<i64> {
        let mut out = tokens.to_vec();
        if self.compat == BeamCompat::Hf4_11 && out.len() < self.max_length {
            out.push(self.eos);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypotheses_keep_best_and_track_worst() {
        let mut h = Hypotheses::new(2);
        h.add(-1.0, vec![1]);
        assert_eq!(h.worst(), -1.0);
        h.add(-3.0, vec![2]);
        assert_eq!(h.worst(), -3.0);
        h.add(-4.0, vec![3]); // not better than the worst: ignored
        assert_eq!(h.len(), 2);
        h.add(-2.0, vec![4]); // replaces -3
        assert_eq!(h.worst(), -2.0);
        assert_eq!(
            h.beams.iter().map(|b| b.1[0]).collect::<Vec<_>>(),
            vec![1, 4]
        );
        h.add(-1.0, vec![5]); // tie with the best: the later one wins `best`
        assert_eq!(h.best().map(|b| b.1[0]), Some(5));
    }

    #[test]
    fn eos_beyond_top_k_is_skipped_and_done_test() {
        let rules = BeamRules {
            num_beams: 2,
            eos: 2,
            pad: 1,
            length_penalty: 1.0,
            early_stopping: false,
            max_length: 10,
            prompt_len: 1,
            compat: BeamCompat::Hf4_11,
        };
        let vocab = 5;
        let seqs = vec![vec![6, 3], vec![6, 4]];
        let mut hyps = Hypotheses::new(2);
        // candidates: (beam0,eos) (beam1,3) (beam0,4) (beam1,eos) → eos at rank 3 skipped
        let scores = [-1.0f32, -1.5, -2.0, -2.5];
        let indices = [2i64, 5 + 3, 4, 5 + 2];
        let (next, done) = rules.step(&mut hyps, &scores, &indices, vocab, &seqs, 2);
        assert_eq!(hyps.len(), 1);
        assert_eq!(hyps.beams[0], (-0.5, vec![6, 3]));
        assert_eq!(next.tokens, vec![3, 4]);
        assert_eq!(next.sources, vec![1, 0]);
        assert!(!done);
    }
}
