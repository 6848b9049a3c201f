//! Structured outputs: a JSON Schema compiled into a grammar that constrains decoding (OpenAI's
//! `response_format: json_schema`, Ollama's `format: {schema}`, the arguments of a forced tool call).
//!
//! The compiler accepts the keywords it enforces and refuses every other one by name and location — a schema is
//! never half-applied. Enforced: `type` (one or a list), `properties`, `required`, `additionalProperties`,
//! `items`, `minItems`, `maxItems`, `minLength`, `maxLength`, `enum`, `const`, `anyOf`, `$ref` into `$defs` /
//! `definitions` (recursion allowed); annotations (`title`, `description`, `default`, `examples`, …) are read
//! and ignored, as they constrain nothing.
//!
//! An object's declared properties are generated in their declared order, each required one always and each
//! optional one where the model chooses; no undeclared property is generated. Every output therefore validates
//! whatever `additionalProperties` says, and the recogniser (`matcher`) never reaches a state with no valid
//! continuation.

mod matcher;

pub use matcher::SchemaState;

use serde_json::Value;
use std::collections::HashMap;

pub(crate) type NodeId = u32;

/// A schema the compiler refuses: where (a JSON pointer into the schema) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("schema {at}: {why}")]
pub struct SchemaError {
    /// JSON pointer of the offending part (`#/properties/when/format`).
    pub at: String,
    pub why: String,
}

fn err<T>(at: &str, why: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError {
        at: at.to_owned(),
        why: why.into(),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Prop {
    /// The key as it appears in the output: a JSON string, quotes included.
    pub key: Vec<u8>,
    pub value: NodeId,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Declared properties, in order; or, with none declared, any keys whose values match `extra` (`None`: the
    /// empty object only).
    Object {
        props: Vec<Prop>,
        extra: Option<NodeId>,
    },
    Array {
        items: NodeId,
        min: u32,
        max: Option<u32>,
    },
    Str {
        min: u32,
        max: Option<u32>,
    },
    Number {
        integer: bool,
    },
    /// Exact texts: `const`, `enum`, `true`/`false`, `null`.
    Literals(Vec<Vec<u8>>),
    AnyOf(Vec<NodeId>),
}

impl Node {
    /// The same node with every reference moved by `offset` (a grammar appended after other nodes).
    fn shifted(&self, offset: NodeId) -> Node {
        match self {
            Node::Object { props, extra } => Node::Object {
                props: props
                    .iter()
                    .map(|p| Prop {
                        value: p.value + offset,
                        ..p.clone()
                    })
                    .collect(),
                extra: extra.map(|e| e + offset),
            },
            Node::Array { items, min, max } => Node::Array {
                items: items + offset,
                min: *min,
                max: *max,
            },
            Node::AnyOf(ids) => Node::AnyOf(ids.iter().map(|i| i + offset).collect()),
            other => other.clone(),
        }
    }
}

/// A compiled schema.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
}

impl Grammar {
    /// Compiles a JSON Schema (draft 2020-12 / OpenAPI 3.1 subset above).
    pub fn compile(schema: &Value) -> Result<Grammar, SchemaError> {
        let mut c = Compiler {
            root: schema,
            nodes: Vec::new(),
            refs: HashMap::new(),
            any: None,
            depth: 0,
        };
        let root = c.compile(schema, "#")?;
        let mut g = Grammar {
            nodes: c.nodes,
            root,
        };
        g.prune()?;
        Ok(g)
    }

    /// Removes what can never finish (a required property whose schema only recurses, an alternative that
    /// refers only to itself), so that decoding never enters it; a schema with nothing left is refused.
    fn prune(&mut self) -> Result<(), SchemaError> {
        let n = self.nodes.len();
        let mut finite = vec![false; n];
        loop {
            let mut changed = false;
            for (i, node) in self.nodes.iter().enumerate() {
                if finite[i] {
                    continue;
                }
                let f = match node {
                    Node::Str { .. } | Node::Number { .. } => true,
                    Node::Literals(l) => !l.is_empty(),
                    Node::Object { props, .. } => props
                        .iter()
                        .all(|p| !p.required || finite[p.value as usize]),
                    Node::Array { items, min, .. } => *min == 0 || finite[*items as usize],
                    Node::AnyOf(ids) => ids.iter().any(|&id| finite[id as usize]),
                };
                if f {
                    finite[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !finite[self.root as usize] {
            return err("#", "no finite value satisfies this schema");
        }
        for node in &mut self.nodes {
            match node {
                Node::Object { props, .. } => props.retain(|p| finite[p.value as usize]),
                Node::AnyOf(ids) => ids.retain(|&id| finite[id as usize]),
                Node::Array { items, max, .. } if !finite[*items as usize] => *max = Some(0),
                _ => {}
            }
        }
        Ok(())
    }

    /// Tool calls: an object `{"name": <one tool's name>, "<key>": <a value of that tool's grammar>}`, one
    /// alternative per tool (`key`: `arguments`, or `parameters` where the model's format says so); in a
    /// one-element array when `array` (formats that always write a list).
    pub fn tool_call(key: &str, tools: &[(&str, &Grammar)], array: bool) -> Grammar {
        let mut nodes = Vec::new();
        let mut alternatives = Vec::new();
        let quoted = |s: &str| serde_json::to_vec(&Value::from(s)).unwrap_or_default();
        for (name, g) in tools {
            let offset = nodes.len() as NodeId;
            nodes.extend(g.nodes.iter().map(|n| n.shifted(offset)));
            nodes.push(Node::Literals(vec![quoted(name)]));
            let name_node = (nodes.len() - 1) as NodeId;
            nodes.push(Node::Object {
                props: vec![
                    Prop {
                        key: quoted("name"),
                        value: name_node,
                        required: true,
                    },
                    Prop {
                        key: quoted(key),
                        value: g.root + offset,
                        required: true,
                    },
                ],
                extra: None,
            });
            alternatives.push((nodes.len() - 1) as NodeId);
        }
        nodes.push(Node::AnyOf(alternatives));
        let mut root = (nodes.len() - 1) as NodeId;
        if array {
            nodes.push(Node::Array {
                items: root,
                min: 1,
                max: Some(1),
            });
            root = (nodes.len() - 1) as NodeId;
        }
        Grammar { nodes, root }
    }

    /// Whether a value is one this grammar could have generated (declared properties in any order). Checks a
    /// strict tool's arguments where the call was not forced.
    pub fn admits(&self, v: &Value) -> bool {
        self.admits_at(self.root, v, 0)
    }

    fn admits_at(&self, id: NodeId, v: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH * 2 {
            return false;
        }
        match (self.node(id), v) {
            (Node::Object { props, extra }, Value::Object(o)) => {
                let declared = |k: &str| {
                    props
                        .iter()
                        .find(|p| serde_json::to_vec(&Value::from(k)).is_ok_and(|q| q == p.key))
                };
                props.iter().all(|p| {
                    !p.required
                        || o.keys().any(|k| {
                            serde_json::to_vec(&Value::from(k.as_str())).is_ok_and(|q| q == p.key)
                        })
                }) && o.iter().all(|(k, val)| match declared(k) {
                    Some(p) => self.admits_at(p.value, val, depth + 1),
                    None => {
                        props.is_empty() && extra.is_some_and(|e| self.admits_at(e, val, depth + 1))
                    }
                })
            }
            (Node::Array { items, min, max }, Value::Array(a)) => {
                a.len() >= *min as usize
                    && max.is_none_or(|m| a.len() <= m as usize)
                    && a.iter().all(|x| self.admits_at(*items, x, depth + 1))
            }
            (Node::Str { min, max }, Value::String(s)) => {
                let n = s.chars().count();
                n >= *min as usize && max.is_none_or(|m| n <= m as usize)
            }
            (Node::Number { integer }, Value::Number(n)) => !integer || n.is_i64() || n.is_u64(),
            (Node::Literals(l), v) => serde_json::to_vec(v).is_ok_and(|b| l.contains(&b)),
            (Node::AnyOf(ids), v) => ids.iter().any(|&i| self.admits_at(i, v, depth + 1)),
            _ => false,
        }
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}

/// Keywords that describe and never constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Nested schemas deeper than this are refused (a stack bound, not a JSON Schema rule).
const MAX_DEPTH: usize = 64;

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    /// `$ref` targets compiled so far (recursion reuses them).
    refs: HashMap<String, NodeId>,
    /// The node of "any JSON value", made once.
    any: Option<NodeId>,
    depth: usize,
}

impl Compiler<'_> {
    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    /// Any JSON value: an object of any keys, an array, a string, a number, a literal — recursively.
    fn any(&mut self) -> NodeId {
        if let Some(id) = self.any {
            return id;
        }
        let id = self.push(Node::AnyOf(Vec::new()));
        self.any = Some(id);
        let obj = self.push(Node::Object {
            props: Vec::new(),
            extra: Some(id),
        });
        let arr = self.push(Node::Array {
            items: id,
            min: 0,
            max: None,
        });
        let s = self.push(Node::Str { min: 0, max: None });
        let n = self.push(Node::Number { integer: false });
        let lits = self.push(Node::Literals(vec![
            b"true".to_vec(),
            b"false".to_vec(),
            b"null".to_vec(),
        ]));
        self.nodes[id as usize] = Node::AnyOf(vec![obj, arr, s, n, lits]);
        id
    }

    fn compile(&mut self, v: &Value, at: &str) -> Result<NodeId, SchemaError> {
        self.depth += 1;
        let r = if self.depth > MAX_DEPTH {
            err(at, format!("nested more than {MAX_DEPTH} levels deep"))
        } else {
            self.compile_inner(v, at)
        };
        self.depth -= 1;
        r
    }

    fn compile_inner(&mut self, v: &Value, at: &str) -> Result<NodeId, SchemaError> {
        let o = match v {
            Value::Bool(true) => return Ok(self.any()),
            Value::Bool(false) => return err(at, "the schema `false` accepts nothing"),
            Value::Object(o) => o,
            _ => return err(at, "a schema must be an object or a boolean"),
        };
        const KNOWN: &[&str] = &[
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "minLength",
            "maxLength",
            "enum",
            "const",
            "anyOf",
            "$ref",
        ];
        for k in o.keys() {
            if !KNOWN.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                return err(
                    &format!("{at}/{}", pointer_escape(k)),
                    format!(
                        "keyword '{k}' is not supported (Hearth enforces: {})",
                        KNOWN.join(", ")
                    ),
                );
            }
        }
        if let Some(r) = o.get("$ref") {
            if let Some(other) = o
                .keys()
                .find(|k| *k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
            {
                return err(
                    &format!("{at}/{}", pointer_escape(other)),
                    "keywords beside '$ref' are not supported",
                );
            }
            let Some(r) = r.as_str() else {
                return err(&format!("{at}/$ref"), "'$ref' must be a string");
            };
            return self.reference(r, &format!("{at}/$ref"));
        }
        if o.contains_key("const") || o.contains_key("enum") {
            // An exact value: any other constraint beside it would be silently weaker or contradictory.
            if let Some(k) = o.keys().find(|k| {
                !ANNOTATIONS.contains(&k.as_str())
                    && !["const", "enum", "type"].contains(&k.as_str())
            }) {
                return err(
                    &format!("{at}/{}", pointer_escape(k)),
                    format!("keyword '{k}' beside 'enum'/'const' is not supported"),
                );
            }
        }
        if let Some(c) = o.get("const") {
            return Ok(self.push(Node::Literals(vec![canonical(c)])));
        }
        let types = self.types(o, at)?;
        if let Some(e) = o.get("enum") {
            let Some(values) = e.as_array().filter(|a| !a.is_empty()) else {
                return err(&format!("{at}/enum"), "'enum' must be a non-empty array");
            };
            let texts: Vec<Vec<u8>> = values
                .iter()
                .filter(|v| types.is_empty() || types.iter().any(|t| is_type(v, t)))
                .map(canonical)
                .collect();
            if texts.is_empty() {
                return err(
                    &format!("{at}/enum"),
                    "no 'enum' value has the schema's type",
                );
            }
            return Ok(self.push(Node::Literals(texts)));
        }
        if let Some(a) = o.get("anyOf") {
            let Some(alts) = a.as_array().filter(|a| !a.is_empty()) else {
                return err(&format!("{at}/anyOf"), "'anyOf' must be a non-empty array");
            };
            if let Some(k) = o
                .keys()
                .find(|k| !ANNOTATIONS.contains(&k.as_str()) && k.as_str() != "anyOf")
            {
                return err(
                    &format!("{at}/{}", pointer_escape(k)),
                    "keywords beside 'anyOf' are not supported (move them into each alternative)",
                );
            }
            let mut ids = Vec::new();
            for (i, alt) in alts.iter().enumerate() {
                ids.push(self.compile(alt, &format!("{at}/anyOf/{i}"))?);
            }
            return Ok(self.push(Node::AnyOf(ids)));
        }
        let types = if types.is_empty() {
            // Without `type`, the keywords present say which one is meant.
            if o.contains_key("properties") || o.contains_key("additionalProperties") {
                vec!["object"]
            } else if o.contains_key("items") {
                vec!["array"]
            } else if o.contains_key("minLength") || o.contains_key("maxLength") {
                vec!["string"]
            } else {
                self.check_unused(o, at, &[])?;
                return Ok(self.any());
            }
        } else {
            types
        };
        let mut ids = Vec::new();
        for t in &types {
            ids.push(self.typed(o, t, at)?);
        }
        let applies: Vec<&str> = types.iter().flat_map(|t| keywords_of(t)).copied().collect();
        self.check_unused(o, at, &applies)?;
        Ok(if ids.len() == 1 {
            ids[0]
        } else {
            self.push(Node::AnyOf(ids))
        })
    }

    fn types(
        &self,
        o: &serde_json::Map<String, Value>,
        at: &str,
    ) -> Result<Vec<&'static str>, SchemaError> {
        let names: Vec<&str> = match o.get("type") {
            None => return Ok(Vec::new()),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) if !a.is_empty() => {
                let mut v = Vec::new();
                for t in a {
                    match t.as_str() {
                        Some(s) => v.push(s),
                        None => return err(&format!("{at}/type"), "each type must be a string"),
                    }
                }
                v
            }
            Some(_) => return err(&format!("{at}/type"), "'type' must be a string or a list"),
        };
        names
            .into_iter()
            .map(|n| {
                TYPES
                    .iter()
                    .find(|t| **t == n)
                    .copied()
                    .ok_or_else(|| SchemaError {
                        at: format!("{at}/type"),
                        why: format!("unknown type '{n}'"),
                    })
            })
            .collect()
    }

    /// A keyword that belongs to none of the schema's types would be silently meaningless: refused.
    fn check_unused(
        &self,
        o: &serde_json::Map<String, Value>,
        at: &str,
        applies: &[&str],
    ) -> Result<(), SchemaError> {
        for k in o.keys() {
            let k = k.as_str();
            if k != "type" && !ANNOTATIONS.contains(&k) && !applies.contains(&k) {
                return err(
                    &format!("{at}/{}", pointer_escape(k)),
                    format!("keyword '{k}' does not apply to the schema's type"),
                );
            }
        }
        Ok(())
    }

    fn typed(
        &mut self,
        o: &serde_json::Map<String, Value>,
        t: &str,
        at: &str,
    ) -> Result<NodeId, SchemaError> {
        let count = |k: &str| -> Result<Option<u32>, SchemaError> {
            match o.get(k) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n <= u32::MAX as u64 => Ok(Some(n as u32)),
                    _ => err(
                        &format!("{at}/{k}"),
                        format!("'{k}' must be a non-negative integer"),
                    ),
                },
            }
        };
        Ok(match t {
            "object" => {
                let required: Vec<&str> = match o.get("required") {
                    None => Vec::new(),
                    Some(Value::Array(a)) => {
                        let mut r = Vec::new();
                        for x in a {
                            match x.as_str() {
                                Some(s) => r.push(s),
                                None => {
                                    return err(
                                        &format!("{at}/required"),
                                        "'required' must list strings",
                                    )
                                }
                            }
                        }
                        r
                    }
                    Some(_) => return err(&format!("{at}/required"), "'required' must be a list"),
                };
                let declared = match o.get("properties") {
                    None => serde_json::Map::new(),
                    Some(Value::Object(p)) => p.clone(),
                    Some(_) => {
                        return err(
                            &format!("{at}/properties"),
                            "'properties' must be an object",
                        )
                    }
                };
                if let Some(missing) = required.iter().find(|r| !declared.contains_key(**r)) {
                    return err(
                        &format!("{at}/required"),
                        format!("required property '{missing}' is not declared in 'properties'"),
                    );
                }
                let additional = match o.get("additionalProperties") {
                    None | Some(Value::Bool(true)) => Some(None),
                    Some(Value::Bool(false)) => None,
                    Some(s) => Some(Some(
                        self.compile(s, &format!("{at}/additionalProperties"))?,
                    )),
                };
                let mut props = Vec::new();
                for (name, s) in &declared {
                    let value =
                        self.compile(s, &format!("{at}/properties/{}", pointer_escape(name)))?;
                    props.push(Prop {
                        key: canonical(&Value::String(name.clone())),
                        value,
                        required: required.contains(&name.as_str()),
                    });
                }
                let extra = if props.is_empty() {
                    match additional {
                        None => None,
                        Some(None) => Some(self.any()),
                        Some(Some(id)) => Some(id),
                    }
                } else {
                    None
                };
                self.push(Node::Object { props, extra })
            }
            "array" => {
                let items = match o.get("items") {
                    None => self.any(),
                    Some(s) => self.compile(s, &format!("{at}/items"))?,
                };
                let min = count("minItems")?.unwrap_or(0);
                let max = count("maxItems")?;
                if max.is_some_and(|m| m < min) {
                    return err(&format!("{at}/maxItems"), "'maxItems' is below 'minItems'");
                }
                self.push(Node::Array { items, min, max })
            }
            "string" => {
                let min = count("minLength")?.unwrap_or(0);
                let max = count("maxLength")?;
                if max.is_some_and(|m| m < min) {
                    return err(
                        &format!("{at}/maxLength"),
                        "'maxLength' is below 'minLength'",
                    );
                }
                self.push(Node::Str { min, max })
            }
            "number" => self.push(Node::Number { integer: false }),
            "integer" => self.push(Node::Number { integer: true }),
            "boolean" => self.push(Node::Literals(vec![b"true".to_vec(), b"false".to_vec()])),
            _ => self.push(Node::Literals(vec![b"null".to_vec()])),
        })
    }

    /// A local reference: `#`, `#/$defs/NAME`, `#/definitions/NAME` or any JSON pointer into the schema.
    fn reference(&mut self, r: &str, at: &str) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let Some(pointer) = r.strip_prefix('#') else {
            return err(
                at,
                format!("only local references ('#/$defs/…') are supported, not '{r}'"),
            );
        };
        let Some(target) = self.root.pointer(pointer) else {
            return err(at, format!("'{r}' points at nothing in the schema"));
        };
        // Reserved before compiling the target, so a recursive reference finds it.
        let id = self.push(Node::AnyOf(Vec::new()));
        self.refs.insert(r.to_owned(), id);
        let inner = self.compile(target, r)?;
        if inner == id {
            return err(at, format!("'{r}' refers only to itself"));
        }
        self.nodes[id as usize] = Node::AnyOf(vec![inner]);
        Ok(id)
    }
}

/// The keywords each type gives meaning to.
fn keywords_of(t: &str) -> &'static [&'static str] {
    match t {
        "object" => &["properties", "required", "additionalProperties"],
        "array" => &["items", "minItems", "maxItems"],
        "string" => &["minLength", "maxLength"],
        _ => &[],
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        _ => v.is_null(),
    }
}

/// The exact text generated for a literal value (serde_json's compact form).
fn canonical(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// RFC 6901: `~` → `~0`, `/` → `~1`.
fn pointer_escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
