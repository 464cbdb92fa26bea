"""A zone of hostile and boundary SPF records, served by its own loopback DNS server.

Each name sits exactly at, or one past, an RFC 7208 limit (10 DNS-querying
terms, 2 void lookups, 10 MX names), or is built to make an unbounded walk
explode: a chain of 1,000 includes, a tree 10 wide and 4 deep, a loop.
"""

from __future__ import annotations

from tests.dnsserver import DNSServer

ORIGIN = "limits.test"
CHAIN = 1000
WIDTH, DEPTH = 10, 4
ALLOWED_IP = "198.51.100.7"  # listed after the terms under test: reached only within limits


def _txt(value: str) -> str:
    """TXT rdata split into 255-byte character-strings (a record may be longer)."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


def _a_terms(count: int) -> str:
    return " ".join(f"a:h{i}.hosts.{ORIGIN}" for i in range(1, count + 1))


def _tree(parent: str, depth: int) -> list[str]:
    """Records of ``parent`` and everything under it: 10 includes per level."""
    if depth == DEPTH:
        return [f'{parent} TXT "v=spf1 ip4:192.0.2.9 -all"']
    children = [f"n{i}.{parent}" for i in range(WIDTH)]
    includes = " ".join(f"include:{c}.{ORIGIN}" for c in children)
    lines = [f"{parent} TXT {_txt(f'v=spf1 {includes} -all')}"]
    for child in children:
        lines += _tree(child, depth + 1)
    return lines


def zone_text() -> str:
    lines = [
        "$TTL 300",
        f"@ SOA ns.{ORIGIN}. hostmaster.{ORIGIN}. 1 3600 600 86400 60",
        f"@ NS ns.{ORIGIN}.",
        "ns A 127.0.0.1",
    ]
    lines += [f"h{i}.hosts A 203.0.113.{i}" for i in range(1, 12)]
    lines += [f"m{i}.mailers A 203.0.113.{100 + i}" for i in range(1, 12)]
    lines += [f"mx10 MX 10 m{i}.mailers.{ORIGIN}." for i in range(1, 11)]
    lines += [f"mx11 MX 10 m{i}.mailers.{ORIGIN}." for i in range(1, 12)]
    ok = f"ip4:{ALLOWED_IP} -all"
    records = {
        # 10 and 11 DNS-querying terms in one record.
        "ten": f"{_a_terms(10)} {ok}",
        "eleven": f"{_a_terms(11)} {ok}",
        # 10 and 11 across an include: the include itself is one of them.
        "nest10": f"include:in9.{ORIGIN} -all",
        "in9": f"{_a_terms(8)} include:in0.{ORIGIN} -all",
        "nest11": f"include:in10.{ORIGIN} -all",
        "in10": f"{_a_terms(9)} include:in0.{ORIGIN} -all",
        "in0": ok,
        # 2 and 3 lookups that find nothing.
        "void2": f"a:gone1.{ORIGIN} a:gone2.{ORIGIN} {ok}",
        "void3": f"a:gone1.{ORIGIN} a:gone2.{ORIGIN} a:gone3.{ORIGIN} {ok}",
        # mx terms naming 10 and 11 hosts.
        "names10": f"mx:mx10.{ORIGIN} {ok}",
        "names11": f"mx:mx11.{ORIGIN} {ok}",
        # includes whose target is a permerror or has no SPF record.
        "incbroken": f"include:broken.{ORIGIN} {ok}",
        "broken": "foo -all",
        "inctwo": f"include:two.{ORIGIN} {ok}",
        "incnone": f"include:nospf.{ORIGIN} {ok}",
        # An include of a name that does not exist: the third lookup that finds nothing.
        "incgone": f"a:gone1.{ORIGIN} a:gone2.{ORIGIN} include:gone3.{ORIGIN} {ok}",
        # A loop of two records.
        "loopa": f"include:loopb.{ORIGIN} {ok}",
        "loopb": f"include:loopa.{ORIGIN} -all",
        # Fine, to show the others do not stop the refresh of a good one.
        "good": ok,
    }
    lines += [f"{name} TXT {_txt(f'v=spf1 {text}')}" for name, text in records.items()]
    lines += [
        'two TXT "v=spf1 -all"',
        'two TXT "v=spf1 ip4:192.0.2.1 -all"',
        'nospf TXT "not an spf record"',
    ]
    # c0.chain includes c1.chain ... c999.chain, which authorizes an address.
    lines += [
        f'c{i}.chain TXT "v=spf1 include:c{i + 1}.chain.{ORIGIN} -all"' for i in range(CHAIN - 1)
    ]
    lines.append(f'c{CHAIN - 1}.chain TXT "v=spf1 ip4:192.0.2.8 -all"')
    lines += _tree("wide", 0)
    return "\n".join(lines) + "\n"


def asked(server: DNSServer, suffix: str, rdtype: str | None = None) -> int:
    """How many queries for names ending in ``suffix`` (of one type) the server answered."""
    return sum(
        n
        for (name, qtype, _), n in server.queries.items()
        if (name == suffix or name.endswith("." + suffix)) and rdtype in (None, qtype)
    )
