//! Hosts in network namespaces on a private bridge, with faults the kernel can make: a link
//! taken down, and random loss one way with nftables (`numgen random`). This kernel has no
//! `tc netem`; delay and jitter come from a [`crate::Relay`] on the path.
//!
//! Layout for lab `N`: a bridge `usfbrN` in the root namespace with 10.201.N.254/24 (the test
//! process reaches every host through it), and for host `i` a namespace `usfN-NAME` whose `eth0`
//! has 10.201.N.i/24, its veth peer `usfNhI` enslaved to the bridge. Everything is deleted on
//! drop, also on panic.

use std::process::Command;

/// Runs a command, returning its stdout or a message with its stderr.
pub fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why namespaces cannot be made here (not root, no `ip netns`, no nftables), if so.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if let Err(e) = sh("ip", &["netns", "list"]) {
        return Some(format!("`ip netns` is unavailable: {e}"));
    }
    if let Err(e) = sh("nft", &["--version"]) {
        return Some(format!("nftables is unavailable: {e}"));
    }
    None
}

/// Fails the test loudly when namespaces cannot be made here: the tests that use them run as
/// root in CI, where a quiet skip would hide that they never ran.
pub fn require() {
    if let Some(why) = unavailable() {
        panic!("this test needs network namespaces and nftables (root, as in CI): {why}");
    }
}

/// Which of a host's traffic a loss applies to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Direction {
    Ingress,
    Egress,
    Both,
}

pub struct Host {
    pub name: String,
    pub netns: String,
    pub ip: String,
    /// The veth end on the bridge (root namespace).
    pub root_if: String,
}

pub struct Lab {
    pub n: u8,
    pub bridge: String,
    pub hosts: Vec<Host>,
}

impl Lab {
    /// The bridge's own address: where the test process (and its relays) sit.
    pub fn gateway(&self) -> String {
        format!("10.201.{}.254", self.n)
    }

    pub fn create(n: u8, names: &[&str]) -> Result<Lab, String> {
        let bridge = format!("usfbr{n}");
        let mut lab = Lab {
            n,
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        lab.remove_leftovers(names);
        sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
        sh(
            "ip",
            &["addr", "add", &format!("10.201.{n}.254/24"), "dev", &bridge],
        )?;
        sh("ip", &["link", "set", &bridge, "up"])?;
        for (i, name) in names.iter().enumerate() {
            let i = i + 1;
            let netns = format!("usf{n}-{name}");
            let root_if = format!("usf{n}h{i}");
            let ns_if = format!("usf{n}n{i}");
            sh("ip", &["netns", "add", &netns])?;
            lab.hosts.push(Host {
                name: name.to_string(),
                netns: netns.clone(),
                ip: format!("10.201.{n}.{i}"),
                root_if: root_if.clone(),
            });
            sh(
                "ip",
                &[
                    "link", "add", &root_if, "type", "veth", "peer", "name", &ns_if,
                ],
            )?;
            sh("ip", &["link", "set", &ns_if, "netns", &netns])?;
            sh("ip", &["link", "set", &root_if, "master", &bridge])?;
            sh("ip", &["link", "set", &root_if, "up"])?;
            sh("ip", &["-n", &netns, "link", "set", &ns_if, "name", "eth0"])?;
            sh(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("10.201.{n}.{i}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn remove_leftovers(&self, names: &[&str]) {
        let _ = sh("ip", &["link", "del", &self.bridge]);
        for (i, name) in names.iter().enumerate() {
            let _ = sh("ip", &["link", "del", &format!("usf{}h{}", self.n, i + 1)]);
            let _ = sh("ip", &["netns", "del", &format!("usf{}-{name}", self.n)]);
        }
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Takes the host's link down (`up == false`) or brings it back.
    pub fn set_link(&self, name: &str, up: bool) -> Result<(), String> {
        sh(
            "ip",
            &[
                "link",
                "set",
                &self.host(name).root_if,
                if up { "up" } else { "down" },
            ],
        )
        .map(|_| ())
    }

    /// Drops `percent` % of the host's packets in one direction or both (nftables `numgen
    /// random` in its namespace, with counters); replaces any loss set before.
    pub fn set_loss(&self, name: &str, direction: Direction, percent: u8) -> Result<(), String> {
        let h = self.host(name);
        self.clear_loss(name);
        let ways: &[(&str, &str)] = match direction {
            Direction::Ingress => &[("input", "iifname")],
            Direction::Egress => &[("output", "oifname")],
            Direction::Both => &[("input", "iifname"), ("output", "oifname")],
        };
        let nft = |words: &[&str]| {
            let mut args = vec!["netns", "exec", &h.netns, "nft"];
            args.extend_from_slice(words);
            sh("ip", &args).map(|_| ())
        };
        nft(&["add", "table", "inet", "usf"])?;
        for (hook, iface) in ways {
            nft(&[
                "add",
                "chain",
                "inet",
                "usf",
                hook,
                &format!("{{ type filter hook {hook} priority 0 ; policy accept ; }}"),
            ])?;
            let rule = format!("{iface} eth0 numgen random mod 100 < {percent} counter drop");
            let mut words = vec!["add", "rule", "inet", "usf", hook];
            words.extend(rule.split(' '));
            nft(&words)?;
        }
        Ok(())
    }

    /// Packets the host's loss rules have dropped so far (0 when none are set).
    pub fn dropped(&self, name: &str) -> u64 {
        let Ok(rules) = sh(
            "ip",
            &[
                "netns",
                "exec",
                &self.host(name).netns,
                "nft",
                "list",
                "table",
                "inet",
                "usf",
            ],
        ) else {
            return 0;
        };
        rules
            .lines()
            .filter_map(|l| {
                l.split("packets ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    pub fn clear_loss(&self, name: &str) {
        let _ = sh(
            "ip",
            &[
                "netns",
                "exec",
                &self.host(name).netns,
                "nft",
                "delete",
                "table",
                "inet",
                "usf",
            ],
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = sh("ip", &["link", "del", &h.root_if]);
            let _ = sh("ip", &["netns", "del", &h.netns]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge]);
    }
}
