//! The register/spill gate: every embedded kernel module is assembled by ptxas for each of sm_75,
//! sm_80, sm_86, sm_89 and sm_90 whose devices load it: a module built for compute_75 alone (it
//! serves every GPU) for all five; one of several builds of a source from its architecture up to
//! the next build's (the tensor-core modules' compute_75 build is Turing's alone, their
//! compute_80 build Ampere's to Hopper's). Any spill or
//! local-memory use fails the test. The per-kernel resources are tabled
//! in the committed kernels/RESOURCES.md, which the test checks against what ptxas reports: a
//! stale table fails, naming the command that regenerates it,
//! `FERRONET_WRITE_RESOURCES=1 cargo test --release --test cli ptxas_gate`. Only with that variable
//! set does the test write the file (and only when it changes, so the build script that watches
//! kernels/ is not retriggered needlessly); a normal run never modifies tracked files.
//!
//! ptxas is $FERRONET_PTXAS or the one in the `nvidia-cuda-nvcc-cu12` PyPI wheel of python3. A
//! missing ptxas fails the test: CI installs it.

use ferronet_test_support::parallel::map_on_all_cores;

use ferronet::device::modules::{KernelModule, MODULES};
use ferronet::device::nvrtc::python_wheel_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every architecture gated, from Turing to Hopper.
const GATED: [((i32, i32), &str); 5] = [((7, 5), "sm_75"), ((8, 0), "sm_80"), ((8, 6), "sm_86"), ((8, 9), "sm_89"), ((9, 0), "sm_90")];

/// The architectures a module is assembled for (see the module comment).
fn arches(module: &KernelModule) -> Vec<&'static str> {
    let builds: Vec<(i32, i32)> = MODULES.iter().filter(|m| m.name == module.name).map(|m| m.compute_capability).collect();
    let next = builds.into_iter().filter(|&cc| cc > module.compute_capability).min();
    GATED.iter().filter(|&&(cc, _)| cc >= module.compute_capability && next.is_none_or(|next| cc < next)).map(|&(_, arch)| arch).collect()
}

/// Set to 1 to write kernels/RESOURCES.md instead of checking it.
const WRITE_RESOURCES: &str = "FERRONET_WRITE_RESOURCES";
/// The command that regenerates kernels/RESOURCES.md.
const REGENERATE: &str = "FERRONET_WRITE_RESOURCES=1 cargo test --release --test cli ptxas_gate";

fn ptxas_path() -> PathBuf {
    if let Ok(p) = std::env::var("FERRONET_PTXAS") {
        return PathBuf::from(p);
    }
    match python_wheel_dir("nvidia.cuda_nvcc") {
        Some(dir) => dir.join("bin").join("ptxas"),
        None => {
            panic!("ptxas not found: set FERRONET_PTXAS or `pip install nvidia-cuda-nvcc-cu12==12.9.86` for python3")
        }
    }
}

/// One kernel's resources as ptxas -v reports them.
#[derive(Debug, Default, PartialEq)]
struct KernelResources {
    module: String,
    kernel: String,
    arch: String,
    registers: u32,
    shared_bytes: u32,
    stack_bytes: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// The integer just before `unit` in `line` ("23 registers" -> 23), or 0 when absent.
fn number_before(line: &str, unit: &str) -> u32 {
    let Some(end) = line.find(unit) else { return 0 };
    let digits: String = line[..end]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

/// Parses ptxas -v output: "Compiling entry function 'k' for 'sm_75'" opens a kernel, the
/// "N bytes stack frame, S bytes spill stores, L bytes spill loads" and "Used R registers, ...
/// B bytes smem" lines fill it in.
fn parse_ptxas(module: &str, arch: &str, log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(KernelResources { module: module.into(), kernel, arch: arch.into(), ..Default::default() });
        } else if let Some(current) = out.last_mut() {
            if line.contains("bytes stack frame") {
                current.stack_bytes = number_before(line, "bytes stack frame");
                current.spill_stores = number_before(line, "bytes spill stores");
                current.spill_loads = number_before(line, "bytes spill loads");
            } else if line.contains("Used") && line.contains("registers") {
                current.registers = number_before(line, "registers");
                current.shared_bytes = number_before(line, "bytes smem");
            }
        }
    }
    out
}

/// Assembles one module for one architecture; returns the kernels' resources and the problems
/// found (ptxas failures, warnings, spills, local memory).
fn assemble(ptxas: &Path, module: &KernelModule, arch: &str, problems: &mut Vec<String>) -> Vec<KernelResources> {
    let Some(ptx) = module.ptx else {
        problems.push(format!("module {}: no build-time PTX (NVRTC was missing when ferronet was built)", module.name));
        return Vec::new();
    };
    let file = std::env::temp_dir().join(format!("ferronet-gate-{}-{}-{}{}-{arch}.ptx", std::process::id(), module.name, module.compute_capability.0, module.compute_capability.1));
    std::fs::write(&file, ptx).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    let result = Command::new(ptxas)
        .arg(format!("-arch={arch}"))
        .args(["-v", "--warn-on-local-memory-usage", "--warn-on-spills", "-o", "/dev/null"])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let output = result.unwrap_or_else(|e| {
        panic!("cannot run ptxas at {}: {e} (set FERRONET_PTXAS or install nvidia-cuda-nvcc-cu12)", ptxas.display())
    });
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        problems.push(format!("module {} ({arch}): ptxas failed:\n{log}", module.name));
        return Vec::new();
    }
    for warning in log.lines().filter(|l| l.contains("warning")) {
        problems.push(format!("module {} ({arch}): {warning}", module.name));
    }
    let kernels = parse_ptxas(module.name, arch, &log);
    for k in &kernels {
        if k.stack_bytes > 0 || k.spill_stores > 0 || k.spill_loads > 0 {
            problems.push(format!(
                "{}::{} ({arch}): {} bytes stack, {} bytes spill stores, {} bytes spill loads",
                k.module, k.kernel, k.stack_bytes, k.spill_stores, k.spill_loads
            ));
        }
    }
    kernels
}

fn markdown(rows: &[KernelResources]) -> String {
    let mut md = String::from(
        "# Kernel resources\n\nGenerated by `FERRONET_WRITE_RESOURCES=1 cargo test --release --test cli ptxas_gate` (ptxas -v on the embedded PTX); do not edit.\n\n\
         | module | kernel | arch | registers | shared memory (bytes) | stack (bytes) | spills (stores/loads, bytes) |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {}/{} |\n",
            r.module, r.kernel, r.arch, r.registers, r.shared_bytes, r.stack_bytes, r.spill_stores, r.spill_loads
        ));
    }
    md
}

#[test]
fn every_kernel_assembles_without_spills_or_local_memory() {
    let ptxas = ptxas_path();
    assert!(
        ptxas.is_file(),
        "ptxas not found at {} (set FERRONET_PTXAS or install nvidia-cuda-nvcc-cu12)",
        ptxas.display()
    );
    assert!(!MODULES.is_empty(), "no kernel modules are embedded");
    // ptxas is single-threaded: the assemblies are shared among the machine's cores.
    let jobs: Vec<(&KernelModule, &str)> = MODULES.iter().flat_map(|m| arches(m).into_iter().map(move |a| (m, a))).collect();
    let assembled = map_on_all_cores(&jobs, || (), |_, &(module, arch)| {
        let mut problems = Vec::new();
        let rows = assemble(&ptxas, module, arch, &mut problems);
        (problems, rows)
    });
    let (mut problems, mut rows) = (Vec::new(), Vec::new());
    for (p, r) in assembled {
        problems.extend(p);
        rows.extend(r);
    }
    problems.sort();
    rows.sort_by(|a, b| (&a.module, &a.kernel, &a.arch).cmp(&(&b.module, &b.kernel, &b.arch)));

    let table = markdown(&rows);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels").join("RESOURCES.md");
    let committed = std::fs::read_to_string(&path).ok();
    if committed.as_deref() != Some(table.as_str()) {
        if std::env::var(WRITE_RESOURCES).as_deref() == Ok("1") {
            std::fs::write(&path, &table).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        } else {
            problems.push(format!(
                "{} is missing or stale (it differs from what ptxas reports); regenerate it with `{REGENERATE}`",
                path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "ptxas gate failed:\n{}", problems.join("\n"));
}

#[test]
fn parses_ptxas_verbose_output() {
    let log = "ptxas info    : Compiling entry function 'bn_backward' for 'sm_75'\n\
               ptxas info    : Function properties for bn_backward\n\
               \x20   8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
               ptxas info    : Used 21 registers, used 1 barriers, 132 bytes smem, 428 bytes cmem[0]\n\
               ptxas info    : Compiling entry function 'fill' for 'sm_75'\n\
               ptxas info    : Used 6 registers, 356 bytes cmem[0]\n";
    let parsed = parse_ptxas("norm", "sm_75", log);
    assert_eq!(parsed.len(), 2);
    assert_eq!(
        parsed[0],
        KernelResources {
            module: "norm".into(),
            kernel: "bn_backward".into(),
            arch: "sm_75".into(),
            registers: 21,
            shared_bytes: 132,
            stack_bytes: 8,
            spill_stores: 4,
            spill_loads: 12,
        }
    );
    assert_eq!((parsed[1].kernel.as_str(), parsed[1].registers, parsed[1].shared_bytes), ("fill", 6, 0));
}
