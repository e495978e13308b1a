//! The objects of an `nft -j` listing one at a time, without holding the
//! whole document as a `serde_json::Value` (see [`super::read`]).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Calls `f(None)` when the top-level object's `nftables` array starts
/// (again, for a repeated key: the last one counts, as in a parsed `Value`),
/// then `f(Some(object))` for each of its objects; other keys are skipped.
/// `Err` when `json` is not an object with an array there.
pub(super) fn objects(json: &str, mut f: impl FnMut(Option<Value>)) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_str(json);
    (&mut de).deserialize_map(Top(&mut f))?;
    de.end()
}

struct Top<'a, F>(&'a mut F);

impl<'de, F: FnMut(Option<Value>)> Visitor<'de> for Top<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an nft -j listing")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "nftables" {
                map.next_value_seed(Array(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Array<'a, F>(&'a mut F);

impl<'de, F: FnMut(Option<Value>)> DeserializeSeed<'de> for Array<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Option<Value>)> Visitor<'de> for Array<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the nftables array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        (self.0)(None);
        while let Some(obj) = seq.next_element::<Value>()? {
            (self.0)(Some(obj));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Content, DropCounters, Object, read};
    use serde_json::json;

    /// `read` streams, with the answers the whole-document parse gave:
    /// JSON that is not a listing reads as nothing, a repeated `nftables`
    /// key keeps the last array, an unknown shape spoils the content but
    /// not the drop counters.
    #[test]
    fn streaming_reads_like_the_whole_document() {
        let none = (None, DropCounters::new());
        assert_eq!(read("[]"), none);
        assert_eq!(read(r#"{"other": 1}"#), none);
        assert_eq!(read(r#"{"nftables": 1}"#), none);
        assert_eq!(read(r#"{"nftables": []} x"#), none);
        let l = r#"{"nftables": [{"chain": {"name": "x"}}], "a": [1],
                    "nftables": [{"chain": {"name": "y"}}], "b": {}}"#;
        let want = Content::from([("chain y".to_string(), Object::Chain(0))]);
        assert_eq!(read(l), (Some(want), DropCounters::new()), "the last array");
        let rule =
            json!({"rule": {"chain": "c", "expr": [{"counter": {"packets": 5}}, {"drop": null}]}});
        let bad = json!({"set": {"name": "s", "elem": [{"what": 1}]}});
        let l = json!({"nftables": [bad, rule, 7]}).to_string();
        assert_eq!(read(&l), (None, DropCounters::from([("c".to_string(), 5)])));
    }
}
