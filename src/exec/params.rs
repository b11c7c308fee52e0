//! Parameters and their gradients on a device: the store materialises a graph's `ParamSpec`s with
//! the seeded initialisers, gives named host access for checkpoints, and knows which parameters
//! train; the gradient store holds one gradient per trainable parameter after a backward pass.

use super::Buf;
use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::graph::{Init, ParamId, ParamSpec};
use crate::ops::node::ParamValues;
use crate::rng::Rng;
use std::collections::HashMap;

/// One parameter tensor on the device.
pub struct Param<E: Element, B: Device<E>> {
    pub spec: ParamSpec,
    pub value: Buf<E, B>,
}

/// Every parameter (and BN running statistic) of one graph, indexed by `ParamId`.
pub struct ParamStore<E: Element, B: Device<E>> {
    params: Vec<Param<E, B>>,
    by_name: HashMap<String, ParamId>,
}

/// Draws one initial value on the host in f64, so every device and element type starts from the
/// same numbers for the same seed.
fn draw(init: Init, rng: &mut Rng) -> f64 {
    match init {
        Init::Normal { std } => std * rng.normal(),
        Init::TruncatedNormal { std } => loop {
            let z = rng.normal();
            if z.abs() <= 2.0 {
                break std * z;
            }
        },
        Init::Uniform { bound } => rng.uniform_range(-bound, bound),
        Init::Const(v) => v,
    }
}

impl<E: Element, B: Device<E>> ParamStore<E, B> {
    /// Initialises every spec in order from `rng` (constant initialisers draw nothing).
    pub fn new(backend: &B, specs: &[ParamSpec], rng: &mut Rng) -> Result<Self> {
        let mut params = Vec::with_capacity(specs.len());
        let mut by_name = HashMap::with_capacity(specs.len());
        for (id, spec) in specs.iter().enumerate() {
            if by_name.insert(spec.name.clone(), id).is_some() {
                return Err(Error::config(format!("parameter name {} appears twice in the graph", spec.name)));
            }
            let host: Vec<E> = (0..spec.numel()).map(|_| <E as Element>::from_f64(draw(spec.init, rng))).collect();
            params.push(Param { spec: spec.clone(), value: backend.upload(&host)? });
        }
        Ok(ParamStore { params, by_name })
    }

    /// Appends a parameter (the folded graph's new biases); its id is the next one.
    pub fn push(&mut self, spec: ParamSpec, value: Buf<E, B>) -> Result<ParamId> {
        let id = self.params.len();
        if self.by_name.insert(spec.name.clone(), id).is_some() {
            return Err(Error::config(format!("parameter name {} appears twice in the graph", spec.name)));
        }
        self.params.push(Param { spec, value });
        Ok(id)
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param<E, B>)> {
        self.params.iter().enumerate()
    }
    pub fn spec(&self, id: ParamId) -> &ParamSpec {
        &self.params[id].spec
    }
    pub fn value(&self, id: ParamId) -> &Buf<E, B> {
        &self.params[id].value
    }
    pub fn value_mut(&mut self, id: ParamId) -> &mut Buf<E, B> {
        &mut self.params[id].value
    }
    /// Whether the optimiser updates this parameter and backward computes its gradient.
    pub fn is_trainable(&self, id: ParamId) -> bool {
        self.params[id].spec.trainable
    }

    /// The id of a parameter by its torchvision-style name.
    pub fn id(&self, name: &str) -> Result<ParamId> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::config(format!("the model has no parameter named {name}")))
    }

    /// Freezes (false) or unfreezes (true) a parameter. Running statistics never train.
    pub fn set_trainable(&mut self, id: ParamId, trainable: bool) -> Result<()> {
        let spec = &mut self.params[id].spec;
        if trainable && spec.kind.is_state() {
            return Err(Error::config(format!("{} is a running statistic and cannot be trained", spec.name)));
        }
        spec.trainable = trainable;
        Ok(())
    }

    /// The host copy of a parameter's values.
    pub fn get_host(&self, backend: &B, name: &str) -> Result<Vec<E>> {
        backend.download(&self.params[self.id(name)?].value)
    }

    /// Replaces a parameter's values from the host (checkpoint loading, gradient checks).
    pub fn set_host(&mut self, backend: &B, name: &str, values: &[E]) -> Result<()> {
        let id = self.id(name)?;
        let expected = self.params[id].spec.numel();
        if values.len() != expected {
            return Err(Error::shape(format!(
                "parameter {name} holds {expected} values {:?}, got {}",
                self.params[id].spec.shape,
                values.len()
            )));
        }
        self.params[id].value = backend.upload(values)?;
        Ok(())
    }

    /// Bytes of every parameter and running statistic.
    pub fn bytes(&self) -> usize {
        self.params.iter().map(|p| p.spec.numel()).sum::<usize>() * std::mem::size_of::<E>()
    }
}

/// How units read parameters during forward and backward.
impl<E: Element, B: Device<E>> ParamValues<E, B> for ParamStore<E, B> {
    fn value(&self, id: ParamId) -> &Buf<E, B> {
        ParamStore::value(self, id)
    }
    /// Mutable access to several distinct parameters at once (BN updates its running statistics
    /// while reading gamma and beta).
    fn values_mut(&mut self, ids: &[ParamId]) -> Result<Vec<&mut Buf<E, B>>> {
        let mut slots: Vec<Option<&mut Param<E, B>>> = self.params.iter_mut().map(Some).collect();
        ids.iter()
            .map(|&id| {
                let param = slots.get_mut(id).and_then(Option::take);
                param.map(|p| &mut p.value).ok_or_else(|| Error::config(format!("a layer uses the same parameter twice: {ids:?}")))
            })
            .collect()
    }
}

/// Gradients of the last backward pass, one per trainable parameter that received one.
pub struct GradStore<E: Element, B: Device<E>> {
    grads: Vec<Option<Buf<E, B>>>,
}

impl<E: Element, B: Device<E>> GradStore<E, B> {
    pub fn new(num_params: usize) -> Self {
        GradStore { grads: (0..num_params).map(|_| None).collect() }
    }
    pub fn get(&self, id: ParamId) -> Option<&Buf<E, B>> {
        self.grads.get(id).and_then(|g| g.as_ref())
    }
    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut Buf<E, B>> {
        self.grads.get_mut(id).and_then(|g| g.as_mut())
    }
    /// Ids that hold a gradient, ascending.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.grads.iter().enumerate().filter(|(_, g)| g.is_some()).map(|(id, _)| id)
    }
    /// Frees every gradient.
    pub fn clear(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
    }
    /// Adds `grad` into the gradient of `id` (parameters shared by several layers sum theirs).
    pub fn accumulate(&mut self, backend: &B, id: ParamId, grad: Buf<E, B>) -> Result<()>
    where
        B: crate::ops::ElementwiseOps<E>,
    {
        match &mut self.grads[id] {
            Some(existing) => backend.axpy(E::one(), &grad, existing),
            slot @ None => {
                *slot = Some(grad);
                Ok(())
            }
        }
    }
}
