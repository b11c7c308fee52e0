//! Ops that change a tensor's shape without touching its data: flatten ([N, C, H, W] ->
//! [N, C*H*W]) is a view of its input, so it has no kernel and no backend trait.

pub mod cases;
