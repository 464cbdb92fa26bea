"""A real authoritative DNS server for tests, on 127.0.0.1, serving zones from text.

It answers over UDP and TCP on the same ephemeral port, sets the TC bit when a
UDP answer does not fit (so clients retry over TCP), and has two switches per
name: ``servfail`` answers SERVFAIL, ``drop`` never answers (a timeout).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone


class DNSServer:
    def __init__(self, zones: dict[str, str], host: str = "127.0.0.1") -> None:
        self.zones = {
            dns.name.from_text(origin): dns.zone.from_text(
                text, origin=origin, relativize=False, check_origin=False
            )
            for origin, text in zones.items()
        }
        self.servfail: set[str] = set()
        self.drop: set[str] = set()
        self.queries: Counter[tuple[str, str, str]] = Counter()
        self.host = host
        self._stop = threading.Event()
        self.udp, self.tcp = self._bind(host)
        self.port = self.udp.getsockname()[1]
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]

    @staticmethod
    def _bind(host: str) -> tuple[socket.socket, socket.socket]:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((host, 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            udp.settimeout(0.1)
            tcp.settimeout(0.1)
            return udp, tcp
        raise RuntimeError("no port free for both UDP and TCP")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> DNSServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.udp.close()
        self.tcp.close()

    # Answers

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        key = qname.to_text().rstrip(".").lower()
        if key in self.drop:
            return None
        if key in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        zone = self._zone_for(qname)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        node = zone.get_node(qname)
        if node is not None:
            rdataset = node.get_rdataset(dns.rdataclass.IN, qtype)
            if rdataset is None and qtype != dns.rdatatype.CNAME:
                cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
                if cname is not None:
                    rdataset, qtype = cname, dns.rdatatype.CNAME
            if rdataset is not None:
                rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, qtype)
                rrset.update(rdataset)
                response.answer.append(rrset)
                return response
        elif not any(name.is_subdomain(qname) for name in zone.nodes):
            response.set_rcode(dns.rcode.NXDOMAIN)
        soa = zone.get_rdataset(zone.origin, dns.rdatatype.SOA)
        if soa is not None:
            rrset = dns.rrset.RRset(zone.origin, dns.rdataclass.IN, dns.rdatatype.SOA)
            rrset.update(soa)
            response.authority.append(rrset)
        return response

    def _zone_for(self, qname: dns.name.Name) -> dns.zone.Zone | None:
        best = None
        for origin, zone in self.zones.items():
            if qname.is_subdomain(origin) and (best is None or origin.is_subdomain(best.origin)):
                best = zone
        return best

    def _respond(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        question = query.question[0]
        self.queries[
            (
                question.name.to_text().rstrip(".").lower(),
                dns.rdatatype.to_text(question.rdtype),
                transport,
            )
        ] += 1
        response = self.answer(query)
        if response is None:
            return None
        if transport == "tcp":
            return response.to_wire(max_size=65535)
        limit = max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    # Loops

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            out = self._respond(wire, "udp")
            if out is not None:
                self.udp.sendto(out, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        with conn:
            try:
                while True:
                    head = _recv_exact(conn, 2)
                    if not head:
                        return
                    wire = _recv_exact(conn, struct.unpack("!H", head)[0])
                    out = self._respond(wire, "tcp")
                    if out is None:
                        return
                    conn.sendall(struct.pack("!H", len(out)) + out)
            except OSError:
                return


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data
