//! DDP helpers across two real processes over the TCP backend: parameter broadcast, gradient
//! averaging (buckets, mixed kinds, partly and globally unused parameters, frozen ones), a
//! model mismatch, and K steps of 2-rank SGD matching 1-rank SGD on the same global batch.

mod dist_support;

use std::time::Duration;

use dist_support::{assert_all_ok, spawn, ROLE};
use slt::dist::ddp::{average_gradients, broadcast_parameters, DdpError};
use slt::dist::{self, Collective};
use tch::{Device, Kind, Tensor};

const DEADLINE: Duration = Duration::from_secs(120);

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).view(-1)).expect("values")
}

fn arange(n: i64, kind: Kind, offset: f64) -> Tensor {
    Tensor::arange(n, (kind, Device::Cpu)) + offset
}

fn role_ddp() {
    let mut pg = dist::init_from_env().expect("init");
    let rank = pg.rank();
    let r = rank as f64;
    let c = pg.collective();
    // Different on every rank before the broadcast.
    let w = arange(12, Kind::Float, 100.0 * r)
        .view([3, 4])
        .set_requires_grad(true);
    let b = arange(4, Kind::Double, -7.0 * r).set_requires_grad(true);
    let only0 = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let unused = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let frozen = arange(2, Kind::Float, r);
    let counter = Tensor::from_slice(&[41 + rank as i64]);
    let all = [
        w.shallow_clone(),
        b.shallow_clone(),
        only0.shallow_clone(),
        unused.shallow_clone(),
        frozen.shallow_clone(),
        counter.shallow_clone(),
    ];
    broadcast_parameters(&all, c).expect("broadcast_parameters");
    assert_eq!(values(&w), values(&arange(12, Kind::Float, 0.0)));
    assert_eq!(values(&b), values(&arange(4, Kind::Double, 0.0)));
    assert_eq!(values(&frozen), [0.0, 1.0]);
    assert_eq!(values(&counter), [41.0]);

    // Rank-specific gradients: d/dw = x_r, d/db = y_r, only0 used on rank 0 only.
    let x = Tensor::full([3, 4], 1.0 + r, (Kind::Float, Device::Cpu));
    let y = arange(4, Kind::Double, 10.0 * r);
    let mut loss = (&w * &x).sum(Kind::Float).to_kind(Kind::Double) + (&b * &y).sum(Kind::Double);
    if rank == 0 {
        loss += (&only0 * 5.0).sum(Kind::Float).to_kind(Kind::Double);
    }
    loss.backward();
    // 40-byte buckets: w (48 bytes) alone, b (f64) in a bucket of its own kind, only0 alone.
    average_gradients(&all, c, 40).expect("average_gradients");
    assert_eq!(values(&w.grad()), vec![1.5; 12]);
    assert_eq!(values(&b.grad()), [5.0, 6.0, 7.0, 8.0]);
    assert_eq!(
        values(&only0.grad()),
        [2.5, 2.5],
        "a grad absent on rank 1 counts as zero"
    );
    assert!(
        !unused.grad().defined(),
        "globally unused parameters keep no gradient"
    );
    assert!(!frozen.grad().defined());
    println!("ddp ok");
}

fn role_mismatch() {
    let mut pg = dist::init_from_env().expect("init");
    let rank = pg.rank();
    let mut tensors = vec![Tensor::zeros([4], (Kind::Float, Device::Cpu))];
    if rank == 1 {
        tensors.push(Tensor::zeros([1], (Kind::Float, Device::Cpu)));
    }
    let err = broadcast_parameters(&tensors, pg.collective()).expect_err("models differ");
    assert!(
        matches!(err, DdpError::ModelMismatch { rank: 1, .. }),
        "{err}"
    );
    println!("mismatch ok: {err}");
}

/// Least squares on 8 samples: full-batch SGD on one rank vs 2 ranks × 4 samples.
fn sgd_steps(c: Option<&mut dyn Collective>, rank: usize, world: usize) -> Vec<f64> {
    let xs = (Tensor::arange(40, (Kind::Float, Device::Cpu)).view([8, 5]) * 0.37).sin();
    let true_w = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25, -0.75]).view([5, 1]);
    let ys = xs.matmul(&true_w) + 0.1;
    let per = 8 / world as i64;
    let x = xs.narrow(0, rank as i64 * per, per);
    let y = ys.narrow(0, rank as i64 * per, per);
    let w = Tensor::zeros([5, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let bias = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let params = [w.shallow_clone(), bias.shallow_clone()];
    let mut c = c;
    for _ in 0..5 {
        for p in &params {
            let mut p = p.shallow_clone();
            p.zero_grad();
        }
        let pred = x.matmul(&w) + &bias;
        let loss = (pred - &y).square().mean(Kind::Float);
        loss.backward();
        if let Some(c) = c.as_deref_mut() {
            average_gradients(&params, c, 1 << 20).expect("average");
        }
        tch::no_grad(|| {
            for p in &params {
                let mut p = p.shallow_clone();
                let g = p.grad();
                let _ = p.f_sub_(&(g * 0.1)).expect("sgd step");
            }
        });
    }
    let mut out = values(&w);
    out.extend(values(&bias));
    out
}

fn role_sgd() {
    let mut pg = dist::init_from_env().expect("init");
    let (rank, world) = (pg.rank(), pg.world_size());
    let distributed = sgd_steps(Some(pg.collective()), rank, world);
    let reference = sgd_steps(None, 0, 1);
    for (d, r) in distributed.iter().zip(&reference) {
        assert!((d - r).abs() <= 1e-5, "{distributed:?} vs {reference:?}");
    }
    assert!(
        reference.iter().any(|v| v.abs() > 0.1),
        "training moved: {reference:?}"
    );
    println!("sgd ok");
}

#[test]
fn worker() {
    match std::env::var(ROLE).as_deref() {
        Ok("ddp") => role_ddp(),
        Ok("mismatch") => role_mismatch(),
        Ok("sgd") => role_sgd(),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
}

#[test]
fn two_ranks_broadcast_parameters_and_average_gradients() {
    let out = spawn(2, "ddp", &[]).wait(DEADLINE);
    assert_all_ok(&out);
    assert!(out.iter().all(|o| o.stdout.contains("ddp ok")));
}

#[test]
fn different_models_are_an_error_on_every_rank() {
    let out = spawn(2, "mismatch", &[]).wait(DEADLINE);
    assert_all_ok(&out);
}

#[test]
fn two_rank_sgd_equals_one_rank_sgd_on_the_same_global_batch() {
    let out = spawn(2, "sgd", &[]).wait(DEADLINE);
    assert_all_ok(&out);
    assert!(out.iter().all(|o| o.stdout.contains("sgd ok")));
}
