//! The reference's translation loss (`utils/loss.py` `XentLoss` with label smoothing, divided by
//! the batch size in `translation.py`).

use tch::{Kind, Reduction, Tensor};

use super::error::{arg_err, Result};

/// Smoothed target distribution `[N, V]` for labels `[N]`: `smoothing / (V - 2)` everywhere,
/// `1 - smoothing` on the label, 0 in the pad column, all-zero rows where the label is `pad_id`.
pub fn smoothed_targets(
    labels: &Tensor,
    vocab: i64,
    pad_id: i64,
    smoothing: f64,
    kind: Kind,
) -> Tensor {
    let n = labels.size()[0];
    let mut dist = Tensor::full(
        [n, vocab],
        smoothing / (vocab - 2) as f64,
        (kind, labels.device()),
    );
    let _ = dist.scatter_value_(1, &labels.unsqueeze(1), 1.0 - smoothing);
    let _ = dist.narrow(1, pad_id, 1).fill_(0.0);
    let pad_rows = labels.eq(pad_id).unsqueeze(1);
    dist.masked_fill(&pad_rows, 0.0)
}

/// `XentLoss(pad_index, smoothing)(log_softmax(logits), labels) / B`: the KL divergence
/// Σ t·(log t − log p) (sum over all positions, `KLDivLoss(reduction='sum')`) between the smoothed
/// targets of [`smoothed_targets`] and the model distribution, divided by the batch size
/// `B = logits.size(0)`. `logits` `[B, T, V]` (float), `labels` `[B, T]` (int64, pad = `pad_id`).
/// With `smoothing == 0` this is the summed negative log-likelihood of the non-pad labels / B.
pub fn label_smoothed_loss(
    logits: &Tensor,
    labels: &Tensor,
    pad_id: i64,
    smoothing: f64,
) -> Result<Tensor> {
    let size = logits.size();
    if size.len() != 3 {
        return Err(arg_err(
            "logits",
            format!("expected [B, T, V], got {size:?}"),
        ));
    }
    let (b, t, v) = (size[0], size[1], size[2]);
    if labels.size() != [b, t] || labels.kind() != Kind::Int64 {
        return Err(arg_err(
            "labels",
            format!(
                "expected int64 [{b}, {t}], got {:?} {:?}",
                labels.kind(),
                labels.size()
            ),
        ));
    }
    if v < 3 || !(0..v).contains(&pad_id) {
        return Err(arg_err(
            "pad_id",
            format!("pad id {pad_id} with a vocabulary of {v}"),
        ));
    }
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(arg_err(
            "smoothing",
            format!("must be in [0, 1], got {smoothing}"),
        ));
    }
    if labels.numel() > 0 {
        let (lo, hi) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
        if lo < 0 || hi >= v {
            return Err(arg_err(
                "labels",
                format!("ids must be in 0..{v}, found {lo}..={hi}"),
            ));
        }
    }
    let log_probs = logits.log_softmax(-1, logits.kind()).reshape([b * t, v]);
    let flat = labels.reshape([b * t]).to_device(logits.device());
    let targets = smoothed_targets(&flat, v, pad_id, smoothing, log_probs.kind());
    let kl = log_probs.kl_div(&targets, Reduction::Sum, false);
    Ok(kl / b as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computation() {
        // B=1, T=2, V=4, pad=1; second label is pad (row ignored).
        let logits =
            Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0]).view([1, 2, 4]);
        let labels = Tensor::from_slice(&[2i64, 1]).view([1, 2]);
        let loss = label_smoothed_loss(&logits, &labels, 1, 0.2)
            .unwrap()
            .double_value(&[]);
        let z = [0.5f64, -1.0, 2.0, 0.0];
        let lse = z.iter().map(|x| x.exp()).sum::<f64>().ln();
        let logp: Vec<f64> = z.iter().map(|x| x - lse).collect();
        let t = [0.1, 0.0, 0.8, 0.1];
        let want: f64 = (0..4)
            .filter(|&c| t[c] > 0.0)
            .map(|c| t[c] * (f64::ln(t[c]) - logp[c]))
            .sum();
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
        let nll = label_smoothed_loss(&logits, &labels, 1, 0.0)
            .unwrap()
            .double_value(&[]);
        assert!((nll + logp[2]).abs() < 1e-5);
        assert!(label_smoothed_loss(&logits, &labels.view([2, 1]), 1, 0.2).is_err());
    }
}
