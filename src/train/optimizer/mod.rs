//! Adam with one parameter group per top-level module, numerically `torch.optim.Adam`
//! (`amsgrad` optional, `maximize=False`, coupled L2 weight decay), with exportable state.
//!
//! The reference builds one group per child of `SignLanguageModel` (`recognition_network`,
//! `translation_network`, `vl_mapper`) with the rate [`LearningRates::for_module`] picks
//! (spec §5). Here a group is the first segment of the VarStore path, so parameters named like
//! the reference land in the same groups.
//!
//! Semantics that matter for exact parity and resume:
//! - A parameter *without a gradient* is skipped, its state untouched (torch: `p.grad is None`).
//!   [`Adam::zero_grad`] behaves like torch's `zero_grad(set_to_none=True)`: libtorch's C API
//!   cannot reset a gradient to `None`, so the gradient is zero-filled and its version counter
//!   remembered; a gradient that no backward pass (or in-place write) touched since then counts as
//!   absent. Frozen parameters (`requires_grad == false`) and parameters unused by this step's
//!   graph are therefore skipped exactly like in torch.
//! - A parameter that becomes trainable later (frozen-block schedule) starts with fresh state
//!   (step 0, zero moments) at its first gradient, as in torch's lazy state initialisation.
//! - The update uses the same ATen kernels in the same order as torch's single-tensor Adam, so on
//!   CPU the trajectory is bitwise torch's (`tests/optimizer_parity.rs`).
//!
//! Only VarStore variables registered as trainable are parameters; variables added with
//! `trainable = false` (BatchNorm running statistics) are buffers and never optimized.

mod error;
#[cfg(test)]
mod tests;
mod update;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::config::{LearningRates, OptimizationConfig, MODEL_MODULE_NAMES};

use error::torch_err;
pub use error::OptimizerError;
use update::{present_grad, update};

/// Adam hyperparameters shared by all groups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamHyper {
    /// `(beta1, beta2)`; the reference uses `(0.9, 0.998)`.
    #[serde(with = "crate::train::exact_float::pair")]
    pub betas: [f64; 2],
    /// Added to `sqrt(v̂)`; default `1e-8`.
    #[serde(with = "crate::train::exact_float::scalar")]
    pub eps: f64,
    /// Coupled L2 weight decay (`grad + wd·param`); the reference uses `1e-3`.
    #[serde(with = "crate::train::exact_float::scalar")]
    pub weight_decay: f64,
    /// AMSGrad variant.
    pub amsgrad: bool,
}

impl AdamHyper {
    /// The hyperparameters of `training.optimization`. `adamw` is the same coupled-L2 Adam, as in
    /// the reference.
    pub fn from_config(config: &OptimizationConfig) -> Self {
        AdamHyper {
            betas: config.betas,
            eps: config.eps,
            weight_decay: config.weight_decay,
            amsgrad: config.amsgrad,
        }
    }
}

/// The JSON part of the optimizer state: hyperparameters, group rates and per-parameter step
/// counts. The moment tensors travel separately ([`Adam::state_tensors`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// Hyperparameters in effect when saved (restored on load, like torch's `load_state_dict`).
    pub hyper: AdamHyper,
    /// Groups in order, with their current rate.
    pub groups: Vec<GroupState>,
    /// Parameter name → number of updates applied (parameters without state are absent).
    pub steps: BTreeMap<String, u64>,
}

/// One group of [`AdamState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Group (top-level module) name.
    pub name: String,
    /// Current learning rate.
    #[serde(with = "crate::train::exact_float::scalar")]
    pub lr: f64,
    /// Parameter names of the group, sorted.
    pub params: Vec<String>,
}

struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

struct Param {
    name: String,
    tensor: Tensor,
    state: Option<Moments>,
    /// `(data pointer, version)` of the gradient right after [`Adam::zero_grad`] zero-filled it.
    zeroed_grad: Option<(usize, i64)>,
    /// `weight_decay` as a 0-dim tensor of the parameter's kind and device (for `addcmul`).
    decay: Option<Tensor>,
}

struct Group {
    name: String,
    lr: f64,
    params: Vec<Param>,
}

/// Adam over named tch tensors, grouped by top-level module.
pub struct Adam {
    hyper: AdamHyper,
    groups: Vec<Group>,
}

impl std::fmt::Debug for Adam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups: Vec<_> = self
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.lr, g.params.len()))
            .collect();
        f.debug_struct("Adam")
            .field("hyper", &self.hyper)
            .field("groups (name, lr, params)", &groups)
            .finish()
    }
}

/// The trainable variables of `vs` with their names, sorted by name. A tensor registered under
/// several names (tied weights) appears once, under its smallest name.
pub fn trainable_named(vs: &VarStore) -> Result<Vec<(String, Tensor)>, OptimizerError> {
    let variables = vs
        .variables_
        .lock()
        .map_err(|_| OptimizerError::PoisonedVarStore)?;
    let mut by_ptr: HashMap<usize, Vec<(&String, &Tensor)>> = HashMap::new();
    for (name, tensor) in &variables.named_variables {
        by_ptr
            .entry(tensor.data_ptr() as usize)
            .or_default()
            .push((name, tensor));
    }
    let mut named: BTreeMap<String, Tensor> = BTreeMap::new();
    for (index, var) in variables.trainable_variables.iter().enumerate() {
        let candidates = by_ptr
            .get(&(var.tensor.data_ptr() as usize))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut found: Option<&String> = None;
        for (name, tensor) in candidates {
            let same = tensor
                .f_is_set_to(&var.tensor)
                .map_err(torch_err(format!("identifying `{name}`")))?;
            if same && found.is_none_or(|best| *name < best) {
                found = Some(name);
            }
        }
        let name = found.ok_or(OptimizerError::UnnamedVariable { index })?;
        named
            .entry(name.clone())
            .or_insert_with(|| var.tensor.shallow_clone());
    }
    Ok(named.into_iter().collect())
}

/// The group a parameter belongs to: the first segment of its path.
pub fn group_of(param_name: &str) -> &str {
    param_name.split('.').next().unwrap_or(param_name)
}

impl Adam {
    /// Adam over the trainable variables of `vs`, one group per top-level module with the rate
    /// `rates.for_module(module)`.
    pub fn new(
        vs: &VarStore,
        rates: &LearningRates,
        hyper: AdamHyper,
    ) -> Result<Self, OptimizerError> {
        Ok(Self::from_named(trainable_named(vs)?, rates, hyper))
    }

    /// Adam over the given named parameters (see [`Adam::new`]). Groups are ordered like the
    /// reference's modules ([`MODEL_MODULE_NAMES`]), other modules after them by name; parameters
    /// within a group by name (of repeated names, the first is kept).
    pub fn from_named(
        params: Vec<(String, Tensor)>,
        rates: &LearningRates,
        hyper: AdamHyper,
    ) -> Self {
        let mut by_group: BTreeMap<String, Vec<(String, Tensor)>> = BTreeMap::new();
        for (name, tensor) in params {
            by_group
                .entry(group_of(&name).to_string())
                .or_default()
                .push((name, tensor));
        }
        let rank = |group: &str| {
            MODEL_MODULE_NAMES
                .iter()
                .position(|m| *m == group)
                .unwrap_or(MODEL_MODULE_NAMES.len())
        };
        let mut names: Vec<String> = by_group.keys().cloned().collect();
        names.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        let groups = names
            .into_iter()
            .map(|name| {
                let mut params = by_group.remove(&name).unwrap_or_default();
                params.sort_by(|a, b| a.0.cmp(&b.0));
                params.dedup_by(|later, first| later.0 == first.0);
                Group {
                    lr: rates.for_module(&name),
                    name,
                    params: params
                        .into_iter()
                        .map(|(name, tensor)| Param {
                            name,
                            tensor,
                            state: None,
                            zeroed_grad: None,
                            decay: None,
                        })
                        .collect(),
                }
            })
            .collect();
        Adam { hyper, groups }
    }

    /// The hyperparameters.
    pub fn hyper(&self) -> AdamHyper {
        self.hyper
    }

    /// Group names in order.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.name.clone()).collect()
    }

    /// Current learning rate of every group, in group order.
    pub fn lrs(&self) -> Vec<f64> {
        self.groups.iter().map(|g| g.lr).collect()
    }

    /// Sets every group's rate (one per group, in group order), e.g. from the scheduler.
    pub fn set_lrs(&mut self, lrs: &[f64]) -> Result<(), OptimizerError> {
        if lrs.len() != self.groups.len() {
            return Err(OptimizerError::LrCount {
                expected: self.groups.len(),
                got: lrs.len(),
                groups: self.group_names().join(", "),
            });
        }
        for (group, &lr) in self.groups.iter_mut().zip(lrs) {
            group.lr = lr;
        }
        Ok(())
    }

    /// Sets the rate of the group `name`.
    pub fn set_lr(&mut self, name: &str, lr: f64) -> Result<(), OptimizerError> {
        let groups = self.group_names().join(", ");
        let group = self
            .groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| OptimizerError::UnknownGroup {
                group: name.to_string(),
                groups,
            })?;
        group.lr = lr;
        Ok(())
    }

    /// Names of all parameters, group by group.
    pub fn param_names(&self) -> Vec<String> {
        self.params().map(|p| p.name.clone()).collect()
    }

    fn params(&self) -> impl Iterator<Item = &Param> {
        self.groups.iter().flat_map(|g| g.params.iter())
    }

    /// Number of updates applied to `param` so far (0 without state).
    pub fn step_count(&self, param: &str) -> u64 {
        self.params()
            .find(|p| p.name == param)
            .and_then(|p| p.state.as_ref())
            .map_or(0, |s| s.step)
    }

    /// torch's `zero_grad(set_to_none=True)`: afterwards every parameter counts as having no
    /// gradient until a backward pass (or an in-place write) produces one.
    pub fn zero_grad(&mut self) -> Result<(), OptimizerError> {
        for param in self.groups.iter_mut().flat_map(|g| g.params.iter_mut()) {
            let mut grad = param.tensor.f_grad().map_err(torch_err(format!(
                "reading the gradient of `{}`",
                param.name
            )))?;
            if !grad.defined() {
                param.zeroed_grad = None;
                continue;
            }
            let context = format!("zeroing the gradient of `{}`", param.name);
            let _ = grad.f_detach_().map_err(torch_err(context.clone()))?;
            let _ = grad.f_zero_().map_err(torch_err(context.clone()))?;
            let version = grad.f_internal_version().map_err(torch_err(context))?;
            param.zeroed_grad = Some((grad.data_ptr() as usize, version));
        }
        Ok(())
    }

    /// The gradients torch would see as `p.grad is not None`, by parameter name (shallow).
    pub fn present_grads(&self) -> Result<Vec<(String, Tensor)>, OptimizerError> {
        let mut grads = Vec::new();
        for param in self.params() {
            if let Some(grad) = present_grad(param)? {
                grads.push((param.name.clone(), grad));
            }
        }
        Ok(grads)
    }

    /// One Adam update of every parameter that has a gradient, under `no_grad`. Returns the
    /// number of parameters updated.
    pub fn step(&mut self) -> Result<usize, OptimizerError> {
        let hyper = self.hyper;
        tch::no_grad(|| {
            let mut updated = 0;
            for group in &mut self.groups {
                for param in &mut group.params {
                    if let Some(grad) = present_grad(param)? {
                        update(param, &grad, group.lr, &hyper)?;
                        updated += 1;
                    }
                }
            }
            Ok(updated)
        })
    }

    /// The JSON part of the state (rates, step counts, hyperparameters).
    pub fn state(&self) -> AdamState {
        AdamState {
            hyper: self.hyper,
            groups: self
                .groups
                .iter()
                .map(|g| GroupState {
                    name: g.name.clone(),
                    lr: g.lr,
                    params: g.params.iter().map(|p| p.name.clone()).collect(),
                })
                .collect(),
            steps: self
                .params()
                .filter_map(|p| p.state.as_ref().map(|s| (p.name.clone(), s.step)))
                .collect(),
        }
    }

    /// The moment tensors (shallow), named `{param}.exp_avg`, `{param}.exp_avg_sq` and, with
    /// AMSGrad, `{param}.max_exp_avg_sq`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::new();
        for param in self.params() {
            if let Some(state) = &param.state {
                tensors.push((
                    format!("{}.exp_avg", param.name),
                    state.exp_avg.shallow_clone(),
                ));
                tensors.push((
                    format!("{}.exp_avg_sq", param.name),
                    state.exp_avg_sq.shallow_clone(),
                ));
                if let Some(max) = &state.max_exp_avg_sq {
                    tensors.push((
                        format!("{}.max_exp_avg_sq", param.name),
                        max.shallow_clone(),
                    ));
                }
            }
        }
        tensors
    }

    /// Restores rates, hyperparameters, step counts and moments saved by [`Adam::state`] and
    /// [`Adam::state_tensors`]. Tensors are copied to each parameter's device and kind.
    /// Parameters without saved state start fresh. Nothing changes on error.
    pub fn load_state(
        &mut self,
        state: &AdamState,
        tensors: &[(String, Tensor)],
    ) -> Result<(), OptimizerError> {
        let saved: Vec<String> = state.groups.iter().map(|g| g.name.clone()).collect();
        let mut sorted_saved = saved.clone();
        sorted_saved.sort();
        let mut sorted_model = self.group_names();
        sorted_model.sort();
        if sorted_saved != sorted_model {
            return Err(OptimizerError::GroupMismatch {
                saved,
                model: self.group_names(),
            });
        }
        let mut tensors: HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut restored: HashMap<String, Moments> = HashMap::new();
        for (name, &step) in &state.steps {
            let param = self.params().find(|p| &p.name == name).ok_or_else(|| {
                OptimizerError::UnexpectedParam {
                    param: name.clone(),
                }
            })?;
            let mut take = |suffix: &str| -> Result<Tensor, OptimizerError> {
                let key = format!("{name}.{suffix}");
                let saved = tensors
                    .remove(key.as_str())
                    .ok_or_else(|| OptimizerError::MissingTensor { key: key.clone() })?;
                let expected = param.tensor.size();
                if saved.size() != expected {
                    return Err(OptimizerError::ShapeMismatch {
                        key,
                        expected,
                        found: saved.size(),
                    });
                }
                saved
                    .f_to_device_(param.tensor.device(), param.tensor.kind(), false, true)
                    .map_err(torch_err(format!("moving `{key}` to its parameter")))
            };
            let exp_avg = take("exp_avg")?;
            let exp_avg_sq = take("exp_avg_sq")?;
            let max_exp_avg_sq = if state.hyper.amsgrad {
                Some(take("max_exp_avg_sq")?)
            } else {
                None
            };
            restored.insert(
                name.clone(),
                Moments {
                    step,
                    exp_avg,
                    exp_avg_sq,
                    max_exp_avg_sq,
                },
            );
        }
        if let Some(key) = tensors.keys().min() {
            return Err(OptimizerError::UnexpectedTensor {
                key: key.to_string(),
            });
        }
        if state.hyper != self.hyper {
            tracing::warn!(
                saved = ?state.hyper,
                configured = ?self.hyper,
                "optimizer hyperparameters differ from the config; using the checkpoint's \
                 (as torch's load_state_dict does)"
            );
        }
        self.hyper = state.hyper;
        for group in &mut self.groups {
            if let Some(saved) = state.groups.iter().find(|g| g.name == group.name) {
                group.lr = saved.lr;
            }
            for param in &mut group.params {
                param.state = restored.remove(&param.name);
                param.decay = None;
            }
        }
        Ok(())
    }
}
