"""A NAT lab built from network namespaces, veth pairs and nftables, for the tests that cross
NATs. It exists only while a test runs and touches nothing outside its own namespaces.

    WAN namespace (bridge, 203.0.113.1 = Switchboard)
      ├── router A (203.0.113.10 outside, 10.0.1.1 inside) ── peer A (10.0.1.2)
      └── router B (203.0.113.20 outside, 10.0.2.1 inside) ── peer B (10.0.2.2)

Router kinds (RFC 4787 terms):
- "home": `masquerade` keeps the inside port when it is free (endpoint-independent mapping);
  only replies to what went out come back in (port-restricted filtering).
- "symmetric": `masquerade random` takes a new random port per destination
  (address-and-port-dependent mapping), same filtering.
- "udp-blocked": a home router that drops every UDP datagram both ways; TCP works.
- "tls-only": as "udp-blocked", and TCP to port 3478 dropped too: only TURN over TLS
  (port 5349) gets out.

Whatever the WAN sends to a router's own address is dropped in its input hook, before
conntrack confirms an entry: otherwise an early ICE check arriving there takes the tuple the
inside host's mapping needs, and "home" behaves like symmetric (MACHINE-NOTES.md)."""
import os
import subprocess

SERVER = "203.0.113.1"
ROUTERS = {"a": ("203.0.113.10", "10.0.1"), "b": ("203.0.113.20", "10.0.2")}
KINDS = ("home", "symmetric", "udp-blocked", "tls-only")


def run(*argv, check=True, input=None):
    return subprocess.run(argv, check=check, capture_output=True, text=True, input=input)


class Lab:
    """`with Lab({"a": "home", "b": "symmetric"}) as lab:` builds the lab; `lab.ns("a")` is peer
    A's namespace, `lab.ns("wan")` the server's, `lab.address("a")` peer A's inside address."""

    def __init__(self, kinds, tag=None):
        for side, kind in kinds.items():
            assert side in ROUTERS and kind in KINDS, (side, kind)
        self.kinds = kinds
        self.tag = tag or f"sb{os.getpid() % 100000}"
        self.created = []

    def ns(self, name):
        return f"{self.tag}-{name}"

    def address(self, side):
        return f"{ROUTERS[side][1]}.2"

    def router_address(self, side):
        return ROUTERS[side][0]

    def exec(self, name, *argv, check=True, input=None):
        return run("ip", "netns", "exec", self.ns(name), *argv, check=check, input=input)

    def argv(self, name, *argv):
        """A command line that runs `argv` inside namespace `name` (for Popen)."""
        return ["ip", "netns", "exec", self.ns(name), *argv]

    def _add(self, name):
        run("ip", "netns", "add", self.ns(name))
        self.created.append(self.ns(name))
        self.exec(name, "ip", "link", "set", "lo", "up")

    def __enter__(self):
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_):
        self.close()

    def close(self):
        for name in reversed(self.created):
            run("ip", "netns", "delete", name, check=False)
        self.created = []

    def _build(self):
        self._add("wan")
        self.exec("wan", "ip", "link", "add", "br0", "type", "bridge")
        self.exec("wan", "ip", "addr", "add", f"{SERVER}/24", "dev", "br0")
        self.exec("wan", "ip", "link", "set", "br0", "up")
        for side, kind in self.kinds.items():
            wan_address, lan = ROUTERS[side]
            router, peer = f"r{side}", side
            self._add(router)
            self._add(peer)
            # router's WAN side on the bridge
            outside, bridge_port = f"{self.tag}{side}w", f"{self.tag}{side}b"
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", bridge_port)
            run("ip", "link", "set", outside, "netns", self.ns(router))
            run("ip", "link", "set", bridge_port, "netns", self.ns("wan"))
            self.exec("wan", "ip", "link", "set", bridge_port, "master", "br0")
            self.exec("wan", "ip", "link", "set", bridge_port, "up")
            self.exec(router, "ip", "link", "set", outside, "name", "wan0")
            self.exec(router, "ip", "addr", "add", f"{wan_address}/24", "dev", "wan0")
            self.exec(router, "ip", "link", "set", "wan0", "up")
            # router's LAN side to the peer
            inside, host = f"{self.tag}{side}l", f"{self.tag}{side}h"
            run("ip", "link", "add", inside, "type", "veth", "peer", "name", host)
            run("ip", "link", "set", inside, "netns", self.ns(router))
            run("ip", "link", "set", host, "netns", self.ns(peer))
            self.exec(router, "ip", "link", "set", inside, "name", "lan0")
            self.exec(router, "ip", "addr", "add", f"{lan}.1/24", "dev", "lan0")
            self.exec(router, "ip", "link", "set", "lan0", "up")
            self.exec(peer, "ip", "link", "set", host, "name", "eth0")
            self.exec(peer, "ip", "addr", "add", f"{lan}.2/24", "dev", "eth0")
            self.exec(peer, "ip", "link", "set", "eth0", "up")
            self.exec(peer, "ip", "route", "add", "default", "via", f"{lan}.1")
            self.exec(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self.exec(router, "nft", "-f", "-", input=self.ruleset(kind))

    @staticmethod
    def ruleset(kind):
        masquerade = "masquerade random" if kind == "symmetric" else "masquerade"
        block_udp = "meta l4proto udp counter drop" if kind in ("udp-blocked", "tls-only") else ""
        if kind == "tls-only":
            block_udp += "\n        tcp dport 3478 counter drop"
        return f"""
table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" {masquerade}
    }}
}}
table inet filter {{
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "wan0" drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        {block_udp}
        iifname "lan0" oifname "wan0" accept
        iifname "wan0" oifname "lan0" ct state established,related accept
    }}
}}
"""

    def flush_conntrack(self, side):
        """Forgets every NAT mapping of router `side` (what a router reboot or a conntrack
        flush does): established flows get new outside ports."""
        self.exec(f"r{side}", "conntrack", "-F", check=False)


    def rebind(self, side, ports="20000-29999"):
        """Router `side` maps to outside ports from `ports` from now on and forgets every
        mapping it had: each flow reappears on a new outside port (a NAT rebinding, as after a
        router reboot or a carrier-grade NAT's timeout); packets to the old ports are dropped."""
        random = " random" if self.kinds[side] == "symmetric" else ""
        self.exec(f"r{side}", "nft", "flush", "chain", "ip", "nat", "postrouting")
        self.exec(f"r{side}", "nft", "-f", "-", input=f"""
add rule ip nat postrouting oifname "wan0" meta l4proto {{ tcp, udp }} masquerade to :{ports}{random}
add rule ip nat postrouting oifname "wan0" masquerade{random}
""")
        self.exec(f"r{side}", "conntrack", "-F")


def start_lab_server(lab, sb, *extra):
    """`switchboard serve` in the lab's WAN namespace, on the lab's server address (HTTP :8080,
    TURN :3478 over UDP and TCP; `extra` adds options)."""
    from conftest import BIN, clean_env, read_banner, relay_line
    process = subprocess.Popen(
        lab.argv("wan", str(BIN), "serve", "--data-dir", str(sb.data_dir),
                 "--http-listen", f"{SERVER}:8080", "--turn-listen", f"{SERVER}:3478",
                 "--media-listen", f"{SERVER}:8189", "--relay-ip", SERVER, "--relay-ports", "40000-40999", *extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    read_banner(process, lambda lines: relay_line(lines[-1]))
    return process
