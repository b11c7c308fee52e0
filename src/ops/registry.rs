//! `node_ops!` turns the registration list in `ops/mod.rs` (one line per op family: its folder,
//! its backend trait, its node kinds and whether it has a `cases.rs`) into the family modules,
//! the `Backend` supertrait, the graph's node enum `Op` with one variant per node kind, `Op`'s
//! dispatch to the units, and [`families`](crate::ops::families), the families whose gradient
//! checks and benchmark cases gradcheck and the benches run.

macro_rules! node_ops {
    ($($family:ident $(: $ops:ident)? => [$($unit:ident),* $(,)?] $(+ $cases:ident)?),* $(,)?) => {
        $(
            pub mod $family;
            pub use $family::{$($ops,)? $($unit,)*};
        )*

        /// Every op family with cases, in registration order: gradcheck and the benchmarks run
        /// them in this order, which is part of each gradient check's values (they are drawn
        /// from one seeded stream).
        pub fn families() -> Vec<cases::Family> {
            vec![$($(cases::Family { name: stringify!($family), cases: &$family::$cases::Cases },)?)*]
        }

        /// Everything a device must provide to train a CNN in element type `E`.
        pub trait Backend<E: Element>: $($($ops<E> +)?)* Device<E> {}

        impl<E: Element, T> Backend<E> for T where T: $($($ops<E> +)?)* Device<E> {}

        /// A graph node's op: one variant per registered node kind, holding its unit.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $($($unit($family::$unit),)*)*
        }

        $($(
            impl From<$family::$unit> for Op {
                fn from(unit: $family::$unit) -> Op {
                    Op::$unit(unit)
                }
            }
        )*)*

        impl NodeOp for Op {
            fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
                match self { $($(Op::$unit(u) => u.output_shape(inputs),)*)* }
            }
            fn describe(&self) -> String {
                match self { $($(Op::$unit(u) => u.describe(),)*)* }
            }
            fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
                match self { $($(Op::$unit(u) => u.macs(inputs, output),)*)* }
            }
            fn params(&self) -> Vec<ParamId> {
                match self { $($(Op::$unit(u) => u.params(),)*)* }
            }
            fn learnable_params(&self) -> Vec<ParamId> {
                match self { $($(Op::$unit(u) => u.learnable_params(),)*)* }
            }
            fn aliases_input(&self, training: bool, inputs: usize) -> bool {
                match self { $($(Op::$unit(u) => u.aliases_input(training, inputs),)*)* }
            }
            fn channel_range(&self) -> Option<(usize, usize)> {
                match self { $($(Op::$unit(u) => u.channel_range(),)*)* }
            }
            fn reads_stored(&self, layout: $crate::shape::Layout) -> bool {
                match self { $($(Op::$unit(u) => u.reads_stored(layout),)*)* }
            }
            fn kept_inputs(&self, inputs: usize, trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
                match self { $($(Op::$unit(u) => u.kept_inputs(inputs, trainable),)*)* }
            }
            fn saved_bytes(&self, training: bool, output: &[usize], n: usize, elem: usize) -> usize {
                match self { $($(Op::$unit(u) => u.saved_bytes(training, output, n, elem),)*)* }
            }
            fn workspace_bytes(&self, inputs: &[&[usize]], n: usize, elem: usize, workspace: $crate::device::ConvWorkspace, layout: $crate::shape::Layout) -> Result<usize> {
                match self { $($(Op::$unit(u) => u.workspace_bytes(inputs, n, elem, workspace, layout),)*)* }
            }
            fn grad_flow(&self, inputs: usize) -> GradFlow {
                match self { $($(Op::$unit(u) => u.grad_flow(inputs),)*)* }
            }
            fn forward<E: Element, B: Backend<E>>(
                &self,
                ctx: &mut ForwardCtx<'_, E, B>,
                xs: &[&B::Buf],
            ) -> Result<(B::Buf, Saved<E, B>)> {
                match self { $($(Op::$unit(u) => u.forward(ctx, xs),)*)* }
            }
            fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
                match self { $($(Op::$unit(u) => u.backward(ctx, dy),)*)* }
            }
        }
    };
}
