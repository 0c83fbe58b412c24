//! Networks of namespaces for the tests: an "internet" with routers that
//! do NAT (nftables masquerade) and homes behind them. Only what the test
//! itself creates is touched, and everything is deleted when the value is
//! dropped (processes started in a namespace must be stopped first:
//! declare the network before them).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Namespaces made for one test.
pub struct Net {
    tag: String,
    made: Vec<String>,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// A fresh set of names, or why this machine cannot make namespaces
    /// with NAT (not root, no `ip`, no `nft`): the caller skips then.
    pub fn new() -> Result<Net, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let net = Net {
            tag: format!("cd{}x{n}", std::process::id()),
            made: Vec::new(),
        };
        run("nft", &["--version"]).map_err(|e| format!("no nftables ({e})"))?;
        let probe = net.ns("probe");
        run("ip", &["netns", "add", &probe]).map_err(|e| format!("no namespaces ({e})"))?;
        run("ip", &["netns", "del", &probe])?;
        Ok(net)
    }

    /// The full name of namespace `name` of this test.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    /// Makes namespace `name`, its loopback up.
    pub fn add(&mut self, name: &str) -> Result<(), String> {
        let ns = self.ns(name);
        run("ip", &["netns", "add", &ns])?;
        self.made.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])
    }

    /// Runs `ip` in namespace `name`.
    pub fn ip(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let ns = self.ns(name);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Links `a` and `b` with a veth pair (`a_dev` in `a`, `b_dev` in `b`),
    /// addressed `a_addr` and `b_addr` (with their prefix length).
    pub fn link(
        &self,
        (a, a_dev, a_addr): (&str, &str, &str),
        (b, b_dev, b_addr): (&str, &str, &str),
    ) -> Result<(), String> {
        let b_ns = self.ns(b);
        self.ip(
            a,
            &[
                "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b_ns,
            ],
        )?;
        self.addr(a, a_dev, a_addr)?;
        self.addr(b, b_dev, b_addr)?;
        self.ip(a, &["link", "set", a_dev, "up"])?;
        self.ip(b, &["link", "set", b_dev, "up"])
    }

    /// Gives `dev` in `name` the address `addr` (with its prefix length);
    /// an IPv6 one is usable at once (no duplicate address detection).
    pub fn addr(&self, name: &str, dev: &str, addr: &str) -> Result<(), String> {
        let mut args = vec!["addr", "add", addr, "dev", dev];
        if addr.contains(':') {
            args.push("nodad");
        }
        self.ip(name, &args)
    }

    /// Sets a kernel parameter (`key=value`) in `name`.
    pub fn sysctl(&self, name: &str, setting: &str) -> Result<(), String> {
        let ns = self.ns(name);
        run("ip", &["netns", "exec", &ns, "sysctl", "-q", "-w", setting])
    }

    /// Holds what `dev` in `name` sends to `rate` (a token bucket, as
    /// `tc` writes rates: `40mbit`).
    pub fn shape(&self, name: &str, dev: &str, rate: &str) -> Result<(), String> {
        let ns = self.ns(name);
        run(
            "ip",
            &[
                "netns", "exec", &ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                rate, "burst", "64kb", "latency", "200ms",
            ],
        )
    }

    /// Lets `name` forward packets between its interfaces.
    pub fn forward(&self, name: &str) -> Result<(), String> {
        self.sysctl(name, "net.ipv4.ip_forward=1")?;
        self.sysctl(name, "net.ipv6.conf.all.forwarding=1")
    }

    /// Makes `name` a home router: it forwards, and masquerades what
    /// leaves by `out_dev`, a socket keeping its port where it can
    /// (Linux's usual behaviour: a mapping independent of the
    /// destination).
    pub fn nat(&self, name: &str, out_dev: &str) -> Result<(), String> {
        self.masquerade(name, out_dev, &[])
    }

    /// Like [`nat`](Self::nat), but the router gives each destination a
    /// port of its own, at random (`masquerade fully-random`): what the
    /// server observes is no use to anyone else, and no hole punched
    /// towards one address opens for another.
    pub fn nat_per_destination(&self, name: &str, out_dev: &str) -> Result<(), String> {
        self.masquerade(name, out_dev, &["fully-random"])
    }

    /// Makes `name` drop every UDP packet it would forward, both ways.
    pub fn drop_udp(&self, name: &str) -> Result<(), String> {
        self.nft(name, &["add", "table", "inet", "filter"])?;
        let chain = [
            "add", "chain", "inet", "filter", "block", "{", "type", "filter", "hook", "forward",
            "priority", "0", ";", "}",
        ];
        self.nft(name, &chain)?;
        let rule = [
            "add", "rule", "inet", "filter", "block", "meta", "l4proto", "udp", "drop",
        ];
        self.nft(name, &rule)
    }

    fn masquerade(&self, name: &str, out_dev: &str, how: &[&str]) -> Result<(), String> {
        self.forward(name)?;
        self.nft(name, &["add", "table", "ip", "nat"])?;
        self.nft(
            name,
            &[
                "add",
                "chain",
                "ip",
                "nat",
                "post",
                "{",
                "type",
                "nat",
                "hook",
                "postrouting",
                "priority",
                "100",
                ";",
                "}",
            ],
        )?;
        self.nft(
            name,
            &[
                "add",
                "rule",
                "ip",
                "nat",
                "post",
                "oifname",
                out_dev,
                "masquerade",
            ]
            .iter()
            .chain(how)
            .copied()
            .collect::<Vec<_>>(),
        )
    }

    /// Runs `nft` in namespace `name`.
    fn nft(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let ns = self.ns(name);
        let mut all = vec!["netns", "exec", ns.as_str(), "nft"];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = run("ip", &["netns", "del", &ns]);
        }
    }
}
