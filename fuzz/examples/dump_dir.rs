//! Writes the store directory an `open_dir` input builds into a real
//! directory, to inspect with the `cairn` CLI:
//! `cargo run --example dump_dir -- INPUT OUTDIR`.

fn main() {
    let mut args = std::env::args().skip(1);
    let input = args.next().expect("usage: dump_dir INPUT OUTDIR");
    let out = std::path::PathBuf::from(args.next().expect("usage: dump_dir INPUT OUTDIR"));
    let data = std::fs::read(&input).expect("read input");
    let dir = cairn_fuzz::dir::DirInput::decode(&data);
    std::fs::create_dir_all(&out).expect("create OUTDIR");
    let sim = dir.build();
    for f in &dir.files {
        let path = cairn_fuzz::dir::dir().join(&f.name);
        if let Some(bytes) = sim.file_bytes(&path) {
            std::fs::write(out.join(&f.name), bytes).expect("write");
            println!("{}", f.name);
        }
    }
}
