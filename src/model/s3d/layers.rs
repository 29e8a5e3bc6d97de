//! The S3D building blocks (`SepConv3d`, `BasicConv3d`, `Mixed_*`, max-pools) and the
//! BatchNorm with the reference's state-dict entries.

use std::borrow::Borrow;

use tch::{nn, Kind, TchError, Tensor};

use super::{BN_EPS, BN_MOMENTUM};

/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: PyTorch's default init of conv/linear weights and biases.
fn torch_default_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A BatchNorm with the reference's state-dict entries: `weight`, `bias`, `running_mean`,
/// `running_var` and the `num_batches_tracked` counter (an int64 scalar, not trainable).
///
/// Works on any `[N, C, ...]` input; the visual head's MaskedNorm uses it too.
#[derive(Debug)]
pub struct BatchNorm {
    /// Affine scale `[C]`, initialised to 1.
    pub weight: Tensor,
    /// Affine shift `[C]`, initialised to 0.
    pub bias: Tensor,
    /// Running mean `[C]` (buffer).
    pub running_mean: Tensor,
    /// Running (unbiased) variance `[C]` (buffer).
    pub running_var: Tensor,
    /// Number of training-mode forwards (int64 scalar buffer).
    pub num_batches_tracked: Tensor,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// Creates the variables under `p` (`p.weight`, `p.running_mean`, …).
    pub fn new<'a>(p: impl Borrow<nn::Path<'a>>, channels: i64, eps: f64, momentum: f64) -> Self {
        let p = p.borrow();
        let counter = Tensor::zeros([], (Kind::Int64, p.device()));
        BatchNorm {
            weight: p.var("weight", &[channels], nn::Init::Const(1.0)),
            bias: p.var("bias", &[channels], nn::Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            num_batches_tracked: p.add("num_batches_tracked", counter, false),
            eps,
            momentum,
        }
    }

    /// Sets the running-statistics momentum.
    pub fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }

    /// The running-statistics momentum.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Normalises `x`. `train`: batch statistics (biased variance), running statistics updated
    /// with the unbiased variance and the counter incremented; otherwise running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let y = x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            true,
        )?;
        if train {
            let mut counter = self.num_batches_tracked.shallow_clone();
            let _ = tch::no_grad(|| counter.f_add_scalar_(1))?;
        }
        Ok(y)
    }

    fn parameters(&self) -> [&Tensor; 2] {
        [&self.weight, &self.bias]
    }
}

/// A bias-free Conv3d (`p.weight [out, in, kt, kh, kw]`).
#[derive(Debug)]
pub(super) struct Conv3d {
    weight: Tensor,
    stride: [i64; 3],
    padding: [i64; 3],
}

impl Conv3d {
    fn new(
        p: &nn::Path,
        cin: i64,
        cout: i64,
        kernel: [i64; 3],
        stride: [i64; 3],
        padding: [i64; 3],
    ) -> Self {
        let fan_in = cin * kernel.iter().product::<i64>();
        let dims = [cout, cin, kernel[0], kernel[1], kernel[2]];
        Conv3d {
            weight: p.var("weight", &dims, torch_default_init(fan_in)),
            stride,
            padding,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_conv3d(
            &self.weight,
            None::<&Tensor>,
            self.stride,
            self.padding,
            [1, 1, 1],
            1,
        )
    }
}

/// `BasicConv3d`: `conv` (1×1×1) → `bn` → ReLU.
#[derive(Debug)]
pub(super) struct BasicConv3d {
    conv: Conv3d,
    bn: BatchNorm,
}

impl BasicConv3d {
    pub(super) fn new(p: &nn::Path, cin: i64, cout: i64) -> Self {
        BasicConv3d {
            conv: Conv3d::new(&(p / "conv"), cin, cout, [1, 1, 1], [1, 1, 1], [0, 0, 0]),
            bn: BatchNorm::new(p / "bn", cout, BN_EPS, BN_MOMENTUM),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let x = self.conv.forward(x)?;
        self.bn.forward_t(&x, train)?.f_relu_()
    }

    fn parameters(&self) -> Vec<&Tensor> {
        let mut params = vec![&self.conv.weight];
        params.extend(self.bn.parameters());
        params
    }
}

/// `SepConv3d`: spatial `conv_s` (1,k,k) → `bn_s` → ReLU → temporal `conv_t` (k,1,1) → `bn_t` → ReLU.
#[derive(Debug)]
pub(super) struct SepConv3d {
    conv_s: Conv3d,
    bn_s: BatchNorm,
    conv_t: Conv3d,
    bn_t: BatchNorm,
}

impl SepConv3d {
    pub(super) fn new(
        p: &nn::Path,
        cin: i64,
        cout: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Self {
        SepConv3d {
            conv_s: Conv3d::new(
                &(p / "conv_s"),
                cin,
                cout,
                [1, kernel, kernel],
                [1, stride, stride],
                [0, padding, padding],
            ),
            bn_s: BatchNorm::new(p / "bn_s", cout, BN_EPS, BN_MOMENTUM),
            conv_t: Conv3d::new(
                &(p / "conv_t"),
                cout,
                cout,
                [kernel, 1, 1],
                [stride, 1, 1],
                [padding, 0, 0],
            ),
            bn_t: BatchNorm::new(p / "bn_t", cout, BN_EPS, BN_MOMENTUM),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let x = self.conv_s.forward(x)?;
        let x = self.bn_s.forward_t(&x, train)?.f_relu_()?;
        let x = self.conv_t.forward(&x)?;
        self.bn_t.forward_t(&x, train)?.f_relu_()
    }

    fn parameters(&self) -> Vec<&Tensor> {
        let mut params = vec![&self.conv_s.weight];
        params.extend(self.bn_s.parameters());
        params.push(&self.conv_t.weight);
        params.extend(self.bn_t.parameters());
        params
    }
}

/// `nn.MaxPool3d` (no parameters).
#[derive(Debug, Clone, Copy)]
pub(super) struct MaxPool3d {
    pub(super) kernel: [i64; 3],
    pub(super) stride: [i64; 3],
    pub(super) padding: [i64; 3],
}

impl MaxPool3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_max_pool3d(self.kernel, self.stride, self.padding, [1, 1, 1], false)
    }
}

/// Channel plan of an Inception block: `in; branch0; branch1 reduce→out; branch2 reduce→out; branch3`.
#[derive(Debug, Clone, Copy)]
pub(super) struct MixedPlan {
    input: i64,
    branch0: i64,
    branch1: (i64, i64),
    branch2: (i64, i64),
    branch3: i64,
}

impl MixedPlan {
    const fn new(input: i64, b0: i64, b1: (i64, i64), b2: (i64, i64), b3: i64) -> Self {
        MixedPlan {
            input,
            branch0: b0,
            branch1: b1,
            branch2: b2,
            branch3: b3,
        }
    }
}

pub(super) const MIXED_3B: MixedPlan = MixedPlan::new(192, 64, (96, 128), (16, 32), 32);
pub(super) const MIXED_3C: MixedPlan = MixedPlan::new(256, 128, (128, 192), (32, 96), 64);
pub(super) const MIXED_4B: MixedPlan = MixedPlan::new(480, 192, (96, 208), (16, 48), 64);
pub(super) const MIXED_4C: MixedPlan = MixedPlan::new(512, 160, (112, 224), (24, 64), 64);
pub(super) const MIXED_4D: MixedPlan = MixedPlan::new(512, 128, (128, 256), (24, 64), 64);
pub(super) const MIXED_4E: MixedPlan = MixedPlan::new(512, 112, (144, 288), (32, 64), 64);
pub(super) const MIXED_4F: MixedPlan = MixedPlan::new(528, 256, (160, 320), (32, 128), 128);
pub(super) const MIXED_5B: MixedPlan = MixedPlan::new(832, 256, (160, 320), (32, 128), 128);
pub(super) const MIXED_5C: MixedPlan = MixedPlan::new(832, 384, (192, 384), (48, 128), 128);

/// `Mixed_*`: four branches concatenated on channels; `branch3.0` is a 3×3×3 max-pool.
#[derive(Debug)]
pub(super) struct Mixed {
    branch0: BasicConv3d,
    branch1: (BasicConv3d, SepConv3d),
    branch2: (BasicConv3d, SepConv3d),
    branch3: BasicConv3d,
}

const MIXED_POOL: MaxPool3d = MaxPool3d {
    kernel: [3, 3, 3],
    stride: [1, 1, 1],
    padding: [1, 1, 1],
};

impl Mixed {
    pub(super) fn new(p: &nn::Path, plan: MixedPlan) -> Self {
        let reduce_sep = |name: &str, (reduce, out): (i64, i64)| {
            let branch = p / name;
            (
                BasicConv3d::new(&(&branch / 0), plan.input, reduce),
                SepConv3d::new(&(&branch / 1), reduce, out, 3, 1, 1),
            )
        };
        Mixed {
            branch0: BasicConv3d::new(&(p / "branch0" / 0), plan.input, plan.branch0),
            branch1: reduce_sep("branch1", plan.branch1),
            branch2: reduce_sep("branch2", plan.branch2),
            branch3: BasicConv3d::new(&(p / "branch3" / 1), plan.input, plan.branch3),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        let x0 = self.branch0.forward_t(x, train)?;
        let x1 = self.branch1.0.forward_t(x, train)?;
        let x1 = self.branch1.1.forward_t(&x1, train)?;
        let x2 = self.branch2.0.forward_t(x, train)?;
        let x2 = self.branch2.1.forward_t(&x2, train)?;
        let x3 = self.branch3.forward_t(&MIXED_POOL.forward(x)?, train)?;
        Tensor::f_cat(&[x0, x1, x2, x3], 1)
    }

    fn parameters(&self) -> Vec<&Tensor> {
        let mut params = self.branch0.parameters();
        params.extend(self.branch1.0.parameters());
        params.extend(self.branch1.1.parameters());
        params.extend(self.branch2.0.parameters());
        params.extend(self.branch2.1.parameters());
        params.extend(self.branch3.parameters());
        params
    }
}

/// One entry of `base`.
#[derive(Debug)]
pub(super) enum Layer {
    Pool(MaxPool3d),
    Basic(BasicConv3d),
    Sep(SepConv3d),
    Mixed(Box<Mixed>),
}

impl Layer {
    pub(super) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor, TchError> {
        match self {
            Layer::Pool(pool) => pool.forward(x),
            Layer::Basic(layer) => layer.forward_t(x, train),
            Layer::Sep(layer) => layer.forward_t(x, train),
            Layer::Mixed(layer) => layer.forward_t(x, train),
        }
    }

    pub(super) fn parameters(&self) -> Vec<&Tensor> {
        match self {
            Layer::Pool(_) => Vec::new(),
            Layer::Basic(layer) => layer.parameters(),
            Layer::Sep(layer) => layer.parameters(),
            Layer::Mixed(layer) => layer.parameters(),
        }
    }

    /// Every BatchNorm of the layer.
    pub(super) fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        match self {
            Layer::Pool(_) => Vec::new(),
            Layer::Basic(layer) => vec![&mut layer.bn],
            Layer::Sep(layer) => vec![&mut layer.bn_s, &mut layer.bn_t],
            Layer::Mixed(layer) => {
                let Mixed {
                    branch0,
                    branch1,
                    branch2,
                    branch3,
                } = layer.as_mut();
                vec![
                    &mut branch0.bn,
                    &mut branch1.0.bn,
                    &mut branch1.1.bn_s,
                    &mut branch1.1.bn_t,
                    &mut branch2.0.bn,
                    &mut branch2.1.bn_s,
                    &mut branch2.1.bn_t,
                    &mut branch3.bn,
                ]
            }
        }
    }
}
