//! The tape: per node, what a training forward kept for that node's backward.

use super::Buf;
use crate::element::Element;
use crate::ops::node::Saved;
use crate::ops::Backend;
use std::sync::Arc;

/// An activation. Shared so that Flatten, eval-mode Dropout and the tape can hold the same
/// buffer without copying it; the buffer is freed when its last holder lets go.
pub type Value<E, B> = Arc<Buf<E, B>>;

pub struct Record<E: Element, B: Backend<E>> {
    /// The node's input values the plan keeps (None where backward does not read them).
    pub inputs: Vec<Option<Value<E, B>>>,
    /// What the forward made for backward.
    pub saved: Saved<E, B>,
}

/// One optional record per node, indexed by node id; backward replays it in reverse.
pub type Tape<E, B> = Vec<Option<Record<E, B>>>;
