//! The barrier sweep: every `__syncthreads()` in kernels/ is deleted in turn, in a copy of each
//! module that inlines it, one changed kernel at a time, and a gradient-check case that reaches a
//! kernel the deletion changed must fail with the sanitizer's race report naming that kernel —
//! or the barrier was unnecessary, and is to be removed with the reasoning in a comment.
//! Barriers are found by scanning kernels/ (a new one is swept without touching this test) and
//! the cases reaching a kernel by running every gradient-check case once, so a barrier in kernels
//! that no case reaches fails the sweep too.

use ferronet::device::modules::{self, PtxSource, MODULES};
use ferronet::device::nvrtc::BASE_COMPUTE_CAPABILITY;
use ferronet::gpu::GpuBackend;
use ferronet::gradcheck::{all_cases, GradCase};
use ferronet::sim::{SimDriver, SimOptions};
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

/// The cases that reach each kernel: (case, the kernels it launched), from one clean run of
/// every gradient-check case on the sanitizing simulator.
fn kernels_per_case() -> Vec<(GradCase, BTreeSet<String>)> {
    all_cases()
        .into_iter()
        .map(|case| {
            let driver = Arc::new(SimDriver::new(SimOptions::default()));
            run(&case, &driver).unwrap_or_else(|e| panic!("{} {} fails before any barrier is deleted: {e}", case.op, case.config));
            let kernels = driver.take_launch_stats().into_iter().map(|s| s.kernel).collect();
            (case, kernels)
        })
        .collect()
}

/// Runs `case` in f32 on a GPU backend over `driver`.
fn run(case: &GradCase, driver: &Arc<SimDriver>) -> ferronet::Result<()> {
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let inputs: Vec<Vec<f32>> = case.inputs.iter().map(|v| narrow(v)).collect();
    case.run(&GpuBackend::new(driver.clone()), &inputs, &narrow(&case.dy)).map(drop)
}

/// The verdict on `kernel` of `module` with its entry taken from `edited_ptx`: Ok(the case whose
/// race report named it) or Err(why not).
fn sweep_kernel(module: &str, kernel: &str, original_ptx: &str, edited_entry: &str, probes: &[(GradCase, BTreeSet<String>)]) -> Result<String, String> {
    let (_, original_entry) = entries(original_ptx).into_iter().find(|(name, _)| name == kernel).expect("the kernel is in both PTX");
    let spliced = original_ptx.replacen(original_entry, edited_entry, 1);
    let qualified = format!("{module}::{kernel}");
    let mut reached = 0;
    for (case, _) in probes.iter().filter(|(_, kernels)| kernels.contains(&qualified)) {
        reached += 1;
        let driver = Arc::new(SimDriver::new(SimOptions::default()));
        driver.load_ptx(module, &spliced).unwrap_or_else(|e| panic!("{e}"));
        match run(case, &driver) {
            Err(ferronet::Error::KernelFault { kernel: k, detail }) if k == qualified && detail.contains("data race") => {
                return Ok(format!("{} {}", case.op, case.config));
            }
            Err(e) => return Err(format!("case {} {} fails with another error: {e}", case.op, case.config)),
            Ok(()) => {}
        }
    }
    Err(if reached == 0 { "no gradient-check case reaches it".into() } else { format!("none of the {reached} cases reaching it reports a race") })
}

/// A barrier is necessary when deleting it makes a case fail with a race report in a kernel that
/// contains it. A barrier in a helper inlined into several kernels (ferro_block_reduce) need not
/// be necessary in every one of them: a kernel that reduces only once and uses the result in one
/// thread, or whose cases launch a single warp per block, runs race-free without it; those
/// kernels are listed (`--nocapture`) but do not fail the sweep.
#[test]
fn deleting_any_barrier_makes_a_case_reaching_its_kernels_report_a_race() {
    let barriers = barriers();
    assert!(!barriers.is_empty(), "no __syncthreads() found in kernels/");
    let probes = kernels_per_case();
    let mut unreported = Vec::new();
    for barrier in &barriers {
        let (mut caught, mut missed) = (Vec::new(), Vec::new());
        for module in MODULES {
            match module.source.matches(barrier.tail.as_str()).count() {
                0 => continue,
                1 => {}
                n => panic!("{} appears {n} times in module {}", barrier.site(), module.name),
            }
            let original_ptx = modules::ptx(module.name, BASE_COMPUTE_CAPABILITY, PtxSource::EmbeddedFirst).unwrap_or_else(|e| panic!("{e}"));
            let before: Vec<(String, usize)> = entries(&original_ptx).into_iter().map(|(n, e)| (n, barrier_count(e))).collect();
            if before.iter().all(|&(_, count)| count == 0) {
                continue; // no kernel of the module calls the helper holding the barrier
            }
            let edited_source = module.source.replacen(&barrier.tail, &barrier.tail_without, 1);
            let edited_ptx = ferronet_test_support::sim::compile(module.name, &edited_source);
            for (kernel, edited_entry) in entries(&edited_ptx) {
                let had = before.iter().find(|(n, _)| *n == kernel).map(|&(_, c)| c);
                if had.is_none_or(|c| c == barrier_count(edited_entry)) {
                    continue; // the barrier is not in this kernel (an inlined helper it does not call)
                }
                match sweep_kernel(module.name, &kernel, &original_ptx, edited_entry, &probes) {
                    Ok(case) => caught.push(format!("{}::{kernel} (by {case})", module.name)),
                    Err(why) => missed.push(format!("{}::{kernel} ({why})", module.name)),
                }
            }
        }
        eprintln!("{} deleted: race reported in {}; not in {}", barrier.site(), caught.join(", "), missed.join(", "));
        if caught.is_empty() {
            unreported.push(format!("{}: kernels containing it: {}", barrier.site(), if missed.is_empty() { "none".into() } else { missed.join(", ") }));
        }
    }
    assert!(
        unreported.is_empty(),
        "barriers whose deletion no case reports as a race (add a case that reaches the kernel with more than one warp \
         per block, or remove an unnecessary barrier with the reasoning in a comment):\n{}",
        unreported.join("\n")
    );
}
