//! The layers of `src/`, and a check that keeps them.
//!
//! Every module of the library belongs to a layer, and a layer uses only
//! the layers below it:
//!
//! | rank | layer | what it holds |
//! |---|---|---|
//! | 0 | `error` | the one error enum |
//! | 1 | `util`, `types`, `batch`, `stats` | helpers; plain public value types |
//! | 2 | `format` | the on-disk format, no I/O |
//! | 3 | `fs` | the file layer and the real file system |
//! | 4 | `options` | the options every layer above reads |
//! | 5 | `storage`, `index` | segment readers, group commit, accounting; the keydir |
//! | 6 | `recovery` | what open does before the engine starts |
//! | 7 | `tools` | offline inspect, verify, repair |
//! | 8 | `engine` | `Core`: open, write, read, transactions, background work |
//! | 9 | `compaction` | rewriting sealed segments |
//! | 10 | `iter`, `feed` | prefix scans; the change feed |
//! | 11 | `db` | the `Db` handle |
//! | 12 | `keyspace`, `backend` | keyspaces of a `Db`; the modules' seam and its backends |
//! | 13 | `modules` | cache, session, limits: on the `backend` seam only |
//! | 14 | `fuzzing` | entry points for the fuzz targets |
//!
//! The test reads every `crate::…` path in the code of every file under
//! `src/` (comments are skipped; names re-exported by `lib.rs` resolve to
//! the module that defines them) and fails, naming the file and the path,
//! when a layer reaches one above it. It also draws the imports between
//! files (`crate::…`, `super::…` and a `mod.rs` using its own children) and
//! fails on any circle, and it fails when code reaches an item through the
//! crate root's re-export (`crate::Error`) instead of its module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("util", 1),
    ("types", 1),
    ("batch", 1),
    ("stats", 1),
    ("format", 2),
    ("fs", 3),
    ("options", 4),
    ("storage", 5),
    ("index", 5),
    ("recovery", 6),
    ("tools", 7),
    ("engine", 8),
    ("compaction", 9),
    ("iter", 10),
    ("feed", 10),
    ("db", 11),
    ("keyspace", 12),
    ("backend", 12),
    ("modules", 13),
    ("fuzzing", 14),
];

fn rank(layer: &str) -> Option<u32> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, r)| *r)
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/engine/write.rs` is `["engine", "write"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments (line comments and doc
/// comments; cairn's sources have no block comments).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim_start();
            if t.starts_with("//") {
                return None;
            }
            let code = match l.find(" //") {
                Some(at) if !l[..at].contains('"') => &l[..at],
                _ => l,
            };
            Some((i + 1, code.to_string()))
        })
        .collect()
}

/// The paths a line names: each `crate::a::b` and `super::a`, with
/// `use crate::{a, b::c}` groups expanded.
fn paths_in(line: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(split_path(item));
                }
            }
            continue;
        }
        out.push(split_path(rest));
    }
    out
}

fn split_path(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        parts.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    parts
}

/// `lib.rs`'s `pub use a::b::{C, D}` lines: re-exported name to its path.
fn reexports(lib: &str) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::new();
    for (_, line) in code_lines(lib) {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let (base, items) = match rest.find("::{") {
            Some(at) => (
                &rest[..at],
                rest[at + 3..]
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect::<Vec<_>>(),
            ),
            None => match rest.rfind("::") {
                Some(at) => (&rest[..at], vec![&rest[at + 2..]]),
                None => continue,
            },
        };
        for item in items.into_iter().filter(|i| !i.is_empty()) {
            let (name, alias) = match item.split_once(" as ") {
                Some((n, a)) => (n.trim(), a.trim()),
                None => (item, item),
            };
            let mut path: Vec<String> = base.split("::").map(String::from).collect();
            path.push(name.to_string());
            map.insert(alias.to_string(), path);
        }
    }
    map
}

struct Tree {
    src: PathBuf,
    /// Module path to its file.
    files: BTreeMap<Vec<String>, PathBuf>,
    reexports: BTreeMap<String, Vec<String>>,
}

impl Tree {
    fn read() -> Tree {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        rust_files(&src, &mut all);
        let files = all
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
        Tree {
            src,
            files,
            reexports: reexports(&lib),
        }
    }

    /// Resolves a path below `crate::` to a module path, following
    /// re-exports at the crate root.
    fn resolve(&self, path: &[String]) -> Vec<String> {
        match path.first().and_then(|p| self.reexports.get(p)) {
            Some(target) if !self.files.contains_key(&path[..1]) => {
                let mut full = target.clone();
                full.extend_from_slice(&path[1..]);
                self.resolve(&full)
            }
            _ => path.to_vec(),
        }
    }

    /// The file that defines the longest prefix of a module path.
    fn file_of(&self, path: &[String]) -> Option<&PathBuf> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.files.get(&path[..n]))
    }

    fn rel(&self, file: &Path) -> String {
        file.strip_prefix(&self.src)
            .map(|p| format!("src/{}", p.display()))
            .unwrap_or_default()
    }
}

/// Every file-to-file import: (importing file, line, path as written,
/// resolved module path, imported file).
fn imports(tree: &Tree) -> Vec<(PathBuf, usize, String, Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    for (module, file) in &tree.files {
        let text = std::fs::read_to_string(file).expect("read");
        let children: BTreeSet<String> = code_lines(&text)
            .iter()
            .filter_map(|(_, l)| {
                let l = l.trim();
                let l = l
                    .strip_prefix("pub(crate) ")
                    .or(l.strip_prefix("pub "))
                    .unwrap_or(l);
                l.strip_prefix("mod ")
                    .map(|m| m.trim_end_matches(';').to_string())
            })
            .collect();
        let is_mod_rs = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        for (line_no, line) in code_lines(&text) {
            let mut found: Vec<(String, Vec<String>)> = Vec::new();
            for p in paths_in(&line, "crate::") {
                found.push((format!("crate::{}", p.join("::")), tree.resolve(&p)));
            }
            // `super::` from a file `a/b.rs` names `a`; from inside a
            // file's own `mod tests`, it names the file itself.
            for p in paths_in(&line, "super::") {
                let mut parent = module.clone();
                if !is_mod_rs || file.ends_with("lib.rs") {
                    parent.pop();
                }
                let base = if line.contains("use super::*") {
                    module.clone()
                } else {
                    parent
                };
                let mut full = base;
                full.extend(p.iter().cloned());
                found.push((format!("super::{}", p.join("::")), full));
            }
            // A `mod.rs` using its own children: `use write::X;`.
            if is_mod_rs {
                if let Some(rest) = line.trim().strip_prefix("use ") {
                    let p = split_path(rest);
                    if p.first().is_some_and(|c| children.contains(c)) {
                        let mut full = module.clone();
                        full.extend(p);
                        found.push((rest.trim_end_matches(';').to_string(), full));
                    }
                }
            }
            for (written, resolved) in found {
                if let Some(target) = tree.file_of(&resolved) {
                    out.push((file.clone(), line_no, written, resolved, target.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn no_layer_imports_a_layer_above_it() {
    let tree = Tree::read();
    let mut wrong = Vec::new();
    for (file, line, written, resolved, _) in imports(&tree) {
        let from = module_of(&tree.src, &file);
        let (Some(from_layer), Some(to_layer)) = (from.first(), resolved.first()) else {
            continue;
        };
        if from_layer == to_layer {
            continue;
        }
        let (Some(a), Some(b)) = (rank(from_layer), rank(to_layer)) else {
            wrong.push(format!(
                "{}:{line}: `{written}`: layer `{}` or `{}` is not in the table of tests/architecture.rs",
                tree.rel(&file),
                from_layer,
                to_layer
            ));
            continue;
        };
        if b >= a {
            wrong.push(format!(
                "{}:{line}: `{written}`: layer `{from_layer}` (rank {a}) may not use layer `{to_layer}` (rank {b})",
                tree.rel(&file)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

/// The layers the modules may use: the seam, and what sits below every
/// layer. A module that reached the engine or the `Db` directly would run
/// on the embedded store only.
const MODULES_MAY_USE: &[&str] = &["backend", "error", "util", "types", "modules"];

#[test]
fn modules_use_only_the_backend_seam() {
    let tree = Tree::read();
    let mut wrong = Vec::new();
    for (file, line, written, resolved, _) in imports(&tree) {
        let from = module_of(&tree.src, &file);
        if from.first().map(String::as_str) != Some("modules") {
            continue;
        }
        let Some(to) = resolved.first() else { continue };
        if !MODULES_MAY_USE.contains(&to.as_str()) {
            wrong.push(format!(
                "{}:{line}: `{written}`: the modules may use only {MODULES_MAY_USE:?}, not `{to}`",
                tree.rel(&file)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "modules reaching past the backend seam:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycles_between_files() {
    let tree = Tree::read();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (file, _, _, _, target) in imports(&tree) {
        if file != target {
            edges.entry(file).or_default().insert(target);
        }
    }
    // Depth-first search with colours; report the first circle found.
    fn visit(
        n: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, u8>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut circle = stack[at..].to_vec();
                    circle.push(m.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in tree.files.values() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(n, &edges, &mut state, &mut Vec::new()) {
                let names: Vec<String> = circle.iter().map(|f| tree.rel(f)).collect();
                panic!("import cycle: {}", names.join(" -> "));
            }
        }
    }
}

#[test]
fn every_layer_is_in_the_table() {
    let tree = Tree::read();
    let missing: Vec<String> = tree
        .files
        .keys()
        .filter_map(|m| m.first())
        .filter(|l| rank(l).is_none())
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        missing.is_empty(),
        "modules of src/ missing from the layer table in tests/architecture.rs: {missing:?}"
    );
}

/// Code inside the crate names the module that defines an item, not the
/// crate root's re-export of it (`crate::Error`): an import through the
/// root hides which layer it reaches.
#[test]
fn code_names_the_defining_module() {
    let tree = Tree::read();
    let mut wrong = Vec::new();
    for file in tree.files.values() {
        if file.ends_with("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read");
        for (line_no, line) in code_lines(&text) {
            for p in paths_in(&line, "crate::") {
                let is_root_item = p.first().is_some_and(|n| {
                    tree.reexports.contains_key(n) && !tree.files.contains_key(&p[..1])
                });
                if is_root_item {
                    wrong.push(format!(
                        "{}:{line_no}: `crate::{}`: name the module that defines it",
                        tree.rel(file),
                        p.join("::")
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "paths through the crate root:\n{}",
        wrong.join("\n")
    );
}
