//! Memory per tracked key, measured with a counting allocator: msec's bounded store vs governor's default
//! keyed store, and one Redis rate-limit key (`MEMORY USAGE`, when Redis runs on 127.0.0.1:6379).
//!
//! Run: `cargo bench -p msec-ratelimit --bench memory`
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::num::NonZeroU32;
use std::sync::Arc;

use msec_core::clock::SystemClock;
use msec_ratelimit::{Key, LocalLimiter, Quota};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: u32 = 100_000;

fn net(region: &Region<'_, System>) -> isize {
    let c = region.change();
    c.bytes_allocated as isize - c.bytes_deallocated as isize + c.bytes_reallocated
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

fn main() {
    let quota = Quota::per_minute(10);
    let r = Region::new(GLOBAL);
    let local = LocalLimiter::new(quota, N as usize, Arc::new(SystemClock));
    for i in 0..N {
        local.check(&Key::ip(ip(i), 32, 64), NonZeroU32::MIN);
    }
    let msec = net(&r);
    let tracked = local.tracked_keys();

    let r = Region::new(GLOBAL);
    let gov = governor::RateLimiter::keyed(quota.to_governor());
    for i in 0..N {
        let _ = gov.check_key(&ip(i));
    }
    let governor_bytes = net(&r);

    println!("memory per tracked key ({N} distinct IPv4 keys, cap {N}):");
    println!(
        "  msec LocalLimiter:       {:>6.1} B/key  ({} keys tracked, {} B)",
        msec as f64 / f64::from(N),
        tracked,
        msec
    );
    println!(
        "  governor keyed (HashMap): {:>6.1} B/key  ({} B)",
        governor_bytes as f64 / f64::from(N),
        governor_bytes
    );
    println!(
        "  documented bound:         {:>6} B/key of the cap",
        msec_ratelimit::BYTES_PER_KEY_BOUND
    );
    drop((local, gov));

    // One Redis rate-limit key, as the Lua script writes it (a decimal TAT in microseconds with a PX TTL).
    if let Ok(mut s) = TcpStream::connect("127.0.0.1:6379") {
        let key = "msec-bench-mem:rl:per-ip:ip:203.0.113.7";
        let cmds = format!(
            "*5\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$16\r\n1763950000123456\r\n$2\r\nPX\r\n$5\r\n60000\r\n*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n${}\r\n{key}\r\n*2\r\n$3\r\nDEL\r\n${}\r\n{key}\r\n",
            key.len(),
            key.len(),
            key.len()
        );
        s.write_all(cmds.as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let mut got = String::new();
        while got.matches("\r\n").count() < 3 {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let usage = got.lines().nth(1).unwrap_or("?").trim_start_matches(':').to_owned();
        println!("  Redis (one rule key, MEMORY USAGE): {usage} B/key");
    }
}
