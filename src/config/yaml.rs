//! A YAML document as a tree that remembers where each value was written.
//!
//! Built from yaml-rust2's event parser (its own `Yaml` type forgets line numbers, and every
//! configuration error must say `file:line`). Anchors and aliases are resolved by copying the
//! anchored node, and merge keys (`<<: *common`, `<<: [*a, *b]`) are applied the way PyYAML
//! and Go's yaml.v2 apply them: keys written in the mapping win over merged ones, and among
//! several merged mappings the first wins. A merged value keeps the line and path where it was
//! written (`common.loglevel`), so the source of a flavor's setting points at the real line.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One node of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line where the node starts.
    pub line: usize,
    /// Dotted path where the node was written (`common.cache.host`, `cors.headers[0]`).
    pub path: String,
    pub kind: NodeKind,
    /// Set when the value came from an `_env:NAME[:default]` reference.
    pub env: Option<EnvReference>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar as written; `quoted` scalars are always strings.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A key of a mapping and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// How an `_env:` value was resolved: the variable, and whether it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvReference {
    pub var: String,
    /// `None`: the variable was unset and the written default (or null) was used.
    pub origin: Option<super::Source>,
}

/// A scalar read with YAML 1.1's rules for plain scalars (what PyYAML and Go's yaml.v2 use).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

/// A syntax error with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Something worth telling the operator that does not stop loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remark {
    pub line: usize,
    pub path: String,
    pub message: String,
}

impl Node {
    /// The scalar read with YAML's types, or `None` for a sequence or mapping.
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            NodeKind::Scalar { text, quoted: true } => Some(Scalar::Str(text)),
            NodeKind::Scalar {
                text,
                quoted: false,
            } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// A short description for error messages: the text of a scalar, or its kind.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Scalar { text, .. } => format!("{text:?}"),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Map(_) => "a mapping".into(),
        }
    }

    /// Every `_env:NAME` referenced anywhere below this node.
    pub fn env_references(&self, out: &mut Vec<String>) {
        match &self.kind {
            NodeKind::Scalar { text, .. } => {
                if let Some((var, _)) = parse_env_reference(text) {
                    out.push(var.to_string());
                }
            }
            NodeKind::Seq(items) => items.iter().for_each(|n| n.env_references(out)),
            NodeKind::Map(entries) => entries.iter().for_each(|e| e.value.env_references(out)),
        }
    }

    /// Replaces every `_env:NAME[:default]` string below this node by the variable's value
    /// (or the default, or null), read as YAML, as the legacy registry did. `lookup` returns a
    /// variable's value and where it came from.
    pub fn substitute_env(&self, lookup: &dyn Fn(&str) -> Option<(String, super::Source)>) -> Node {
        match &self.kind {
            NodeKind::Scalar { text, .. } => match parse_env_reference(text) {
                Some((var, default)) => {
                    let (text, origin) = match lookup(var) {
                        Some((value, source)) => (value, Some(source)),
                        None => (default.unwrap_or("").to_string(), None),
                    };
                    let mut node = parse_value_text(&text, self.line, &self.path);
                    node.env = Some(EnvReference {
                        var: var.to_string(),
                        origin,
                    });
                    node
                }
                None => self.clone(),
            },
            NodeKind::Seq(items) => Node {
                kind: NodeKind::Seq(items.iter().map(|n| n.substitute_env(lookup)).collect()),
                ..self.clone()
            },
            NodeKind::Map(entries) => Node {
                kind: NodeKind::Map(
                    entries
                        .iter()
                        .map(|e| Entry {
                            key: e.key.clone(),
                            key_line: e.key_line,
                            value: e.value.substitute_env(lookup),
                        })
                        .collect(),
                ),
                ..self.clone()
            },
        }
    }
}

/// Splits `_env:NAME` or `_env:NAME:default` (the default may itself contain colons).
pub fn parse_env_reference(text: &str) -> Option<(&str, Option<&str>)> {
    let rest = text.strip_prefix("_env:")?;
    match rest.split_once(':') {
        Some((var, default)) => Some((var, Some(default))),
        None => Some((rest, None)),
    }
}

/// Reads the text of a substituted `_env:` value as a YAML value; text that is not valid YAML
/// stays a plain string (the honoured keys validate it afterwards).
fn parse_value_text(text: &str, line: usize, path: &str) -> Node {
    let text_node = NodeKind::Scalar {
        text: text.to_string(),
        quoted: true,
    };
    let fallback = placed(line, path.to_string(), text_node);
    match parse(text) {
        Ok((Some(mut node), _)) => {
            relocate(&mut node, line, path);
            node
        }
        Ok((None, _)) => Node {
            kind: NodeKind::Scalar {
                text: String::new(),
                quoted: false,
            },
            ..fallback
        },
        Err(_) => fallback,
    }
}

/// Gives a node parsed from an environment value the line and path of the `_env:` reference.
fn relocate(node: &mut Node, line: usize, path: &str) {
    node.line = line;
    node.path = path.to_string();
    match &mut node.kind {
        NodeKind::Scalar { .. } => {}
        NodeKind::Seq(items) => {
            for (i, n) in items.iter_mut().enumerate() {
                relocate(n, line, &format!("{path}[{i}]"));
            }
        }
        NodeKind::Map(entries) => {
            for e in entries {
                e.key_line = line;
                let p = join(path, &e.key);
                relocate(&mut e.value, line, &p);
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// YAML 1.1 resolution of a plain scalar: null, booleans (including yes/no/on/off, which the
/// old registry's PyYAML accepted), integers, floats, else a string.
pub fn resolve_plain(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            return Scalar::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            return Scalar::Bool(false)
        }
        _ => {}
    }
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1i128, rest),
        None => (1i128, text.strip_prefix('+').unwrap_or(text)),
    };
    // The magnitude alone: `from_str_radix` would take a second sign (`-0x-8000000000000000`,
    // which overflowed when negated), and `-9223372036854775808` is an i64 too.
    let magnitude = |text: &str, radix: u32| {
        let text = text.replace('_', "");
        let digits_only = !text.is_empty() && text.chars().all(|c| c.is_digit(radix));
        digits_only
            .then(|| u64::from_str_radix(&text, radix).ok())
            .flatten()
    };
    let int = if let Some(hex) = digits.strip_prefix("0x") {
        magnitude(hex, 16)
    } else if let Some(oct) = digits.strip_prefix("0o") {
        magnitude(oct, 8)
    } else {
        magnitude(digits, 10)
    };
    if let Some(i) = int.and_then(|m| i64::try_from(sign * i128::from(m)).ok()) {
        return Scalar::Int(i);
    }
    let looks_numeric = digits
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_'));
    if looks_numeric {
        if let Ok(f) = text.replace('_', "").parse::<f64>() {
            return Scalar::Float(f);
        }
    }
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Scalar::Float(f64::NAN),
        _ => Scalar::Str(text),
    }
}

/// Parses one YAML document. Returns its root (`None` for an empty document) and remarks
/// (duplicate keys), or the first syntax error.
pub fn parse(text: &str) -> Result<(Option<Node>, Vec<Remark>), SyntaxError> {
    // yaml-rust2 takes a NUL for the end of the text, which would drop the rest of the file
    // without a word; YAML allows no NUL in a document anyway.
    if let Some(at) = text.find('\0') {
        return Err(SyntaxError {
            line: last_line(&text[..=at]),
            message: "a NUL byte: this is not a text file".into(),
        });
    }
    let mut builder = TreeBuilder {
        last_line: last_line(text),
        ..TreeBuilder::default()
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        return Err(SyntaxError {
            line: e.marker().line().min(builder.last_line),
            message: e.info().to_string(),
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok((builder.root, builder.remarks))
}

/// The number of the last line of `text` with YAML's line breaks (LF, CR LF, or a lone CR):
/// what an error at the end of a file that lacks a final newline names, where yaml-rust2
/// would name the line after it.
fn last_line(text: &str) -> usize {
    let breaks =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    let unterminated = !text.is_empty() && !text.ends_with(['\n', '\r']);
    (breaks + usize::from(unterminated)).max(1)
}

/// The most nodes a document may have once its aliases are expanded.
const MAX_NODES: usize = 100_000;

/// How many nodes `node` holds, itself included.
fn node_count(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Scalar { .. } => 0,
        NodeKind::Seq(items) => items.iter().map(node_count).sum(),
        NodeKind::Map(entries) => entries.iter().map(|e| node_count(&e.value)).sum(),
    }
}

enum Frame {
    Seq {
        line: usize,
        path: String,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        path: String,
        anchor: usize,
        entries: Vec<Entry>,
        merges: Vec<Node>,
        /// The key read, waiting for its value.
        key: Option<(String, usize, bool)>,
    },
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    /// Anchored nodes, with how many nodes each holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes in the document so far, aliases counted as the copies they become.
    nodes: usize,
    root: Option<Node>,
    remarks: Vec<Remark>,
    error: Option<SyntaxError>,
    /// See [`last_line`]: no node is placed after it.
    last_line: usize,
}

impl TreeBuilder {
    /// The path of the node about to start, from the frame that will hold it.
    fn child_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { path, items, .. }) => format!("{path}[{}]", items.len()),
            Some(Frame::Map {
                path,
                key: Some((k, _, _)),
                ..
            }) => join(path, k),
            Some(Frame::Map { path, .. }) => path.clone(),
        }
    }

    fn fail(&mut self, line: usize, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                line,
                message: message.into(),
            });
        }
    }

    /// Hands a finished node to the frame that holds it.
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let count = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), count));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                key,
                entries,
                merges,
                ..
            }) => match key.take() {
                None => match node.kind {
                    NodeKind::Scalar { text, quoted } => *key = Some((text, node.line, quoted)),
                    _ => {
                        let line = node.line;
                        self.fail(
                            line,
                            "a mapping key must be a plain value, not a list or mapping",
                        );
                    }
                },
                Some((k, _, false)) if k == "<<" => merges.push(node),
                Some((k, key_line, _)) => entries.push(Entry {
                    key: k,
                    key_line,
                    value: node,
                }),
            },
        }
    }

    fn close_map(
        &mut self,
        line: usize,
        path: String,
        anchor: usize,
        explicit: Vec<Entry>,
        merges: Vec<Node>,
    ) {
        let mut result: Vec<Entry> = Vec::new();
        // Where each key is in `result`: mappings with thousands of keys stay linear.
        let mut position: HashMap<String, usize> = HashMap::new();
        // Merged mappings first (the first one wins on a shared key)...
        for source in merges {
            let maps: Vec<Node> = match source.kind {
                NodeKind::Map(_) => vec![source],
                NodeKind::Seq(items) => items,
                _ => {
                    self.fail(
                        source.line,
                        "`<<` must merge a mapping or a list of mappings (e.g. `<<: *common`)",
                    );
                    continue;
                }
            };
            for map in maps {
                match map.kind {
                    NodeKind::Map(entries) => {
                        for e in entries {
                            if let Slot::Vacant(slot) = position.entry(e.key.clone()) {
                                slot.insert(result.len());
                                result.push(e);
                            }
                        }
                    }
                    _ => self.fail(map.line, "`<<` must merge mappings only"),
                }
            }
        }
        // ...then the keys written here, which win over merged ones.
        // A key written twice here is remarked, also when a merged mapping has it.
        let mut written: HashSet<String> = HashSet::new();
        for e in explicit {
            let pos = *position.entry(e.key.clone()).or_insert(result.len());
            if !written.insert(e.key.clone()) {
                self.remarks.push(Remark {
                    line: e.key_line,
                    path: join(&path, &e.key),
                    message: format!(
                        "duplicate key (also at line {}); this later one is used",
                        result[pos].key_line
                    ),
                });
            }
            if pos == result.len() {
                result.push(e);
            } else {
                result[pos] = e;
            }
        }
        self.finish(placed(line, path, NodeKind::Map(result)), anchor);
    }
}

impl TreeBuilder {
    /// A scalar: a mapping's key (whose path is the mapping's plus the key) or a value.
    fn scalar(&mut self, line: usize, text: String, quoted: bool, anchor: usize) {
        let path = match self.stack.last() {
            Some(Frame::Map {
                key: None, path, ..
            }) => join(path, &text),
            _ => self.child_path(),
        };
        let kind = NodeKind::Scalar { text, quoted };
        self.finish(placed(line, path, kind), anchor);
    }

    /// An alias: a copy of the anchored node. Aliases of aliases could make billions of
    /// nodes in a few lines ("billion laughs"); no configuration is that big.
    fn alias(&mut self, line: usize, id: usize) {
        let Some((node, count)) = self.anchors.get(&id) else {
            return self.fail(line, "alias to an unknown anchor");
        };
        self.nodes += count;
        if self.nodes > MAX_NODES {
            let message = format!("aliases make this document larger than {MAX_NODES} values");
            return self.fail(line, message);
        }
        let node = node.clone();
        self.finish(node, 0);
    }

    /// The end of a list or a mapping: the node the frame on top makes.
    fn close(&mut self) {
        match self.stack.pop() {
            Some(Frame::Seq {
                line,
                path,
                anchor,
                items,
            }) => self.finish(placed(line, path, NodeKind::Seq(items)), anchor),
            Some(Frame::Map {
                line,
                path,
                anchor,
                entries,
                merges,
                ..
            }) => self.close_map(line, path, anchor, entries, merges),
            None => {}
        }
    }
}

/// A node from the file, at `line` and `path`.
fn placed(line: usize, path: String, kind: NodeKind) -> Node {
    Node {
        line,
        path,
        kind,
        env: None,
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line().min(self.last_line);
        if matches!(
            ev,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            self.nodes += 1;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let quoted =
                    style != TScalarStyle::Plain || tag.as_ref().is_some_and(|t| t.suffix == "str");
                self.scalar(line, text, quoted, anchor);
            }
            Event::Alias(id) => self.alias(line, id),
            Event::SequenceStart(anchor, _) => {
                let path = self.child_path();
                self.stack.push(Frame::Seq {
                    line,
                    path,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                let path = self.child_path();
                self.stack.push(Frame::Map {
                    line,
                    path,
                    anchor,
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).expect("valid yaml").0.expect("a document")
    }

    #[test]
    fn remembers_lines_and_paths() {
        let n = root("a: 1\nb:\n  c: x\n  d: [1, 2]\n");
        let b = n.get("b").expect("b");
        assert_eq!(b.key_line, 2);
        let c = b.value.get("c").expect("c");
        assert_eq!(
            (c.key_line, c.value.line, c.value.path.as_str()),
            (3, 3, "b.c")
        );
        let NodeKind::Seq(items) = &b.value.get("d").expect("d").value.kind else {
            panic!("a list")
        };
        assert_eq!(items[1].path, "b.d[1]");
    }

    #[test]
    fn merge_keys_keep_the_line_where_the_value_was_written() {
        let n = root("common: &common\n  x: 1\n  y: 2\nlocal:\n  <<: *common\n  y: 3\n");
        let local = &n.get("local").expect("local").value;
        let x = local.get("x").expect("x");
        assert_eq!((x.key_line, x.value.path.as_str()), (2, "common.x"));
        let y = local.get("y").expect("y");
        assert_eq!((y.key_line, y.value.scalar()), (6, Some(Scalar::Int(3))));
        assert!(local.get("<<").is_none());
    }

    #[test]
    fn explicit_keys_win_even_when_written_before_the_merge() {
        let n = root("a: &a {k: 1, j: 5}\nb: &b {k: 2, m: 7}\nc:\n  k: 0\n  <<: [*a, *b]\n");
        let c = &n.get("c").expect("c").value;
        assert_eq!(c.get("k").expect("k").value.scalar(), Some(Scalar::Int(0)));
        assert_eq!(c.get("j").expect("j").value.scalar(), Some(Scalar::Int(5)));
        assert_eq!(c.get("m").expect("m").value.scalar(), Some(Scalar::Int(7)));
    }

    #[test]
    fn chained_merges_inherit_through_several_levels() {
        let n = root("common: &common\n  a: 1\nlocal: &local\n  <<: *common\n  b: 2\ndev:\n  <<: *local\n  c: 3\n");
        let dev = &n.get("dev").expect("dev").value;
        let keys: Vec<&str> = dev
            .entries()
            .expect("map")
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn merging_a_scalar_is_an_error_with_its_line() {
        let e = parse("a: 1\nb:\n  <<: 5\n").expect_err("invalid merge");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").expect_err("unclosed list");
        assert!(e.line >= 2, "{e:?}");
        let e = parse("a: *nothere\n").expect_err("unknown alias");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn integers_have_one_sign_and_span_all_of_i64() {
        assert_eq!(
            resolve_plain("-0x-8000000000000000"),
            Scalar::Str("-0x-8000000000000000")
        );
        assert_eq!(resolve_plain("0x-5"), Scalar::Str("0x-5"));
        assert_eq!(resolve_plain("0o+7"), Scalar::Str("0o+7"));
        assert_eq!(resolve_plain("-0x10"), Scalar::Int(-16));
        assert_eq!(resolve_plain("0o1_7"), Scalar::Int(15));
        assert_eq!(resolve_plain("-9223372036854775808"), Scalar::Int(i64::MIN));
        assert_eq!(resolve_plain("9223372036854775807"), Scalar::Int(i64::MAX));
        assert_eq!(
            resolve_plain("9223372036854775808"),
            Scalar::Float(9223372036854775808.0)
        );
    }

    #[test]
    fn aliases_of_aliases_cannot_blow_a_small_file_up() {
        let mut text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&text).expect_err("10^8 values");
        assert!(e.message.contains("larger than"), "{e:?}");
        assert_eq!(e.line, 5);
    }

    #[test]
    fn merges_of_large_mappings_keep_every_key_once() {
        let keys: String = (0..10_000).map(|i| format!("  k{i}: {i}\n")).collect();
        let text =
            format!("base: &base\n{keys}  only: base\nlocal:\n  <<: *base\n{keys}  k7: last\n");
        let (n, remarks) = parse(&text).expect("valid");
        let n = n.expect("a document");
        let local = &n.get("local").expect("local").value;
        assert_eq!(local.entries().expect("map").len(), 10_001);
        assert_eq!(
            local.get("k7").expect("k7").value.scalar(),
            Some(Scalar::Str("last"))
        );
        assert_eq!(local.get("only").expect("only").value.path, "base.only");
        assert_eq!(remarks.len(), 1, "k7 twice in local: {remarks:?}");
    }

    #[test]
    fn a_nul_byte_is_an_error_not_the_end_of_the_file() {
        let e = parse("a: b\nc: d\0e: f\n").expect_err("NUL");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn nothing_is_placed_past_the_last_line_of_a_file_without_final_newline() {
        assert_eq!(parse("a: [&q").expect_err("unclosed list").line, 1);
        assert_eq!(parse("a: 1\n&b\n").expect_err("no value").line, 2);
        assert_eq!(root("&a").line, 1);
        let n = root("a: 1\nb: !!str");
        assert_eq!(n.get("b").expect("b").value.line, 2);
        assert_eq!(last_line("a\r\nb\rc\n"), 3);
    }

    #[test]
    fn duplicate_keys_are_remarked() {
        let (_, remarks) = parse("a: 1\nb: 2\na: 3\n").expect("valid");
        assert_eq!(remarks.len(), 1);
        assert_eq!(remarks[0].line, 3);
    }

    #[test]
    fn plain_scalars_follow_yaml_1_1() {
        assert_eq!(resolve_plain(""), Scalar::Null);
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("yes"), Scalar::Bool(true));
        assert_eq!(resolve_plain("False"), Scalar::Bool(false));
        assert_eq!(resolve_plain("25"), Scalar::Int(25));
        assert_eq!(resolve_plain("-3"), Scalar::Int(-3));
        assert_eq!(resolve_plain("0.1"), Scalar::Float(0.1));
        assert_eq!(resolve_plain("168h"), Scalar::Str("168h"));
        assert_eq!(resolve_plain("1.2.3"), Scalar::Str("1.2.3"));
        let n = root("a: '25'\nb: !!str true\n");
        assert_eq!(
            n.get("a").expect("a").value.scalar(),
            Some(Scalar::Str("25"))
        );
        assert_eq!(
            n.get("b").expect("b").value.scalar(),
            Some(Scalar::Str("true"))
        );
    }

    #[test]
    fn env_references_split_on_the_first_two_colons_only() {
        assert_eq!(parse_env_reference("_env:A"), Some(("A", None)));
        assert_eq!(parse_env_reference("_env:A:"), Some(("A", Some(""))));
        assert_eq!(
            parse_env_reference("_env:DB:sqlite:////tmp/docker-registry.db"),
            Some(("DB", Some("sqlite:////tmp/docker-registry.db")))
        );
        assert_eq!(parse_env_reference("env:A"), None);
    }

    #[test]
    fn env_substitution_reads_the_value_as_yaml() {
        let n = root(concat!(
            "a: _env:UNSET_A:https://index.docker.io\n",
            "b: _env:UNSET_B\n",
            "c: _env:SET_C:false\n",
            "d: _env:UNSET_D:[Content-Type]\n",
            "e: _env:UNSET_E:25\n",
            "f: _env:EMPTY_F:default\n",
            "g: _env:SET_G\n",
        ));
        let lookup = |name: &str| match name {
            "SET_C" => Some((
                "true".to_string(),
                super::super::Source::Env("SET_C".into()),
            )),
            "EMPTY_F" => Some((String::new(), super::super::Source::Env("EMPTY_F".into()))),
            "SET_G" => Some((
                "[unclosed".to_string(),
                super::super::Source::Env("SET_G".into()),
            )),
            _ => None,
        };
        let n = n.substitute_env(&lookup);
        let v = |k: &str| n.get(k).expect("key").value.clone();
        assert_eq!(
            v("a").scalar(),
            Some(Scalar::Str("https://index.docker.io"))
        );
        assert!(v("b").is_null());
        assert_eq!(v("c").scalar(), Some(Scalar::Bool(true)));
        assert_eq!(v("c").env.as_ref().map(|r| r.var.as_str()), Some("SET_C"));
        let NodeKind::Seq(items) = v("d").kind else {
            panic!("a list")
        };
        assert_eq!(items[0].scalar(), Some(Scalar::Str("Content-Type")));
        assert_eq!(v("e").scalar(), Some(Scalar::Int(25)));
        assert_eq!(v("e").line, 5);
        // Set but empty: null, not the default (the old registry did the same).
        assert!(v("f").is_null());
        // Not valid YAML: kept as the string written.
        assert_eq!(v("g").scalar(), Some(Scalar::Str("[unclosed")));
    }
}
