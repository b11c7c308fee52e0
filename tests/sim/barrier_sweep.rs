//! The barrier sweep: every `__syncthreads()` in kernels/ is deleted in turn, in a copy of each
//! module that inlines it, one changed kernel at a time, and a probe that reaches a kernel the
//! deletion changed must fail with the sanitizer's race report naming that kernel — or the
//! barrier was unnecessary, and is to be removed with the reasoning in a comment.
//! Probes are the gradient-check cases and the metric, optimiser and tensor-core probes below
//! (kernels with no gradient: the training and evaluation figures, the optimiser's update, the
//! tensor-core GEMM, which no op uses yet, and the convolution GEMMs' tensor-core tiles, which
//! only a run at reduced precision reaches). Barriers are found by scanning kernels/ (a new one is
//! swept without touching this test) and the probes reaching a kernel by running every probe
//! once, so a barrier in kernels that no probe reaches fails the sweep too.

use ferronet::device::modules::{self, KernelModule, PtxSource, MODULES};
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::gradcheck::all_cases;
use ferronet::ops::loss::{eval_words, train_words, LossOps};
use ferronet::sim::{SimDriver, SimOptions};
use ferronet_test_support::parallel::map_on_all_cores;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const BARRIER: &str = "__syncthreads()";

/// One `__syncthreads()` call in a file of kernels/.
struct Barrier {
    file: String,
    /// 1-based.
    line: usize,
    /// The file's text from the barrier's line to its end, and the same with the call deleted:
    /// build.rs inlines each file's lines verbatim into the embedded module sources, so the
    /// module's copy with this barrier deleted is its source with one replaced by the other.
    tail: String,
    tail_without: String,
}

impl Barrier {
    fn site(&self) -> String {
        format!("kernels/{}:{}", self.file, self.line)
    }
}

/// Every `__syncthreads()` outside `//` comments in kernels/*.cu and kernels/*.cuh.
fn barriers() -> Vec<Barrier> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu" || e == "cuh"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for (column, _) in code.match_indices(BARRIER) {
                let rest = lines[i + 1..].iter().map(|l| format!("\n{l}")).collect::<String>();
                let edited = format!("{}{}", &line[..column], &line[column + BARRIER.len()..]);
                found.push(Barrier {
                    file: path.file_name().and_then(|n| n.to_str()).expect("UTF-8 file names").to_string(),
                    line: i + 1,
                    tail: format!("{line}{rest}"),
                    tail_without: format!("{edited}{rest}"),
                });
            }
        }
    }
    found
}

/// Each kernel entry of a PTX module: (name, its text from `.entry` to its closing brace).
fn entries(ptx: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(start) = rest.find(".entry ") {
        let from = &rest[start..];
        let name = from[".entry ".len()..].split('(').next().expect("an entry has parameters").trim().to_string();
        let end = from.find("\n}\n").map_or(from.len(), |e| e + 3);
        out.push((name, &from[..end]));
        rest = &from[end..];
    }
    out
}

fn barrier_count(entry: &str) -> usize {
    entry.matches("bar.sync").count() + entry.matches("barrier.sync").count()
}

/// Something run on a GPU backend that launches kernels and checks nothing itself: the
/// sanitizer's reports are the verdict.
struct Probe {
    name: String,
    run: Box<dyn Fn(&GpuBackend) -> ferronet::Result<()>>,
}

/// Every gradient-check case in f32.
fn gradient_probes() -> Vec<Probe> {
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    all_cases()
        .into_iter()
        .map(|case| {
            let name = format!("{} {}", case.op, case.config);
            let inputs: Vec<Vec<f32>> = case.inputs.iter().map(|v| narrow(v)).collect();
            let dy = narrow(&case.dy);
            Probe { name, run: Box::new(move |gpu| case.run(gpu, &inputs, &dy).map(drop)) }
        })
        .collect()
}

/// The training and evaluation figures of a batch of 300 rows: more than one warp per block,
/// and more rows than accumulate_eval's block (so its loop goes round twice).
fn metric_probes() -> Vec<Probe> {
    const ROWS: usize = 300;
    const CLASSES: usize = 10;
    let logits: Vec<f32> = (0..ROWS * CLASSES).map(|i| ((i * 37 % 101) as f32 - 50.0) / 10.0).collect();
    let labels: Vec<u32> = (0..ROWS).map(|i| (i * 7 % CLASSES) as u32).collect();
    let (train_logits, train_labels) = (logits.clone(), labels.clone());
    vec![
        Probe {
            name: format!("finish_train_step of {ROWS} rows"),
            run: Box::new(move |gpu| {
                let mut words = gpu.upload_idx(&[0; train_words::LEN])?;
                gpu.finish_train_step(&gpu.upload(&train_logits)?, &gpu.upload_idx(&train_labels)?, ROWS, CLASSES, &mut words)
            }),
        },
        Probe {
            name: format!("accumulate_eval of {ROWS} rows"),
            run: Box::new(move |gpu| {
                let mut words = gpu.upload_idx(&vec![0; eval_words::len(CLASSES)])?;
                gpu.accumulate_eval(&gpu.upload(&logits)?, &gpu.upload_idx(&labels)?, ROWS, CLASSES, &mut words)
            }),
        },
    ]
}

/// One clipped multi-tensor Adam step over two tensors of 3000 and 700 values: blocks of 256
/// threads, whose update reads the bias corrections thread 0 computed from the device's step count.
fn optimiser_probes() -> Vec<Probe> {
    use ferronet::ops::optim::{TensorSlot, CLIP_STATE_LEN};
    use ferronet::ops::{AdamParams, OptimOps};
    vec![Probe {
        name: "clipped adam_multi_step over tensors of 3000 and 700".into(),
        run: Box::new(|gpu| {
            let values = |n: usize| (0..n).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect::<Vec<f32>>();
            let (mut p, mut q) = (gpu.upload(&values(3000))?, gpu.upload(&values(700))?);
            let (g, g2) = (gpu.upload(&values(3000))?, gpu.upload(&values(700))?);
            let (mut m, mut v, mut m2, mut v2) = (gpu.zeros(3000)?, gpu.zeros(3000)?, gpu.zeros(700)?, gpu.zeros(700)?);
            let mut slots = vec![
                TensorSlot { param: &mut p, grad: &g, first: Some(&mut m), second: Some(&mut v), weight_decay: 0.01, group: 0 },
                TensorSlot { param: &mut q, grad: &g2, first: Some(&mut m2), second: Some(&mut v2), weight_decay: 0.0, group: 0 },
            ];
            let (mut table, mut clip) = (None, gpu.zeros(CLIP_STATE_LEN)?);
            gpu.sync_table(&mut table, &slots)?;
            let table = table.as_ref().expect("sync_table builds it");
            let mut steps = gpu.upload_idx(&[4])?;
            gpu.clip_grad_norm(table, &slots, 1.0, &mut clip)?;
            gpu.advance_steps(&mut steps, Some(&clip))?;
            let h = AdamParams { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true };
            gpu.adam_multi_step(table, &mut slots, 0, &h, &steps, Some(&clip))
        }),
    }]
}

/// The tensor-core GEMM of each input format and tile on a product of several blocks each way
/// and four stages of K (the pipeline's buffers wrap).
fn tensor_core_probes() -> Vec<Probe> {
    use ferronet::ops::gemm::tc::{gemm_tc_half, gemm_tc_tf32, to_bits, TcGemm, TcInput, TcTile};
    [TcInput::Bf16, TcInput::F16, TcInput::Tf32]
        .into_iter()
        .flat_map(|input| [TcTile::Rows128, TcTile::Rows64].map(|tile| (input, tile)))
        .map(|(input, tile)| Probe {
            name: format!("tensor-core {} GEMM 130x136x128 on {}-row tiles", input.name(), tile.rows()),
            run: Box::new(move |gpu| {
                let shape = TcGemm { input, m: 130, n: 136, k: 128 };
                let values = |n: usize| (0..n).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect::<Vec<f32>>();
                let mut c = gpu.alloc::<f32>(130 * 136)?;
                match input {
                    TcInput::Tf32 => gemm_tc_tf32(gpu, shape, Some(tile), &gpu.upload_slice(&values(130 * 128))?, &gpu.upload_slice(&values(128 * 136))?, &mut c),
                    _ => {
                        let (a, b) = (to_bits(input, &values(130 * 128))?, to_bits(input, &values(128 * 136))?);
                        gemm_tc_half(gpu, shape, Some(tile), &gpu.upload_slice(&a)?, &gpu.upload_slice(&b)?, &mut c)
                    }
                }
            }),
        })
        .collect()
}

/// A 3x3 convolution's forward and both gradients at bf16 on the tensor-core tiles, stride 1
/// and 2 (the direct and the phase data gradient): several blocks each way and three stages of
/// K (C_in 8 x 9 taps), so both buffers of the tiles are written while the other is read.
fn tensor_core_conv_probes() -> Vec<Probe> {
    use ferronet::ops::{ConvGeom, ConvOps, PrecisionOps};
    use ferronet::precision::Precision;
    [1, 2]
        .into_iter()
        .map(|stride| Probe {
            name: format!("bf16 tensor-core 3x3 convolution, stride {stride}, forward and gradients"),
            run: Box::new(move |gpu| {
                let g = ConvGeom::new(2, 8, (12, 10), 72, (3, 3), (stride, stride), (1, 1), (1, 1), 1)?;
                let values = |n: usize| (0..n).map(|i| Precision::Bf16.round(((i * 13 % 29) as f32 - 14.0) / 7.0)).collect::<Vec<f32>>();
                gpu.declare_gemm_operand_format(Precision::Bf16);
                let (x, w, dy) = (gpu.upload(&values(g.x_len()))?, gpu.upload(&values(g.weight_len()))?, gpu.upload(&values(g.y_len()))?);
                gpu.conv2d_forward(&x, &w, None, &g)?;
                gpu.conv2d_backward_data(&dy, &w, &g)?;
                gpu.conv2d_backward_filter(&x, &dy, &g).map(drop)
            }),
        })
        .collect()
}

/// Every probe, in a fixed order: each sweeping thread builds its own (a probe need not be `Sync`).
fn probes() -> Vec<Probe> {
    gradient_probes()
        .into_iter()
        .chain(metric_probes())
        .chain(optimiser_probes())
        .chain(tensor_core_probes())
        .chain(tensor_core_conv_probes())
        .collect()
}

/// The kernels each probe of `probes()` launches, from one clean run of every probe on the
/// sanitizing simulator.
fn kernels_per_probe() -> Vec<BTreeSet<String>> {
    probes()
        .into_iter()
        .map(|probe| {
            let driver = Arc::new(SimDriver::new(SimOptions::default()));
            (probe.run)(&GpuBackend::new(driver.clone())).unwrap_or_else(|e| panic!("{} fails before any barrier is deleted: {e}", probe.name));
            driver.take_launch_stats().into_iter().map(|s| s.kernel).collect()
        })
        .collect()
}

/// The verdict on `kernel` of `module` with its entry taken from `edited_ptx`: Ok(the probe whose
/// race report named it) or Err(why not).
fn sweep_kernel(module: &str, kernel: &str, original_ptx: &str, edited_entry: &str, probes: &[Probe], reach: &[BTreeSet<String>]) -> Result<String, String> {
    let (_, original_entry) = entries(original_ptx).into_iter().find(|(name, _)| name == kernel).expect("the kernel is in both PTX");
    let spliced = original_ptx.replacen(original_entry, edited_entry, 1);
    let qualified = format!("{module}::{kernel}");
    let mut reached = 0;
    for (probe, _) in probes.iter().zip(reach).filter(|(_, kernels)| kernels.contains(&qualified)) {
        reached += 1;
        let driver = Arc::new(SimDriver::new(SimOptions::default()));
        driver.load_ptx(module, &spliced).unwrap_or_else(|e| panic!("{e}"));
        match (probe.run)(&GpuBackend::new(driver)) {
            Err(ferronet::Error::KernelFault { kernel: k, detail }) if k == qualified && detail.contains("data race") => {
                return Ok(probe.name.clone());
            }
            Err(e) => return Err(format!("{} fails with another error: {e}", probe.name)),
            Ok(()) => {}
        }
    }
    Err(if reached == 0 { "no probe reaches it".into() } else { format!("none of the {reached} probes reaching it reports a race") })
}

/// A barrier is necessary when deleting it makes a probe fail with a race report in a kernel that
/// contains it. A barrier in a helper inlined into several kernels (ferro_block_reduce) need not
/// be necessary in every one of them: a kernel that reduces only once and uses the result in one
/// thread, or whose probes launch a single warp per block, runs race-free without it; those
/// kernels are listed (`--nocapture`) but do not fail the sweep.
/// What deleting one barrier did to the kernels of one module holding it: the kernels a probe
/// reported a race in (with the probe), and the others (with why not).
struct ModuleVerdict {
    caught: Vec<String>,
    missed: Vec<String>,
}

/// Deletes `barrier` from `module`'s source, recompiles it and sweeps each kernel whose barrier
/// count fell; None when no kernel of the module calls the code holding the barrier.
fn sweep_module(barrier: &Barrier, module: &KernelModule, probes: &[Probe], reach: &[BTreeSet<String>]) -> Option<ModuleVerdict> {
    let original_ptx = modules::ptx(module.name, module.compute_capability, PtxSource::EmbeddedFirst).unwrap_or_else(|e| panic!("{e}"));
    let before: Vec<(String, usize)> = entries(&original_ptx).into_iter().map(|(n, e)| (n, barrier_count(e))).collect();
    if before.iter().all(|&(_, count)| count == 0) {
        return None;
    }
    let edited_source = module.source.replacen(&barrier.tail, &barrier.tail_without, 1);
    let edited_ptx = ferronet_test_support::sim::compile_for(module.name, &edited_source, module.compute_capability);
    let mut verdict = ModuleVerdict { caught: Vec::new(), missed: Vec::new() };
    for (kernel, edited_entry) in entries(&edited_ptx) {
        let had = before.iter().find(|(n, _)| *n == kernel).map(|&(_, c)| c);
        if had.is_none_or(|c| c == barrier_count(edited_entry)) {
            continue; // the barrier is not in this kernel (an inlined helper it does not call)
        }
        match sweep_kernel(module.name, &kernel, &original_ptx, edited_entry, probes, reach) {
            Ok(probe) => verdict.caught.push(format!("{}::{kernel} (by {probe})", module.name)),
            Err(why) => verdict.missed.push(format!("{}::{kernel} ({why})", module.name)),
        }
    }
    Some(verdict)
}

/// A barrier is necessary when deleting it makes a probe fail with a race report in a kernel that
/// contains it. A barrier in a helper inlined into several kernels (ferro_block_reduce) need not
/// be necessary in every one of them: a kernel that reduces only once and uses the result in one
/// thread, or whose probes launch a single warp per block, runs race-free without it; those
/// kernels are listed (`--nocapture`) but do not fail the sweep. Each (barrier, module) pair is
/// a recompile and its probes, independent of the others: they are shared out among the host's
/// threads, each with its own probes.
#[test]
fn deleting_any_barrier_makes_a_probe_reaching_its_kernels_report_a_race() {
    let barriers = barriers();
    assert!(!barriers.is_empty(), "no __syncthreads() found in kernels/");
    let reach = kernels_per_probe();
    let mut work = Vec::new();
    for (b, barrier) in barriers.iter().enumerate() {
        for module in MODULES {
            match module.source.matches(barrier.tail.as_str()).count() {
                0 => {}
                1 => work.push((b, module)),
                n => panic!("{} appears {n} times in module {}", barrier.site(), module.name),
            }
        }
    }
    // In the order of `work`.
    let verdicts = map_on_all_cores(&work, probes, |probes, &(b, module)| sweep_module(&barriers[b], module, probes, &reach));
    let mut unreported = Vec::new();
    for (b, barrier) in barriers.iter().enumerate() {
        let of_barrier = || work.iter().zip(&verdicts).filter(move |((v, _), _)| *v == b).filter_map(|(_, verdict)| verdict.as_ref());
        let caught: Vec<&str> = of_barrier().flat_map(|v| v.caught.iter().map(String::as_str)).collect();
        let missed: Vec<&str> = of_barrier().flat_map(|v| v.missed.iter().map(String::as_str)).collect();
        eprintln!("{} deleted: race reported in {}; not in {}", barrier.site(), caught.join(", "), missed.join(", "));
        if caught.is_empty() {
            unreported.push(format!("{}: kernels containing it: {}", barrier.site(), if missed.is_empty() { "none".into() } else { missed.join(", ") }));
        }
    }
    assert!(
        unreported.is_empty(),
        "barriers whose deletion no probe reports as a race (add a probe that reaches the kernel with more than one warp \
         per block, or remove an unnecessary barrier with the reasoning in a comment):\n{}",
        unreported.join("\n")
    );
}
