#!/usr/bin/env python3
"""Time from `getfile` to the path opening (`transfer_started`) and to the
whole of a small file (`transfer_done`), for each path a transfer can take:
`direct` (both clients on one network with the server), `punched` (each
behind a home router doing NAT, as in tests/paths.rs), `relay` (each behind
a router that maps every destination to a port of its own: no hole
punching works, and the asker asks for the relay after two seconds) and
`tcp` (the asker's router drops UDP: its side of the relay goes over TLS).
Medians of N runs.

Builds its own network namespaces (needs root, iproute2 and nftables) and
deletes them at the end; runs target/release/chatdrop (build it first:
cargo build --release -p chatdrop). Usage: scripts/first_byte.py [N]
"""

import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "chatdrop")
TAG = f"cdfb{os.getpid()}"
MADE = []


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def ns(name):
    return TAG + name


def add_ns(name):
    sh("ip", "netns", "add", ns(name))
    MADE.append(ns(name))
    sh("ip", "-n", ns(name), "link", "set", "lo", "up")


def link(a, a_dev, a_addr, b, b_dev, b_addr):
    sh("ip", "-n", ns(a), "link", "add", a_dev, "type", "veth", "peer", "name", b_dev,
       "netns", ns(b))
    sh("ip", "-n", ns(a), "addr", "add", a_addr, "dev", a_dev)
    sh("ip", "-n", ns(b), "addr", "add", b_addr, "dev", b_dev)
    sh("ip", "-n", ns(a), "link", "set", a_dev, "up")
    sh("ip", "-n", ns(b), "link", "set", b_dev, "up")


def in_ns(name, *args):
    sh("ip", "netns", "exec", ns(name), *args)


def topology():
    """The internet with the server; two homes behind NAT routers (ha, hb);
    a LAN next to the server without NAT (la, lb); two homes behind routers
    that map per destination (hc, hd); a home whose router drops UDP (he)."""
    for n in ["inet", "ra", "ha", "rb", "hb", "la", "lb", "rc", "hc", "rd", "hd", "re", "he"]:
        add_ns(n)
    link("inet", "ia", "10.0.1.1/24", "ra", "out", "10.0.1.2/24")
    link("inet", "ib", "10.0.2.1/24", "rb", "out", "10.0.2.2/24")
    link("ra", "in", "192.168.1.1/24", "ha", "eth", "192.168.1.2/24")
    link("rb", "in", "192.168.2.1/24", "hb", "eth", "192.168.2.2/24")
    link("inet", "la", "10.0.3.1/24", "la", "eth", "10.0.3.2/24")
    link("inet", "lb", "10.0.4.1/24", "lb", "eth", "10.0.4.2/24")
    homes = [("c", 5), ("d", 6), ("e", 7)]
    for (h, i) in homes:
        link("inet", "i" + h, f"10.0.{i}.1/24", "r" + h, "out", f"10.0.{i}.2/24")
        link("r" + h, "in", f"192.168.{i}.1/24", "h" + h, "eth", f"192.168.{i}.2/24")
    for r in ["inet", "ra", "rb", "rc", "rd", "re"]:
        in_ns(r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    for (n, gw) in [("ra", "10.0.1.1"), ("rb", "10.0.2.1"), ("ha", "192.168.1.1"),
                    ("hb", "192.168.2.1"), ("la", "10.0.3.1"), ("lb", "10.0.4.1")]:
        sh("ip", "-n", ns(n), "route", "add", "default", "via", gw)
    for (h, i) in homes:
        sh("ip", "-n", ns("r" + h), "route", "add", "default", "via", f"10.0.{i}.1")
        sh("ip", "-n", ns("h" + h), "route", "add", "default", "via", f"192.168.{i}.1")
    for r in ["ra", "rb", "rc", "rd", "re"]:
        per_destination = ["fully-random"] if r in ["rc", "rd"] else []
        in_ns(r, "nft", "add", "table", "ip", "nat")
        in_ns(r, "nft", "add", "chain", "ip", "nat", "post", "{", "type", "nat", "hook",
              "postrouting", "priority", "100", ";", "}")
        in_ns(r, "nft", "add", "rule", "ip", "nat", "post", "oifname", "out", "masquerade",
              *per_destination)
    in_ns("re", "nft", "add", "table", "inet", "filter")
    in_ns("re", "nft", "add", "chain", "inet", "filter", "block", "{", "type", "filter", "hook",
          "forward", "priority", "0", ";", "}")
    in_ns("re", "nft", "add", "rule", "inet", "filter", "block", "meta", "l4proto", "udp", "drop")


class Proc:
    """A chatdrop process in a namespace, its stdout lines timestamped."""

    def __init__(self, name, args):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns(name), BIN] + args,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put((time.monotonic(), line))

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait(self, pred, limit=30):
        end = time.monotonic() + limit
        while True:
            t, line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            if pred(line):
                return t, line

    def event(self, kind, limit=30):
        def is_kind(line):
            try:
                return json.loads(line).get("event") == kind
            except ValueError:
                return False
        t, line = self.wait(is_kind, limit)
        return t, json.loads(line)

    def stop(self):
        self.p.kill()
        self.p.wait()


def measure(root, port, owner, asker, runs, case):
    """`runs` downloads of a 64 KiB file from bob at `owner` to the asker at
    `asker` (each a namespace and the server's address from there)."""
    share = os.path.join(root, "share")
    os.makedirs(share, exist_ok=True)
    with open(os.path.join(share, "f.bin"), "wb") as f:
        f.write(os.urandom(65536))
    # Names and a room of this case's own: the server keeps what the last
    # case bound.
    (bob_name, alice_name) = (f"bob{case}", f"alice{case}")
    common = ["client", "--json", "--room", f"r{case}"]
    bob = Proc(owner[0], common + ["--server", f"{owner[1]}:{port}", "--user", bob_name,
                                   "--create", "--data-dir", os.path.join(root, "bob"),
                                   "--share-dir", share])
    bob.event("joined")
    bob.send("@me setshare f.bin")
    bob.event("share_status")
    downloads = os.path.join(root, "downloads")
    alice = Proc(asker[0], common + ["--server", f"{asker[1]}:{port}", "--user", alice_name,
                                     "--data-dir", os.path.join(root, "alice"),
                                     "--download-dir", downloads])
    alice.event("joined")
    alice.send("@all whohas f.bin")
    alice.event("whohas_reply")
    opened, done, paths = [], [], set()
    for _ in range(runs):
        t0 = time.monotonic()
        alice.send(f"@{bob_name} getfile f.bin")
        t1, started = alice.event("transfer_started")
        t2, finished = alice.event("transfer_done")
        paths.add(started["path"])
        opened.append((t1 - t0) * 1000)
        done.append((t2 - t0) * 1000)
        os.remove(finished["path"])
        bob.event("upload_done")
    alice.stop()
    bob.stop()
    return paths, opened, done


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    topology()
    root = tempfile.mkdtemp()
    # Rate limits off: the runs ask for a file faster than a user would.
    server = Proc("inet", ["server", "--listen", "0.0.0.0:0", "--no-console", "--no-rate-limits",
                           "--data-dir", os.path.join(root, "server")])
    _, line = server.wait(lambda l: "listening on" in l)
    port = line.strip().rsplit(":", 1)[1]
    cases = [
        ("direct (next to the server, no NAT)", ("lb", "10.0.4.1"), ("la", "10.0.3.1")),
        ("punched (two home routers)", ("hb", "10.0.2.1"), ("ha", "10.0.1.1")),
        ("relay (two routers mapping per destination)", ("hd", "10.0.6.1"), ("hc", "10.0.5.1")),
        ("tcp (the asker's router drops UDP)", ("hb", "10.0.2.1"), ("he", "10.0.7.1")),
    ]
    print(f"{runs} downloads of a 64 KiB file each; milliseconds from getfile, median (min-max)")
    for i, (name, owner, asker) in enumerate(cases):
        paths, opened, done = measure(os.path.join(root, str(i)), port, owner, asker, runs, i)
        fmt = lambda xs: f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"
        print(f"{name}: path {'/'.join(sorted(paths))}; "
              f"path open {fmt(opened)}; whole file {fmt(done)}")
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        for n in reversed(MADE):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
