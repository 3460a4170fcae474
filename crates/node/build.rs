//! Embeds the web console (`ui/dist`, built by `npm run build` in `ui/`) into the binary, so the
//! headless daemon serves the same console as the desktop window (UI-4). Without a build, the
//! list is empty and the daemon says how to build it.
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dist = manifest.join("../../ui/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    walk(&dist, &mut files);
    files.sort();
    let mut code = String::from("pub static FILES: &[(&str, &[u8])] = &[\n");
    for f in &files {
        if let Ok(rel) = f.strip_prefix(&dist) {
            let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            println!("cargo:rerun-if-changed={}", f.display());
            let _ = writeln!(
                code,
                "    ({url:?}, include_bytes!({:?})),",
                f.canonicalize().unwrap_or(f.clone())
            );
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("ui_assets.rs");
    std::fs::write(out, code).expect("writing ui_assets.rs");
}
