//! Footprint: an idle standalone daemon's RSS and CPU.

use std::time::Duration;

use clap::Args;
use understudy_node::Role;

use crate::site::Ctx;
use crate::stats::{met, vm, CpuMeter};
use crate::{Env, Section};

#[derive(Args, Clone)]
pub struct Opts {
    /// Seconds the daemon idles before measuring.
    #[arg(long, default_value_t = 60)]
    pub settle: u64,
    /// Seconds over which CPU is measured.
    #[arg(long, default_value_t = 30)]
    pub window: u64,
}

impl Opts {
    pub fn for_all(quick: bool) -> Opts {
        if quick {
            Opts {
                settle: 3,
                window: 3,
            }
        } else {
            Opts {
                settle: 60,
                window: 30,
            }
        }
    }
}

pub async fn run(env: &Env, o: &Opts, stamp: &str) -> Section {
    let ctx = Ctx::new(&env.bin, &env.work, "idle");
    let mut node = ctx.init("idle", Role::Standalone, &[], &[]);
    node.start().await;
    let pid = node.pid().expect("pid");
    tokio::time::sleep(Duration::from_secs(o.settle)).await;
    let meter = CpuMeter::start(pid);
    tokio::time::sleep(Duration::from_secs(o.window)).await;
    let cpu = meter.percent();
    let rss = vm(pid, "VmRSS:").unwrap_or(f64::NAN);
    let hwm = vm(pid, "VmHWM:").unwrap_or(f64::NAN);
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .map(|l| l[8..].trim().to_string())
        })
        .unwrap_or_default();
    node.stop();
    eprintln!("idle: RSS {rss:.1} MiB (peak {hwm:.1}), CPU {cpu:.2}%");
    let mut md = String::from("## 5. Idle footprint (issue 3)\n\n");
    md.push_str(stamp);
    md.push_str(&format!(
        "**Method.** `understudy init --role standalone` then `understudy serve` (release binary, default \
         settings: its own agent heartbeats its own server every 1 s). After {} s idle, CPU is \
         utime+stime from `/proc/PID/stat` over {} s, as a percentage of one core; memory is `VmRSS` \
         (and the peak `VmHWM`) from `/proc/PID/status` at the end. The process had {threads} threads.\n\n",
        o.settle, o.window
    ));
    md.push_str("| figure | value | target | |\n|---|---:|---|---|\n");
    md.push_str(&format!(
        "| RSS | **{rss:.1} MiB** (peak {hwm:.1} MiB) | under 20 MB | {} |\n",
        met(rss * 1.048576 < 20.0)
    ));
    md.push_str(&format!(
        "| CPU | **{cpu:.2} %** of one core | about 0 % | {} |\n",
        met(cpu < 1.0)
    ));
    Section {
        key: "idle",
        body: md,
    }
}
