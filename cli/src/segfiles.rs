//! The CLI's own knowledge of segment file names (`0000000042.seg`,
//! `0000000042.hint`), in one place until the library exposes it.

use std::path::{Path, PathBuf};

use anyhow::Result;

/// Whether a directory entry's name looks like a segment file: what
/// [`check_store`](crate::common::check_store) accepts as a store.
pub fn looks_like_segment_file(name: &str) -> bool {
    name.ends_with(".seg") && name.len() == 14
}

/// Segment ids in `dir`, ascending.
pub fn segment_ids(dir: &Path) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".seg")?;
            (stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()))
                .then(|| stem.parse().ok())
                .flatten()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The segment file of segment `id`.
pub fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.seg"))
}

/// The hint file of segment `id`.
pub fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.hint"))
}
