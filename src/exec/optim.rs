//! Optimisers over the parameter store: SGD (momentum, dampening, Nesterov), Adam and AdamW
//! through the backend's fused steps, with per-parameter state, L2 weight decay that can spare
//! biases and BN parameters, clipping by global gradient norm, a learning rate settable per step
//! (schedulers), and state export/import by parameter name (checkpoints), named as PyTorch does.

use super::params::{GradStore, ParamStore};
use super::Buf;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::graph::ParamId;
use crate::ops::{AdamParams, Backend, SgdParams};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { momentum: f64, dampening: f64, nesterov: bool },
    /// Adam, or AdamW when `decoupled` (weight decay applied to the parameter directly).
    Adam { beta1: f64, beta2: f64, eps: f64, decoupled: bool },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// Decay only parameters whose kind decays by default (weights; not biases or BN).
    pub decay_weights_only: bool,
    /// Scale all gradients down so their global L2 norm is at most this.
    pub clip_grad_norm: Option<f64>,
}

impl OptimizerConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config(m));
        let unit = |v: f64| (0.0..1.0).contains(&v);
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be a finite number >= 0", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("weight decay {} must be a finite number >= 0", self.weight_decay));
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return bad(format!("gradient clipping norm {c} must be positive"));
            }
        }
        match self.kind {
            OptimizerKind::Sgd { momentum, dampening, nesterov } => {
                if !unit(momentum) || !(0.0..=1.0).contains(&dampening) {
                    return bad(format!("SGD momentum {momentum} must be in [0, 1) and dampening {dampening} in [0, 1]"));
                }
                if nesterov && (momentum == 0.0 || dampening != 0.0) {
                    return bad("Nesterov momentum needs momentum > 0 and dampening 0".into());
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps, .. } => {
                if !unit(beta1) || !unit(beta2) || eps.is_nan() || eps <= 0.0 {
                    return bad(format!("Adam betas ({beta1}, {beta2}) must be in [0, 1) and eps {eps} positive"));
                }
            }
        }
        Ok(())
    }
}

/// Per-parameter state: SGD uses `first` as its momentum buffer; Adam `first` = m, `second` = v.
struct ParamState<B> {
    step: u64,
    first: Option<B>,
    second: Option<B>,
}

/// The host form of an optimiser's state for checkpoints: tensors and step counts, keyed
/// "<param>.momentum_buffer", "<param>.exp_avg", "<param>.exp_avg_sq" and "<param>".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerState<E> {
    pub buffers: Vec<(String, Vec<E>)>,
    pub steps: Vec<(String, u64)>,
}

pub struct Optimizer<E: Element, B: Backend<E>> {
    config: OptimizerConfig,
    state: HashMap<ParamId, ParamState<Buf<E, B>>>,
    /// Passed as SGD's momentum buffer when momentum is 0 (the op ignores it then).
    unused: Option<Buf<E, B>>,
}

impl<E: Element, B: Backend<E>> Optimizer<E, B> {
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Optimizer { config, state: HashMap::new(), unused: None })
    }
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }
    pub fn lr(&self) -> f64 {
        self.config.lr
    }
    /// Sets the learning rate of the next steps (schedulers call this before each step).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let config = OptimizerConfig { lr, ..self.config };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Bytes of state this optimiser will hold for the trainable parameters of `params`.
    pub fn state_bytes(&self, params: &ParamStore<E, B>) -> usize {
        let per_param = match self.config.kind {
            OptimizerKind::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            OptimizerKind::Adam { .. } => 2,
        };
        let trainable: usize = params.iter().filter(|(_, p)| p.spec.trainable).map(|(_, p)| p.spec.numel()).sum();
        per_param * trainable * std::mem::size_of::<E>()
    }

    /// Clips (when configured) and applies one update to every parameter holding a gradient.
    /// Returns the global gradient norm before clipping when clipping is on.
    pub fn step(&mut self, backend: &B, params: &mut ParamStore<E, B>, grads: &mut GradStore<E, B>) -> Result<Option<f64>> {
        let norm = match self.config.clip_grad_norm {
            Some(max_norm) => Some(clip(backend, grads, max_norm)?),
            None => None,
        };
        let ids: Vec<ParamId> = grads.ids().collect();
        for id in ids {
            let spec = params.spec(id);
            let decays = !self.config.decay_weights_only || spec.kind.decays_by_default();
            let weight_decay = if decays { self.config.weight_decay } else { 0.0 };
            let len = spec.numel();
            let grad = grads.get(id).expect("ids lists held gradients");
            let state = self.state.entry(id).or_insert(ParamState { step: 0, first: None, second: None });
            let param = params.value_mut(id);
            match self.config.kind {
                OptimizerKind::Sgd { momentum, dampening, nesterov } => {
                    let h = SgdParams { lr: self.config.lr, momentum, dampening, nesterov, weight_decay };
                    let first_step = state.first.is_none();
                    let buf = if momentum == 0.0 {
                        self.unused.get_or_insert(backend.zeros(0)?)
                    } else {
                        state.first.get_or_insert(backend.zeros(len)?)
                    };
                    backend.sgd_step(param, grad, buf, &h, first_step)?;
                }
                OptimizerKind::Adam { beta1, beta2, eps, decoupled } => {
                    let h = AdamParams { lr: self.config.lr, beta1, beta2, eps, weight_decay, decoupled };
                    let m = state.first.get_or_insert(backend.zeros(len)?);
                    let v = state.second.get_or_insert(backend.zeros(len)?);
                    backend.adam_step(param, grad, m, v, &h, state.step + 1)?;
                }
            }
            state.step += 1;
        }
        Ok(norm)
    }

    fn suffixes(&self) -> (&'static str, Option<&'static str>) {
        match self.config.kind {
            OptimizerKind::Sgd { .. } => ("momentum_buffer", None),
            OptimizerKind::Adam { .. } => ("exp_avg", Some("exp_avg_sq")),
        }
    }

    /// The state on the host, named by parameter.
    pub fn export_state(&self, backend: &B, params: &ParamStore<E, B>) -> Result<OptimizerState<E>> {
        let (first, second) = self.suffixes();
        let mut out = OptimizerState::default();
        let mut ids: Vec<&ParamId> = self.state.keys().collect();
        ids.sort();
        for &id in ids {
            let st = &self.state[&id];
            let name = &params.spec(id).name;
            out.steps.push((name.clone(), st.step));
            if let Some(b) = &st.first {
                out.buffers.push((format!("{name}.{first}"), backend.download(b)?));
            }
            if let (Some(b), Some(suffix)) = (&st.second, second) {
                out.buffers.push((format!("{name}.{suffix}"), backend.download(b)?));
            }
        }
        Ok(out)
    }

    /// Replaces the state with `state` (from `export_state` of an optimiser of the same kind).
    pub fn import_state(&mut self, backend: &B, params: &ParamStore<E, B>, state: &OptimizerState<E>) -> Result<()> {
        let (first, second) = self.suffixes();
        let mut imported: HashMap<ParamId, ParamState<Buf<E, B>>> = HashMap::new();
        for (name, step) in &state.steps {
            imported.insert(params.id(name)?, ParamState { step: *step, first: None, second: None });
        }
        for (key, values) in &state.buffers {
            let (name, suffix) = key
                .rsplit_once('.')
                .ok_or_else(|| Error::config(format!("optimiser state entry {key} names no parameter")))?;
            let id = params.id(name)?;
            let expected = params.spec(id).numel();
            if values.len() != expected {
                return Err(Error::shape(format!(
                    "optimiser state {key} holds {} values, parameter {name} has {expected}",
                    values.len()
                )));
            }
            let st = imported
                .get_mut(&id)
                .ok_or_else(|| Error::config(format!("optimiser state {key} has no step count for {name}")))?;
            let buf = Some(backend.upload(values)?);
            if suffix == first {
                st.first = buf;
            } else if Some(suffix) == second {
                st.second = buf;
            } else {
                return Err(Error::config(format!(
                    "optimiser state entry {key} does not belong to this optimiser (was the checkpoint saved with another one?)"
                )));
            }
        }
        self.state = imported;
        Ok(())
    }
}

/// Scales every gradient by max_norm / (norm + 1e-6) when the global norm exceeds max_norm
/// (PyTorch's clip_grad_norm_); returns the norm before clipping.
fn clip<E: Element, B: Backend<E>>(backend: &B, grads: &mut GradStore<E, B>, max_norm: f64) -> Result<f64> {
    let ids: Vec<ParamId> = grads.ids().collect();
    let mut total = 0.0;
    for &id in &ids {
        let g = grads.get(id).expect("ids lists held gradients");
        total += backend.download(&backend.sum_squares(g)?)?[0].to_f64();
    }
    let norm = total.sqrt();
    if !norm.is_finite() {
        return Err(Error::Numerical(format!("the gradient norm is {norm}; lower the learning rate")));
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for id in ids {
            backend.scale(<E as Element>::from_f64(coef), grads.get_mut(id).expect("ids lists held gradients"))?;
        }
    }
    Ok(norm)
}
