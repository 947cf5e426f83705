//! Shared code of cairn's fuzz targets: the input formats (how arbitrary
//! bytes become a store directory or an operation sequence), the
//! independent encoder of the on-disk format for checksum fix-ups and
//! seeds, and the bodies of the `open_dir` and `ops` targets, so that the
//! seed generator (`cargo run --example gen_seeds`) can run them too.
#![warn(missing_docs)]

pub mod dir;
/// The independent format oracle the integration tests use too: this is
/// `tests/common/format.rs` of the cairn repository, compiled here as it
/// is (one encoder of docs/format.md outside `src/`, not two).
#[path = "../../tests/common/format.rs"]
pub mod format;
pub mod open_dir;
pub mod ops;

#[cfg(test)]
mod tests {
    use crate::format::*;

    #[test]
    fn generated_records_decode() {
        let salt = salt_for(1);
        let mut seg = segment_header(1, salt, 0).to_vec();
        push_record(&mut seg, salt, &Record::put(1, b"a", b"b"));
        let r = cairn::fuzzing::decode_record(&seg[32..], salt, 32);
        assert_eq!(r, Some((1, 1, 1, 1, 34)));
        assert_eq!(
            cairn::fuzzing::scan_segment(&seg, false, false).ok(),
            Some(1)
        );
        let mut broken = seg.clone();
        broken[0] ^= 1;
        broken[40] = 7;
        broken[0] ^= 1;
        assert!(cairn::fuzzing::decode_record(&broken[32..], salt, 32).is_none());
        assert_eq!(fix_record_checksums(&mut broken), 1);
        assert!(cairn::fuzzing::decode_record(&broken[32..], salt, 32).is_some());
    }

    #[test]
    fn generated_hints_decode() {
        let e = HintEntry {
            seq: 1,
            expires: 0,
            offset: 32,
            key: b"a".to_vec(),
            value_len: 1,
            kind: kind::PUT,
        };
        let h = encode_hint(1, 7, 66, 1, &[e]);
        assert_eq!(cairn::fuzzing::decode_hint(&h, 1, 66, 7), Ok(1));
        let mut g = h.clone();
        g[40] ^= 0xff; // the offset field of the entry
        g[16] = 9; // the id
        assert!(cairn::fuzzing::decode_hint(&g, 1, 66, 7).is_err());
        g[40] ^= 0xff;
        fix_hint(&mut g, 1, 7, 66);
        assert_eq!(g, h);
    }
}
