//! The compiler's refusals, the recogniser's verdicts on known texts, and a random walk through each schema's
//! language: every step has a continuation, and every finished output parses and validates with an independent
//! JSON Schema validator (the `jsonschema` crate).

use super::*;
use serde_json::json;
use std::sync::Arc;

fn state(schema: &Value) -> SchemaState {
    SchemaState::new(Arc::new(Grammar::compile(schema).expect("compiles")))
}

fn whole(schema: &Value, text: &str) -> bool {
    let mut s = state(schema);
    s.feed(text.as_bytes()) && s.is_complete()
}

fn refusal(schema: Value) -> SchemaError {
    Grammar::compile(&schema).expect_err("refused")
}

#[test]
fn unsupported_keywords_are_refused_by_name_and_place() {
    for (kw, v) in [
        ("pattern", json!("^a")),
        ("format", json!("date-time")),
        ("minimum", json!(0)),
        ("maximum", json!(9)),
        ("multipleOf", json!(2)),
        ("oneOf", json!([{"type": "string"}])),
        ("allOf", json!([{"type": "string"}])),
        ("not", json!({"type": "string"})),
        ("prefixItems", json!([])),
        ("uniqueItems", json!(true)),
        ("patternProperties", json!({})),
        ("minProperties", json!(1)),
        ("if", json!({})),
    ] {
        let mut inner = json!({"type": "string"});
        inner[kw] = v;
        let e = refusal(json!({"type": "object", "properties": {"a": inner}}));
        assert_eq!(e.at, format!("#/properties/a/{kw}"), "{e}");
        assert!(e.why.contains(kw), "{e}");
    }
}

#[test]
fn malformed_schemas_are_refused() {
    let cases = [
        (json!({"type": "object", "required": ["x"]}), "#/required"),
        (json!({"type": "strin"}), "#/type"),
        (
            json!({"type": "array", "minItems": 3, "maxItems": 2}),
            "#/maxItems",
        ),
        (json!({"$ref": "https://example.com/s.json"}), "#/$ref"),
        (json!({"$ref": "#/$defs/missing"}), "#/$ref"),
        (json!({"$ref": "#/$defs/a", "type": "string"}), "#/type"),
        (json!(false), "#"),
        (json!(3), "#"),
        (json!({"enum": []}), "#/enum"),
        (json!({"type": "string", "enum": [1, 2]}), "#/enum"),
        (json!({"type": "string", "minItems": 1}), "#/minItems"),
        (
            json!({"anyOf": [{"type": "string"}], "type": "string"}),
            "#/type",
        ),
        (json!({"type": "string", "maxLength": -1}), "#/maxLength"),
        (json!({"enum": ["a"], "maxLength": 1}), "#/maxLength"),
        // Only infinite values: a required property that recurses forever.
        (
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "object",
            "properties": {"x": {"$ref": "#/$defs/a"}}, "required": ["x"]}}}),
            "#",
        ),
        (
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}),
            "#",
        ),
    ];
    for (schema, at) in cases {
        assert_eq!(
            Grammar::compile(&schema).expect_err("refused").at,
            at,
            "{schema}"
        );
    }
}

#[test]
fn known_texts_are_judged() {
    let person = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 5},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
            "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pet"}]}
        },
        "required": ["name", "age"],
        "additionalProperties": false,
        "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}}, "required": ["kind"]}}
    });
    for ok in [
        r#"{"name":"Ann","age":3}"#,
        r#"{ "name" : "Ann" , "age" : -30 , "tags" : [ "a" , "b" ] }"#,
        r#"{"name":"Ann","age":0,"pet":null}"#,
        r#"{"name":"Ann","age":0,"pet":{"kind":"cat"}}"#,
        r#"{"name":"\u00e9\ud83d\ude00","age":1}"#,
        r#"{"name":"Zoë","age":1,"tags":[]}"#,
    ] {
        assert!(whole(&person, ok), "{ok}");
    }
    for bad in [
        r#"{"age":3,"name":"Ann"}"#,       // declared order
        r#"{"name":"Ann"}"#,               // required age
        r#"{"name":"","age":3}"#,          // minLength
        r#"{"name":"Annabel","age":3}"#,   // maxLength
        r#"{"name":"Ann","age":3.5}"#,     // integer
        r#"{"name":"Ann","age":3,"x":1}"#, // undeclared
        r#"{"name":"Ann","age":3,"tags":["c"]}"#,
        r#"{"name":"Ann","age":3,"tags":["a","a","a"]}"#,
        r#"{"name":"Ann","age":3,"pet":{}}"#,
        r#"{"name":"\ud83d","age":1}"#, // lone surrogate
        r#"{"name":"Ann","age":3} "#,   // nothing after the value
        r#"{"name":"Ann","age":01}"#,
    ] {
        assert!(!whole(&person, bad), "{bad}");
    }
    // A bare number is complete when it could end; `any` takes whatever JSON is.
    assert!(whole(&json!({"type": "number"}), "-1.5e3"));
    assert!(!whole(&json!({"type": "number"}), "-"));
    assert!(whole(&json!({}), r#"[1,{"a":[true,null]},"x"]"#));
    assert!(whole(&json!({"type": ["string", "null"]}), "null"));
    // Recursion through $ref.
    let tree = json!({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["kids"]}}});
    assert!(whole(
        &tree,
        r#"{"kids":[{"kids":[]},{"kids":[{"kids":[]}]}]}"#
    ));
}

/// xorshift64*: a reproducible walk without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Random outputs of a schema, byte by byte from the allowed ones: never stuck, always valid when finished.
fn walk(schema: &Value, seed: u64, runs: usize) {
    walk_grammar(
        Arc::new(Grammar::compile(schema).expect("compiles")),
        schema,
        seed,
        runs,
    );
}

/// Random walks through `grammar`'s language, each finished output validated against `schema`.
fn walk_grammar(grammar: Arc<Grammar>, schema: &Value, seed: u64, runs: usize) {
    let validator = jsonschema::validator_for(schema).expect("the validator takes the schema");
    let mut alphabet: Vec<Vec<u8>> = b"{}[],:\" -.0123456789eE+abcdefghijklmnopqrstuvwxyz_\\/"
        .iter()
        .map(|&b| vec![b])
        .collect();
    alphabet.push("é".as_bytes().to_vec());
    alphabet.push("😀".as_bytes().to_vec());
    let mut rng = Rng(seed);
    let mut finished = 0;
    for _ in 0..runs {
        let mut s = SchemaState::new(grammar.clone());
        let mut out = Vec::new();
        while out.len() < 4000 {
            if s.is_complete() && rng.below(3) == 0 {
                break;
            }
            let allowed: Vec<&Vec<u8>> = alphabet.iter().filter(|b| s.accepts(b)).collect();
            if allowed.is_empty() {
                assert!(
                    s.is_complete(),
                    "stuck after {:?}",
                    String::from_utf8_lossy(&out)
                );
                break;
            }
            // Structural bytes first, most of the time, so that walks end.
            let closing: Vec<&&Vec<u8>> = allowed
                .iter()
                .filter(|b| matches!(b[0], b'}' | b']' | b'"' | b','))
                .collect();
            let pick = if !closing.is_empty() && rng.below(4) == 0 {
                *closing[rng.below(closing.len())]
            } else {
                allowed[rng.below(allowed.len())]
            };
            assert!(s.feed(pick));
            out.extend_from_slice(pick);
        }
        if !s.is_complete() {
            continue;
        }
        finished += 1;
        let text = String::from_utf8(out).expect("UTF-8");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(
            validator.is_valid(&v),
            "{text} does not validate against {schema}"
        );
    }
    assert!(
        finished >= runs / 4,
        "only {finished} of {runs} walks finished"
    );
}

#[test]
fn random_outputs_always_validate() {
    let schemas = [
        json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 8}, "n": {"type": "integer"},
            "ok": {"type": "boolean"}, "x": {"type": ["number", "null"]},
            "list": {"type": "array", "items": {"type": "string", "minLength": 2}, "minItems": 1, "maxItems": 3}},
            "required": ["name", "list"]}),
        json!({"enum": ["red", "green", 3, null, {"a": 1}]}),
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        json!({"anyOf": [{"type": "string", "maxLength": 3}, {"type": "array", "items": {"const": 7}}]}),
        json!({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {
            "v": {"type": "number"}, "next": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}},
            "required": ["v", "next"]}}}),
        json!({"type": "array", "items": {}, "maxItems": 4}),
        json!({"type": "object", "properties": {"a": {"type": "object"}, "b": {"type": "string", "minLength": 3}}}),
    ];
    for (i, s) in schemas.iter().enumerate() {
        walk(s, 0x9e37_79b9 + i as u64, 60);
    }
}

/// A forced tool call: the name of one of the tools and arguments of that tool's schema, nothing else — even
/// where a tool's schema has `$defs` of its own (each tool's grammar keeps its references).
#[test]
fn tool_calls_name_a_tool_and_validate_its_arguments() {
    let weather = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]});
    let list = json!({"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"},
        "maxItems": 3}}, "required": ["items"], "$defs": {"item": {"type": "object", "properties": {
        "n": {"type": "integer"}}, "required": ["n"]}}});
    let empty = json!({"type": "object", "properties": {}});
    let grammars: Vec<Grammar> = [&weather, &list, &empty]
        .iter()
        .map(|s| Grammar::compile(s).expect("compiles"))
        .collect();
    let named = [
        ("get_weather", &grammars[0]),
        ("add_items", &grammars[1]),
        ("ping", &grammars[2]),
    ];
    let call = |name: &str, args: &Value, key: &str| {
        let mut props = serde_json::Map::new();
        props.insert("name".into(), json!({"const": name}));
        props.insert(key.into(), args.clone());
        json!({"type": "object", "properties": props, "required": ["name", key],
               "additionalProperties": false})
    };
    // The validator's copy keeps the `$defs` at its root, where `#/$defs/item` points.
    let mut list_args = list.clone();
    list_args.as_object_mut().expect("object").remove("$defs");
    let any = json!({"anyOf": [call("get_weather", &weather, "arguments"),
                               call("add_items", &list_args, "arguments"),
                               call("ping", &empty, "arguments")],
                     "$defs": list["$defs"]});
    walk_grammar(
        Arc::new(Grammar::tool_call("arguments", &named, false)),
        &any,
        7,
        90,
    );
    // One tool, under `parameters`, in a one-element list.
    let one = json!({"type": "array", "items": call("get_weather", &weather, "parameters"),
                     "minItems": 1, "maxItems": 1});
    walk_grammar(
        Arc::new(Grammar::tool_call("parameters", &named[..1], true)),
        &one,
        8,
        60,
    );
    let g = Arc::new(Grammar::tool_call("arguments", &named, false));
    let accepts = |text: &str| {
        let mut s = SchemaState::new(g.clone());
        s.feed(text.as_bytes()) && s.is_complete()
    };
    assert!(accepts(r#"{"name": "ping", "arguments": {}}"#));
    assert!(accepts(
        r#"{"name":"add_items","arguments":{"items":[{"n":1}]}}"#
    ));
    assert!(!accepts(r#"{"name": "pong", "arguments": {}}"#));
    assert!(accepts(r#"{"name": "ping", "arguments": {"x": 1}}"#)); // no properties: any
    assert!(!accepts(
        r#"{"name": "get_weather", "arguments": {"city": "a", "x": 1}}"#
    ));
    assert!(!accepts(r#"{"arguments": {}, "name": "ping"}"#));
}
