//! The import graph of tern-core's top-level modules runs one way:
//! `client` (API) → `sync` (engine) → `model` (shared values) → `net` /
//! `store`, with `random` below everything. This test reads the sources,
//! collects every `crate::<module>` path outside comments, and fails on an
//! edge against that order (which is also what keeps the graph free of
//! cycles). `docs/architecture.md` shows the same graph.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level modules, lowest layer last: a module may only use modules that
/// come after it.
const LAYERS: [&str; 5] = ["client", "sync", "model", "net", "random"];
/// Names at the crate root that alias other crates (`use tern_store as
/// store`): every module may use them, they use nothing of this crate.
const CRATE_ALIASES: [&str; 1] = ["store"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules that the code (not the comments) of `source`
/// names as `crate::<module>`.
fn used_modules(source: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    used
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for module in LAYERS {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        assert!(!files.is_empty(), "module {module} has no source");
        let mut edges = BTreeSet::new();
        for file in files {
            edges.extend(used_modules(&fs::read_to_string(&file).unwrap()));
        }
        edges.remove(module);
        graph.insert(module.to_owned(), edges);
    }
    graph
}

#[test]
fn top_level_modules_depend_only_on_lower_layers() {
    let graph = graph();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (module, edges) in &graph {
        for used in edges {
            match (rank(module), rank(used)) {
                (Some(from), Some(to)) if to > from => {}
                (Some(_), None) if CRATE_ALIASES.contains(&used.as_str()) => {}
                _ => wrong.push(format!("{module} -> {used}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges against the layering {LAYERS:?}: {wrong:?}\nwhole graph: {graph:#?}"
    );
}

#[test]
fn the_checker_sees_code_and_ignores_comments() {
    let source = "use crate::sync::Core;\n/// see [`crate::client::Client`]\nlet x = crate::store::Tx; // crate::net\n";
    let used: Vec<String> = used_modules(source).into_iter().collect();
    assert_eq!(used, ["store", "sync"]);
}
