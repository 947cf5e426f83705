//! Arbitrary operation sequences against a BTreeMap model, with reopens
//! and compactions.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || {
        cairn::Options::new()
            .sync_policy(cairn::SyncPolicy::Never)
            .max_segment_bytes(4096)
            .open(dir.path())
            .expect("open")
    };
    let mut db = open();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for chunk in data.chunks(4) {
        let op = chunk[0] % 7;
        let key = vec![b'k', *chunk.get(1).unwrap_or(&0) % 8];
        let val: Vec<u8> = chunk.get(2..).unwrap_or(&[]).to_vec();
        match op {
            0 => {
                db.put(&key, &val).expect("put");
                model.insert(key, val);
            }
            1 => {
                let existed = db.delete(&key).expect("delete");
                assert_eq!(existed, model.remove(&key).is_some());
            }
            2 => {
                let delta = i64::from(*chunk.get(2).unwrap_or(&1)) - 128;
                let cur = model.get(&key).cloned();
                let parsed = match &cur {
                    None => Some(0i64),
                    Some(v) => std::str::from_utf8(v).ok().and_then(|s| s.parse::<i64>().ok()).filter(|n| n.to_string().as_bytes() == v.as_slice()),
                };
                match (db.incr(&key, delta), parsed.and_then(|p| p.checked_add(delta))) {
                    (Ok(n), Some(m)) => {
                        assert_eq!(n, m);
                        model.insert(key, n.to_string().into_bytes());
                    }
                    (Err(_), None) => {}
                    (Err(cairn::Error::NotAnInteger), Some(_)) => {}
                    (r, m) => panic!("incr mismatch: {r:?} vs {m:?}"),
                }
            }
            3 => {
                drop(db);
                db = open();
            }
            4 => {
                let mut b = cairn::Batch::new();
                b.push_put(&key, &val, None);
                b.push_delete([b'k', (key[1] + 1) % 8]);
                db.write_batch(b).expect("batch");
                model.insert(key.clone(), val);
                model.remove(&vec![b'k', (key[1] + 1) % 8]);
            }
            5 => {
                assert_eq!(db.get(&key).expect("get"), model.get(&key).cloned());
            }
            _ => {
                db.compact().expect("compact");
            }
        }
    }
    for (k, v) in &model {
        assert_eq!(db.get(k).expect("get").as_ref(), Some(v));
    }
    assert_eq!(db.len().expect("len"), model.len());
});
