//! The import rule of the crate, checked on its own source: a top-level module may use only
//! modules of a lower layer (peers of one layer do not use each other), so there is no upward
//! import and no cycle between folders.

/// Top-level modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["element", "precision", "rng", "shape", "tolerance", "dist"],
    &["device"],
    &["cpu", "gpu", "sim"],
    &["ops", "select"],
    &["graph"],
    &["exec"],
    &["models", "data", "gradcheck", "weights"],
    &["train", "bench"],
    &["study"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The `crate::<module>` paths named in `source` outside comments.
fn used_modules(source: &str) -> Vec<String> {
    let mut used = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            let name: String =
                code[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            used.push(name);
        }
    }
    used
}

/// Every `.rs` file under `path` (a file or a folder).
fn rust_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("source folders are readable") {
        let entry = entry.expect("source folders are readable").path();
        if entry.is_dir() {
            files.extend(rust_files(&entry));
        } else if entry.extension().is_some_and(|e| e == "rs") {
            files.push(entry);
        }
    }
    files
}

#[test]
fn every_import_goes_to_a_lower_layer() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs is readable");
    // The crate's own top-level modules; other folders under src/ are other targets.
    let modules = lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod")?.trim().strip_suffix(';'));
    let mut violations = Vec::new();
    for module in modules {
        let path = if src.join(module).is_dir() { src.join(module) } else { src.join(format!("{module}.rs")) };
        let layer = layer_of(module).unwrap_or_else(|| panic!("src/{module} has no layer: add it to LAYERS"));
        for file in rust_files(&path) {
            let source = std::fs::read_to_string(&file).expect("source files are readable");
            for used in used_modules(&source) {
                if used == module {
                    continue;
                }
                match layer_of(&used) {
                    Some(l) if l < layer => {}
                    _ => violations.push(format!("{} uses crate::{used}", file.display())),
                }
            }
        }
    }
    assert!(violations.is_empty(), "imports that are not downward:\n{}", violations.join("\n"));
}

#[test]
fn comments_do_not_count_as_imports() {
    let source = "use crate::ops::Op; // see crate::exec\n/// [`crate::cli`]\nlet x = crate::rng::Rng::new(1);";
    assert_eq!(used_modules(source), ["ops", "rng"]);
}
