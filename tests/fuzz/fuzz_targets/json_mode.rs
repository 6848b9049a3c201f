//! JSON mode's recogniser against serde_json. Sound: bytes it accepts as a complete object parse as a JSON
//! object (a number past f64's range is valid JSON that serde_json declines; such inputs are skipped). Complete: any JSON object serde_json parses, written compactly, is accepted (within the
//! recogniser's nesting limit). Prefix-closed: every prefix of accepted bytes is accepted. (An object with
//! serde_json's reserved RawValue key is valid JSON serde_json refuses: skipped too.)
#![no_main]

use hearth_engine::json_mode::JsonState;
use libfuzzer_sys::fuzz_target;

const MAX_DEPTH: usize = 32;
const RAW_VALUE_KEY: &[u8] = b"$serde_json::private::RawValue";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut state = JsonState::default();
    let mut accepted = 0;
    for (i, &b) in data.iter().enumerate() {
        if !state.accepts(&[b]) {
            break;
        }
        assert!(state.feed(&[b]));
        accepted = i + 1;
    }
    // serde_json (its `raw_value` feature, enabled by a dependency) reserves this key for its own RawValue
    // type: it refuses valid JSON that uses it, or reads such an object as something else (`{"…RawValue":
    // "0e2"}` comes back as a number). An oracle limit, not a recogniser bug: such inputs are not judged.
    if contains(data, RAW_VALUE_KEY) {
        return;
    }
    if state.is_complete() {
        match serde_json::from_slice::<serde_json::Value>(&data[..accepted]) {
            Ok(v) => assert!(v.is_object(), "accepted a non-object"),
            Err(e) if e.to_string().starts_with("number out of range") => {}
            Err(e) => panic!(
                "accepted invalid JSON {:?}: {e}",
                String::from_utf8_lossy(&data[..accepted])
            ),
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if v.is_object() && depth(&v) <= MAX_DEPTH {
            let compact = serde_json::to_vec(&v).expect("serialise");
            let mut s = JsonState::default();
            assert!(
                s.feed(&compact) && s.is_complete(),
                "refused valid JSON {}",
                String::from_utf8_lossy(&compact)
            );
        }
    }
});
