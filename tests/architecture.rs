//! ARCHITECTURE.md's rule, checked: no two modules of `src/` import each other, directly or around a circle.
//! Every arrow counts: `use` trees and inline `crate::`, `super::` and `self::` paths alike, in code, in
//! macros' arguments and in test modules. Each file is a module (`src/ledger/mod.rs` is `ledger`); a path
//! points at the longest module its segments name, so `crate::ledger::Event` points at `ledger` (whose
//! `mod.rs` re-exports it from its children).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module by its path under the crate (`""` is `lib.rs`).
type Module = String;

/// Every arrow in `src/`: from a module to the modules it names, each with one path that shows it.
fn arrows(src: &Path) -> BTreeMap<Module, BTreeMap<Module, String>> {
    let files = rust_files(src);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let mut arrows: BTreeMap<Module, BTreeMap<Module, String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths { inline: 0, found: Vec::new() };
        paths.visit_file(&parsed);
        for (inline, path) in paths.found {
            if let Some(to) = resolve(&from, inline, &path, &modules)
                && to != from
            {
                arrows.entry(from.clone()).or_default().entry(to).or_insert_with(|| path.join("::"));
            }
        }
    }
    arrows
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The module a path from `from` points at (`inline`: how many inline `mod x { }` it is written in), if it
/// names one of the crate's own.
fn resolve(from: &str, inline: usize, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut base: Vec<String> = if from.is_empty() { Vec::new() } else { from.split("::").map(String::from).collect() };
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self") if inline > 0 => return None,
        Some("self") => rest = &path[1..],
        Some("super") => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            // Within an inline module, the first `super`s climb back to the file itself.
            if supers <= inline {
                return None;
            }
            for _ in 0..supers - inline {
                base.pop()?;
            }
            rest = &path[supers..];
        }
        // A path from a child module's name (`pub use breaker::Breaker;` in `decide/mod.rs`).
        Some(first) if inline == 0 && modules.contains(&child(from, first)) => {}
        _ => return None,
    }
    let mut best = base.join("::");
    for segment in rest {
        base.push(segment.clone());
        let candidate = base.join("::");
        if !modules.contains(&candidate) {
            break;
        }
        best = candidate;
    }
    Some(best)
}

fn child(from: &str, name: &str) -> Module {
    if from.is_empty() { name.to_owned() } else { format!("{from}::{name}") }
}

/// Every path of two segments or more, with the inline-module depth it is written at (`resolve` keeps
/// those that name the crate's own modules).
struct Paths {
    inline: usize,
    found: Vec<(usize, Vec<String>)>,
}

impl Paths {
    fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push(prefix.iter().cloned().chain([n.ident.to_string()]).collect()),
            syn::UseTree::Rename(r) => self.push(prefix.iter().cloned().chain([r.ident.to_string()]).collect()),
            syn::UseTree::Glob(_) => self.push(prefix.clone()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.tree(prefix, t)),
        }
    }

    fn push(&mut self, path: Vec<String>) {
        if path.len() > 1 || matches!(path.first().map(String::as_str), Some("crate" | "super" | "self")) {
            self.found.push((self.inline, path));
        }
    }

    /// Paths in a macro's tokens (`tracing::warn!`, `tokio::select!`, `format!`), which syn leaves unparsed.
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let tokens: Vec<proc_macro2::TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            if let proc_macro2::TokenTree::Group(g) = &tokens[i] {
                self.tokens(g.stream());
            }
            let mut path = Vec::new();
            let mut j = i;
            while let Some(proc_macro2::TokenTree::Ident(ident)) = tokens.get(j) {
                path.push(ident.to_string());
                let colons = matches!(
                    (tokens.get(j + 1), tokens.get(j + 2)),
                    (Some(proc_macro2::TokenTree::Punct(a)), Some(proc_macro2::TokenTree::Punct(b)))
                        if a.as_char() == ':' && b.as_char() == ':'
                );
                if !colons {
                    break;
                }
                j += 3;
            }
            if path.len() > 1 {
                self.push(path);
            }
            i = j + 1;
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.inline += 1;
            syn::visit::visit_item_mod(self, item);
            self.inline -= 1;
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The circles among the arrows: each strongly connected set of two or more modules (Tarjan's algorithm).
fn circles(arrows: &BTreeMap<Module, BTreeMap<Module, String>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        arrows: &'a BTreeMap<Module, BTreeMap<Module, String>>,
        index: BTreeMap<&'a str, (usize, usize)>,
        stack: Vec<&'a str>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, at: &'a str) {
        walk.index.insert(at, (walk.next, walk.next));
        walk.next += 1;
        walk.stack.push(at);
        for to in walk.arrows.get(at).into_iter().flat_map(BTreeMap::keys) {
            match walk.index.get(to.as_str()).copied() {
                None => {
                    visit(walk, to);
                    let low = walk.index[to.as_str()].1;
                    let entry = walk.index.get_mut(at).unwrap();
                    entry.1 = entry.1.min(low);
                }
                Some((index, _)) if walk.stack.contains(&to.as_str()) => {
                    let entry = walk.index.get_mut(at).unwrap();
                    entry.1 = entry.1.min(index);
                }
                Some(_) => {}
            }
        }
        let (index, low) = walk.index[at];
        if index == low {
            let mut set = Vec::new();
            while let Some(member) = walk.stack.pop() {
                set.push(member.to_owned());
                if member == at {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                walk.found.push(set);
            }
        }
    }
    let mut walk = Walk { arrows, index: BTreeMap::new(), stack: Vec::new(), next: 0, found: Vec::new() };
    for from in arrows.keys() {
        if !walk.index.contains_key(from.as_str()) {
            visit(&mut walk, from);
        }
    }
    walk.found
}

/// Each circle, with the arrows that make it and a path that shows each.
fn described(arrows: &BTreeMap<Module, BTreeMap<Module, String>>, circle: &[Module]) -> String {
    let mut lines = vec![format!("circle: {}", circle.join(", "))];
    for from in circle {
        for (to, path) in arrows.get(from).into_iter().flatten().filter(|(to, _)| circle.contains(to)) {
            lines.push(format!("  {from} -> {to} ({path})"));
        }
    }
    lines.join("\n")
}

/// The arrows between siblings: an arrow from `a::x::y` to `a::z` is one from `a::x` to `a::z`, from the
/// sibling each end lies under. An arrow between a module and one it holds (a child's `super::` to its
/// parent's facade, the parent's `pub use` of the child) stays inside the parent and is not counted.
fn between_siblings(arrows: &BTreeMap<Module, BTreeMap<Module, String>>) -> BTreeMap<Module, BTreeMap<Module, String>> {
    let mut siblings: BTreeMap<Module, BTreeMap<Module, String>> = BTreeMap::new();
    for (from, tos) in arrows {
        for (to, path) in tos {
            let (a, b): (Vec<&str>, Vec<&str>) = (segments(from), segments(to));
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            if common == a.len() || common == b.len() {
                continue;
            }
            let (x, y) = (a[..=common].join("::"), b[..=common].join("::"));
            siblings.entry(x).or_default().entry(y).or_insert_with(|| format!("{from} -> {to}: {path}"));
        }
    }
    siblings
}

fn segments(module: &str) -> Vec<&str> {
    if module.is_empty() { Vec::new() } else { module.split("::").collect() }
}

#[test]
fn no_two_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let arrows = between_siblings(&arrows(&src));
    let found: Vec<String> = circles(&arrows).iter().map(|c| described(&arrows, c)).collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The check itself, on a tree written here: an arrow by an inline path and one by a `use` around a
/// circle of three, an inline test module's `super` that stays in its file, and a child's `super` arrow.
#[test]
fn the_check_sees_inline_paths_use_trees_and_circles() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a; mod b; mod c; mod d;\n");
    write("a.rs", "fn f() { let _ = crate::b::g(); }\n#[cfg(test)] mod tests { use super::*; }\n");
    write("b.rs", "use crate::{c::{self, h}};\npub fn g() {}\n");
    write("c.rs", "pub fn h() { tracing::info!(\"{}\", crate::a::X); }\n");
    write("d/mod.rs", "mod e; pub use e::E;\n");
    write("d/e.rs", "pub struct E(super::super::a::A);\n");
    let arrows = arrows(dir.path());
    assert_eq!(
        circles(&between_siblings(&arrows)),
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]],
        "{arrows:?}"
    );
    assert_eq!(arrows["d"].keys().collect::<Vec<_>>(), ["d::e"]);
    assert_eq!(arrows["d::e"].keys().collect::<Vec<_>>(), ["a"]);
    assert!(!arrows["a"].contains_key("a"), "a test module's `super` is its own file");
}
