//! Runs inputs through the `open_dir` or `ops` target body without
//! libFuzzer, timing each: `cargo run --release --example replay -- ops FILE...`
//! (`CAIRN_FUZZ_TRACE=1` prints every operation of `ops`).

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay open_dir|ops FILE...");
    let run: fn(&[u8]) = match target.as_str() {
        "open_dir" => cairn_fuzz::open_dir::run,
        "ops" => cairn_fuzz::ops::run,
        t => panic!("unknown target {t}"),
    };
    for path in args {
        let data = std::fs::read(&path).expect("read input");
        let t = std::time::Instant::now();
        run(&data);
        println!("{:>10.3} ms  {path}", t.elapsed().as_secs_f64() * 1e3);
    }
}
