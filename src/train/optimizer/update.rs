//! One Adam update, operation by operation like torch's `_single_tensor_adam`.

use tch::Tensor;

use super::error::torch_err;
use super::{AdamHyper, Moments, OptimizerError, Param};

/// The parameter's gradient if torch would see one (`p.grad is not None`).
pub(super) fn present_grad(param: &Param) -> Result<Option<Tensor>, OptimizerError> {
    let grad = param.tensor.f_grad().map_err(torch_err(format!(
        "reading the gradient of `{}`",
        param.name
    )))?;
    if !grad.defined() {
        return Ok(None);
    }
    if let Some((ptr, version)) = param.zeroed_grad {
        let now = grad.f_internal_version().map_err(torch_err(format!(
            "reading the gradient of `{}`",
            param.name
        )))?;
        if ptr == grad.data_ptr() as usize && version == now {
            return Ok(None);
        }
    }
    Ok(Some(grad))
}

/// torch's `_single_tensor_adam` body for one parameter, with the same ATen kernels in the same
/// order (`add(alpha)`, `addcmul(value)` and `addcdiv(value)` are rewritten with `value = 1` and
/// pre-scaled operands, which are bitwise the same on CPU).
pub(super) fn update(
    param: &mut Param,
    grad: &Tensor,
    lr: f64,
    hyper: &AdamHyper,
) -> Result<(), OptimizerError> {
    let err = || torch_err(format!("updating `{}`", param.name));
    let [beta1, beta2] = hyper.betas;
    let tensor = &param.tensor;
    let state = match &mut param.state {
        Some(state) => state,
        None => {
            let zeros = || tensor.f_zeros_like().map_err(err());
            let max_exp_avg_sq = if hyper.amsgrad { Some(zeros()?) } else { None };
            param.state.insert(Moments {
                step: 0,
                exp_avg: zeros()?,
                exp_avg_sq: zeros()?,
                max_exp_avg_sq,
            })
        }
    };
    state.step += 1;
    // grad = grad.add(param, alpha=weight_decay)
    let decayed;
    let grad = if hyper.weight_decay != 0.0 {
        let decay = match &param.decay {
            Some(decay) => decay,
            None => param.decay.insert(
                Tensor::f_scalar_tensor(hyper.weight_decay, (tensor.kind(), tensor.device()))
                    .map_err(err())?,
            ),
        };
        decayed = grad.f_addcmul(tensor, decay).map_err(err())?;
        &decayed
    } else {
        grad
    };
    // exp_avg.lerp_(grad, 1 - beta1)
    let _ = state.exp_avg.f_lerp_(grad, 1.0 - beta1).map_err(err())?;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    let _ = state.exp_avg_sq.f_mul_scalar_(beta2).map_err(err())?;
    let scaled = grad.f_mul_scalar(1.0 - beta2).map_err(err())?;
    let _ = state.exp_avg_sq.f_addcmul_(&scaled, grad).map_err(err())?;
    // Python float arithmetic on the step count (`beta ** step`, `bc2 ** 0.5` via libm pow).
    let step = state.step as f64;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.powf(std::hint::black_box(0.5));
    let second = match &mut state.max_exp_avg_sq {
        Some(max) => {
            let _ = max.f_maximum_out(max, &state.exp_avg_sq).map_err(err())?;
            &*max
        }
        None => &state.exp_avg_sq,
    };
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    let mut denom = second
        .f_sqrt()
        .and_then(|s| s.f_div_scalar(bias_correction2_sqrt))
        .map_err(err())?;
    let _ = denom.f_add_scalar_(hyper.eps).map_err(err())?;
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    let numerator = state.exp_avg.f_mul_scalar(-step_size).map_err(err())?;
    let mut tensor = tensor.shallow_clone();
    let _ = tensor.f_addcdiv_(&numerator, &denom).map_err(err())?;
    Ok(())
}
