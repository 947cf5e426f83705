//! The key layout on a Redis-protocol server (docs/format.md, "Module
//! keys on a Redis-protocol server"): a key with tag `T` and name `N` is
//! stored as `prefix + "{" + T + "}" + N`, an untagged key as
//! `prefix + N`. The braces make `T` the key's Redis Cluster hash tag, so
//! all keys of one tag share a slot.

use crate::backend::Key;
use crate::error::{Error, Result};

/// The stored key of `key` under `prefix`.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad tag ([`Key::check_tag`]), or an
/// untagged name that starts with `{` (it would read back as a tag).
pub(crate) fn encode(prefix: &[u8], key: &Key) -> Result<Vec<u8>> {
    key.check_tag()?;
    if key.tag().is_none() && key.name().first() == Some(&b'{') {
        return Err(Error::InvalidArgument(format!(
            "key {key:?}: an untagged name may not start with '{{' on a Redis-protocol server"
        )));
    }
    let mut out = Vec::with_capacity(prefix.len() + key.name().len() + 34);
    out.extend_from_slice(prefix);
    if let Some(t) = key.tag() {
        out.push(b'{');
        out.extend_from_slice(t);
        out.push(b'}');
    }
    out.extend_from_slice(key.name());
    Ok(out)
}

/// The stored keys of `keys`, which must share one tag (or, on a
/// cluster, be a single untagged key): a cluster could not apply them
/// atomically otherwise.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad tag, keys of different tags, or
/// (if `cluster`) several untagged keys.
pub(crate) fn encode_all(prefix: &[u8], keys: &[Key], cluster: bool) -> Result<Vec<Vec<u8>>> {
    if let Some(first) = keys.first() {
        if let Some(k) = keys.iter().find(|k| k.tag() != first.tag()) {
            return Err(Error::InvalidArgument(format!(
                "one operation on keys of different tags ({first:?} and {k:?}): \
                 a Redis Cluster could not apply it atomically"
            )));
        }
        if cluster && first.tag().is_none() && keys.len() > 1 {
            return Err(Error::InvalidArgument(format!(
                "one operation on {} untagged keys ({first:?}, …): a Redis Cluster keeps \
                 them in different slots; give them a tag",
                keys.len()
            )));
        }
    }
    keys.iter().map(|k| encode(prefix, k)).collect()
}

/// The name of a stored key under `prefix`, or `None` if it is not one of
/// ours (another prefix, or a broken `{tag}`).
pub(crate) fn decode<'a>(prefix: &[u8], stored: &'a [u8]) -> Option<&'a [u8]> {
    let rest = stored.strip_prefix(prefix)?;
    match rest.first() {
        Some(b'{') => {
            let close = rest.iter().position(|&b| b == b'}')?;
            Some(&rest[close + 1..])
        }
        _ => Some(rest),
    }
}

/// `bytes` with Redis glob's special characters (`*?[]\`) escaped, for a
/// `SCAN MATCH` pattern that matches them literally.
pub(crate) fn glob_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The `SCAN MATCH` patterns that find every stored key under `prefix`
/// whose name starts with `name_prefix`: untagged and tagged ones (a
/// superset for the tagged; callers check the decoded name).
pub(crate) fn scan_patterns(prefix: &[u8], name_prefix: &[u8]) -> Vec<Vec<u8>> {
    let p = glob_escape(prefix);
    let n = glob_escape(name_prefix);
    let mut all = p.clone();
    all.push(b'*');
    if name_prefix.is_empty() {
        return vec![all];
    }
    let mut untagged = p.clone();
    untagged.extend_from_slice(&n);
    untagged.push(b'*');
    let mut tagged = p;
    tagged.extend_from_slice(b"{*}");
    tagged.extend_from_slice(&n);
    tagged.push(b'*');
    vec![untagged, tagged]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(t: &str, n: &[u8]) -> Key {
        Key::tagged(t.as_bytes().to_vec(), n.to_vec())
    }

    #[test]
    fn encode_decode_round_trip_binary_names() {
        for key in [
            Key::new(b"plain".to_vec()),
            Key::new(vec![0, 255, b'}', b'{']),
            Key::new(b"a{b}c".to_vec()),
            tagged("u42", b"sess\0ion"),
            tagged("a:b-c_d", b""),
            tagged("t", b"{not a tag}"),
        ] {
            let s = encode(b"cairn:", &key).expect("encode");
            assert!(s.starts_with(b"cairn:"));
            if let Some(t) = key.tag() {
                assert_eq!(s[6], b'{');
                assert_eq!(&s[7..7 + t.len()], t);
            }
            assert_eq!(decode(b"cairn:", &s), Some(key.name()), "{key:?}");
        }
        assert_eq!(
            encode(b"p:", &tagged("T", b"n")).expect("encode"),
            b"p:{T}n".to_vec()
        );
    }

    #[test]
    fn decode_refuses_foreign_keys() {
        assert_eq!(decode(b"cairn:", b"other:x"), None);
        assert_eq!(decode(b"cairn:", b"cairn:{broken"), None);
        assert_eq!(decode(b"cairn:", b"cairn:x"), Some(&b"x"[..]));
    }

    #[test]
    fn bad_tags_and_mixed_tags_are_refused() {
        assert!(matches!(
            encode(b"p", &tagged("a b", b"n")),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            encode(b"p", &tagged("a}", b"n")),
            Err(Error::InvalidArgument(_))
        ));
        let err = encode(b"p", &Key::new(b"{t}n".to_vec()));
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("may not start")));
        let two = [Key::new(b"1".to_vec()), Key::new(b"2".to_vec())];
        assert_eq!(encode_all(b"p", &two, false).expect("one server").len(), 2);
        let err = encode_all(b"p", &two, true);
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("untagged")));
        let err = encode_all(b"p", &[tagged("a", b"1"), tagged("b", b"2")], false);
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("different tags")));
        let err = encode_all(b"p", &[tagged("a", b"1"), Key::new(b"2".to_vec())], false);
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
        assert_eq!(
            encode_all(b"p", &[tagged("a", b"1"), tagged("a", b"2")], true)
                .expect("same tag")
                .len(),
            2
        );
    }

    #[test]
    fn glob_escape_escapes_exactly_the_special_characters() {
        assert_eq!(
            glob_escape(b"a*b?c[d]e\\f{g}"),
            b"a\\*b\\?c\\[d\\]e\\\\f{g}".to_vec()
        );
        assert_eq!(glob_escape(b"plain:"), b"plain:".to_vec());
        assert_eq!(scan_patterns(b"p*", b""), vec![b"p\\**".to_vec()]);
        assert_eq!(
            scan_patterns(b"p:", b"s?"),
            vec![b"p:s\\?*".to_vec(), b"p:{*}s\\?*".to_vec()]
        );
    }
}
