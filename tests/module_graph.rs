//! The modules of each library of the workspace import each other without a circle.
//!
//! One node per file of `src/` (the binary's `main.rs` aside): `src/x.rs` and `src/x/mod.rs`
//! are `x`, `src/x/y.rs` is `x::y`, `lib.rs` is the crate root. A file depends on every module
//! it names in a path — `crate::…`, `super::…`, `self::…`, or a child module's name in its
//! parent — counted as the longest module the path names (`crate::journal::relay::Relay` is
//! `journal::relay`). Comments and string literals are skipped; `super` inside an inline
//! `mod … { }` is taken relative to that module. The graph must be acyclic: front ends above
//! the terminal, engine and recording, those above the journal, configuration, gateway and
//! driver, and no parent module using a child that uses it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file of `src/` is, or `None` for the binary's files.
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "main" => return None,
        [first, ..] if first == "bin" => return None,
        [only] if only == "lib" => return Some(Vec::new()),
        _ => {}
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// The source without comments, string and character literals.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, ch)| c.get(i + k) == Some(&ch))
    };
    while i < c.len() {
        let word_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if at(i, "//") {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            loop {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else if i >= c.len() {
                    break;
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if !word_before && (at(i, "r\"") || at(i, "r#") || at(i, "br\"") || at(i, "br#")) {
            // Raw string: r##"…"##.
            i += if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while c.get(i) == Some(&'#') {
                hashes += 1;
                i += 1;
            }
            if c.get(i) != Some(&'"') {
                out.push('r');
                continue;
            }
            i += 1;
            while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')))
            {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && c.get(i + 1) == Some(&'\\') {
            // '\n', '\'', '\u{…}'
            i += 2;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            if !ch.is_ascii_digit() {
                out.push(Tok::Ident(c[start..i].iter().collect()));
            } else {
                out.push(Tok::Punct('0'));
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push(Tok::Punct(ch));
            }
            i += 1;
        }
    }
    out
}

fn is_ident(t: Option<&Tok>, s: &str) -> bool {
    matches!(t, Some(Tok::Ident(x)) if x == s)
}

/// Expands the use tree at `toks[*i]` into full paths.
fn use_tree(toks: &[Tok], i: &mut usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if toks.get(*i) == Some(&Tok::PathSep) {
                    *i += 1;
                    continue;
                }
                if is_ident(toks.get(*i), "as") {
                    *i += 2;
                }
                out.push(path);
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while *i < toks.len() && toks[*i] != Tok::Punct('}') {
                    let before = *i;
                    use_tree(toks, i, path.clone(), out);
                    if toks.get(*i) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// The modules the file `here` names.
fn edges_of(here: &Module, text: &str, modules: &BTreeSet<Module>) -> BTreeSet<Module> {
    let toks = tokens(&strip(text));
    let mut found = BTreeSet::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut add = |segs: &[String], inline: &[(String, usize)]| {
        let mut scope: Module = here.clone();
        scope.extend(inline.iter().map(|(n, _)| n.clone()));
        let mut rest = segs;
        let mut base = match rest.first().map(String::as_str) {
            Some("crate") => {
                rest = &rest[1..];
                Vec::new()
            }
            Some("self" | "super") => {
                let mut base = scope;
                while let Some(s @ ("self" | "super")) = rest.first().map(String::as_str) {
                    if s == "super" {
                        base.pop();
                    }
                    rest = &rest[1..];
                }
                base
            }
            Some(first) if inline.is_empty() => {
                let mut child = here.clone();
                child.push(first.to_owned());
                if !modules.contains(&child) {
                    return;
                }
                here.clone()
            }
            _ => return,
        };
        base.extend(rest.iter().filter(|s| *s != "self").cloned());
        while !base.is_empty() && !modules.contains(&base) {
            base.pop();
        }
        if &base != here && modules.contains(&base) {
            found.insert(base);
        }
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(Tok::Ident(n)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((n.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
                i += 1;
            }
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                i += 1;
            }
            Tok::Ident(kw) if kw == "use" => {
                i += 1;
                if toks.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                }
                let mut paths = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut paths);
                for p in &paths {
                    add(p, &inline);
                }
            }
            Tok::Ident(first)
                if toks.get(i + 1) == Some(&Tok::PathSep)
                    && (i == 0 || toks[i - 1] != Tok::PathSep) =>
            {
                let mut path = vec![first.clone()];
                i += 2;
                while let Some(Tok::Ident(s)) = toks.get(i) {
                    path.push(s.clone());
                    i += 1;
                    if toks.get(i) != Some(&Tok::PathSep) {
                        break;
                    }
                    i += 1;
                }
                add(&path, &inline);
            }
            _ => i += 1,
        }
    }
    found
}

/// The graph of the library whose sources are in `dir` (relative to the workspace root).
fn graph(dir: &str) -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let texts: BTreeMap<Module, String> = files
        .iter()
        .filter_map(|f| {
            Some((
                module_of(&src, f)?,
                std::fs::read_to_string(f).expect("read"),
            ))
        })
        .collect();
    let modules: BTreeSet<Module> = texts.keys().cloned().collect();
    texts
        .iter()
        .map(|(m, text)| (m.clone(), edges_of(m, text, &modules)))
        .collect()
}

/// A cycle of `g`, if it has one (depth first; `stack` is the path being walked).
fn find_cycle(g: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        m: &Module,
        g: &BTreeMap<Module, BTreeSet<Module>>,
        done: &mut BTreeSet<Module>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(m.clone());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.clone());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, g, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(m, g, &mut done, &mut Vec::new()))
}

fn m(s: &str) -> Module {
    s.split("::").map(str::to_owned).collect()
}

/// Every library of the workspace: the bridge, the payment core, the wire, the sandbox, the
/// simulator.
const CRATES: [&str; 5] = [
    "src",
    "core/src",
    "protocol/src",
    "sandbox/src",
    "firmware-sim/src",
];

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph("src");
    // The walk found the tree and reads paths of every kind; otherwise an empty graph passes.
    for (from, to) in [
        ("sale", "terminal"),                    // crate::terminal::…
        ("journal::relay", "journal::resolver"), // use super::resolver::{…}
        ("gateway", "gateway::http"),            // a child's name in its parent
        ("config", "journal::relay"),            // the longest module a path names
    ] {
        assert!(
            g.get(&m(from)).is_some_and(|e| e.contains(&m(to))),
            "expected {from} -> {to}; graph: {g:#?}"
        );
    }
    let mut edges = String::new();
    for (from, to) in &g {
        let to: Vec<String> = to.iter().map(|m| name(m)).collect();
        edges.push_str(&format!("  {} -> {}\n", name(from), to.join(", ")));
    }
    // `cargo test --test module_graph -- --nocapture` shows the graph.
    println!("{edges}");
    for dir in CRATES {
        let g = graph(dir);
        assert!(g.len() > 3, "{dir}: too few modules found: {g:#?}");
        if let Some(cycle) = find_cycle(&g) {
            let shown: Vec<String> = cycle.iter().map(|m| name(m)).collect();
            panic!(
                "{dir}: the modules import each other in a circle: {}",
                shown.join(" -> ")
            );
        }
    }
}

#[test]
fn the_scanner_reads_paths_and_skips_text() {
    let modules: BTreeSet<Module> = ["a", "a::b", "c", "d", "e"].iter().map(|s| m(s)).collect();
    let text = r##"
        use crate::{c::Thing, d};
        use super::b as _;
        use super::Parent;
        // crate::e::in_a_comment
        const S: &str = "crate::e::in_a_string";
        const R: &str = r#"crate::e::in_a_raw_string"#;
        fn f<'a>(x: &'a str) -> char { let _ = '"'; 'x' }
        mod tests { use super::*; use super::super::super::e; }
    "##;
    let found = edges_of(&m("a::b"), text, &modules);
    let want: BTreeSet<Module> = [m("a"), m("c"), m("d"), m("e")].into_iter().collect();
    assert_eq!(found, want);
}
