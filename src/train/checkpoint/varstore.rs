//! Moving model tensors between a VarStore and a checkpoint, by name.

use std::collections::HashMap;
use std::fmt;

use tch::nn::VarStore;
use tch::Tensor;

use super::CheckpointError;

/// All variables of `vs` (parameters and buffers) by name, sorted, as shallow copies.
pub fn model_tensors(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// A tensor whose saved shape differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Variable name.
    pub name: String,
    /// Shape in the model.
    pub expected: Vec<i64>,
    /// Shape in the checkpoint.
    pub found: Vec<i64>,
}

/// What [`load_into_varstore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables copied.
    pub loaded: usize,
    /// Model variables the checkpoint lacks (left unchanged).
    pub missing: Vec<String>,
    /// Checkpoint tensors the model lacks (ignored).
    pub unexpected: Vec<String>,
    /// Variables present in both with different shapes (left unchanged).
    pub shape_mismatches: Vec<ShapeMismatch>,
}

impl LoadReport {
    /// Whether every variable was loaded and nothing was left over.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shape_mismatches.is_empty()
    }

    /// An error unless [`LoadReport::is_exact`]; `source` names what was loaded.
    pub fn ensure_exact(&self, source: &str) -> Result<(), CheckpointError> {
        if self.is_exact() {
            Ok(())
        } else {
            Err(CheckpointError::ModelMismatch {
                source_name: source.to_string(),
                report: self.to_string(),
            })
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tensors loaded", self.loaded)?;
        let list = |names: &[String]| {
            let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
            let more = names.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{}{tail}", shown.join(", "))
        };
        if !self.missing.is_empty() {
            write!(f, "; missing in checkpoint: {}", list(&self.missing))?;
        }
        if !self.unexpected.is_empty() {
            write!(f, "; not in model: {}", list(&self.unexpected))?;
        }
        for m in self.shape_mismatches.iter().take(10) {
            write!(
                f,
                "; `{}`: model {:?}, checkpoint {:?}",
                m.name, m.expected, m.found
            )?;
        }
        Ok(())
    }
}

/// Copies `tensors` into the variables of `vs` with the same names, in place under `no_grad`
/// (converting device and kind). Missing, unexpected and wrongly shaped tensors are reported,
/// not copied; [`LoadReport::ensure_exact`] turns them into an error.
pub fn load_into_varstore(
    vs: &VarStore,
    tensors: &[(String, Tensor)],
) -> Result<LoadReport, CheckpointError> {
    let variables = vs.variables();
    let saved: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut report = LoadReport::default();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    for name in names {
        let mut var = variables[name.as_str()].shallow_clone();
        let Some(src) = saved.get(name.as_str()) else {
            report.missing.push(name.clone());
            continue;
        };
        if src.size() != var.size() {
            report.shape_mismatches.push(ShapeMismatch {
                name: name.clone(),
                expected: var.size(),
                found: src.size(),
            });
            continue;
        }
        tch::no_grad(|| var.f_copy_(src)).map_err(|source| CheckpointError::Copy {
            name: name.clone(),
            source,
        })?;
        report.loaded += 1;
    }
    let mut unexpected: Vec<String> = tensors
        .iter()
        .filter(|(n, _)| !variables.contains_key(n))
        .map(|(n, _)| n.clone())
        .collect();
    unexpected.sort();
    report.unexpected = unexpected;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn reports_missing_unexpected_and_shape_mismatches() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.sub("a").var("w", &[2], tch::nn::Init::Const(0.0));
        let _ = root.sub("a").var("b", &[3], tch::nn::Init::Const(0.0));
        let _ = root.sub("a").zeros_no_train("running_mean", &[2]);
        let saved = vec![
            ("a.w".to_string(), Tensor::from_slice(&[1.0f32, 2.0])),
            (
                "a.b".to_string(),
                Tensor::zeros([4], (Kind::Float, Device::Cpu)),
            ),
            ("a.extra".to_string(), Tensor::from(1.0f32)),
        ];
        let report = load_into_varstore(&vs, &saved).expect("load");
        assert_eq!(report.loaded, 1);
        assert_eq!(report.missing, ["a.running_mean"]);
        assert_eq!(report.unexpected, ["a.extra"]);
        assert_eq!(report.shape_mismatches[0].name, "a.b");
        assert!(w.equal(&Tensor::from_slice(&[1.0f32, 2.0])));
        assert!(w.requires_grad());
        let error = report
            .ensure_exact("ckpt `x`")
            .expect_err("inexact")
            .to_string();
        assert!(
            error.contains("a.running_mean") && error.contains("a.extra"),
            "{error}"
        );
        assert_eq!(model_tensors(&vs).len(), 3);
    }
}
