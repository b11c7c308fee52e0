//! A model's evaluation graph as an ONNX model (opset 17): batch norm with its running
//! statistics, dropout removed, auxiliary heads dropped, a dynamic batch dimension. The input is
//! `input` (float32 [batch, C, H, W], normalised as the metadata says), the output `logits`
//! (float32 [batch, classes]). Every node kind of the zoo has a mapping; a layer whose
//! arithmetic ONNX cannot reproduce exactly is refused by name.

pub mod proto;

use super::NamedTensor;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};
use crate::ops::{Activation, AdaptivePoolGeom, NodeOp, PoolWindow};
use prost::Message;
use proto::*;

/// The operator set the model imports: 17 has every op used here (HardSwish since 14,
/// BatchNormalization's training_mode since 15).
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// Names of the graph's input and output values.
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";

/// What the model is and what its input must be, written into the model's metadata_props.
pub struct ModelDescription<'a> {
    pub model: &'a str,
    pub class_names: &'a [String],
    /// Per-channel normalisation of pixels scaled to [0, 1].
    pub mean: &'a [f32],
    pub std: &'a [f32],
}

/// The ONNX bytes of `graph`'s evaluation path to its main output, with `values` (one per
/// graph parameter, in the graph's order) as initializers.
pub fn onnx_model(graph: &Graph, values: &[NamedTensor], about: &ModelDescription) -> Result<Vec<u8>> {
    if values.len() != graph.params.len() || graph.params.iter().zip(values).any(|(p, v)| p.shape != v.shape) {
        return Err(Error::shape(format!("the values given do not match the parameters of {}", graph.name)));
    }
    let mut writer = GraphWriter::new(graph, values);
    let main = graph.main_output().node;
    let needed = evaluation_nodes(graph, main);
    for id in (1..graph.nodes.len()).filter(|&id| needed[id]) {
        let out = if id == main { OUTPUT.to_string() } else { graph.nodes[id].name.clone() };
        writer.node(id, out).map_err(|e| {
            let node = &graph.nodes[id];
            match e {
                Error::Shape(m) => Error::shape(format!("cannot export layer {} ({}) to ONNX: {m}", node.name, node.op.describe())),
                other => other,
            }
        })?;
    }
    let [c, h, w] = <[usize; 3]>::try_from(graph.input_shape()).map_err(|_| Error::shape("ONNX export needs a [C, H, W] input"))?;
    let normalisation = format!(
        "RGB order as the model was trained; x[c] = (pixel[c] / 255 - mean[c]) / std[c] with mean {:?} and std {:?}",
        about.mean, about.std
    );
    let graph_proto = GraphProto {
        node: writer.nodes,
        name: Some(graph.name.clone()),
        initializer: writer.initializers,
        doc_string: None,
        input: vec![value_info(
            INPUT,
            &[None, Some(c), Some(h), Some(w)],
            &format!("float32 [batch, {c}, {h}, {w}], NCHW; {normalisation}"),
        )],
        output: vec![value_info(
            OUTPUT,
            &[None, Some(about.class_names.len())],
            "float32 [batch, classes]; softmax gives the probabilities",
        )],
    };
    let classes = serde_json::to_string(about.class_names).expect("strings serialise");
    let metadata = [
        ("model", about.model.to_string()),
        ("input", format!("{INPUT}: float32 [batch, {c}, {h}, {w}] (NCHW), the batch dimension dynamic")),
        ("normalization", normalisation),
        ("mean", serde_json::to_string(about.mean).expect("floats serialise")),
        ("std", serde_json::to_string(about.std).expect("floats serialise")),
        ("output", format!("{OUTPUT}: float32 [batch, {}], one logit per class", about.class_names.len())),
        ("class_names", classes),
    ];
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("ferronet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "{} in evaluation mode (batch norm with running statistics, no dropout, no auxiliary heads)",
            about.model
        )),
        graph: Some(graph_proto),
        opset_import: vec![OperatorSetIdProto { domain: None, version: Some(OPSET) }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key: Some(key.into()), value: Some(value) })
            .collect(),
    };
    Ok(model.encode_to_vec())
}

/// Which nodes the main output depends on (auxiliary heads do not feed it).
fn evaluation_nodes(graph: &Graph, main: NodeId) -> Vec<bool> {
    let mut needed = vec![false; graph.nodes.len()];
    needed[main] = true;
    for id in (0..=main).rev() {
        if needed[id] {
            for &input in &graph.nodes[id].inputs {
                needed[input] = true;
            }
        }
    }
    needed
}

/// A float32 value of shape `dims`, None being the dynamic batch.
fn value_info(name: &str, dims: &[Option<usize>], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(size) => Dimension { dim_value: Some(*size as i64), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("batch".into()) },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { tensor_type: Some(TensorTypeProto { elem_type: Some(FLOAT), shape: Some(TensorShapeProto { dim }) }) }),
        doc_string: Some(doc.into()),
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: Some(ATTRIBUTE_INTS),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(value), r#type: Some(ATTRIBUTE_INT), ..Default::default() }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), f: Some(value), r#type: Some(ATTRIBUTE_FLOAT), ..Default::default() }
}

/// ONNX's pads of a 2-d window: [top, left, bottom, right].
fn pads((ph, pw): (usize, usize)) -> Vec<usize> {
    vec![ph, pw, ph, pw]
}

fn pool_attributes(window: &PoolWindow) -> Vec<AttributeProto> {
    let (k, s) = (window.kernel(), window.stride());
    vec![ints("kernel_shape", &[k.0, k.1]), ints("strides", &[s.0, s.1]), ints("pads", &pads(window.padding()))]
}

/// Emits ONNX nodes and initializers for the ferronet nodes one by one.
struct GraphWriter<'g> {
    graph: &'g Graph,
    values: &'g [NamedTensor],
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The ONNX value holding each emitted ferronet node's output.
    names: Vec<String>,
}

impl<'g> GraphWriter<'g> {
    fn new(graph: &'g Graph, values: &'g [NamedTensor]) -> Self {
        let mut names = vec![String::new(); graph.nodes.len()];
        names[0] = INPUT.into();
        GraphWriter { graph, values, nodes: Vec::new(), initializers: Vec::new(), names }
    }

    fn add(&mut self, op_type: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: Some(name.into()),
            op_type: Some(op_type.into()),
            attribute,
        });
    }

    /// An int64 constant named `name` (names of helper values contain '/', which ferronet's
    /// layer names do not, so they never collide).
    fn int64_constant(&mut self, name: &str, values: &[i64]) -> String {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(INT64),
            name: Some(name.into()),
            raw_data: Some(bytes),
        });
        name.into()
    }

    fn float_constant(&mut self, name: &str, shape: &[usize], data: &[f32]) -> String {
        self.initializers.push(float_tensor(name, shape, data));
        name.into()
    }

    /// The initializer of parameter `id` (each belongs to one layer), by name.
    fn param(&mut self, id: usize) -> String {
        let value = &self.values[id];
        self.initializers.push(float_tensor(&value.name, &value.shape, &value.data));
        value.name.clone()
    }

    /// `kind` applied to `x` as ONNX operators.
    fn activation(&mut self, kind: Activation, name: &str, x: &str, out: &str) {
        match kind {
            Activation::Relu => self.add("Relu", name, &[x], out, vec![]),
            Activation::Sigmoid => self.add("Sigmoid", name, &[x], out, vec![]),
            Activation::Hardswish => self.add("HardSwish", name, &[x], out, vec![]),
            Activation::Relu6 => {
                let low = self.float_constant(&format!("{name}/min"), &[], &[0.0]);
                let high = self.float_constant(&format!("{name}/max"), &[], &[6.0]);
                self.add("Clip", name, &[x, &low, &high], out, vec![]);
            }
            Activation::Silu => {
                let gate = format!("{name}/sigmoid");
                self.add("Sigmoid", &gate, &[x], &gate, vec![]);
                self.add("Mul", name, &[x, &gate], out, vec![]);
            }
        }
    }

    /// Reshape of `x` to `shape`, whose 0 keeps the batch dimension as it is.
    fn reshape(&mut self, name: &str, x: &str, shape: &[i64], output: &str) {
        let target = self.int64_constant(&format!("{name}/shape"), shape);
        self.add("Reshape", name, &[x, &target], output, vec![]);
    }

    /// Emits node `id` with its output named `out`; nodes that compute nothing in evaluation or on
    /// ONNX's NCHW tensors (dropout, a one-input concat, an adaptive pool to the input's own size,
    /// a layout conversion) only name their input's value, unless they are the graph's output.
    fn node(&mut self, id: NodeId, out: String) -> Result<()> {
        let graph = self.graph;
        let node = &graph.nodes[id];
        let name = node.name.as_str();
        let xs: Vec<String> = node.inputs.iter().map(|&i| self.names[i].clone()).collect();
        let x = xs[0].as_str();
        let input_shape = graph.nodes[node.inputs[0]].shape.as_slice();
        let params: Vec<String> = node.op.params().into_iter().map(|p| self.param(p)).collect();
        let mut alias = false;
        match &node.op {
            Op::Input(_) => return Err(Error::shape("the graph's input appears as a layer")),
            Op::Conv2d(conv) => {
                let cfg = conv.cfg();
                let attributes = vec![
                    ints("kernel_shape", &[cfg.kernel.0, cfg.kernel.1]),
                    ints("strides", &[cfg.stride.0, cfg.stride.1]),
                    ints("pads", &pads(cfg.padding)),
                    ints("dilations", &[cfg.dilation.0, cfg.dilation.1]),
                    int("group", cfg.groups as i64),
                ];
                let inputs: Vec<&str> = std::iter::once(x).chain(params.iter().map(String::as_str)).collect();
                match conv.activation() {
                    None => self.add("Conv", name, &inputs, &out, attributes),
                    // A folded evaluation graph's convolution with its activation fused.
                    Some(kind) => {
                        let biased = format!("{name}/conv");
                        self.add("Conv", &biased, &inputs, &biased, attributes);
                        self.activation(kind, name, &biased, &out);
                    }
                }
            }
            Op::BatchNorm2d(bn) => {
                // gamma, beta, running mean, running variance: ONNX's order too.
                let inputs: Vec<&str> = std::iter::once(x).chain(params.iter().map(String::as_str)).collect();
                self.add("BatchNormalization", name, &inputs, &out, vec![float("epsilon", bn.eps() as f32)]);
            }
            Op::BatchNormAct(fused) => {
                // A training graph's fused chain: its three ONNX ops in turn.
                let inputs: Vec<&str> = std::iter::once(x).chain(params.iter().map(String::as_str)).collect();
                let normalized = format!("{name}/bn");
                let eps = float("epsilon", fused.batch_norm().eps() as f32);
                self.add("BatchNormalization", &normalized, &inputs, &normalized, vec![eps]);
                let pre = match fused.has_residual() {
                    true => {
                        let sum = format!("{name}/add");
                        self.add("Add", &sum, &[&normalized, &xs[1]], &sum, vec![]);
                        sum
                    }
                    false => normalized,
                };
                self.activation(fused.activation(), name, &pre, &out);
            }
            Op::Activation(kind) => self.activation(*kind, name, x, &out),
            Op::MaxPool2d(pool) => {
                let mut attributes = pool_attributes(pool.window());
                attributes.push(int("ceil_mode", pool.window().ceil_mode() as i64));
                self.add("MaxPool", name, &[x], &out, attributes);
            }
            Op::AvgPool2d(pool) => {
                if pool.window().ceil_mode() {
                    // PyTorch and ONNX divide the windows that overhang the bottom or right edge in
                    // ceil mode by different counts.
                    return Err(Error::shape("average pooling in ceil mode has no exact ONNX equivalent"));
                }
                let mut attributes = pool_attributes(pool.window());
                attributes.push(int("count_include_pad", pool.count_include_pad() as i64));
                self.add("AveragePool", name, &[x], &out, attributes);
            }
            Op::AdaptiveAvgPool2d(pool) => {
                let (h, w) = (input_shape[1], input_shape[2]);
                match pool.output() {
                    (1, 1) => self.add("GlobalAveragePool", name, &[x], &out, vec![]),
                    output if output == (h, w) => alias = true,
                    (oh, ow) => {
                        // Any adaptive pooling is a fixed linear map of each plane: [N, C, H*W]
                        // times the [H*W, oh*ow] matrix of window weights.
                        let matrix = adaptive_pool_matrix((h, w), (oh, ow));
                        let matrix = self.float_constant(&format!("{name}/windows"), &[h * w, oh * ow], &matrix);
                        let (planes, pooled) = (format!("{name}/planes"), format!("{name}/pooled"));
                        self.reshape(&format!("{name}/flatten"), x, &[0, 0, -1], &planes);
                        self.add("MatMul", &format!("{name}/matmul"), &[&planes, &matrix], &pooled, vec![]);
                        self.reshape(name, &pooled, &[0, 0, oh as i64, ow as i64], &out);
                    }
                }
            }
            Op::Linear(_) => {
                let flat = if input_shape.len() == 1 {
                    x.to_string()
                } else {
                    let flat = format!("{name}/flatten");
                    self.add("Flatten", &flat, &[x], &flat, vec![int("axis", 1)]);
                    flat
                };
                let inputs: Vec<&str> = std::iter::once(flat.as_str()).chain(params.iter().map(String::as_str)).collect();
                self.add("Gemm", name, &inputs, &out, vec![int("transB", 1)]);
            }
            Op::Flatten(_) => self.add("Flatten", name, &[x], &out, vec![int("axis", 1)]),
            Op::Add(_) => self.add("Add", name, &[x, &xs[1]], &out, vec![]),
            // A [N, C, 1, 1] gate broadcasts over the plane as ONNX's Mul does.
            Op::Mul(_) | Op::MulChannel(_) => self.add("Mul", name, &[x, &xs[1]], &out, vec![]),
            Op::Concat(_) if xs.len() == 1 => alias = true,
            Op::Concat(_) => {
                let inputs: Vec<&str> = xs.iter().map(String::as_str).collect();
                self.add("Concat", name, &inputs, &out, vec![int("axis", 1)]);
            }
            Op::SliceChannels(slice) => {
                let (start, len) = slice.channel_range().expect("a channel slice has a channel range");
                let starts = self.int64_constant(&format!("{name}/starts"), &[start as i64]);
                let ends = self.int64_constant(&format!("{name}/ends"), &[(start + len) as i64]);
                let axes = self.int64_constant(&format!("{name}/axes"), &[1]);
                self.add("Slice", name, &[x, &starts, &ends, &axes], &out, vec![]);
            }
            Op::ChannelShuffle(shuffle) => {
                // torchvision's channel_shuffle: view as [N, g, C/g, H, W], swap the two channel
                // axes, view as [N, C, H, W].
                let (c, h, w) = (input_shape[0] as i64, input_shape[1] as i64, input_shape[2] as i64);
                let g = shuffle.groups() as i64;
                let (grouped, swapped) = (format!("{name}/grouped"), format!("{name}/swapped"));
                self.reshape(&format!("{name}/group"), x, &[0, g, c / g, h, w], &grouped);
                self.add("Transpose", &format!("{name}/transpose"), &[&grouped], &swapped, vec![ints("perm", &[0, 2, 1, 3, 4])]);
                self.reshape(name, &swapped, &[0, c, h, w], &out);
            }
            Op::Dropout(_) => alias = true,
            // ONNX tensors are NCHW whatever order the run stores them in: a conversion is the
            // same tensor.
            Op::Relayout(_) => alias = true,
        }
        if alias && out == OUTPUT {
            self.add("Identity", name, &[x], &out, vec![]);
        } else if alias {
            self.names[id] = x.to_string();
            return Ok(());
        }
        self.names[id] = out;
        Ok(())
    }
}

fn float_tensor(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(FLOAT),
        name: Some(name.into()),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// The [h*w, oh*ow] matrix whose column (i, j) averages adaptive pooling's window (i, j) of an
/// h x w plane (windows as `AdaptivePoolGeom::range`, PyTorch's).
fn adaptive_pool_matrix((h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    let mut matrix = vec![0.0f32; h * w * oh * ow];
    for i in 0..oh {
        let (y0, y1) = AdaptivePoolGeom::range(i, h, oh);
        for j in 0..ow {
            let (x0, x1) = AdaptivePoolGeom::range(j, w, ow);
            let weight = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
            for y in y0..y1 {
                for x in x0..x1 {
                    matrix[(y * w + x) * oh * ow + i * ow + j] = weight;
                }
            }
        }
    }
    matrix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::ops::ConvCfg;

    /// conv - BN - ReLU - dropout - linear, with an auxiliary linear head on the activations.
    fn graph_with_aux_head() -> Graph {
        let mut b = GraphBuilder::new("tiny", &[1, 6, 6]);
        let conv = b.conv2d("conv", b.input(), ConvCfg::new(2, 3)).unwrap();
        let bn = b.batch_norm2d("bn", conv, 1e-5, 0.1).unwrap();
        let relu = b.activation("relu", bn, Activation::Relu);
        let dropped = b.dropout("dropout", relu, 0.5).unwrap();
        let fc = b.linear("fc", dropped, 3, true).unwrap();
        let aux = b.linear("aux.fc", relu, 3, false).unwrap();
        b.output(fc, 1.0, false);
        b.output(aux, 0.3, true);
        b.finish().unwrap()
    }

    /// The ONNX bytes of a one-channel `graph` whose values are all 0.5.
    fn encode(graph: &Graph) -> Result<Vec<u8>> {
        let values: Vec<NamedTensor> =
            graph.params.iter().map(|p| NamedTensor { name: p.name.clone(), shape: p.shape.clone(), data: vec![0.5; p.numel()] }).collect();
        let classes: Vec<String> = (0..graph.num_classes()).map(|c| c.to_string()).collect();
        let about = ModelDescription { model: &graph.name, class_names: &classes, mean: &[0.5], std: &[0.25] };
        onnx_model(graph, &values, &about)
    }

    fn export(graph: &Graph) -> ModelProto {
        ModelProto::decode(encode(graph).unwrap().as_slice()).unwrap()
    }

    #[test]
    fn the_model_declares_opset_input_output_and_normalisation() {
        let model = export(&graph_with_aux_head());
        assert_eq!(model.opset_import[0].version, Some(OPSET));
        let graph = model.graph.unwrap();
        let input = graph.input[0].r#type.as_ref().unwrap().tensor_type.as_ref().unwrap().shape.as_ref().unwrap();
        assert_eq!(input.dim[0].dim_param.as_deref(), Some("batch"));
        assert_eq!(input.dim.iter().skip(1).map(|d| d.dim_value.unwrap()).collect::<Vec<_>>(), [1, 6, 6]);
        assert_eq!(graph.output[0].name.as_deref(), Some(OUTPUT));
        let meta = |key: &str| model.metadata_props.iter().find(|p| p.key.as_deref() == Some(key)).unwrap().value.clone().unwrap();
        assert_eq!(meta("mean"), "[0.5]");
        assert!(meta("normalization").contains("/ 255 - mean[c]) / std[c]"));
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_deref().unwrap()).collect();
        // Dropout is gone; the linear layer reads the flattened activations.
        assert_eq!(ops, ["Conv", "BatchNormalization", "Relu", "Flatten", "Gemm"]);
    }

    #[test]
    fn auxiliary_heads_are_dropped_with_their_weights() {
        let graph = export(&graph_with_aux_head()).graph.unwrap();
        assert!(graph.node.iter().all(|n| !n.name.as_deref().unwrap().starts_with("aux")), "an auxiliary head was exported");
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "fc.weight", "fc.bias"]
        );
    }

    #[test]
    fn adaptive_pool_matrix_averages_pytorch_windows() {
        // 3 -> 2: windows [0, 2) and [1, 3) overlap in the middle.
        let m = adaptive_pool_matrix((1, 3), (1, 2));
        assert_eq!(m, vec![0.5, 0.0, 0.5, 0.5, 0.0, 0.5]);
    }

    #[test]
    fn average_pooling_in_ceil_mode_is_refused_by_name() {
        let mut b = GraphBuilder::new("ceil", &[1, 5, 5]);
        let pool = b.avg_pool2d("pool", b.input(), 2, 2, 0, true, true).unwrap();
        let fc = b.linear("fc", pool, 2, true).unwrap();
        b.output(fc, 1.0, false);
        let err = encode(&b.finish().unwrap()).unwrap_err().to_string();
        assert!(err.contains("cannot export layer pool (avgpool 2x2/2 ceil) to ONNX: average pooling in ceil mode"), "{err}");
    }
}
