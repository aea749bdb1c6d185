//! Throughput of the verify (skip) path and of full decoding.
//!
//! `cargo run --release -p dcs-rdb --example verify_speed [-- FILE.rdb]`
//!
//! Without a file it starts `redis-server` (from PATH, or `REDIS_SERVER`) on
//! a free port in a temporary directory, fills it with `DEBUG POPULATE`
//! (about 200 MB) plus big hashes, sorted sets, lists, sets and streams,
//! saves, and measures on that dump.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcs_rdb::{crc64, rdb_to_aof, verify, AofOptions, RdbReader, ReadMode};

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make_rdb() -> (PathBuf, std::process::Child, PathBuf) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("dcs-rdb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--enable-debug-command",
            "yes",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    for _ in 0..100 {
        if cli(port, &["PING"]).trim() == "PONG" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("filling redis on port {port} ...");
    cli(port, &["DEBUG", "POPULATE", "4800000", "key", "32"]);
    let lua = [
        "for i=1,300000 do redis.call('HSET','hash:'..(i%50),'field:'..i,'value:'..i) end",
        "for i=1,300000 do redis.call('ZADD','zset:'..(i%50),i/3,'member:'..i) end",
        "for i=1,300000 do redis.call('RPUSH','list:'..(i%50),'element:'..i) end",
        "for i=1,300000 do redis.call('SADD','set:'..(i%50),'m'..i) end",
        "for i=1,200000 do redis.call('XADD','stream:'..(i%20),'*','f',i,'g','payload'..i) end",
        "for i=1,100000 do redis.call('SET','small:'..i, i) end",
    ];
    for s in lua {
        cli(port, &["EVAL", s, "0"]);
    }
    cli(port, &["SAVE"]);
    (dir.join("dump.rdb"), child, dir)
}

fn rate(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
    }
    best
}

fn main() {
    let arg = std::env::args().nth(1);
    let mut server = None;
    let path = match arg {
        Some(p) => PathBuf::from(p),
        None => {
            let (p, child, dir) = make_rdb();
            server = Some((child, dir));
            p
        }
    };
    let data = std::fs::read(&path).expect("read rdb");
    let n = data.len();
    println!("file: {} ({:.1} MB)", path.display(), n as f64 / 1e6);

    let d = time(|| {
        std::hint::black_box(crc64(0, &data));
    });
    println!("crc64                     {:8.0} MB/s", rate(n, d));
    let mut keys = 0;
    let d = time(|| keys = verify(&data[..]).expect("verify").total_keys);
    println!(
        "verify (skip)             {:8.0} MB/s  ({keys} keys)",
        rate(n, d)
    );
    let d = time(|| {
        let f = std::fs::File::open(&path).unwrap();
        verify(f).expect("verify");
    });
    println!("verify from file          {:8.0} MB/s", rate(n, d));
    for mode in [ReadMode::Raw, ReadMode::Decode] {
        let d = time(|| {
            let mut r = RdbReader::new(&data[..], mode);
            while let Some(item) = r.next_item().expect("read") {
                std::hint::black_box(item);
            }
        });
        println!("read {:<20} {:8.0} MB/s", format!("{mode:?}"), rate(n, d));
    }
    let d = time(|| {
        rdb_to_aof(&data[..], std::io::sink(), AofOptions::default()).expect("aof");
    });
    println!("rdb_to_aof (to sink)      {:8.0} MB/s", rate(n, d));
    std::io::stdout().flush().unwrap();

    if let Some((mut child, dir)) = server {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(Path::new(&dir));
    }
}
