//! The tape: per node, what a training forward kept for that node's backward.

use super::{Buf, IdxBuf};
use crate::element::Element;
use crate::ops::{Backend, BatchNormSaved};
use std::sync::Arc;

/// An activation. Shared so that Flatten, eval-mode Dropout and the tape can hold the same
/// buffer without copying it; the buffer is freed when its last holder lets go.
pub type Value<E, B> = Arc<Buf<E, B>>;

/// Buffers a forward creates only for its backward.
pub enum Extra<E: Element, B: Backend<E>> {
    None,
    /// Max-pool argmax per output.
    Indices(IdxBuf<E, B>),
    /// Dropout's scaled keep mask.
    Mask(Buf<E, B>),
    /// Batch-norm batch mean and inverse std.
    BnStats(BatchNormSaved<Buf<E, B>>),
}

pub struct Record<E: Element, B: Backend<E>> {
    /// The node's input values the plan keeps (None where backward does not read them).
    pub inputs: Vec<Option<Value<E, B>>>,
    pub extra: Extra<E, B>,
}

/// One optional record per node, indexed by node id; backward replays it in reverse.
pub type Tape<E, B> = Vec<Option<Record<E, B>>>;
