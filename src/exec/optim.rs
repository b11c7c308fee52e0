//! Optimisers over the parameter store: SGD (momentum, dampening, Nesterov), Adam and AdamW
//! through the backend's multi-tensor steps, with per-parameter state, L2 weight decay that can
//! spare biases and BN parameters, clipping by global gradient norm, a learning rate settable per
//! step (schedulers), and state export/import by parameter name (checkpoints), named as PyTorch
//! does.
//!
//! A step makes a constant number of launches whatever the number of tensors: one update per
//! distinct step count among the tensors (normally one), one to advance the counts, plus two for
//! clipping. The table of tensors is built once and rebuilt only when the set of tensors changes
//! (freezing, state import); the learning rate is an argument of each launch. Nothing is read
//! back during a step: the gradient norm stays on the device until `last_grad_norm` asks for it.
//!
//! Non-finite gradients under clipping: the step cannot fail at once any more (that needed the
//! norm on the host). The device skips the update instead (parameters and optimiser state stay
//! as they were, so the next loss is not poisoned by them), counts the step
//! (`nonfinite_grad_steps`), and `last_grad_norm` returns the numerical error. The optimiser's
//! step count does not advance on such a step either: PyTorch's GradScaler skips
//! `optimizer.step()` whole, so Adam's bias corrections and SGD's first momentum step (the
//! buffer starts as the gradient) come with the first step actually taken.
//!
//! The step numbers live on the device (`advance_steps` before each update, which a skipped step
//! leaves alone; the updates read them there) so that a step replayed from a CUDA graph updates
//! with the next count. The host mirrors them (`count_replayed_step`) for checkpoints, counting
//! every step it launched; when steps may be skipped (a clip state exists) the device's counts
//! are the truth, read back where the host's are needed: in `export_state`, and before a step
//! whose set of tensors changed (their groups are then rebuilt from the host's counts).

use super::params::{GradStore, ParamStore};
use super::{Buf, Words};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::graph::ParamId;
use crate::ops::node::ParamValues;
use crate::ops::optim::{TensorSlot, CLIP_STATE_LEN};
use crate::ops::{AdamParams, Backend, OptimOps, SgdParams};
use std::collections::BTreeMap;

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
    state: BTreeMap<ParamId, ParamState<Buf<E, B>>>,
    /// The tensors of the last step on the device; kept while they stay the same.
    table: Option<<B as OptimOps<E>>::TensorTable>,
    /// {norm, scale, non-finite steps} of the last clipping step, on the device.
    clip: Option<Buf<E, B>>,
    /// Each group's step count on the device, and the counts it holds.
    step_counts: Option<(Words<E, B>, Vec<u64>)>,
    /// The parameters the last step updated (those a replay of it updates), and the group of
    /// each (the device count it advanced).
    last_stepped: Vec<ParamId>,
    last_groups: Vec<usize>,
    /// Check every step's gradient norm even without clipping, skipping a non-finite one
    /// (dynamic loss scaling's overflow check).
    check_nonfinite: bool,
}

/// Per tensor of the last step, the steps the device skipped; and the device's counts.
type SkippedSteps = (Vec<(ParamId, u64)>, Vec<u64>);

/// The host's step counts before a step, to go back to if its capture is abandoned.
pub struct StepCounts(Vec<(ParamId, u64)>);

impl<E: Element, B: Backend<E>> Optimizer<E, B> {
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Optimizer {
            config,
            state: BTreeMap::new(),
            table: None,
            clip: None,
            step_counts: None,
            last_stepped: Vec::new(),
            last_groups: Vec::new(),
            check_nonfinite: false,
        })
    }

    /// From now on every step checks the global gradient norm on the device, without clipping
    /// unless configured: an update with a NaN/inf gradient is skipped and counted
    /// (`nonfinite_grad_steps`), as dynamic loss scaling needs.
    pub fn skip_nonfinite_updates(&mut self) {
        self.check_nonfinite = true;
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

    /// The step counts now, for `abandon_captured_step`: the host's, less the steps the device
    /// skipped (one read where steps may have been skipped), since an abandoned capture drops
    /// the device's counts and the next step uploads the host's.
    pub fn step_counts(&mut self, backend: &B) -> Result<StepCounts> {
        self.settle_skipped_steps(backend)?;
        Ok(StepCounts(self.state.iter().map(|(&id, s)| (id, s.step)).collect()))
    }

    /// Undoes the host side of a step whose graph capture was abandoned (its work never ran):
    /// the step counts go back to `before`, and the device tables (gradient addresses, step
    /// counts) are dropped so the next step uploads them again, since the capture may have
    /// recorded their uploads without running them.
    pub fn abandon_captured_step(&mut self, before: StepCounts) {
        for (id, step) in before.0 {
            if let Some(state) = self.state.get_mut(&id) {
                state.step = step;
            }
        }
        self.table = None;
        self.step_counts = None;
    }

    /// The host side of a step replayed from a graph: the step counts the replayed update
    /// advances on the device advance here too.
    pub fn count_replayed_step(&mut self) {
        for id in &self.last_stepped {
            if let Some(state) = self.state.get_mut(id) {
                state.step += 1;
            }
        }
        if let Some((_, held)) = &mut self.step_counts {
            held.iter_mut().for_each(|count| *count += 1);
        }
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

    /// Clips (when configured) and applies one update to every parameter holding a gradient,
    /// without reading anything back (see `last_grad_norm`).
    pub fn step(&mut self, backend: &B, params: &mut ParamStore<E, B>, grads: &GradStore<E, B>) -> Result<()> {
        let ids: Vec<ParamId> = grads.ids().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let kind = self.config.kind;
        if ids != self.last_stepped {
            // The groups are rebuilt from the host's counts: first take back the skipped steps.
            self.settle_skipped_steps(backend)?;
        }
        // Each tensor's launch key: the number of the step it is about to take.
        let mut keys = Vec::with_capacity(ids.len());
        for &id in &ids {
            let len = params.spec(id).numel();
            let state = self.state.entry(id).or_insert(ParamState { step: 0, first: None, second: None });
            match kind {
                OptimizerKind::Sgd { momentum, .. } => {
                    if momentum != 0.0 && state.first.is_none() {
                        // PyTorch starts a missing buffer as the gradient whatever came before
                        // (a run resumed with momentum where it had none): count from here.
                        state.step = 0;
                        state.first = Some(backend.zeros(len)?);
                    }
                }
                OptimizerKind::Adam { .. } => {
                    for buf in [&mut state.first, &mut state.second] {
                        if buf.is_none() {
                            *buf = Some(backend.zeros(len)?);
                        }
                    }
                }
            }
            keys.push(state.step + 1);
        }
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let decays: Vec<f64> = ids
            .iter()
            .map(|&id| {
                let decays = !self.config.decay_weights_only || params.spec(id).kind.decays_by_default();
                if decays { self.config.weight_decay } else { 0.0 }
            })
            .collect();
        let values = params.values_mut(&ids)?;
        let states = self.state.iter_mut().filter(|(id, _)| ids.binary_search(id).is_ok());
        let mut slots: Vec<TensorSlot<'_, Buf<E, B>>> = values
            .into_iter()
            .zip(states)
            .zip(ids.iter().zip(keys.iter().zip(&decays)))
            .map(|((param, (_, state)), (&id, (key, &weight_decay)))| TensorSlot {
                param,
                grad: grads.get(id).expect("ids lists held gradients"),
                first: state.first.as_mut(),
                second: state.second.as_mut(),
                weight_decay,
                group: distinct.binary_search(key).expect("distinct holds every key"),
            })
            .collect();
        backend.sync_table(&mut self.table, &slots)?;
        let table = self.table.as_ref().expect("sync_table builds the table");
        // Without clipping, an infinite bound checks the norm and scales by 1.
        let bound = self.config.clip_grad_norm.or(self.check_nonfinite.then_some(f64::INFINITY));
        let clip = match bound {
            Some(max_norm) => {
                let clip = match &mut self.clip {
                    Some(clip) => clip,
                    empty => empty.insert(backend.zeros(CLIP_STATE_LEN)?),
                };
                backend.clip_grad_norm(table, &slots, max_norm, clip)?;
                Some(&*clip)
            }
            None => None,
        };
        let steps = advance_step_counts(backend, &mut self.step_counts, &distinct, clip)?;
        match kind {
            OptimizerKind::Sgd { momentum, dampening, nesterov } => {
                let h = SgdParams { lr: self.config.lr, momentum, dampening, nesterov, weight_decay: 0.0 };
                for group in 0..distinct.len() {
                    backend.sgd_multi_step(table, &mut slots, group, &h, steps, clip)?;
                }
            }
            OptimizerKind::Adam { beta1, beta2, eps, decoupled } => {
                let h = AdamParams { lr: self.config.lr, beta1, beta2, eps, weight_decay: 0.0, decoupled };
                for group in 0..distinct.len() {
                    backend.adam_multi_step(table, &mut slots, group, &h, steps, clip)?;
                }
            }
        }
        drop(slots);
        for &id in &ids {
            self.state.get_mut(&id).expect("every stepped tensor has state").step += 1;
        }
        self.last_groups = keys.iter().map(|key| distinct.binary_search(key).expect("distinct holds every key")).collect();
        self.last_stepped = ids;
        Ok(())
    }

    /// The steps the host counted for the tensors of the last step that the device skipped (a
    /// non-finite gradient norm): per tensor, its group's count as the host holds it less the
    /// device's (one read; none without a clip state or device counts), with the device's counts.
    fn skipped_steps(&self, backend: &B) -> Result<SkippedSteps> {
        let (Some(_), Some((words, held))) = (&self.clip, &self.step_counts) else { return Ok((Vec::new(), Vec::new())) };
        let device: Vec<u64> = backend.download_idx(words)?.into_iter().map(u64::from).collect();
        let skipped = self.last_stepped.iter().zip(&self.last_groups).map(|(&id, &group)| (id, held[group].saturating_sub(device[group]))).collect();
        Ok((skipped, device))
    }

    /// Takes the skipped steps back from the host's counts (see `skipped_steps`).
    fn settle_skipped_steps(&mut self, backend: &B) -> Result<()> {
        let (skipped, device) = self.skipped_steps(backend)?;
        for (id, count) in skipped {
            if let Some(state) = self.state.get_mut(&id) {
                state.step -= count;
            }
        }
        if let Some((_, held)) = &mut self.step_counts {
            *held = device;
        }
        Ok(())
    }

    /// The global gradient norm before clipping of the last step (one read from the device);
    /// None when the optimiser does not clip or has not stepped. A non-finite norm (that step
    /// was skipped) is the numerical error the step itself used to return.
    pub fn last_grad_norm(&self, backend: &B) -> Result<Option<f64>> {
        let Some(clip) = &self.clip else { return Ok(None) };
        let norm = backend.download(clip)?[0].to_f64();
        if !norm.is_finite() {
            return Err(Error::Numerical(format!("the gradient norm is {norm}; lower the learning rate")));
        }
        Ok(Some(norm))
    }

    /// The clip state of the last step on the device ({norm, scale, non-finite steps}): what
    /// dynamic loss scaling's update reads that step's overflow from. None when the optimiser
    /// neither clips nor checks for non-finite gradients, or has not stepped.
    pub fn clip_state(&self) -> Option<&Buf<E, B>> {
        self.clip.as_ref()
    }

    /// How many steps the device skipped for a non-finite gradient norm (one read; 0 without
    /// clipping).
    pub fn nonfinite_grad_steps(&self, backend: &B) -> Result<u64> {
        let Some(clip) = &self.clip else { return Ok(0) };
        Ok(backend.download(clip)?[2].to_f64() as u64)
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
        let (skipped, _) = self.skipped_steps(backend)?;
        let mut out = OptimizerState::default();
        for (&id, st) in &self.state {
            let name = &params.spec(id).name;
            let not_taken = skipped.iter().find(|(skipped_id, _)| *skipped_id == id).map_or(0, |&(_, count)| count);
            out.steps.push((name.clone(), st.step - not_taken));
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
        let mut imported: BTreeMap<ParamId, ParamState<Buf<E, B>>> = BTreeMap::new();
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
        self.table = None;
        self.step_counts = None;
        Ok(())
    }
}

/// The step counts on the device for a step whose groups update to step numbers `numbers`:
/// uploaded as `numbers - 1` when the device does not hold those (the first step, new groups,
/// imported state), then advanced by one on the device unless `clip` finds the step skipped.
fn advance_step_counts<'a, E: Element, B: Backend<E>>(
    backend: &B,
    slot: &'a mut Option<(Words<E, B>, Vec<u64>)>,
    numbers: &[u64],
    clip: Option<&Buf<E, B>>,
) -> Result<&'a Words<E, B>> {
    let before: Vec<u64> = numbers.iter().map(|n| n - 1).collect();
    if slot.as_ref().is_none_or(|(_, held)| *held != before) {
        let words = before
            .iter()
            .map(|&n| u32::try_from(n).map_err(|_| Error::config(format!("the optimiser's step count {n} passed 2^32"))))
            .collect::<Result<Vec<u32>>>()?;
        *slot = Some((backend.upload_idx(&words)?, before));
    }
    let (steps, held) = slot.as_mut().expect("set above");
    backend.advance_steps(steps, clip)?;
    held.copy_from_slice(numbers);
    Ok(steps)
}
