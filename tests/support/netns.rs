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

/// What `program args` printed, or why it failed.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    /// Lowers the MTU of `name`'s `dev` to `mtu` and keeps `name` from
    /// saying so: the ICMP "fragmentation needed" it would send back for
    /// each larger packet is dropped (and counted, see
    /// [`black_hole_drops`](Self::black_hole_drops)). An MTU black hole, as
    /// a tunnel on the way whose ICMP is filtered makes one: larger
    /// packets vanish without a word. (The MTU, not a rule on packet
    /// lengths: a rule would see whole GSO batches as one long packet.)
    pub fn black_hole(&self, name: &str, dev: &str, mtu: u32) -> Result<(), String> {
        self.nft(name, &["add", "table", "inet", "hole"])?;
        let chain = [
            "add", "chain", "inet", "hole", "quiet", "{", "type", "filter", "hook", "output",
            "priority", "0", ";", "}",
        ];
        self.nft(name, &chain)?;
        let rule = [
            "add",
            "rule",
            "inet",
            "hole",
            "quiet",
            "icmp",
            "type",
            "destination-unreachable",
            "icmp",
            "code",
            "frag-needed",
            "counter",
            "drop",
        ];
        self.nft(name, &rule)?;
        let mtu = mtu.to_string();
        self.ip(name, &["link", "set", "dev", dev, "mtu", &mtu])
    }

    /// The "too big" messages the black hole of `name` kept back so far:
    /// each stands for packets lost in it.
    pub fn black_hole_drops(&self, name: &str) -> Result<u64, String> {
        let ns = self.ns(name);
        let args = [
            "netns", "exec", &ns, "nft", "list", "chain", "inet", "hole", "quiet",
        ];
        let listing = output("ip", &args)?;
        let count = listing
            .split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        count.ok_or_else(|| format!("no counter in {listing}"))
    }

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
