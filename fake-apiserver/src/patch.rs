//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902) over `serde_json::Value`.

use serde_json::{Map, Value};

/// Applies a JSON merge patch in place: objects merge key by key, `null` deletes, anything else
/// (arrays included) replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Applies a JSON patch (a list of operations) to `doc`; the error says which operation failed.
pub fn json_patch(mut doc: Value, ops: &Value) -> Result<Value, String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for (i, op) in ops.iter().enumerate() {
        apply_op(&mut doc, op).map_err(|e| format!("JSON patch operation {i}: {e}"))?;
    }
    Ok(doc)
}

/// One RFC 6902 operation.
fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let field = |name: &str| {
        op.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing \"{name}\""))
    };
    let value = || op.get("value").cloned().ok_or("missing \"value\"");
    let path = field("path")?;
    match field("op")? {
        "add" => add(doc, path, value()?),
        "remove" => remove(doc, path).map(drop),
        "replace" => {
            remove(doc, path)?;
            add(doc, path, value()?)
        }
        "move" => {
            let moved = remove(doc, field("from")?)?;
            add(doc, path, moved)
        }
        "copy" => {
            let copied = get(doc, field("from")?)?.clone();
            add(doc, path, copied)
        }
        "test" if *get(doc, path)? == value()? => Ok(()),
        "test" => Err(format!("test failed at {path}")),
        other => Err(format!("unknown op {other:?}")),
    }
}

/// Splits a JSON pointer into unescaped reference tokens.
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("bad pointer {pointer:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// The value at a pointer.
fn get<'a>(doc: &'a Value, pointer: &str) -> Result<&'a Value, String> {
    let mut cur = doc;
    for t in tokens(pointer)? {
        cur = child(cur, &t).ok_or_else(|| format!("no value at {pointer}"))?;
    }
    Ok(cur)
}

/// A child of an object (by key) or array (by index).
fn child<'a>(v: &'a Value, token: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(token),
        Value::Array(a) => a.get(token.parse::<usize>().ok()?),
        _ => None,
    }
}

/// The container holding the pointer's target, and the target's last token.
fn parent_mut<'a>(doc: &'a mut Value, pointer: &str) -> Result<(&'a mut Value, String), String> {
    let mut toks = tokens(pointer)?;
    let last = toks
        .pop()
        .ok_or("the whole document cannot be the target")?;
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(&t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("no value at {pointer}"))?;
    }
    Ok((cur, last))
}

/// RFC 6902 add: sets an object member, or inserts into an array (`-` appends).
fn add(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    if pointer.is_empty() {
        *doc = value;
        return Ok(());
    }
    match parent_mut(doc, pointer)? {
        (Value::Object(m), key) => {
            m.insert(key, value);
            Ok(())
        }
        (Value::Array(a), idx) => {
            let i = if idx == "-" {
                a.len()
            } else {
                idx.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("bad array index at {pointer}"))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("cannot add below a scalar at {pointer}")),
    }
}

/// RFC 6902 remove: the target must exist; returns what was removed.
fn remove(doc: &mut Value, pointer: &str) -> Result<Value, String> {
    let missing = || format!("no value at {pointer}");
    match parent_mut(doc, pointer)? {
        (Value::Object(m), key) => m.remove(&key).ok_or_else(missing),
        (Value::Array(a), idx) => match idx.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1});
        merge(
            &mut doc,
            &json!({"a": {"b": null, "d": 3}, "l": [3], "x": {"y": 1}}),
        );
        assert_eq!(
            doc,
            json!({"a": {"c": 2, "d": 3}, "l": [3], "x": {"y": 1}}),
            "null deletes, objects merge, arrays and scalars are replaced"
        );
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 3]});
        let ops = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "add", "path": "/list/1", "value": 2},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
            {"op": "copy", "from": "/list/0", "path": "/first"},
            {"op": "move", "from": "/first", "path": "/moved"},
            {"op": "remove", "path": "/list/0"},
            {"op": "test", "path": "/moved", "value": 1},
        ]);
        assert_eq!(
            json_patch(doc.clone(), &ops).unwrap(),
            json!({"metadata": {"labels": {"a": "x", "b/c": "2"}}, "list": [2, 3, 4], "moved": 1})
        );
        let failing = json!([{"op": "test", "path": "/list/0", "value": 9}]);
        assert!(
            json_patch(doc.clone(), &failing).is_err(),
            "a failed test op fails the patch"
        );
        let missing = json!([{"op": "replace", "path": "/nope", "value": 1}]);
        assert!(
            json_patch(doc, &missing).is_err(),
            "replace needs an existing target"
        );
    }
}
