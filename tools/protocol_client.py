#!/usr/bin/env python3
"""An independent Erlangen node, written from PROTOCOL.md alone.

Python 3.11, standard library only. It implements:

* section 1, frames (reader with the per-connection maximum checked before the
  body is read, writer);
* section 2, the term codec: every tag, the decoder's refusals and limits, and
  the same checks on the encoding side;
* section 3, the port mapper: directory lookups (QUERY, LIST) and registry
  registration (held as long as the connection is open);
* section 4, the cookie file and the HMAC-SHA256 handshake, as the dialing
  client and as the listening server;
* section 5, node requests over an authenticated connection: SEND, SPAWN and
  SPAWN_REPLY, LINK, UNLINK, EXIT, NOTICE, HEARTBEAT (sent after `tick` of
  silence; a peer silent past `timeout` is down), peer-down notifications;
* section 6, group and global-name frames: decoded, remembered per
  connection, and sent for this node's own agents; GLOBAL_CLAIM answered
  (GRANTED, HELD or COMPETING as the table says), and a visible node's
  registration claimed from every member before it is announced;
* section 7, cluster membership: NODES is the first frame sent after ACCEPT
  in both roles (hidden by default: flags 1, count 0; `Node(hidden=False)`
  joins as a visible member and names its members), the peer's NODES frames
  are checked against every bound and recorded, NODE_LOST and DISCONNECT
  are decoded and recorded, REFUSE code 3 is raised as `Refused`;
* section 8, remote management: with `node.answers_ops`, a SPAWN of
  `(OPS-QUERY "node-info" asker token)` is answered as the kernel's is.

Python "agents" are mailboxes owned by the script that drives them; an agent
that gets an exit signal ends and tells its links and monitors, as section 5
says. A SPAWN from another node is answered with an error (this node runs no
functions), but for OPS-QUERY when `answers_ops` is on. Choices where PROTOCOL.md leaves room: a HELLO or CHALLENGE with
incarnation 0 is refused here; a cookie file with any group/other permission
bit is refused (as the kernel does); a first frame after ACCEPT that is not
NODES ("a peer may send nothing else first") closes the connection here; this
node never dials on its own (as a node with `connect_all` off), so it does not
act on NODE_LOST (the overlap rule is for nodes with `connect_all`).

Library use:

    cookie = load_cookie(path)
    node = Node("localhost", "py", cookie, directory_port, registry_port)
    conn = node.dial("localhost/other")          # directory lookup + handshake
    me = node.spawn_agent()
    conn.send(":ECHO", [kw("hi"), me.term()])     # SEND to a registered agent
    ok, aid = conn.spawn(me, [sym("+"), 1, 2], attach=ATTACH_MONITOR)
    me.receive(5)                                 # ("notice", (agent :OK 3))
    node.listen()                                 # be reachable (port mapper + accept)
    conn.close()

    member = Node("localhost", "py2", cookie, directory_port, registry_port, hidden=False)
    c2 = member.dial("localhost/other")           # sends NODES (visible); a member of the peer
    c2.wait_nodes(5)                              # the peer's first NODES: (hidden, names)
    member.register_global("boss", member.spawn_agent())  # claimed from every member, then announced

Scenarios (the checks run by protocol_client_check.sh, which starts the port
mapper and the kernel node they need):

    protocol_client.py --directory-port D --registry-port R --cookie-file F \
        --peer localhost/NODE [--kernel-pid PID --bin DIR --pid-file FILE] SCENARIO...|all

PYCLIENT_TRACE=1 prints every node frame received (heartbeats included).
"""

import argparse
import hashlib
import hmac
import os
import queue
import secrets
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
import time
import traceback

# ---------------------------------------------------------------------------
# Section 1: frames
# ---------------------------------------------------------------------------

MAX_NODE_FRAME = 17_039_360  # 16 MiB + 256 KiB

# Waits for something that must come (a message, a reply, a spawn) are
# deadlines, not expectations of speed: they are stretched by this factor so
# a loaded machine (CI on two cores) is not mistaken for a broken protocol.
WAIT_SLACK = float(os.environ.get("PROTOCOL_CHECK_WAIT_SLACK", "4"))
MAX_PORT_MAPPER_FRAME = 1 << 20
MAX_HANDSHAKE_FRAME = 1024


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow."""


class Closed(Exception):
    """The connection ended (EOF, reset or a deadline)."""


def _recv_exact(sock, n, deadline=None):
    """Read exactly n bytes; Closed on EOF, TimeoutError past the deadline."""
    chunks = []
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 16))
        except socket.timeout as e:
            raise TimeoutError("deadline passed") from e
        except OSError as e:
            raise Closed(f"recv failed: {e}") from e
        if not chunk:
            raise Closed("EOF" if got == 0 else f"EOF inside a frame ({got}/{n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(sock, max_length, deadline=None):
    """Read one frame: (kind, payload). The length is checked before the body."""
    head = _recv_exact(sock, 4, deadline)
    (length,) = struct.unpack(">I", head)
    if length == 0:
        raise ProtocolError("frame length 0")
    if length > max_length:
        raise ProtocolError(f"frame length {length} over the maximum {max_length}")
    body = _recv_exact(sock, length, deadline)
    return body[0], body[1:]


def encode_frame(kind, payload=b""):
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def write_frame(sock, kind, payload=b"", deadline=None):
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        sock.settimeout(left)
    sock.sendall(encode_frame(kind, payload))


class Fields:
    """Reads the fields of a payload; `end()` refuses leftover bytes."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("payload too short")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def str(self):
        n = self.u16()
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("str is not UTF-8") from e

    def term(self, limits=None):
        """The term field: always last, it extends to the end of the payload."""
        rest = self.data[self.pos:]
        self.pos = len(self.data)
        return decode(rest, limits)

    def end(self):
        if self.pos != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.pos} bytes after the last field")


def p_u8(v):
    return struct.pack(">B", v)


def p_u16(v):
    return struct.pack(">H", v)


def p_u32(v):
    return struct.pack(">I", v)


def p_u64(v):
    return struct.pack(">Q", v)


def p_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError("str field longer than 65535 bytes")
    return p_u16(len(b)) + b


# ---------------------------------------------------------------------------
# Section 2: terms
# ---------------------------------------------------------------------------
# Python model: None = NIL (also the empty list; [] encodes as NIL too),
# True = T (False encodes as NIL), int, float, str = STRING, bytes = BYTES,
# list = LIST, and the classes below.

NIL, T, INT8, INT32, INT64, FLOAT, STRING, SYMBOL, QSYMBOL, KEYWORD, BYTES, LIST, DOTTED, VECTOR, AGENT, AGENT_OF_RUN = range(16)
TAG_NAMES = ["NIL", "T", "INT8", "INT32", "INT64", "FLOAT", "STRING", "SYMBOL", "QUALIFIED_SYMBOL",
             "KEYWORD", "BYTES", "LIST", "DOTTED", "VECTOR", "AGENT", "AGENT_OF_RUN"]
TERM_VERSION = 1


# Value classes: equality and hashing by type and fields (dataclasses);
# Vector and Dotted hold lists, so they are not hashable.

@dataclass(frozen=True, repr=False)
class Symbol:
    name: str

    def __repr__(self):
        return self.name


@dataclass(frozen=True, repr=False)
class QSymbol:
    package: str
    name: str

    def __repr__(self):
        return f"{self.package}:{self.name}"


@dataclass(frozen=True, repr=False)
class Keyword:
    name: str

    def __repr__(self):
        return ":" + self.name


@dataclass(repr=False)
class Vector:
    items: list

    def __post_init__(self):
        self.items = list(self.items)

    def __repr__(self):
        return "#(" + " ".join(show(x) for x in self.items) + ")"


@dataclass(repr=False)
class Dotted:
    items: list
    tail: object

    def __post_init__(self):
        self.items = list(self.items)

    def __repr__(self):
        return "(" + " ".join(show(x) for x in self.items) + " . " + show(self.tail) + ")"


@dataclass(frozen=True, repr=False)
class Agent:
    """AGENT (incarnation None: the node's current run) or AGENT_OF_RUN."""
    id: str
    incarnation: object = None

    @property
    def node(self):
        return self.id.rsplit("/", 1)[0]

    @property
    def aid(self):
        return self.id.rsplit("/", 1)[1]

    def __repr__(self):
        return f"#<AGENT {self.id}" + (f" run {self.incarnation:#x}>" if self.incarnation else ">")


def show(t):
    if t is None:
        return "NIL"
    if t is True:
        return "T"
    if isinstance(t, str):
        return '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(t, bytes):
        return f'#.(BYTES "{t.hex().upper()}")'
    if isinstance(t, list):
        return "(" + " ".join(show(x) for x in t) + ")" if t else "NIL"
    return repr(t)


def cons(prefix, tail):
    """The list `(prefix... . tail)` as a term: a LIST when tail is a list or NIL."""
    if tail is None or tail == []:
        return list(prefix)
    if isinstance(tail, list):
        return list(prefix) + tail
    if isinstance(tail, Dotted):
        return Dotted(list(prefix) + tail.items, tail.tail)
    return Dotted(list(prefix), tail)


def kw(name):
    return Keyword(name.upper())


def sym(name):
    return Symbol(name.upper())


class Limits:
    def __init__(self, total=16 * 1024 * 1024, nesting=128, elements=1_048_576, string=16 * 1024 * 1024):
        self.total, self.nesting, self.elements, self.string = total, nesting, elements, string


DEFAULT_LIMITS = Limits()


class DecodeError(ProtocolError):
    pass


class EncodeError(ValueError):
    """kind is one of TooDeep, StringTooLong, TooManyElements, TooBig,
    EmptyAgentId, MalformedDotted, plus (Python only) Unencodable."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class _Decoder:
    def __init__(self, data, limits):
        self.d = data
        self.pos = 0
        self.lim = limits
        self.open = 0      # collections open around the current point
        self.pending = 0   # declared elements/tails not begun yet

    def left(self):
        return len(self.d) - self.pos

    def take(self, n):
        if n > self.left():
            raise DecodeError("input ends inside a value")
        b = self.d[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def length(self):
        n = self.u32()
        if n > self.lim.string:
            raise DecodeError(f"length {n} over the string limit {self.lim.string}")
        if n > self.left():
            raise DecodeError(f"length {n} exceeds the {self.left()} bytes left")
        return n

    def text(self):
        raw = self.take(self.length())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("invalid UTF-8") from e

    def count(self, extra, min_count):
        n = self.u32()
        if n < min_count:
            raise DecodeError("LIST or DOTTED with count 0")
        if n > self.lim.elements:
            raise DecodeError(f"count {n} over the element limit {self.lim.elements}")
        if self.pending + n + extra > self.left():
            raise DecodeError(f"declared elements ({self.pending + n + extra}) outnumber the {self.left()} bytes left")
        self.pending += n + extra
        return n

    def value(self, element):
        if element:
            self.pending -= 1
        tag = self.take(1)[0]
        if tag == NIL:
            return None
        if tag == T:
            return True
        if tag == INT8:
            return struct.unpack(">b", self.take(1))[0]
        if tag == INT32:
            return struct.unpack(">i", self.take(4))[0]
        if tag == INT64:
            return struct.unpack(">q", self.take(8))[0]
        if tag == FLOAT:
            return struct.unpack(">d", self.take(8))[0]
        if tag == STRING:
            return self.text()
        if tag == SYMBOL:
            return Symbol(self.text())
        if tag == QSYMBOL:
            pkg = self.text()
            return QSymbol(pkg, self.text())
        if tag == KEYWORD:
            return Keyword(self.text())
        if tag == BYTES:
            return bytes(self.take(self.length()))
        if tag in (LIST, DOTTED, VECTOR):
            if self.open >= self.lim.nesting - 1:
                raise DecodeError(f"nesting: {self.open} collections already open")
            n = self.count(1 if tag == DOTTED else 0, 0 if tag == VECTOR else 1)
            self.open += 1
            items = [self.value(True) for _ in range(n)]
            if tag == DOTTED:
                tail_tag = self.d[self.pos] if self.pos < len(self.d) else None
                if tail_tag in (NIL, LIST, DOTTED):
                    raise DecodeError("DOTTED tail is NIL, LIST or DOTTED")
                tail = self.value(True)
                self.open -= 1
                return Dotted(items, tail)
            self.open -= 1
            return items if tag == LIST else Vector(items)
        if tag == AGENT:
            ident = self.text()
            if not ident:
                raise DecodeError("AGENT with an empty id")
            return Agent(ident)
        if tag == AGENT_OF_RUN:
            inc = struct.unpack(">Q", self.take(8))[0]
            if inc == 0:
                raise DecodeError("AGENT_OF_RUN with incarnation 0")
            ident = self.text()
            if not ident:
                raise DecodeError("AGENT_OF_RUN with an empty id")
            return Agent(ident, inc)
        raise DecodeError(f"unknown tag {tag:#04x}")


def decode(data, limits=None):
    """Decode exactly one encoded term (version byte included)."""
    lim = limits or DEFAULT_LIMITS
    data = bytes(data)
    if not data:
        raise DecodeError("no bytes")
    if len(data) > lim.total:
        raise DecodeError(f"term of {len(data)} bytes over the total limit {lim.total}")
    if data[0] != TERM_VERSION:
        raise DecodeError(f"version byte {data[0]}")
    dec = _Decoder(data, lim)
    dec.pos = 1
    v = dec.value(False)
    if dec.pos != len(data):
        raise DecodeError(f"{len(data) - dec.pos} bytes after the term")
    return v


def encode(term, limits=None):
    """Encode a term, checking the receiver's rules (default limits)."""
    lim = limits or DEFAULT_LIMITS
    out = bytearray([TERM_VERSION])

    def text(tag, s):
        b = s.encode("utf-8")
        if len(b) > lim.string:
            raise EncodeError("StringTooLong", f"{len(b)} bytes")
        out.append(tag)
        out.extend(p_u32(len(b)))
        out.extend(b)

    def coll(tag, items, depth, tail=None, dotted=False):
        if depth >= lim.nesting - 1:
            raise EncodeError("TooDeep", f"{depth + 1} nested collections")
        if len(items) > lim.elements:
            raise EncodeError("TooManyElements", f"{len(items)} elements")
        out.append(tag)
        out.extend(p_u32(len(items)))
        for x in items:
            enc(x, depth + 1)
        if dotted:
            enc(tail, depth + 1)
        if len(out) > lim.total:
            raise EncodeError("TooBig", f"more than {lim.total} bytes")

    def enc(t, depth):
        if t is None or t is False or (isinstance(t, list) and not t):
            out.append(NIL)
        elif t is True:
            out.append(T)
        elif isinstance(t, int):
            if -0x80 <= t <= 0x7F:
                out.append(INT8)
                out.extend(struct.pack(">b", t))
            elif -0x80000000 <= t <= 0x7FFFFFFF:
                out.append(INT32)
                out.extend(struct.pack(">i", t))
            elif -(1 << 63) <= t < (1 << 63):
                out.append(INT64)
                out.extend(struct.pack(">q", t))
            else:
                raise EncodeError("Unencodable", f"integer {t} outside i64")
        elif isinstance(t, float):
            out.append(FLOAT)
            out.extend(struct.pack(">d", t))
        elif isinstance(t, str):
            text(STRING, t)
        elif isinstance(t, Symbol):
            text(SYMBOL, t.name)
        elif isinstance(t, QSymbol):
            p, n = t.package.encode(), t.name.encode()
            if max(len(p), len(n)) > lim.string:
                raise EncodeError("StringTooLong", "qualified symbol part")
            out.append(QSYMBOL)
            out.extend(p_u32(len(p)) + p + p_u32(len(n)) + n)
        elif isinstance(t, Keyword):
            text(KEYWORD, t.name)
        elif isinstance(t, (bytes, bytearray)):
            if len(t) > lim.string:
                raise EncodeError("StringTooLong", f"{len(t)} bytes")
            out.append(BYTES)
            out.extend(p_u32(len(t)))
            out.extend(t)
        elif isinstance(t, list):
            coll(LIST, t, depth)
        elif isinstance(t, Vector):
            coll(VECTOR, t.items, depth)
        elif isinstance(t, Dotted):
            tl = t.tail
            if not t.items or tl is None or tl is False or isinstance(tl, (list, Dotted)):
                raise EncodeError("MalformedDotted", "no items, or a tail that is NIL, a list or dotted")
            coll(DOTTED, t.items, depth, tl, True)
        elif isinstance(t, Agent):
            if not t.id:
                raise EncodeError("EmptyAgentId")
            if t.incarnation is None:
                text(AGENT, t.id)
            else:
                if t.incarnation == 0:
                    raise EncodeError("Unencodable", "AGENT_OF_RUN with incarnation 0")
                b = t.id.encode()
                if len(b) > lim.string:
                    raise EncodeError("StringTooLong", "agent id")
                out.append(AGENT_OF_RUN)
                out.extend(p_u64(t.incarnation) + p_u32(len(b)) + b)
        else:
            raise EncodeError("Unencodable", f"a {type(t).__name__} has no encoding")
        if len(out) > lim.total:
            raise EncodeError("TooBig", f"more than {lim.total} bytes")

    enc(term, 0)
    return bytes(out)


# ---------------------------------------------------------------------------
# Section 3: port mapper
# ---------------------------------------------------------------------------

PM_HELLO, PM_WELCOME, PM_REGISTER, PM_REGISTERED, PM_QUERY, PM_PORT, PM_LIST, PM_NODES, PM_UNKNOWN, PM_ERROR = (
    0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x2F)
PM_MAGIC = b"ERPM"
PM_VERSION = 1


class PortMapperError(Exception):
    pass


def _pm_expect(sock, kinds, deadline):
    kind, payload = read_frame(sock, MAX_PORT_MAPPER_FRAME, deadline)
    if kind == PM_ERROR:
        f = Fields(payload)
        msg = f.str()
        raise PortMapperError(f"port mapper ERROR: {msg}")
    if kind not in kinds:
        raise ProtocolError(f"port mapper sent kind {kind:#04x}, expected {[hex(k) for k in kinds]}")
    return kind, payload


def pm_connect(host, port, timeout=5.0):
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    write_frame(sock, PM_HELLO, PM_MAGIC + p_u8(PM_VERSION), deadline)
    _, payload = _pm_expect(sock, (PM_WELCOME,), deadline)
    f = Fields(payload)
    v = f.u8()
    f.end()
    if v != PM_VERSION:
        raise ProtocolError(f"WELCOME version {v}")
    return sock


class Directory:
    """A directory connection: any number of QUERY and LIST, one at a time."""

    def __init__(self, host, port, timeout=5.0):
        self.timeout = timeout
        self.sock = pm_connect(host, port, timeout)

    def query(self, name):
        deadline = time.monotonic() + self.timeout
        write_frame(self.sock, PM_QUERY, p_str(name), deadline)
        kind, payload = _pm_expect(self.sock, (PM_PORT, PM_UNKNOWN), deadline)
        f = Fields(payload)
        if kind == PM_UNKNOWN:
            f.end()
            return None
        port = f.u16()
        f.end()
        return port

    def list(self):
        deadline = time.monotonic() + self.timeout
        write_frame(self.sock, PM_LIST, b"", deadline)
        _, payload = _pm_expect(self.sock, (PM_NODES,), deadline)
        f = Fields(payload)
        n = f.u32()
        nodes = {}
        for _ in range(n):
            name = f.str()
            nodes[name] = f.u16()
        f.end()
        return nodes

    def close(self):
        self.sock.close()


def pm_register(name, port, registry_port, timeout=5.0):
    """Register `name` -> `port`; the returned socket holds the registration."""
    deadline = time.monotonic() + timeout
    sock = pm_connect("127.0.0.1", registry_port, timeout)
    write_frame(sock, PM_REGISTER, p_str(name) + p_u16(port), deadline)
    _, payload = _pm_expect(sock, (PM_REGISTERED,), deadline)
    Fields(payload).end()
    sock.settimeout(None)
    return sock


# ---------------------------------------------------------------------------
# Section 4 and 5: the cryptography of sealed connections, pure Python
# (hashlib and hmac are in the standard library; X25519 and ChaCha20-Poly1305
# are not, so they are written here from RFC 7748 and RFC 8439)
# ---------------------------------------------------------------------------

_P25519 = 2 ** 255 - 19


def x25519(k, u):
    """RFC 7748 section 5: the scalar k (32 bytes, clamped here) times the point u (32 bytes)."""
    k = bytearray(k)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    p = _P25519
    for t in range(254, -1, -1):
        kt = (k >> t) & 1
        if swap ^ kt:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a, b = (x2 + z2) % p, (x2 - z2) % p
        aa, bb = a * a % p, b * b % p
        e = (aa - bb) % p
        c, d = (x3 + z3) % p, (x3 - z3) % p
        da, cb = d * a % p, c * b % p
        x3 = (da + cb) ** 2 % p
        z3 = x1 * (da - cb) ** 2 % p
        x2 = aa * bb % p
        z2 = e * (aa + 121665 * e) % p
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(32, "little")


def x25519_public(k):
    return x25519(k, (9).to_bytes(32, "little"))


def _chacha_blocks(key, nonce, counter, n):
    """n 64-byte blocks of ChaCha20 keystream (RFC 8439 section 2.3) from block `counter`.
    All n blocks are computed at once: each state word is one Python integer holding
    that word of every block in its own 64-bit lane, so every step is a few big-integer
    operations (additions carry into the lane's unused upper half, which is masked off)."""
    lanes = sum(1 << (64 * i) for i in range(n))
    mask = 0xFFFFFFFF * lanes
    words = struct.unpack("<4I8I3I", b"expand 32-byte k"[:0] + struct.pack("<4I", 0x61707865, 0x3320646E,
                                                                           0x79622D32, 0x6B206574)
                          + key + nonce)
    init = [w * lanes for w in words[:12]]
    init.append(counter * lanes + sum(i << (64 * i) for i in range(n)))
    init.extend(w * lanes for w in words[12:])
    x = list(init)

    def qr(a, b, c, d):
        xa, xb, xc, xd = x[a], x[b], x[c], x[d]
        xa = (xa + xb) & mask
        xd ^= xa
        xd = ((xd << 16) | (xd >> 16)) & mask
        xc = (xc + xd) & mask
        xb ^= xc
        xb = ((xb << 12) | (xb >> 20)) & mask
        xa = (xa + xb) & mask
        xd ^= xa
        xd = ((xd << 8) | (xd >> 24)) & mask
        xc = (xc + xd) & mask
        xb ^= xc
        xb = ((xb << 7) | (xb >> 25)) & mask
        x[a], x[b], x[c], x[d] = xa, xb, xc, xd

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    out = bytearray(64 * n)
    for i in range(16):
        w = (((x[i] + init[i]) & mask)).to_bytes(8 * n, "little")
        for j in range(4):
            out[4 * i + j::64] = w[j::8]
    return bytes(out)


def chacha20_xor(key, nonce, counter, data):
    """RFC 8439 section 2.4: data XOR the keystream from block `counter`."""
    out = []
    step = 4096  # blocks per batch
    for at in range(0, len(data), 64 * step):
        chunk = data[at:at + 64 * step]
        ks = _chacha_blocks(key, nonce, counter + at // 64, (len(chunk) + 63) // 64)
        v = int.from_bytes(chunk, "little") ^ int.from_bytes(ks[:len(chunk)], "little")
        out.append(v.to_bytes(len(chunk), "little"))
    return b"".join(out)


def poly1305(key, msg):
    """RFC 8439 section 2.5."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    p = (1 << 130) - 5
    h = 0
    for i in range(0, len(msg), 16):
        block = msg[i:i + 16]
        h = (h + int.from_bytes(block, "little") + (1 << (8 * len(block)))) * r % p
    return ((h + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _pad16(n):
    return bytes(-n % 16)


def aead_seal(key, nonce, aad, plaintext):
    """RFC 8439 section 2.8: ciphertext followed by the 16-byte tag."""
    poly_key = _chacha_blocks(key, nonce, 0, 1)[:32]
    ct = chacha20_xor(key, nonce, 1, plaintext)
    mac = aad + _pad16(len(aad)) + ct + _pad16(len(ct)) + struct.pack("<QQ", len(aad), len(ct))
    return ct + poly1305(poly_key, mac)


def aead_open(key, nonce, aad, sealed):
    """The plaintext, or None if the tag does not match (compared in constant time)."""
    if len(sealed) < 16:
        return None
    ct, tag = sealed[:-16], sealed[-16:]
    poly_key = _chacha_blocks(key, nonce, 0, 1)[:32]
    mac = aad + _pad16(len(aad)) + ct + _pad16(len(ct)) + struct.pack("<QQ", len(aad), len(ct))
    if not hmac.compare_digest(poly1305(poly_key, mac), tag):
        return None
    return chacha20_xor(key, nonce, 1, ct)


def hkdf_extract(salt, ikm):
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def hkdf_expand(prk, info, length):
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def session_keys(cookie, dh, t):
    """Section 4's key schedule: (key_c2s, key_s2c)."""
    early = hkdf_extract(b"", cookie)
    derived = hkdf_expand(early, b"erlangen v3 derived", 32)
    secret = hkdf_extract(derived, dh)
    th = hashlib.sha256(t).digest()
    return (hkdf_expand(secret, b"erlangen v3 c2s" + th, 32),
            hkdf_expand(secret, b"erlangen v3 s2c" + th, 32))


REKEY_AFTER = 1 << 24
TAG_LEN = 16
RECORD_FRAMES = 256 * 1024   # a record's frames, unless it holds one larger frame


class _Direction:
    def __init__(self, key):
        self.key, self.counter = key, 0

    def nonce(self):
        if self.counter >= REKEY_AFTER:
            self.key = hkdf_expand(self.key, b"erlangen v3 rekey", 32)
            self.counter = 0
        n = bytes(4) + struct.pack("<Q", self.counter)
        self.counter += 1
        return n


class SealedSocket:
    """A socket whose frames are sealed (section 5, "Sealed frames"). To the rest of this
    client it looks like the socket of a clear connection: sendall() takes clear frames and
    sends each in a record of its own (a record may hold several; one each is simplest;
    bytes that are not whole frames go as they are, for the malformed cases), and recv()
    gives back the frames of the records it opens, as section 1 writes them. Everything
    else goes to the socket."""

    def __init__(self, sock, send_key, recv_key):
        self._sock = sock
        self._tx = _Direction(send_key)
        self._rx = _Direction(recv_key)
        self._raw = bytearray()     # record bytes received, not yet a whole record
        self._clear = bytearray()   # opened frames not yet taken by recv()
        self._tx_lock = threading.Lock()
        self.records_sent = 0

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def seal(self, data):
        with self._tx_lock:
            return self._seal(data)

    def _seal(self, data):
        out, at = [], 0
        while at + 4 <= len(data):
            (length,) = struct.unpack(">I", data[at:at + 4])
            if length == 0 or at + 4 + length > len(data):
                break
            # one whole frame, its length field included, per record
            aad = struct.pack(">I", 4 + length + TAG_LEN)
            out.append(aad + aead_seal(self._tx.key, self._tx.nonce(), aad, data[at:at + 4 + length]))
            self.records_sent += 1
            at += 4 + length
        out.append(data[at:])
        return b"".join(out)

    def sendall(self, data):
        # sealed and sent under one lock, so records leave in the order of their numbers
        with self._tx_lock:
            self._sock.sendall(self._seal(bytes(data)))

    def send_raw_bytes(self, data):
        """Bytes as they are, no sealing (a malformed record)."""
        with self._tx_lock:
            self._sock.sendall(data)

    def recv(self, n):
        while not self._clear:
            if len(self._raw) >= 4:
                (length,) = struct.unpack(">I", self._raw[:4])
                if length < 5 + TAG_LEN or length > max(RECORD_FRAMES, MAX_NODE_FRAME + 4) + TAG_LEN:
                    raise ProtocolError(f"record length {length} out of bounds")
                if len(self._raw) >= 4 + length:
                    aad = bytes(self._raw[:4])
                    body = bytes(self._raw[4:4 + length])
                    del self._raw[:4 + length]
                    frames = aead_open(self._rx.key, self._rx.nonce(), aad, body)
                    if frames is None:
                        raise ProtocolError("a sealed record failed to open")
                    # one or more whole frames, as section 1 writes them
                    self._clear += frames
                    break
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                return b""
            self._raw += chunk
        out = bytes(self._clear[:n])
        del self._clear[:n]
        return out


# ---------------------------------------------------------------------------
# Section 4: cookie and handshake
# ---------------------------------------------------------------------------

HS_HELLO, HS_CHALLENGE, HS_PROOF, HS_ACCEPT, HS_REFUSE = 1, 2, 3, 4, 5
NODE_MAGIC = b"ERLN"
NODE_VERSION = 3        # the highest version we speak
NODE_MIN_VERSION = 3    # the lowest
FLAG_SEAL = 0x01
REFUSE_SEAL = 4
HANDSHAKE_TIMEOUT = 5.0
# A node declares a peer down that sent nothing for this long (the default
# `timeout`, which the checked kernel keeps).
NODE_SILENCE_TIMEOUT = 4.0
# The port mapper's first-request and directory-idle deadlines.
PM_REQUEST_DEADLINE = 5.0
REFUSE_BUSY, REFUSE_LIMIT, REFUSE_EXCLUDED = 1, 2, 3


class CookieError(Exception):
    pass


def load_cookie(path):
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise CookieError(f"{path}: readable or writable by group or others")
    if st.st_size > 4096:
        raise CookieError(f"{path}: larger than 4096 bytes")
    with open(path, "rb") as fh:
        raw = fh.read(4097)
    if len(raw) > 4096:
        raise CookieError(f"{path}: larger than 4096 bytes")
    key = raw.strip(b"\t\n\x0c\r ")
    if not key:
        raise CookieError(f"{path}: empty")
    if len(key) < 32:
        raise CookieError(f"{path}: fewer than 32 bytes")
    return key


def valid_name_part(s):
    b = s.encode("utf-8", "replace") if isinstance(s, str) else s
    return 1 <= len(b) <= 255 and all(0x21 <= c <= 0x7E and c != 0x2F for c in b)


def valid_node_name(name):
    parts = name.split("/")
    return len(parts) == 2 and all(valid_name_part(p) for p in parts)


def hello_payload(name, inc, nonce, public, seal=True, max_version=NODE_VERSION, min_version=NODE_MIN_VERSION):
    return (NODE_MAGIC + p_u8(max_version) + p_u8(min_version) + p_str(name) + p_u64(inc) + nonce
            + p_u8(FLAG_SEAL if seal else 0) + public)


def transcript(hello, challenge):
    """T: the HELLO payload, then the CHALLENGE payload without its proof (section 4)."""
    return hello + challenge[:-32]


def proof(cookie, label, t):
    return hmac.new(cookie, label + t, hashlib.sha256).digest()


class HandshakeError(Exception):
    pass


class Refused(HandshakeError):
    def __init__(self, code, reason):
        super().__init__(f"REFUSE code {code}: {reason}")
        self.code, self.reason = code, reason


def client_handshake(sock, cookie, name_c, inc_c, expect_name, *, send_proof_anyway=False, hello_override=None,
                     seal=True):
    """Run the dialing side. Returns (name_s, inc_s, sock): the socket to use from now on, a
    SealedSocket if both sides seal. Raises HandshakeError."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    nonce_c = secrets.token_bytes(32)
    private = secrets.token_bytes(32)
    hello = hello_override if hello_override is not None else hello_payload(
        name_c, inc_c, nonce_c, x25519_public(private), seal)
    write_frame(sock, HS_HELLO, hello, deadline)
    try:
        kind, payload = read_frame(sock, MAX_HANDSHAKE_FRAME, deadline)
    except Closed as e:
        raise HandshakeError(f"closed before CHALLENGE ({e})") from e
    if kind != HS_CHALLENGE:
        raise HandshakeError(f"expected CHALLENGE, got kind {kind:#04x}")
    f = Fields(payload)
    version = f.u8()
    if len(payload) == 1:
        raise HandshakeError(f"no common version: the server speaks up to version {version}")
    name_s = f.str()
    inc_s = f.u64()
    f.take(32)              # nonce_s
    flags_s = f.u8()
    key_s = f.take(32)
    proof_s = f.take(32)
    f.end()
    if version != NODE_VERSION:
        raise HandshakeError(f"server chose version {version}, we speak {NODE_MIN_VERSION} to {NODE_VERSION}")
    if inc_s == 0:
        raise HandshakeError("server incarnation 0")
    t = transcript(hello, payload)
    server_ok = hmac.compare_digest(proof(cookie, b"erlangen server", t), proof_s)
    if expect_name is not None and name_s != expect_name:
        raise HandshakeError(f"server is {name_s!r}, wanted {expect_name!r}")
    if not server_ok and not send_proof_anyway:
        raise HandshakeError("server proof does not match (wrong cookie?)")
    theirs = bool(flags_s & FLAG_SEAL)
    write_frame(sock, HS_PROOF, proof(cookie, b"erlangen client", t), deadline)
    try:
        kind, payload = read_frame(sock, MAX_HANDSHAKE_FRAME, deadline)
    except Closed as e:
        raise HandshakeError(f"closed after PROOF without a word ({e})"
                             + ("; the server's proof had not matched either" if not server_ok else "")) from e
    f = Fields(payload)
    if kind == HS_REFUSE:
        code = f.u8()
        reason = f.str()
        f.end()
        raise Refused(code, reason)
    if kind != HS_ACCEPT:
        raise HandshakeError(f"expected ACCEPT, got kind {kind:#04x}")
    f.end()
    if not server_ok:
        raise HandshakeError("server ACCEPTed although its proof did not match")
    if seal != theirs:
        raise HandshakeError(f"server ACCEPTed although it has seal {theirs} and we {seal}")
    if seal:
        dh = x25519(private, key_s)
        if dh == bytes(32):
            raise HandshakeError("the server's key is a low-order point")
        c2s, s2c = session_keys(cookie, dh, t)
        sock = SealedSocket(sock, c2s, s2c)
    return name_s, inc_s, sock


# ---------------------------------------------------------------------------
# Section 5 and 6: node requests
# ---------------------------------------------------------------------------

SEND, SPAWN, SPAWN_REPLY, LINK, UNLINK, EXIT, NOTICE, HEARTBEAT = range(0x10, 0x18)
GROUP_JOIN, GROUP_LEAVE, GROUP_SYNC, GLOBAL_REGISTER, GLOBAL_UNREGISTER, GLOBAL_SYNC = range(0x18, 0x1E)
NODES, NODE_LOST, DISCONNECT, GLOBAL_CLAIM, GLOBAL_CLAIM_REPLY = range(0x1E, 0x23)
ATTACH_NONE, ATTACH_LINK, ATTACH_MONITOR = 0, 1, 2
TRACE = bool(os.environ.get("PYCLIENT_TRACE"))
KIND_NAMES = {SEND: "SEND", SPAWN: "SPAWN", SPAWN_REPLY: "SPAWN_REPLY", LINK: "LINK", UNLINK: "UNLINK",
              EXIT: "EXIT", NOTICE: "NOTICE", HEARTBEAT: "HEARTBEAT", GROUP_JOIN: "GROUP_JOIN",
              GROUP_LEAVE: "GROUP_LEAVE", GROUP_SYNC: "GROUP_SYNC", GLOBAL_REGISTER: "GLOBAL_REGISTER",
              GLOBAL_UNREGISTER: "GLOBAL_UNREGISTER", GLOBAL_SYNC: "GLOBAL_SYNC", NODES: "NODES",
              NODE_LOST: "NODE_LOST", DISCONNECT: "DISCONNECT", GLOBAL_CLAIM: "GLOBAL_CLAIM",
              GLOBAL_CLAIM_REPLY: "GLOBAL_CLAIM_REPLY"}

# Section 7: NODES flags, DISCONNECT codes, the count bound; section 6: claim answers.
NODES_HIDDEN = 0x01
MAX_NODES_COUNT = 1024
DISCONNECT_OVERLAP = 1
CLAIM_GRANTED, CLAIM_HELD, CLAIM_COMPETING = 0, 1, 2
CLAIM_ANSWER_NAMES = {CLAIM_GRANTED: "GRANTED", CLAIM_HELD: "HELD", CLAIM_COMPETING: "COMPETING"}


def _bounded(s, lo, hi, what):
    """A section 6 bound on a str field: lo to hi bytes of UTF-8."""
    n = len(s.encode("utf-8"))
    if not lo <= n <= hi:
        raise ProtocolError(f"{what} of {n} bytes")
    return s


def _name_and_agent(f, what, agent_what):
    """Two str fields of section 6: a name (group or global, 1 to 255 bytes), then an agent id (1 to 1024)."""
    return _bounded(f.str(), 1, 255, what), _bounded(f.str(), 1, 1024, agent_what)


def encode_nodes(names, hidden=False, flags=None):
    """A NODES payload (section 7). `flags` overrides the byte (to send a bad one on purpose)."""
    return (p_u8(flags if flags is not None else (NODES_HIDDEN if hidden else 0)) + p_u16(len(names))
            + b"".join(p_str(n) for n in names))


def decode_nodes(payload, receiver, sender):
    """A NODES payload: (hidden, names), or ProtocolError for every bound of section 7.

    `receiver` and `sender` are the two ends' `host/node` names (neither may be named)."""
    f = Fields(payload)
    flags = f.u8()
    count = f.u16()
    if flags & ~NODES_HIDDEN:
        raise ProtocolError(f"NODES flags {flags:#04x}: a bit other than bit 0 is set")
    if count > MAX_NODES_COUNT:
        raise ProtocolError(f"NODES count {count} over {MAX_NODES_COUNT}")
    hidden = bool(flags & NODES_HIDDEN)
    if hidden and count:
        raise ProtocolError(f"NODES of a hidden sender names {count} node(s)")
    names = []
    seen = set()
    for _ in range(count):
        name = f.str()
        if not valid_node_name(name):
            raise ProtocolError(f"NODES names {name!r}, not a host/node name")
        if name in seen:
            raise ProtocolError(f"NODES names {name!r} twice")
        if name == receiver:
            raise ProtocolError(f"NODES names the receiver {name!r}")
        if name == sender:
            raise ProtocolError(f"NODES names its sender {name!r}")
        seen.add(name)
        names.append(name)
    f.end()
    return hidden, names


def decode_node_lost(payload):
    """A NODE_LOST payload: (node, incarnation)."""
    f = Fields(payload)
    node = f.str()
    inc = f.u64()
    f.end()
    return node, inc


def decode_disconnect(payload):
    """A DISCONNECT payload: (code, cause); any code but 1 is malformed."""
    f = Fields(payload)
    code = f.u8()
    cause = f.str()
    f.end()
    if code != DISCONNECT_OVERLAP:
        raise ProtocolError(f"DISCONNECT code {code}")
    return code, cause


def encode_claim(incarnation, request, at, name, holder):
    return p_u64(incarnation) + p_u64(request) + p_u64(at) + p_str(name) + p_str(holder)


def decode_claim(payload):
    """A GLOBAL_CLAIM payload: (incarnation, request, registered_at, name, holder), with section 6's bounds."""
    f = Fields(payload)
    inc = f.u64()
    req = f.u64()
    at = f.u64()
    name, holder = _name_and_agent(f, "name", "holder")
    f.end()
    return inc, req, at, name, holder


def encode_claim_reply(request, answer, holder=""):
    return p_u64(request) + p_u8(answer) + p_str(holder)


def decode_claim_reply(payload):
    """A GLOBAL_CLAIM_REPLY payload: (request, answer, holder); answer above 2, or a holder
    empty for HELD/COMPETING or not empty for GRANTED, is malformed."""
    f = Fields(payload)
    req = f.u64()
    answer = f.u8()
    holder = f.str()
    f.end()
    if answer > CLAIM_COMPETING:
        raise ProtocolError(f"GLOBAL_CLAIM_REPLY answer {answer}")
    if answer == CLAIM_GRANTED and holder:
        raise ProtocolError("GLOBAL_CLAIM_REPLY GRANTED with a holder")
    if answer != CLAIM_GRANTED:
        if not holder:
            raise ProtocolError(f"GLOBAL_CLAIM_REPLY {CLAIM_ANSWER_NAMES[answer]} without a holder")
        _bounded(holder, 1, 1024, "holder")
    return req, answer, holder


class ClaimFailed(ValueError):
    """Our claim for a global name was not granted (section 6): `answer` and `holder` of the first
    refusal (None for no answer in time, or our own claim abandoned)."""

    def __init__(self, name, why, answer=None, holder=None):
        super().__init__(f"global name {name!r} not registered: {why}")
        self.answer, self.holder = answer, holder


def claim_key(at, holder):
    """Section 6's conflict key: (registered_at, the holder's node, the holder's id), strings by bytes."""
    return (at, holder.rsplit("/", 1)[0].encode(), holder.encode())

# What this client's agents receive in their mailboxes:
#   ("msg", term)                 a SEND
#   ("exit", from_id, reason)     an exit signal (EXIT, or a lost connection)
#   ("notice", notification)      an exit notification (agent :OK . values) / (agent :EXIT . reason)


class LocalAgent:
    def __init__(self, node, aid):
        self.node = node
        self.aid = aid
        self.mailbox = queue.Queue()
        self.alive = True
        self.exit_reason = None

    @property
    def id(self):
        return f"{self.node.name}/{self.aid}"

    def term(self):
        """How this node writes its own agent: AGENT_OF_RUN with its incarnation."""
        return Agent(self.id, self.node.incarnation)

    def receive(self, timeout, match=None):
        """Next mailbox item (optionally the first matching one; others are kept)."""
        timeout *= WAIT_SLACK
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"agent {self.id}: nothing{' matching' if match else ''} within {timeout} s")
                try:
                    item = self.mailbox.get(timeout=left)
                except queue.Empty:
                    continue
                if match is None or match(item):
                    return item
                skipped.append(item)
        finally:
            # put back what did not match, in order, ahead of later arrivals
            if skipped:
                rest = []
                while True:
                    try:
                        rest.append(self.mailbox.get_nowait())
                    except queue.Empty:
                        break
                for it in skipped + rest:
                    self.mailbox.put(it)

    def expect_nothing(self, seconds):
        try:
            item = self.mailbox.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"agent {self.id} expected nothing, got {item!r}")

    def exit(self, reason):
        """End this agent: tell every attached peer (links: EXIT; monitors of it: NOTICE)."""
        self.node._local_exit(self, reason)


class Connection:
    """An authenticated connection to one peer node (section 5)."""

    def __init__(self, node, sock, peer_name, peer_inc, dialed):
        self.node = node
        self.sock = sock
        self.peer_name = peer_name
        self.peer_inc = peer_inc
        self.dialed = dialed
        self.wlock = threading.Lock()
        self.last_sent = time.monotonic()
        self.last_recv = time.monotonic()
        self.closed = threading.Event()
        self.close_reason = None
        self.received = {}           # kind -> count
        self.spawn_waiters = {}      # request -> (Queue, reply_to, attach)
        self.abandoned = {}          # request -> attach, for requests we stopped waiting for
        self.next_request = 1
        self.lock = threading.Lock()
        # attachments over this connection: (local aid, remote full id, mode)
        # mode: "link", "monitors" (local monitors remote), "monitored" (remote monitors local)
        self.attachments = set()
        self.peer_groups = set()     # (group, member) announced by the peer over this connection
        self.peer_globals = {}       # name -> (registered_at, holder)
        self.dropped = 0
        self.kinds_seen = {}         # frame kind -> how many the peer sent over this connection
        self.heartbeats_enabled = True
        # section 7: what the peer's NODES frames said (peer_hidden is None until its first one;
        # a node that never sends NODES counts as hidden)
        self.first_kind = None       # the kind of the first frame the peer sent after ACCEPT
        self.peer_hidden = None
        self.peer_nodes = set()      # every node the peer's NODES frames named
        self.nodes_frames = []       # (hidden, names) per NODES frame, in order
        self.nodes_seen = threading.Condition(self.lock)
        self.node_lost = []          # (node, incarnation) per NODE_LOST
        self.disconnect = None       # (code, cause) of a DISCONNECT
        self.claim_waiters = {}      # request -> Queue of (answer, holder), for our GLOBAL_CLAIMs
        self.claims_received = []    # (request, registered_at, name, holder) per GLOBAL_CLAIM answered or deferred
        self.send_nodes_on_start = True
        self.nodes_sent = False
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = threading.Thread(target=self._read_loop, daemon=True, name=f"reader {peer_name}")
        self.ticker = threading.Thread(target=self._tick_loop, daemon=True, name=f"ticker {peer_name}")

    def start(self):
        # section 5 "The first frame": NODES before anything else (section 7), then section 6's syncs
        if self.send_nodes_on_start and not self.nodes_sent:
            self.node._send_first_nodes(self)
        self.reader.start()
        self.ticker.start()
        # section 6: both sides send their whole membership and names right after the handshake
        self.node._send_syncs(self)

    def wait_nodes(self, seconds, what="the peer's first NODES"):
        """Waits (a stretched deadline) for the peer's first NODES; returns its (hidden, names)."""
        seconds *= WAIT_SLACK
        deadline = time.monotonic() + seconds
        with self.lock:
            while not self.nodes_frames:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    raise AssertionError(f"{what}: none within {seconds} s"
                                         + (f" (closed: {self.close_reason})" if self.closed.is_set() else ""))
                self.nodes_seen.wait(min(left, 0.1))
            return self.nodes_frames[0]

    def reply_claim(self, request, answer, holder=""):
        """Answer a GLOBAL_CLAIM (by hand, for a claim a test deferred)."""
        self.send_frame(GLOBAL_CLAIM_REPLY, encode_claim_reply(request, answer, holder))

    # -- writing ----------------------------------------------------------
    def send_frame(self, kind, payload=b""):
        frame = encode_frame(kind, payload)
        if len(frame) - 4 > MAX_NODE_FRAME:
            raise ValueError(f"frame of {len(frame) - 4} bytes over {MAX_NODE_FRAME}: not sent")
        self.send_raw(frame)

    def send_raw(self, data):
        if self.closed.is_set():
            raise Closed(f"connection to {self.peer_name} is closed ({self.close_reason})")
        with self.wlock:
            try:
                self.sock.settimeout(10)
                self.sock.sendall(data)
            except OSError as e:
                self._down(f"write failed: {e}")
                raise Closed(str(e)) from e
            self.last_sent = time.monotonic()

    def send(self, to, message):
        """SEND `message` to a remote agent: an Agent term, or an aid (current run)."""
        inc, aid = self._target(to)
        self.send_frame(SEND, p_u64(inc) + p_str(aid) + encode(message))

    def _target(self, to):
        if isinstance(to, Agent):
            node, aid = to.id.rsplit("/", 1)
            if node != self.peer_name:
                raise ValueError(f"{to.id} is not an agent of {self.peer_name}")
            return (to.incarnation or 0), aid
        return 0, to

    def spawn(self, reply_to, call, attach=ATTACH_NONE, mailbox=0, timeout=10.0 * WAIT_SLACK):
        """SPAWN; returns (ok, text). With ok the text is the new agent's aid."""
        with self.lock:
            req = self.next_request
            self.next_request += 1
            q = queue.Queue()
            self.spawn_waiters[req] = (q, reply_to, attach)
        self.send_frame(SPAWN, p_u64(req) + p_str(reply_to.id) + p_u8(attach) + p_u32(mailbox) + encode(call))
        try:
            return q.get(timeout=timeout)
        except queue.Empty as e:
            with self.lock:
                if self.spawn_waiters.pop(req, None) is not None:
                    self.abandoned[req] = attach
            raise TimeoutError(f"no SPAWN_REPLY for request {req} within {timeout} s") from e

    def remote(self, aid):
        """The AGENT_OF_RUN term for an agent of the peer's run."""
        return Agent(f"{self.peer_name}/{aid}", self.peer_inc)

    def link(self, local, to, monitor=False):
        inc, aid = self._target(to)
        with self.lock:
            self.attachments.add((local.aid, f"{self.peer_name}/{aid}", "monitors" if monitor else "link"))
        self.send_frame(LINK, p_str(local.id) + p_u64(inc) + p_str(aid) + p_u8(1 if monitor else 0))

    def unlink(self, local, to):
        inc, aid = self._target(to)
        rid = f"{self.peer_name}/{aid}"
        with self.lock:
            self.attachments = {a for a in self.attachments if not (a[0] == local.aid and a[1] == rid)}
        self.send_frame(UNLINK, p_str(local.id) + p_u64(inc) + p_str(aid))

    def exit(self, local, to, reason):
        inc, aid = self._target(to)
        self.send_frame(EXIT, p_str(local.id) + p_u64(inc) + p_str(aid) + encode(reason))

    def notice(self, local, to, notification):
        inc, aid = self._target(to)
        self.send_frame(NOTICE, p_str(local.id) + p_u64(inc) + p_str(aid) + encode(notification))

    def heartbeat(self):
        self.send_frame(HEARTBEAT)

    def close(self):
        """Close cleanly: the protocol has no goodbye frame; closing the socket is it."""
        self._down("closed by us", shut=True)

    # -- reading ----------------------------------------------------------
    def _read_loop(self):
        try:
            while not self.closed.is_set():
                kind, payload = read_frame(self.sock, MAX_NODE_FRAME)
                self.last_recv = time.monotonic()
                self.received[kind] = self.received.get(kind, 0) + 1
                if TRACE:
                    self._trace(kind, payload)
                self._handle(kind, payload)
        except (Closed, OSError) as e:
            self._down(f"peer closed: {e}")
        except ProtocolError as e:
            self._down(f"malformed frame from peer: {e}")
        except Exception as e:  # a bug here must not hang the caller
            self._down(f"client bug: {e!r}\n{traceback.format_exc()}")

    def _tick_loop(self):
        tick, timeout = self.node.tick, self.node.timeout
        while not self.closed.wait(min(tick / 4, 0.25)):
            now = time.monotonic()
            if now - self.last_recv > timeout:
                self._down(f"peer silent for more than {timeout} s")
                return
            if self.heartbeats_enabled and now - self.last_sent >= tick:
                try:
                    self.heartbeat()
                except Closed:
                    return

    def _trace(self, kind, payload):
        f = Fields(payload)
        try:
            if kind == SEND:
                d = f"to_inc={f.u64():#x} to={f.str()!r} msg={show(f.term())}"
            elif kind in (LINK, UNLINK, EXIT, NOTICE):
                d = f"from={f.str()!r} to_inc={f.u64():#x} to={f.str()!r}"
                if kind == LINK:
                    d += f" monitor={f.u8()}"
                elif kind in (EXIT, NOTICE):
                    d += f" term={show(f.term())}"
            elif kind == SPAWN:
                d = f"req={f.u64()} reply_to={f.str()!r} attach={f.u8()} mailbox={f.u32()} call={show(f.term())}"
            elif kind == SPAWN_REPLY:
                d = f"req={f.u64()} ok={f.u8()} text={f.str()!r}"
            elif kind == NODES:
                d = f"flags={f.u8()} names={[f.str() for _ in range(f.u16())]}"
            elif kind == NODE_LOST:
                d = f"node={f.str()!r} inc={f.u64():#x}"
            elif kind == DISCONNECT:
                d = f"code={f.u8()} cause={f.str()!r}"
            elif kind == GLOBAL_CLAIM:
                d = f"inc={f.u64():#x} req={f.u64()} at={f.u64()} name={f.str()!r} holder={f.str()!r}"
            elif kind == GLOBAL_CLAIM_REPLY:
                d = f"req={f.u64()} answer={f.u8()} holder={f.str()!r}"
            else:
                d = payload[:64].hex()
        except Exception as e:  # noqa: BLE001
            d = f"(undecodable: {e})"
        print(f"    [{self.node.short} <- {self.peer_name}] {KIND_NAMES.get(kind, hex(kind))} {d}", flush=True)

    def _ops_query(self, req, kind, asker, token):
        """Section 8: (OPS-QUERY kind asker token) as a node in another language answers it: an agent that
        sends (:OPS-REPLY token (:OK value)) or (:OPS-REPLY token (:ERROR "text")) and returns."""
        node = self.node
        agent = node.spawn_agent()
        self.send_frame(SPAWN_REPLY, p_u64(req) + p_u8(1) + p_str(agent.aid))
        if kind == "node-info":
            inc = node.incarnation if node.incarnation < (1 << 63) else str(node.incarnation)
            value = [kw("NODE"), node.name, kw("INCARNATION"), inc, kw("UPTIME"), OPS_UPTIME,
                     kw("AGENTS"), len(node.agents), kw("THREAD-AGENTS"), len(node.agents), kw("ASYNC-AGENTS"), 0,
                     kw("THREADS"), None, kw("RESIDENT-KB"), None, kw("THROTTLED"), 0,
                     kw("REFUSED-HANDSHAKES"), 0, kw("SLOTS-FULL"), 0, kw("CONNECTION-ERRORS"), 0]
            answer = [kw("OK"), value]
        else:
            answer = [kw("ERROR"), f"unknown query {show(kind)}"]
        self.send(asker, [kw("OPS-REPLY"), token, answer])
        agent.exit([kw("OK")])

    def _handle(self, kind, payload):
        f = Fields(payload)
        node = self.node
        with self.lock:
            self.kinds_seen[kind] = self.kinds_seen.get(kind, 0) + 1
        if self.disconnect is not None:
            # section 7: nothing follows DISCONNECT but the end of the stream
            raise ProtocolError(f"{KIND_NAMES.get(kind, hex(kind))} after DISCONNECT")
        if self.first_kind is None:
            self.first_kind = kind
            if kind != NODES:
                # section 5 "The first frame": a peer may send nothing else first
                raise ProtocolError(f"first frame after ACCEPT is {KIND_NAMES.get(kind, hex(kind))}, not NODES")
        if kind == SEND:
            inc = f.u64()
            to = f.str()
            msg = f.term()
            f.end()
            a = node._local(to, inc)
            if a is None:
                self.dropped += 1
            else:
                a.mailbox.put(("msg", msg))
        elif kind == SPAWN:
            req = f.u64()
            reply_to = f.str()
            attach = f.u8()
            f.u32()
            call = f.term()
            f.end()
            if node.answers_ops and isinstance(call, list) and len(call) >= 4 and call[0] == sym("ops-query"):
                self._ops_query(req, call[1], call[2], call[3])
                return
            # This node runs no other functions: every SPAWN is an error reply (no agent started).
            self.send_frame(SPAWN_REPLY, p_u64(req) + p_u8(0) + p_str(
                f"python node {node.name} runs no functions (asked for {show(call)} attach {attach} for {reply_to})"))
        elif kind == SPAWN_REPLY:
            req = f.u64()
            ok = f.u8()
            text = f.str()
            f.end()
            if ok not in (0, 1):
                raise ProtocolError(f"SPAWN_REPLY ok={ok}")
            with self.lock:
                w = self.spawn_waiters.pop(req, None)
                gave_up = self.abandoned.pop(req, None)
            if w is None:
                if ok == 1 and gave_up in (ATTACH_LINK, ATTACH_MONITOR):
                    # nobody waits for this agent: end it (section 5, SPAWN)
                    self.send_frame(EXIT, p_str(f"{node.name}/abandoned") + p_u64(self.peer_inc) + p_str(text)
                                    + encode(kw("SPAWN-ABANDONED")))
                return
            q, reply_to, attach = w
            if ok == 1 and attach in (ATTACH_LINK, ATTACH_MONITOR):
                with self.lock:
                    self.attachments.add((reply_to.aid, f"{self.peer_name}/{text}",
                                          "link" if attach == ATTACH_LINK else "monitors"))
            q.put((ok == 1, text))
        elif kind in (LINK, UNLINK):
            frm = f.str()
            inc = f.u64()
            to = f.str()
            monitor = f.u8() if kind == LINK else 0
            f.end()
            if monitor not in (0, 1):
                raise ProtocolError(f"LINK monitor={monitor}")
            if not frm.startswith(self.peer_name + "/"):
                self.dropped += 1
                return
            a = node._local(to, inc)
            if kind == UNLINK:
                if a is not None:
                    with self.lock:
                        self.attachments = {x for x in self.attachments if not (x[0] == a.aid and x[1] == frm)}
                return
            if a is None or not a.alive:
                # answer at once, from to's id
                me = f"{node.name}/{to}"
                if monitor:
                    self.send_frame(NOTICE, p_str(me) + p_u64(0) + p_str(frm.rsplit("/", 1)[1])
                                    + encode(Dotted([Agent(me, node.incarnation), kw("EXIT")], kw("NOPROC"))))
                else:
                    self.send_frame(EXIT, p_str(me) + p_u64(0) + p_str(frm.rsplit("/", 1)[1]) + encode(kw("NOPROC")))
                return
            with self.lock:
                self.attachments.add((a.aid, frm, "monitored" if monitor else "link"))
        elif kind == EXIT:
            frm = f.str()
            inc = f.u64()
            to = f.str()
            reason = f.term()
            f.end()
            a = node._local(to, inc)
            if a is None or not a.alive:
                self.dropped += 1
                return
            a.mailbox.put(("exit", frm, reason))
            node._local_exit(a, reason)
        elif kind == NOTICE:
            frm = f.str()
            inc = f.u64()
            to = f.str()
            notification = f.term()
            f.end()
            a = node._local(to, inc)
            key = (a.aid, frm, "monitors") if a is not None else None
            with self.lock:
                attached = key in self.attachments
                if attached:
                    self.attachments.discard(key)
            if attached:
                a.mailbox.put(("notice", notification))
            else:
                self.dropped += 1
        elif kind == HEARTBEAT:
            f.end()
        elif kind in (GROUP_JOIN, GROUP_LEAVE, GROUP_SYNC, GLOBAL_REGISTER, GLOBAL_UNREGISTER, GLOBAL_SYNC):
            self._handle_cluster(kind, f)
        elif kind == NODES:
            hidden, names = decode_nodes(payload, node.name, self.peer_name)
            with self.lock:
                if self.peer_hidden is not None and hidden != self.peer_hidden:
                    raise ProtocolError("a second NODES changes bit 0 (hidden)")
                first = self.peer_hidden is None
                self.peer_hidden = hidden
                self.peer_nodes.update(names)
                self.nodes_frames.append((hidden, names))
                self.nodes_seen.notify_all()
            if first:
                node._member_joined(self)
        elif kind == NODE_LOST:
            # Recorded only: the overlap rule is for visible nodes with connect_all, which this one
            # is not (it dials only what it addresses).
            lost = decode_node_lost(payload)
            with self.lock:
                self.node_lost.append(lost)
        elif kind == DISCONNECT:
            d = decode_disconnect(payload)
            with self.lock:
                self.disconnect = d
        elif kind == GLOBAL_CLAIM:
            inc, req, at, name, holder = decode_claim(payload)
            if inc != self.peer_inc or not holder.startswith(self.peer_name + "/"):
                self.dropped += 1   # ignored and counted, no answer
                return
            node._answer_claim(self, req, at, name, holder)
        elif kind == GLOBAL_CLAIM_REPLY:
            req, answer, holder = decode_claim_reply(payload)
            with self.lock:
                q = self.claim_waiters.pop(req, None)
            if q is not None:       # a reply to no claim under way is ignored
                q.put((answer, holder))
        else:
            raise ProtocolError(f"unknown frame kind {kind:#04x}")

    def _handle_cluster(self, kind, f):
        inc = f.u64()
        entries = []
        if kind in (GROUP_JOIN, GROUP_LEAVE):
            entries.append(_name_and_agent(f, "group", "member"))
        elif kind == GROUP_SYNC:
            n = f.u32()
            if n > 4096 or n * 6 > len(f.data) - f.pos:
                raise ProtocolError(f"GROUP_SYNC count {n}")
            for _ in range(n):
                entries.append(_name_and_agent(f, "group", "member"))
        elif kind == GLOBAL_REGISTER:
            at = f.u64()
            entries.append((at, *_name_and_agent(f, "name", "holder")))
        elif kind == GLOBAL_UNREGISTER:
            entries.append(_name_and_agent(f, "name", "holder"))
        elif kind == GLOBAL_SYNC:
            n = f.u32()
            if n > 4096 or n * 14 > len(f.data) - f.pos:
                raise ProtocolError(f"GLOBAL_SYNC count {n}")
            for _ in range(n):
                at = f.u64()
                entries.append((at, *_name_and_agent(f, "name", "holder")))
        f.end()
        if inc != self.peer_inc:
            self.dropped += 1
            return
        prefix = self.peer_name + "/"
        conflicts = []
        with self.lock:
            for e in entries:
                agent_id = e[-1]
                if not agent_id.startswith(prefix):
                    self.dropped += 1
                    continue
                if kind in (GROUP_JOIN, GROUP_SYNC):
                    self.peer_groups.add(e)
                elif kind == GROUP_LEAVE:
                    self.peer_groups.discard(e)
                elif kind in (GLOBAL_REGISTER, GLOBAL_SYNC):
                    self.peer_globals[e[1]] = (e[0], e[2])
                    conflicts.append(e)
                elif kind == GLOBAL_UNREGISTER:
                    if self.peer_globals.get(e[0], (None, None))[1] == e[1]:
                        del self.peer_globals[e[0]]
        for at, name, holder in conflicts:
            self.node._global_conflict(name, at, holder)

    # -- loss -------------------------------------------------------------
    def _down(self, reason, shut=False):
        with self.lock:
            if self.closed.is_set():
                return
            self.close_reason = reason
            self.closed.set()
            attachments, self.attachments = self.attachments, set()
            waiters, self.spawn_waiters = self.spawn_waiters, {}
            claims, self.claim_waiters = self.claim_waiters, {}
            self.nodes_seen.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.node._forget(self)
        peer = self.peer_name
        # every local agent attached over this connection is told exactly once
        told = set()
        for aid, rid, mode in attachments:
            a = self.node.agents.get(aid)
            if a is None or not a.alive or (aid, rid) in told:
                continue
            told.add((aid, rid))
            if mode == "monitors":
                a.mailbox.put(("notice", [Agent(rid, self.peer_inc), kw("EXIT"), kw("NOCONNECTION"), peer]))
            else:
                a.mailbox.put(("exit", rid, [kw("NOCONNECTION"), peer]))
        for q, _, _ in waiters.values():
            q.put((False, f"connection to {peer} lost: {reason}"))
        # section 6: a member whose connection is lost during a claim counts as granting
        for q in claims.values():
            q.put((CLAIM_GRANTED, ""))


class Node:
    """This Python process as an Erlangen node `host/name`."""

    def __init__(self, host, name, cookie, directory_port, registry_port=None, tick=1.0, timeout=4.0,
                 hidden=True, seal=True):
        self.host = host
        self.short = name
        self.name = f"{host}/{name}"
        if not valid_node_name(self.name):
            raise ValueError(f"invalid node name {self.name!r}")
        self.cookie = cookie
        self.incarnation = secrets.randbits(64) or 1
        self.directory_port = directory_port
        self.registry_port = registry_port
        self.tick, self.timeout = tick, timeout
        self.seal = seal         # section 5: frames sealed (both sides must agree)
        self.lock = threading.RLock()
        self.agents = {}         # aid -> LocalAgent
        self.names = {}          # ":NAME" -> aid
        self.next_aid = 0
        self.connections = {}    # peer name -> Connection
        self.groups = set()      # (group, member id) of our own agents
        self.globals = {}        # name -> (registered_at, holder id) of our own agents
        # section 7: hidden by default (flags 1, count 0); a visible node has members
        self.hidden = hidden
        self.answers_ops = False    # section 8: answer the kernel's management queries (OPS-QUERY)
        self.claiming = {}       # name -> [registered_at, holder id, abandoned] of our claims under way
        self.next_claim = 1
        # test hook: called with (conn, request, registered_at, name, holder) for every GLOBAL_CLAIM to
        # answer; returning None answers as section 6 says, returning (answer, holder) answers that,
        # returning "defer" answers nothing (the caller answers with conn.reply_claim later)
        self.on_claim = None
        self.listener = None
        self.registration = None
        self.port = None
        self.accepted = queue.Queue()   # inbound connections, for scenarios to observe
        self.dialing = {}               # peer -> dials in progress
        self.dial_log = []
        self.on_hello = None            # test hook: called with the peer name after a valid HELLO
        self.inbound_log = []           # (peer address, outcome)

    # -- agents -----------------------------------------------------------
    def spawn_agent(self, name=None):
        with self.lock:
            aid = format(self.next_aid, "x")
            self.next_aid += 1
            a = LocalAgent(self, aid)
            self.agents[aid] = a
            if name:
                self.names[":" + name.upper()] = aid
            return a

    def _local(self, to, inc):
        """The local agent a `to` field names, or None (wrong run, unknown, exited)."""
        if inc not in (0, self.incarnation):
            return None
        with self.lock:
            aid = self.names.get(to.upper(), to) if to.startswith(":") else to
            a = self.agents.get(aid)
        if a is None or not a.alive:
            return None
        return a

    def _local_exit(self, agent, reason):
        with self.lock:
            if not agent.alive:
                return
            agent.alive = False
            agent.exit_reason = reason
            conns = list(self.connections.values())
            for g in [g for g in self.groups if g[1] == agent.id]:
                self.groups.discard(g)
                for c in conns:
                    self._try(c.send_frame, GROUP_LEAVE, p_u64(self.incarnation) + p_str(g[0]) + p_str(g[1]))
            for n, (at, holder) in list(self.globals.items()):
                if holder == agent.id:
                    del self.globals[n]
                    for c in conns:
                        self._try(c.send_frame, GLOBAL_UNREGISTER, p_u64(self.incarnation) + p_str(n) + p_str(holder))
        for c in conns:
            with c.lock:
                mine = [x for x in c.attachments if x[0] == agent.aid]
                c.attachments -= set(mine)
            for _, rid, mode in mine:
                aid = Agent(rid, c.peer_inc)   # the peer's run we attached to over this connection
                if mode == "monitored":
                    self._try(c.notice, agent, aid, cons([agent.term(), kw("EXIT")], reason))
                else:  # a link, or our monitor of it (two-way: it gets an exit signal)
                    self._try(c.exit, agent, aid, reason)

    @staticmethod
    def _try(fn, *args):
        try:
            fn(*args)
        except (Closed, OSError):
            pass

    # -- groups and global names (section 6) -----------------------------
    def join_group(self, group, agent):
        with self.lock:
            if (group, agent.id) in self.groups:
                return
            self.groups.add((group, agent.id))
            for c in list(self.connections.values()):
                self._try(c.send_frame, GROUP_JOIN, p_u64(self.incarnation) + p_str(group) + p_str(agent.id))

    def register_global(self, name, agent, at=None, claim=True):
        """Register a cluster-wide name (refused when known to be held); `at` forces registered_at.

        A visible node with members claims the name from every member first (section 6) and raises
        ValueError naming the answer when one is not GRANTED; `claim=False` skips that (to race on purpose)."""
        with self.lock:
            held = (name in self.globals or name in self.claiming
                    or any(name in c.peer_globals for c in self.connections.values()))
            if held and at is None:
                raise ValueError(f"global name {name!r} is already held")
            at = at if at is not None else time.time_ns() // 1000
            members = self.members() if claim else []
            if members:
                mine = [at, agent.id, False]
                self.claiming[name] = mine
        if members:
            try:
                self._claim(name, at, agent, members, mine)
            finally:
                with self.lock:
                    if self.claiming.get(name) is mine:
                        del self.claiming[name]
        with self.lock:
            self.globals[name] = (at, agent.id)
            for c in list(self.connections.values()):
                self._try(c.send_frame, GLOBAL_REGISTER,
                          p_u64(self.incarnation) + p_u64(at) + p_str(name) + p_str(agent.id))

    def members(self):
        """Section 7: the visible peers of this node if it is visible (none if it is hidden)."""
        if self.hidden:
            return []
        with self.lock:
            return [c for c in self.connections.values() if not c.closed.is_set() and c.peer_hidden is False]

    def _send_first_nodes(self, conn):
        """The first frame after ACCEPT: NODES naming every member (none when hidden)."""
        with self.lock:
            if conn.nodes_sent:
                return
            names = [] if self.hidden else sorted(c.peer_name for c in self.members() if c is not conn)
            conn.nodes_sent = True
            conn.send_frame(NODES, encode_nodes(names, hidden=self.hidden))

    def _member_joined(self, conn):
        """A peer's first NODES: if both are visible it is a member; tell the other members of it."""
        if self.hidden or conn.peer_hidden:
            return
        with self.lock:
            others = [c for c in self.members() if c is not conn]
        for c in others:
            self._try(c.send_frame, NODES, encode_nodes([conn.peer_name]))

    def _answer_claim(self, conn, req, at, name, holder):
        """Section 6: answer a peer's GLOBAL_CLAIM at once."""
        with self.lock:
            conn.claims_received.append((req, at, name, holder))
            if self.on_claim is not None:
                custom = self.on_claim(conn, req, at, name, holder)
                if custom == "defer":
                    return
                if custom is not None:
                    conn.reply_claim(req, *custom)
                    return
            answer, who = CLAIM_GRANTED, ""
            theirs = claim_key(at, holder)
            known = []
            if name in self.globals:
                known.append(self.globals[name])
            for c in self.connections.values():
                if not c.closed.is_set() and name in c.peer_globals:
                    known.append(c.peer_globals[name])
            other = [(a, h) for a, h in known if claim_key(a, h) != theirs]
            mine = self.claiming.get(name)
            if other:
                answer, who = CLAIM_HELD, other[0][1]
            elif mine is not None and not mine[2]:
                if claim_key(mine[0], mine[1]) < theirs:
                    answer, who = CLAIM_COMPETING, mine[1]
                else:
                    mine[2] = True   # a larger key: ours is abandoned and fails
        self._try(conn.reply_claim, req, answer, who)

    def _claim(self, name, at, agent, members, mine):
        """GLOBAL_CLAIM to every member, then every answer (a lost member grants; twice the failure
        timeout plus 1 s without an answer fails)."""
        pending = []
        for c in members:
            with self.lock:
                req = self.next_claim
                self.next_claim += 1
            q = queue.Queue()
            with c.lock:
                c.claim_waiters[req] = q
            try:
                c.send_frame(GLOBAL_CLAIM, encode_claim(self.incarnation, req, at, name, agent.id))
            except Closed:
                continue   # lost: counts as granting
            pending.append((c, req, q))
        deadline = time.monotonic() + 2 * self.timeout + 1
        failure = None
        for c, req, q in pending:
            try:
                answer, who = q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                with c.lock:
                    c.claim_waiters.pop(req, None)
                failure = failure or ClaimFailed(name, f"no answer from {c.peer_name}")
                continue
            if answer != CLAIM_GRANTED:
                failure = failure or ClaimFailed(
                    name, f"{CLAIM_ANSWER_NAMES[answer]} by {c.peer_name} (holder {who})", answer, who)
        if failure is None and mine[2]:
            failure = ClaimFailed(name, "abandoned for a competing claim with a smaller key")
        if failure is not None:
            raise failure

    def _global_conflict(self, name, at, holder):
        """A peer announced `holder` for `name`: if one of ours holds it, the smaller key wins."""
        with self.lock:
            mine = self.globals.get(name)
            if mine is None:
                return
            my_at, my_holder = mine
            if claim_key(my_at, my_holder) <= claim_key(at, holder):
                return  # ours stands; the peer resolves the same way
            del self.globals[name]
            conns = list(self.connections.values())
            loser = self.agents.get(my_holder.rsplit("/", 1)[1])
        for c in conns:
            self._try(c.send_frame, GLOBAL_UNREGISTER, p_u64(self.incarnation) + p_str(name) + p_str(my_holder))
        if loser is not None and loser.alive:
            reason = [kw("GLOBAL-NAME-CONFLICT"), name, Agent(holder)]
            loser.mailbox.put(("exit", holder, reason))
            self._local_exit(loser, reason)

    def _send_syncs(self, conn):
        with self.lock:
            groups = sorted(self.groups)
            globs = sorted(self.globals.items())
        for i in range(0, len(groups), 4096):
            chunk = groups[i:i + 4096]
            conn.send_frame(GROUP_SYNC, p_u64(self.incarnation) + p_u32(len(chunk))
                            + b"".join(p_str(g) + p_str(m) for g, m in chunk))
        for i in range(0, len(globs), 4096):
            chunk = globs[i:i + 4096]
            conn.send_frame(GLOBAL_SYNC, p_u64(self.incarnation) + p_u32(len(chunk))
                            + b"".join(p_u64(at) + p_str(n) + p_str(h) for n, (at, h) in chunk))

    # -- connections ------------------------------------------------------
    def _forget(self, conn):
        with self.lock:
            if self.connections.get(conn.peer_name) is conn:
                del self.connections[conn.peer_name]

    def lookup(self, peer):
        host, short = peer.split("/")
        d = Directory(host, self.directory_port)
        try:
            return d.query(short)
        finally:
            d.close()

    def dial(self, peer, *, start=True):
        """Find `peer` (host/node) in its host's directory, connect, authenticate."""
        with self.lock:
            c = self.connections.get(peer)
            if c is not None and not c.closed.is_set():
                return c
            self.dialing[peer] = self.dialing.get(peer, 0) + 1
        try:
            port = self.lookup(peer)
            if port is None:
                raise LookupError(f"no node named {peer!r} is registered")
            host = peer.split("/")[0]
            sock = socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT)
            try:
                name_s, inc_s, sock = client_handshake(sock, self.cookie, self.name, self.incarnation, peer,
                                                       seal=self.seal)
            except Refused as e:
                sock.close()
                if e.code != REFUSE_BUSY or self.listener is None:
                    raise
                # BUSY: use the other connection (the peer's dial to us, if it is dialing)
                deadline = time.monotonic() + HANDSHAKE_TIMEOUT
                while time.monotonic() < deadline:
                    with self.lock:
                        c = self.connections.get(peer)
                    if c is not None and not c.closed.is_set():
                        self.dial_log.append(f"REFUSE 1 for our dial; using the peer's dial")
                        return c
                    time.sleep(0.02)
                raise
            except BaseException:
                sock.close()
                raise
            c = Connection(self, sock, name_s, inc_s, dialed=True)
            with self.lock:
                self.connections[peer] = c
                if start:
                    self._send_first_nodes(c)   # before any other sender can see the connection
            if start:
                c.start()
            return c
        finally:
            with self.lock:
                self.dialing[peer] -= 1
                if not self.dialing[peer]:
                    del self.dialing[peer]

    def listen(self):
        """Be reachable: listen on a free port and register with the port mapper."""
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("0.0.0.0", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.registration = pm_register(self.short, self.port, self.registry_port)
        threading.Thread(target=self._accept_loop, daemon=True, name="accept").start()

    def _accept_loop(self):
        while True:
            try:
                sock, addr = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_handshake, args=(sock, addr), daemon=True).start()

    def _serve_handshake(self, sock, addr):
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        try:
            kind, payload = read_frame(sock, MAX_HANDSHAKE_FRAME, deadline)
            if kind != HS_HELLO:
                raise HandshakeError(f"first frame kind {kind:#04x}")
            hello = payload
            f = Fields(payload)
            if f.take(4) != NODE_MAGIC:
                raise HandshakeError("bad magic")
            max_c = f.u8()
            if max_c < NODE_MIN_VERSION:
                raise HandshakeError(f"the client speaks version {max_c}, we {NODE_MIN_VERSION} to {NODE_VERSION}")
            min_c = f.u8()
            if min_c > NODE_VERSION or min_c > max_c:
                raise HandshakeError(f"the client speaks versions {min_c} to {max_c}, we {NODE_MIN_VERSION} to "
                                     f"{NODE_VERSION}")
            name_c = f.str()
            inc_c = f.u64()
            f.take(32)          # nonce_c
            flags_c = f.u8()
            key_c = f.take(32)
            # bytes after the key: room for later versions, ignored (but in the transcript)
            if not valid_node_name(name_c) or name_c == self.name or inc_c == 0:
                raise HandshakeError(f"bad peer name {name_c!r}")
            if self.on_hello is not None:
                self.on_hello(name_c)
            nonce_s = secrets.token_bytes(32)
            private = secrets.token_bytes(32)
            challenge = (p_u8(NODE_VERSION) + p_str(self.name) + p_u64(self.incarnation) + nonce_s
                         + p_u8(FLAG_SEAL if self.seal else 0) + x25519_public(private))
            t = hello + challenge
            write_frame(sock, HS_CHALLENGE, challenge + proof(self.cookie, b"erlangen server", t), deadline)
            kind, payload = read_frame(sock, MAX_HANDSHAKE_FRAME, deadline)
            if kind != HS_PROOF:
                raise HandshakeError(f"expected PROOF, got {kind:#04x}")
            f = Fields(payload)
            proof_c = f.take(32)
            f.end()
            if not hmac.compare_digest(proof_c, proof(self.cookie, b"erlangen client", t)):
                raise HandshakeError("client proof does not match")
            theirs = bool(flags_c & FLAG_SEAL)
            if theirs != self.seal:
                write_frame(sock, HS_REFUSE, p_u8(REFUSE_SEAL) + p_str(
                    f"sealing settings differ: the server has seal {'t' if self.seal else 'nil'}, you (the client) "
                    f"seal {'t' if theirs else 'nil'}"), deadline)
                raise HandshakeError("refused SEAL")
            clear_sock = sock
            if self.seal:
                dh = x25519(private, key_c)
                if dh == bytes(32):
                    raise HandshakeError("the client's key is a low-order point")
                c2s, s2c = session_keys(self.cookie, dh, t)
                sock = SealedSocket(sock, s2c, c2s)
            with self.lock:
                if name_c in self.dialing and self.name.encode() < name_c.encode():
                    # both dial at once: the dial of the node whose name sorts first wins on both sides
                    write_frame(clear_sock, HS_REFUSE, p_u8(REFUSE_BUSY) + p_str("our own dial wins"), deadline)
                    raise HandshakeError("refused BUSY: our dial to it wins")
                old = self.connections.get(name_c)
                if old is not None and not old.closed.is_set():
                    if old.peer_inc == inc_c:
                        write_frame(clear_sock, HS_REFUSE, p_u8(REFUSE_BUSY) + p_str("already connected"), deadline)
                        raise HandshakeError("refused BUSY")
                    old._down("replaced by a connection from the peer's new run")
                write_frame(clear_sock, HS_ACCEPT, b"", deadline)
                c = Connection(self, sock, name_c, inc_c, dialed=False)
                self.connections[name_c] = c
                self._send_first_nodes(c)   # the first frame, before any other sender can see it
            c.start()
            self.inbound_log.append((addr, f"accepted {name_c}"))
            self.accepted.put(c)
        except Exception as e:  # noqa: BLE001 - every failure closes only this connection
            self.inbound_log.append((addr, f"refused: {e}"))
            sock.close()

    def shutdown(self):
        for c in list(self.connections.values()):
            c.close()
        if self.listener:
            self.listener.close()
        if self.registration:
            self.registration.close()


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------

def check(cond, what):
    if not cond:
        raise AssertionError(what)


def log(*a):
    print("   ", *a, flush=True)


class Ctx:
    def __init__(self, args):
        self.args = args
        self.cookie = load_cookie(args.cookie_file)
        self.peer = args.peer
        self.nodes = []

    def node(self, tag, cookie=None, listen=False, incarnation=None, hidden=True, seal=True):
        n = Node("localhost", f"py-{tag}-{os.getpid()}", cookie or self.cookie,
                 self.args.directory_port, self.args.registry_port, hidden=hidden, seal=seal)
        if incarnation:
            n.incarnation = incarnation
        self.nodes.append(n)
        if listen:
            n.listen()
        return n

    def close(self):
        for n in self.nodes:
            n.shutdown()


def echo_roundtrip(conn, agent, payload, timeout=5.0):
    """The kernel's registered :ECHO agent is (async-echo): (message target) -> message to target."""
    conn.send(":ECHO", [payload, agent.term()])
    kind, got = agent.receive(timeout, match=lambda it: it[0] == "msg")
    check(got == payload, f"echo returned {show(got)}, sent {show(payload)}")


def eventually(cond, seconds, what):
    """Polls cond() until it holds; fails naming `what` after `seconds` (a deadline, not a sleep)."""
    seconds *= WAIT_SLACK
    deadline = time.monotonic() + seconds
    while not cond():
        check(time.monotonic() < deadline, f"{what}: not within {seconds} s")
        time.sleep(0.02)


def take(q, seconds, what):
    """The next item of queue `q` within `seconds` (stretched); fails naming `what` if none comes."""
    seconds *= WAIT_SLACK
    try:
        return q.get(timeout=seconds)
    except queue.Empty:
        raise AssertionError(f"{what}: none within {seconds} s") from None


def wait_closed(conn, seconds, what):
    seconds *= WAIT_SLACK
    check(conn.closed.wait(seconds), f"{what}: connection still open after {seconds} s")
    log(f"{what}: closed ({conn.close_reason.splitlines()[0]})")


def raw_dial(ctx, name=None, cookie=None):
    """Handshake by hand; returns (sock, node, name_s, inc_s) without starting a Connection."""
    n = ctx.node(name or "raw", cookie=cookie)
    port = n.lookup(ctx.peer)
    check(port is not None, f"{ctx.peer} not in the directory")
    sock = socket.create_connection(("localhost", port), timeout=5)
    name_s, inc_s, sock = client_handshake(sock, n.cookie, n.name, n.incarnation, ctx.peer, seal=n.seal)
    return sock, n, name_s, inc_s


def seconds_to_eof(sock, t0, seconds, what):
    """Seconds from `t0` until the peer closes (EOF or reset), whatever it
    sends first; fails if it is still open `seconds` after `t0`."""
    expect_eof(sock, max(0.0, t0 + seconds - time.monotonic()), what)
    return time.monotonic() - t0


def expect_eof(sock, seconds, what):
    """The peer must close (EOF or reset) within `seconds`, whatever it sends first."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return
        if not b:
            return
    raise AssertionError(f"{what}: connection not closed within {seconds} s")


# -- offline -----------------------------------------------------------------

def sc_codec(ctx):
    """The term codec against the document's dumps, every tag, limits and refusals."""
    # the annotated dump of (:PING 42 "x")
    ping = bytes.fromhex("01 0B00000003 0900000004 50494E47 022A 0600000001 78".replace(" ", ""))
    check(len(ping) == 23, "dump is 23 bytes")
    check(encode([kw("ping"), 42, "x"]) == ping, "encode (:PING 42 \"x\")")
    check(decode(ping) == [kw("ping"), 42, "x"], "decode (:PING 42 \"x\")")
    # SEND dump (section 5) and GROUP_JOIN dump (section 6)
    send = encode_frame(SEND, p_u64(0x0123456789ABCDEF) + p_str("1f") + encode(kw("hi")))
    check(send.hex() == "00000015" "10" "0123456789abcdef" "00023166" "01090000000248" "49", "SEND dump")
    gj = encode_frame(GROUP_JOIN, p_u64(0x0123456789ABCDEF) + p_str("W") + p_str("h/n/1f"))
    check(gj.hex() == "00000014" "18" "0123456789abcdef" "000157" "0006682f6e2f3166", "GROUP_JOIN dump")
    # the NODES dump (section 7) and the section 7 / section 6 bounds on decode
    nodes = encode_frame(NODES, encode_nodes(["h/a", "h/b"]))
    check(nodes.hex() == "0000000e" "1e" "00" "0002" "0003682f61" "0003682f62" and len(nodes) == 18, "NODES dump")
    check(decode_nodes(nodes[5:], "h/me", "h/you") == (False, ["h/a", "h/b"]), "NODES decoded")
    check(decode_nodes(encode_nodes([], hidden=True), "h/me", "h/you") == (True, []), "hidden NODES")
    many = [f"h/n{i}" for i in range(MAX_NODES_COUNT)]
    check(len(decode_nodes(encode_nodes(many), "h/me", "h/you")[1]) == 1024, "1,024 names")
    for names, flags, why in [
            (many + ["h/x"], None, "count 1025"), (["h/a", "h/a"], None, "twice"), (["h/me"], None, "receiver"),
            (["h/you"], None, "sender"), (["nohost"], None, "not a host/node"), (["h/a/b"], None, "not a host/node"),
            (["h/a b"], None, "not a host/node"), (["/a"], None, "not a host/node"), (["h/" + "n" * 256], None,
            "not a host/node"), (["h/\u00fc"], None, "not a host/node"), (["h/a"], 1, "hidden sender"),
            ([], 2, "flags"), ([], 0x81, "flags")]:
        refuses(lambda names=names, flags=flags: decode_nodes(encode_nodes(names, flags=flags), "h/me", "h/you"),
                why)
    refuses(lambda: decode_nodes(p_u8(0) + p_u16(2) + p_str("h/a"), "h/me", "h/you"), "too short")
    refuses(lambda: decode_nodes(encode_nodes([]) + b"\x00", "h/me", "h/you"), "after the last field")
    check(decode_node_lost(p_str("h/q") + p_u64(7)) == ("h/q", 7), "NODE_LOST")
    refuses(lambda: decode_node_lost(p_str("h/q")), "too short")
    check(decode_disconnect(p_u8(1) + p_str("h/p")) == (1, "h/p"), "DISCONNECT")
    for code in (0, 2, 255):
        refuses(lambda code=code: decode_disconnect(p_u8(code) + p_str("h/p")), "code")
    claim = encode_claim(5, 9, 1_700_000_000_000_000, "boss", "h/n/1")
    check(decode_claim(claim) == (5, 9, 1_700_000_000_000_000, "boss", "h/n/1"), "GLOBAL_CLAIM")
    refuses(lambda: decode_claim(encode_claim(5, 9, 1, "", "h/n/1")), "name of 0 bytes")
    refuses(lambda: decode_claim(encode_claim(5, 9, 1, "n" * 256, "h/n/1")), "name of 256 bytes")
    refuses(lambda: decode_claim(encode_claim(5, 9, 1, "boss", "h" * 1025)), "holder of 1025 bytes")
    check(decode_claim_reply(encode_claim_reply(9, CLAIM_GRANTED)) == (9, 0, ""), "GRANTED")
    check(decode_claim_reply(encode_claim_reply(9, CLAIM_HELD, "h/n/1")) == (9, 1, "h/n/1"), "HELD")
    check(decode_claim_reply(encode_claim_reply(9, CLAIM_COMPETING, "h/n/2")) == (9, 2, "h/n/2"), "COMPETING")
    refuses(lambda: decode_claim_reply(encode_claim_reply(9, 3)), "answer 3")
    refuses(lambda: decode_claim_reply(encode_claim_reply(9, CLAIM_GRANTED, "h/n/1")), "with a holder")
    refuses(lambda: decode_claim_reply(encode_claim_reply(9, CLAIM_HELD)), "without a holder")
    refuses(lambda: decode_claim_reply(encode_claim_reply(9, CLAIM_COMPETING)), "without a holder")
    # the conflict keys: registered_at, then the node, then the id (strings by bytes)
    check(claim_key(1, "h/b/0") < claim_key(2, "h/a/0") and claim_key(1, "h/a/9") < claim_key(1, "h/b/0")
          and claim_key(1, "h/a/1") < claim_key(1, "h/a/2"), "claim keys")
    # port-mapper dumps (section 3)
    for got, want in [
        (encode_frame(PM_HELLO, PM_MAGIC + p_u8(1)), "00000006 20 45 52 50 4D 01"),
        (encode_frame(PM_REGISTER, p_str("alpha") + p_u16(4242)), "00 00 00 0A 22 00 05 61 6C 70 68 61 10 92"),
        (encode_frame(PM_QUERY, p_str("alpha")), "00 00 00 08 24 00 05 61 6C 70 68 61"),
        (encode_frame(PM_PORT, p_u16(4242)), "00 00 00 03 25 10 92"),
        (encode_frame(PM_NODES, p_u32(1) + p_str("alpha") + p_u16(4242)),
         "00 00 00 0E 27 00 00 00 01 00 05 61 6C 70 68 61 10 92"),
        (encode_frame(PM_ERROR, p_str("timed out")), "00 00 00 0C 2F 00 09 74 69 6D 65 64 20 6F 75 74"),
    ]:
        check(got == bytes.fromhex(want.replace(" ", "")), f"port-mapper dump {want}")
    # every tag round-trips, smallest integer tag
    every = [None, True, 0, -128, 127, 128, -129, 2**31 - 1, -2**31, 2**31, -2**63, 2**63 - 1, 1.5,
             float("inf"), "", "ü", Symbol("FOO"), QSymbol("ERLANGEN.EXAMPLES", "PARALLEL-MAP"), Keyword("K"),
             b"", b"\x00\xff", [1, [2, [3]]], Dotted([1, 2], 3), Dotted([1], "x"), Vector([]),
             Vector([Vector([])]), Agent("h/n/0"), Agent("h/n/:NAME", 7)]
    seen_tags = set()
    for t in every:
        b = encode(t)
        seen_tags.add(b[1])
        check(decode(b) == t, f"round trip of {show(t)}")
    check(seen_tags == set(range(16)), f"every tag covered, missing {set(range(16)) - seen_tags}")
    check(encode(127)[1] == INT8 and encode(128)[1] == INT32 and encode(2**31)[1] == INT64, "smallest int tag")
    check(decode(b"\x01\x04" + struct.pack(">q", 5)) == 5 and decode(b"\x01\x03" + struct.pack(">i", 5)) == 5,
          "any integer tag accepted")
    nan = decode(encode(float("nan")))
    check(nan != nan, "NaN round trip")

    # nesting: 127 collections inside each other is the maximum
    decode(encode(nest_list(127)))
    refuses(lambda: encode(nest_list(128)), "TooDeep")
    deep128 = b"\x01" + b"\x0b\x00\x00\x00\x01" * 128 + b"\x00"
    refuses(lambda: decode(deep128), "nesting")
    decode(b"\x01" + b"\x0b\x00\x00\x00\x01" * 127 + b"\x00")
    empty_vec_127 = b"\x01" + b"\x0d\x00\x00\x00\x01" * 126 + b"\x0d\x00\x00\x00\x00"
    decode(empty_vec_127)
    refuses(lambda: decode(b"\x01" + b"\x0d\x00\x00\x00\x01" * 127 + b"\x0d\x00\x00\x00\x00"), "nesting")
    # a DOTTED's tail is inside its DOTTED
    d = b"\x01" + b"\x0b\x00\x00\x00\x01" * 126 + b"\x0c\x00\x00\x00\x01\x00\x02\x01"
    decode(d)
    refuses(lambda: decode(b"\x01" + b"\x0b\x00\x00\x00\x01" * 126
                           + b"\x0c\x00\x00\x00\x01\x00\x0d\x00\x00\x00\x00"), "nesting")
    # element limit
    decode(b"\x01\x0d" + p_u32(1_048_576) + b"\x00" * 1_048_576)
    refuses(lambda: decode(b"\x01\x0d" + p_u32(1_048_577) + b"\x00" * 1_048_577), "element limit")
    refuses(lambda: encode(Vector([None] * 1_048_577)), "TooManyElements")
    # counts cannot outrun the input
    refuses(lambda: decode(b"\x01\x0b" + p_u32(5) + b"\x00\x00"), "outnumber")
    refuses(lambda: decode(b"\x01\x0b" + p_u32(2) + b"\x0b" + p_u32(2) + b"\x00\x00"), "outnumber")
    refuses(lambda: decode(b"\x01\x06" + p_u32(3) + b"ab"), "exceeds")
    refuses(lambda: decode(b"\x01\x0c" + p_u32(1) + b"\x00"), "outnumber")
    # other refusals
    for bad, why in [(b"", "no bytes"), (b"\x02\x00", "version"), (b"\x01\x10", "unknown tag"),
                     (b"\x01\x03\x00", "ends inside"), (b"\x01\x00\x00", "after the term"),
                     (b"\x01\x06" + p_u32(1) + b"\xff", "UTF-8"), (b"\x01\x0b" + p_u32(0), "count 0"),
                     (b"\x01\x0c" + p_u32(0), "count 0"),
                     (b"\x01\x0c" + p_u32(1) + b"\x00\x00", "tail"),
                     (b"\x01\x0c" + p_u32(1) + b"\x00\x0b" + p_u32(1) + b"\x00", "tail"),
                     (b"\x01\x0e" + p_u32(0), "empty id"),
                     (b"\x01\x0f" + p_u64(0) + p_u32(5) + b"h/n/0", "incarnation 0")]:
        refuses(lambda bad=bad: decode(bad), why)
    decode(b"\x01\x0a" + p_u32(1) + b"\xff")   # BYTES need not be UTF-8
    small = Limits(total=100, string=4)
    refuses(lambda: decode(b"\x01\x06" + p_u32(5) + b"abcde", small), "string limit")
    refuses(lambda: decode(b"\x01\x0a" + p_u32(200) + bytes(200), small), "total limit")
    refuses(lambda: encode("x" * 5, small), "StringTooLong")
    refuses(lambda: encode(b"x" * 200, Limits(total=100)), "TooBig")
    refuses(lambda: encode(Agent("")), "EmptyAgentId")
    refuses(lambda: encode(Dotted([1], None)), "MalformedDotted")
    refuses(lambda: encode(Dotted([1], [2])), "MalformedDotted")
    refuses(lambda: encode(Dotted([], 2)), "MalformedDotted")
    refuses(lambda: encode(lambda: 0), "Unencodable")
    # frames and fields
    f = Fields(p_u16(1) + b"\xff")
    refuses(f.str, "UTF-8")
    f = Fields(b"\x00\x01")
    f.u8()
    refuses(f.end, "after the last field")
    # HMAC-SHA256 against RFC 4231 test case 2
    check(hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest()
          == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "RFC 4231 case 2")


def refuses(fn, fragment):
    try:
        fn()
    except (DecodeError, EncodeError, ProtocolError) as e:
        check(fragment.lower() in str(e).lower(), f"refused, but with {e!r} (wanted {fragment!r})")
        return
    raise AssertionError(f"not refused (wanted {fragment!r})")


# -- port mapper -------------------------------------------------------------

def sc_port_mapper(ctx):
    """Directory: QUERY known and unknown, LIST; registry: REGISTER, a duplicate, release."""
    a = ctx.args
    short = ctx.peer.split("/")[1]
    d = Directory("127.0.0.1", a.directory_port)
    port = d.query(short)
    check(port and port > 0, f"QUERY {short} -> {port}")
    check(d.query("no-such-node-xyz") is None, "QUERY unknown -> UNKNOWN")
    check(d.query("bad/name") is None, "QUERY invalid name -> UNKNOWN")
    nodes = d.list()
    check(nodes.get(short) == port, f"LIST has {short}: {nodes}")
    log(f"QUERY {short} -> {port}; LIST -> {nodes}")
    name = f"py-reg-{os.getpid()}"
    r1 = pm_register(name, 4242, a.registry_port)
    check(d.query(name) == 4242, "registered name found")
    try:
        r2 = pm_register(name, 4243, a.registry_port)
        r2.close()
        raise AssertionError("duplicate REGISTER accepted")
    except PortMapperError as e:
        log(f"duplicate REGISTER: {e}")
        check("already registered" in str(e), "duplicate says already registered")
    check(d.query(name) == 4242, "first registration untouched")
    r1.close()
    deadline = time.monotonic() + 3
    while d.query(name) is not None:
        check(time.monotonic() < deadline, "name not released after close")
        time.sleep(0.02)
    # bad input: a wrong magic is answered ERROR and closed
    s = socket.create_connection(("127.0.0.1", a.directory_port), timeout=5)
    write_frame(s, PM_HELLO, b"ERPX\x01")
    kind, payload = read_frame(s, MAX_PORT_MAPPER_FRAME, time.monotonic() + 5)
    check(kind == PM_ERROR, f"wrong magic -> kind {kind:#x}")
    log(f"wrong magic -> ERROR {Fields(payload).str()!r}")
    expect_eof(s, 3, "after ERROR")
    s.close()
    # a REGISTER sent to the directory is the wrong kind
    s = pm_connect("127.0.0.1", a.directory_port)
    write_frame(s, PM_REGISTER, p_str("x") + p_u16(1))
    kind, payload = read_frame(s, MAX_PORT_MAPPER_FRAME, time.monotonic() + 5)
    check(kind == PM_ERROR, "REGISTER to the directory -> ERROR")
    s.close()
    check(d.query(short) == port, "the first directory connection still answers")
    d.close()


# -- handshake ---------------------------------------------------------------

def sc_handshake(ctx):
    """Dial the kernel, check its name and proof, ACCEPT; a second connection of the same run is REFUSE 1."""
    n = ctx.node("hs")
    c = n.dial(ctx.peer)
    log(f"connected to {c.peer_name}, incarnation {c.peer_inc:#x}")
    check(c.peer_name == ctx.peer, "server name")
    port = n.lookup(ctx.peer)
    s = socket.create_connection(("localhost", port), timeout=5)
    try:
        client_handshake(s, n.cookie, n.name, n.incarnation, ctx.peer)
        raise AssertionError("second connection of the same run accepted")
    except Refused as e:
        log(f"second connection: {e}")
        check(e.code == REFUSE_BUSY, "REFUSE code 1")
    s.close()
    a = n.spawn_agent()
    echo_roundtrip(c, a, kw("still-up"))
    c.close()


def sc_wrong_cookie(ctx):
    """A wrong cookie: the client sees a bad server proof, and the server closes after a bad PROOF."""
    bad = secrets.token_hex(32).encode()
    n = ctx.node("badcookie", cookie=bad)
    try:
        n.dial(ctx.peer)
        raise AssertionError("dial with a wrong cookie succeeded")
    except HandshakeError as e:
        log(f"client side: {e}")
        check("proof does not match" in str(e), "server proof refused by the client")
    port = n.lookup(ctx.peer)
    s = socket.create_connection(("localhost", port), timeout=5)
    try:
        client_handshake(s, bad, n.name, n.incarnation, ctx.peer, send_proof_anyway=True)
        raise AssertionError("server ACCEPTed a wrong PROOF")
    except Refused as e:
        raise AssertionError(f"server answered REFUSE ({e}); it must close without a word") from e
    except HandshakeError as e:
        log(f"server side: {e}")
        check("closed after PROOF without a word" in str(e), "server closed without a word")
    s.close()
    # the right cookie still gets in
    good = ctx.node("goodcookie")
    c = good.dial(ctx.peer)
    echo_roundtrip(c, good.spawn_agent(), "after-wrong-cookie")
    c.close()


def sc_bad_hello(ctx):
    """Bad HELLOs (own name, bad name, other version, a request before ACCEPT) are closed without CHALLENGE;
    a newer node's HELLO (versions 3 to 4, a field after the key) is answered in version 3."""
    n = ctx.node("badhello")
    port = n.lookup(ctx.peer)
    nonce = secrets.token_bytes(32)
    key = x25519_public(secrets.token_bytes(32))
    s = socket.create_connection(("localhost", port), timeout=5)
    write_frame(s, HS_HELLO, hello_payload(n.name, 5, nonce, key, max_version=4) + b"a version 4 field")
    kind, payload = read_frame(s, MAX_HANDSHAKE_FRAME, time.monotonic() + 5)
    check(kind == HS_CHALLENGE and payload[0] == 3, f"a 3-to-4 HELLO: {kind_name(kind)} version {payload[:1]}")
    s.close()
    log("a HELLO of versions 3 to 4 with an extra field: CHALLENGE in version 3")
    cases = {
        "server's own name": hello_payload(ctx.peer, 5, nonce, key),
        "name without host": hello_payload("justnode", 5, nonce, key),
        "name with a space": hello_payload("local host/x", 5, nonce, key),
        "only version 2 (the old HELLO)": NODE_MAGIC + p_u8(2) + p_str(n.name) + p_u64(5) + nonce,
        "only version 9": hello_payload(n.name, 5, nonce, key, max_version=9, min_version=9),
        "versions 4 to 3": hello_payload(n.name, 5, nonce, key, max_version=3, min_version=4),
        "bad magic": b"ERLX" + hello_payload(n.name, 5, nonce, key)[4:],
        "key one byte short": hello_payload(n.name, 5, nonce, key)[:-1],
    }
    for what, hello in cases.items():
        s = socket.create_connection(("localhost", port), timeout=5)
        try:
            client_handshake(s, n.cookie, n.name, 5, ctx.peer, hello_override=hello)
            raise AssertionError(f"{what}: handshake went through")
        except HandshakeError as e:
            if what.startswith("only version"):
                # no common version: a CHALLENGE holding only the server's version, then the end
                check("no common version: the server speaks up to version 3" in str(e), f"{what}: {e}")
            else:
                check("closed before CHALLENGE" in str(e), f"{what}: {e}")
        s.close()
    # a SEND before ACCEPT
    s = socket.create_connection(("localhost", port), timeout=5)
    write_frame(s, SEND, p_u64(0) + p_str(":ECHO") + encode(None))
    expect_eof(s, 5, "SEND before the handshake")
    s.close()
    log(f"{len(cases) + 1} bad openings closed")


# -- node requests -----------------------------------------------------------

def sc_send(ctx):
    """SEND to the registered :ECHO agent; it answers with a SEND to our agent (our AGENT_OF_RUN)."""
    n = ctx.node("send")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    payload = [kw("ping"), 42, "x", 1.25, -7, 2**40, Symbol("FOO"), QSymbol("PKG", "BAR"), b"\x00\xff",
               Vector([1, 2]), Dotted([1, 2], 3), None, True, Agent(f"{ctx.peer}/0")]
    echo_roundtrip(c, a, payload)
    log(f"echoed {show(payload)}")
    # the kernel's own agent, written by us as AGENT (text) and as AGENT_OF_RUN: how does it come back?
    for sent in (Agent(f"{ctx.peer}/0"), Agent(f"{ctx.peer}/0", c.peer_inc)):
        c.send(":ECHO", [sent, a.term()])
        _, back = a.receive(5)
        log(f"kernel's own agent sent as {sent!r} came back as {back!r}")
        check(isinstance(back, Agent) and back.id == sent.id, "agent echoed")
    # 200 messages keep their order (in windows of 32: the echo's mailbox holds 64 by default,
    # and a full mailbox drops)
    got = []
    for w in range(0, 200, 32):
        for i in range(w, min(w + 32, 200)):
            c.send(":ECHO", [i, a.term()])
        got += [a.receive(5)[1] for _ in range(w, min(w + 32, 200))]
    check(got == list(range(200)), f"order: {got[:10]}...")
    # the registered name by the case the kernel was given ("echo"), and a wrong run of us
    sends_before = c.received.get(SEND, 0)
    c.send(":ECHO", [kw("to-wrong-run"), Agent(a.id, n.incarnation ^ 1 or 2)])
    c.send(":ECHO", [kw("after"), a.term()])
    _, m = a.receive(5)
    check(m == kw("after"), f"a SEND naming our other run must not reach our agent, got {show(m)}")
    frames = c.received.get(SEND, 0) - sends_before
    log(f"a reference to another run of us: {frames - 1} SEND frame(s) reached us, we dropped {c.dropped}"
        " (0 frames: the kernel drops it before sending)")
    # a wrong to_incarnation for the kernel's agent is dropped there
    c.send_frame(SEND, p_u64(c.peer_inc ^ 1 or 2) + p_str(":ECHO") + encode([kw("wrong-inc"), a.term()]))
    a.expect_nothing(0.5)
    c.send_frame(SEND, p_u64(c.peer_inc) + p_str(":ECHO") + encode([kw("right-inc"), a.term()]))
    check(a.receive(5)[1] == kw("right-inc"), "SEND with the kernel's own incarnation")
    # the reply can also go to an agent typed as text (AGENT, current run)
    c.send(":ECHO", [kw("by-text"), Agent(a.id)])
    check(a.receive(5)[1] == kw("by-text"), "reply to an AGENT term")
    c.close()


def sc_spawn_monitor(ctx):
    """SPAWN with attach 2 (monitor): SPAWN_REPLY then NOTICE (agent :OK . values)."""
    n = ctx.node("spawn")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    ok, aid = c.spawn(a, [sym("+"), 1, 2], attach=ATTACH_MONITOR)
    check(ok, f"spawn (+ 1 2): {aid}")
    log(f"SPAWN_REPLY text {aid!r}")
    kind, notif = a.receive(5)
    log(f"notice {show(notif)}")
    check(kind == "notice", f"got {kind}")
    check(notif == [Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("OK"), 3], f"notice {show(notif)}")
    # package-qualified, case-insensitive, with a keyword argument
    ok, aid = c.spawn(a, [QSymbol("erlangen.examples", "parallel-map"), Symbol("1+"), Vector([2, 4, 6]),
                          kw("level"), 2], attach=ATTACH_MONITOR)
    check(ok, f"parallel-map: {aid}")
    _, notif = a.receive(10)
    check(notif == [Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("OK"), Vector([3, 5, 7])], f"{show(notif)}")
    # a lone symbol means no arguments
    ok, aid = c.spawn(a, sym("list"), attach=ATTACH_MONITOR)
    check(ok, f"lone symbol: {aid}")
    _, notif = a.receive(5)
    check(notif[1:] == [kw("OK"), None], f"(list) -> {show(notif)}")
    # an unknown function, a non-call, a bad attach: ok = 0
    for call, attach in [([sym("no-such-function")], 2), ([1, 2], 0), ([sym("+"), 1], 7)]:
        ok, text = c.spawn(a, call, attach=attach)
        check(not ok, f"{show(call)} attach {attach} started an agent")
        log(f"refused spawn {show(call)} attach {attach}: {text}")
    # reply_to not on the requesting node: an error reply
    foreign = LocalAgent(n, "0")
    foreign_id = Agent("localhost/someone-else/0", 5)
    req = 999
    q = queue.Queue()
    c.spawn_waiters[req] = (q, foreign, 2)
    c.send_frame(SPAWN, p_u64(req) + p_str(foreign_id.id) + p_u8(2) + p_u32(0) + encode([sym("list")]))
    ok, text = q.get(timeout=5)
    check(not ok, "reply_to of another node accepted")
    log(f"reply_to of another node: {text}")
    # monitor an agent that is then killed: NOTICE (agent :EXIT . reason)
    ok, aid = c.spawn(a, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, aid)
    c.exit(a, aid, kw("bye"))
    _, notif = a.receive(5)
    check(notif == Dotted([Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("EXIT")], kw("bye")), f"{show(notif)}")
    log(f"killed: {show(notif)}")
    # the two-way monitor: when reply_to exits, the spawned agent gets an exit signal
    b = n.spawn_agent()
    ok, aid = c.spawn(b, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, aid)
    c.link(a, aid, monitor=True)
    b.exit(kw("requester-gone"))
    _, notif = a.receive(5)
    check(notif == Dotted([Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("EXIT")], kw("requester-gone")),
          f"two-way monitor: {show(notif)}")
    c.close()


def sc_link_exit(ctx):
    """LINK / UNLINK / EXIT both ways, and :NOPROC for an agent that is not there."""
    n = ctx.node("link")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    # spawn linked; kill it; its exit comes back to us as an exit signal with the same reason
    ok, aid = c.spawn(a, [sym("receive")], attach=ATTACH_LINK)
    check(ok, aid)
    c.exit(a, aid, kw("shot"))
    kind, frm, reason = a.receive(5)
    check((kind, frm, reason) == ("exit", f"{ctx.peer}/{aid}", kw("shot")), f"{kind} {frm} {show(reason)}")
    check(not a.alive, "our agent ended with the exit signal")
    log(f"linked agent killed -> exit signal {show(reason)} from {frm}")
    # LINK frame to a running agent, which then returns normally: reason (:OK . values)
    b = n.spawn_agent()
    waiter = n.spawn_agent()
    ok, aid = c.spawn(waiter, [sym("receive")])
    check(ok, aid)
    c.link(b, aid)
    c.link(waiter, aid, monitor=True)
    # no pause: frames on one connection are handled in order (section 5)
    c.send(aid, kw("wake"))
    kind, frm, reason = b.receive(5)
    log(f"normal return of a linked agent -> {kind} {show(reason)}")
    check(kind == "exit" and reason == [kw("OK"), kw("wake")], f"{kind} {show(reason)}")
    _, notif = waiter.receive(5)
    check(notif == [Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("OK"), kw("wake")], show(notif))
    # our agent exits: the kernel agent linked to it gets the exit signal
    d = n.spawn_agent()
    mon = n.spawn_agent()
    ok, aid = c.spawn(mon, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, aid)
    c.link(d, aid)
    d.exit(kw("python-died"))
    _, notif = mon.receive(5)
    check(notif == Dotted([Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("EXIT")], kw("python-died")), show(notif))
    log(f"our exit killed the linked kernel agent: {show(notif)}")
    # UNLINK: no exit signal afterwards
    e = n.spawn_agent()
    mon2 = n.spawn_agent()
    ok, aid = c.spawn(mon2, [sym("receive")], attach=ATTACH_MONITOR)
    c.link(e, aid)
    c.unlink(e, aid)
    c.exit(e, aid, kw("after-unlink"))
    _, notif = mon2.receive(5)
    check(notif[-1] == kw("after-unlink") if isinstance(notif, list) else notif.tail == kw("after-unlink"),
          show(notif))
    e.expect_nothing(0.5)
    check(e.alive, "unlinked agent not told")
    # LINK to an agent that does not exist: EXIT :NOPROC / NOTICE (to :EXIT . :NOPROC), from to's id
    f_ = n.spawn_agent()
    c.link(f_, "ffffff")
    kind, frm, reason = f_.receive(5)
    check((kind, reason) == ("exit", kw("NOPROC")), f"{kind} {show(reason)}")
    check(frm == f"{ctx.peer}/ffffff", f"NOPROC from {frm}")
    g = n.spawn_agent()
    c.link(g, "ffffff", monitor=True)
    kind, notif = g.receive(5)
    log(f"monitor of a missing agent -> {show(notif)}")
    check(kind == "notice" and isinstance(notif, Dotted) and notif.items[1:] == [kw("EXIT")]
          and notif.tail == kw("NOPROC"), show(notif))
    # a run of the kernel that is not current: :NOPROC too
    h = n.spawn_agent()
    ok, aid = c.spawn(h, [sym("receive")])
    c.link(h, Agent(f"{ctx.peer}/{aid}", c.peer_inc ^ 1 or 2), monitor=True)
    kind, notif = h.receive(5)
    check(isinstance(notif, Dotted) and notif.tail == kw("NOPROC"), f"old run: {show(notif)}")
    c.exit(h, aid, kw("cleanup"))
    c.close()


def sc_heartbeat(ctx):
    """Idle past the kernel's timeout while sending heartbeats: still connected; the kernel ticks too."""
    n = ctx.node("hb")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    echo_roundtrip(c, a, 1)
    before = c.received.get(HEARTBEAT, 0)
    time.sleep(6)
    hb = c.received.get(HEARTBEAT, 0) - before
    log(f"{hb} heartbeats received in 6 s of silence")
    check(not c.closed.is_set(), f"connection lost: {c.close_reason}")
    check(hb >= 3, "the kernel sends heartbeats about every second")
    echo_roundtrip(c, a, 2)
    c.close()


def sc_silent_client(ctx):
    """A client that sends nothing is declared down by the kernel after its timeout (4 s)."""
    n = ctx.node("silent")
    c = n.dial(ctx.peer, start=False)
    c.heartbeats_enabled = False
    c.node.timeout = 30  # we do not give up first
    c.start()
    t0 = time.monotonic()
    wait_closed(c, 10, "silent client")
    took = time.monotonic() - t0
    log(f"the kernel closed a silent connection after {took:.2f} s")
    check(3.0 <= took <= 20, f"closed after {took:.2f} s, expected about 4 (not before 3)")


def sc_close(ctx):
    """Close cleanly; the kernel sees it at once: agents attached over it are told :NOCONNECTION."""
    n = ctx.node("close")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    # an agent monitored by our agent: on loss it gets exit signal (:NOCONNECTION "host/node")
    ok, aid = c.spawn(a, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, aid)
    c.close()
    log(f"closed: {c.close_reason}")
    kind, notif = a.receive(1)
    check(kind == "notice" and notif[1:3] == [kw("EXIT"), kw("NOCONNECTION")],
          f"our side tells our monitor: {show(notif)}")
    # a new run of us: the agent must be gone (killed with :NOCONNECTION)
    n2 = ctx.node("close", incarnation=(n.incarnation + 1) or 1)
    n2.short, n2.name = n.short, n.name
    deadline = time.monotonic() + 5
    while True:
        try:
            c2 = n2.dial(ctx.peer)
            break
        except Refused as e:
            check(time.monotonic() < deadline, f"still refused: {e}")
            time.sleep(0.1)
    b = n2.spawn_agent()
    c2.link(b, aid, monitor=True)
    kind, notif = b.receive(5)
    log(f"monitor after the close: {show(notif)}")
    check(isinstance(notif, Dotted) and notif.tail == kw("NOPROC"), show(notif))
    c2.close()


def sc_inbound(ctx):
    """Be reachable: register with the port mapper, accept the kernel's dial, receive its SEND."""
    srv = ctx.node("srv", listen=True)
    inbox = srv.spawn_agent("inbox")
    log(f"listening on {srv.port} as {srv.name}")
    # another Python node asks the kernel to send to us: the kernel dials us
    n = ctx.node("asker")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    ok, aid = c.spawn(a, [sym("send"), [kw("inbound"), 1], f"{srv.name}/:INBOX"], attach=ATTACH_MONITOR)
    check(ok, aid)
    kind, notif = a.receive(10)
    log(f"send on the kernel: {show(notif)}")
    kind, msg = inbox.receive(10)
    check(msg == [kw("inbound"), 1], f"inbox got {show(msg)}")
    inc_conn = srv.accepted.get(timeout=1)
    log(f"accepted {inc_conn.peer_name} (inc {inc_conn.peer_inc:#x}); got {show(msg)}")
    check(inc_conn.peer_name == ctx.peer and inc_conn.peer_inc == c.peer_inc, "the kernel's name and run")
    # the same connection serves both directions: we talk to the kernel's echo over it
    echo_roundtrip(inc_conn, inbox, kw("over-inbound"))
    # by aid, current run
    other = srv.spawn_agent()
    ok, aid = c.spawn(a, [sym("send"), kw("by-aid"), f"{srv.name}/{other.aid}"])
    check(ok, aid)
    check(other.receive(5)[1] == kw("by-aid"), "send by aid")
    # a spawn on the Python node is an error reply, not a hang
    ok2, aid2 = c.spawn(a, [sym("spawn"), [sym("list")], kw("node"), srv.short], attach=ATTACH_MONITOR)
    check(ok2, aid2)
    _, notif = a.receive(15)
    log(f"kernel spawning on the python node: {show(notif)}")
    check("runs no functions" in show(notif), "our SPAWN_REPLY error reached the kernel")
    # groups and global names (section 6) over the inbound connection
    srv.join_group("PYGROUP", inbox)
    srv.register_global("py-holder", inbox)
    # The kernel applies them in order with what follows on the same
    # connection: once an echo over it is back, it knows both (the spawn
    # below comes over another connection, which is not ordered with this).
    echo_roundtrip(inc_conn, inbox, kw("announced"))
    ok, aid = c.spawn(a, [sym("send-global"), "py-holder", kw("global-hello")])
    check(ok, aid)
    check(inbox.receive(5)[1] == kw("global-hello"), "send-global to our name")
    ok, aid = c.spawn(a, [sym("send-group"), "PYGROUP", kw("group-hello")])
    check(ok, aid)
    check(inbox.receive(5)[1] == kw("group-hello"), "send-group to our member")
    c.close()


def sc_groups(ctx):
    """The kernel's GROUP_SYNC after the handshake (its REPL agent joined :WORKERS) is decoded."""
    n = ctx.node("groups")
    c = n.dial(ctx.peer)
    deadline = time.monotonic() + 3
    while not c.peer_groups and time.monotonic() < deadline:
        time.sleep(0.05)
    log(f"groups announced by the kernel: {sorted(c.peer_groups)}; globals: {c.peer_globals}")
    check(any(g == "WORKERS" for g, _ in c.peer_groups), "WORKERS group announced")
    check(GROUP_SYNC in c.received, "came as GROUP_SYNC")
    c.close()


def sc_malformed(ctx):
    """Malformed frames after the handshake close only their own connection; a second client still works."""
    keep = ctx.node("keep")
    kc = keep.dial(ctx.peer)
    ka = keep.spawn_agent()
    echo_roundtrip(kc, ka, kw("before"))
    cases = [
        ("unknown kind 0x7E", encode_frame(0x7E, b"junk")),
        ("handshake frame after ACCEPT", encode_frame(HS_HELLO, b"")),
        ("SEND with LIST count 0", encode_frame(SEND, p_u64(0) + p_str(":ECHO") + b"\x01\x0b" + p_u32(0))),
        ("SEND with a lying count", encode_frame(SEND, p_u64(0) + p_str(":ECHO") + b"\x01\x0b" + p_u32(1000) + b"\x00")),
        ("SEND with term version 2", encode_frame(SEND, p_u64(0) + p_str(":ECHO") + b"\x02\x00")),
        ("SEND with bytes after the term", encode_frame(SEND, p_u64(0) + p_str(":ECHO") + b"\x01\x00\x00")),
        ("SEND with an empty term", encode_frame(SEND, p_u64(0) + p_str(":ECHO"))),
        ("SEND 128 collections deep", encode_frame(SEND, p_u64(0) + p_str("ffff") + b"\x01"
                                                   + b"\x0b\x00\x00\x00\x01" * 128 + b"\x00")),
        ("HEARTBEAT with a payload", encode_frame(HEARTBEAT, b"\x00")),
        ("LINK with monitor 2", encode_frame(LINK, p_str("x/y/0") + p_u64(0) + p_str("0") + p_u8(2))),
        ("zero length", b"\x00\x00\x00\x00"),
        ("record length over 17,039,380", struct.pack(">I", MAX_NODE_FRAME + 4 + TAG_LEN + 1)),
        ("record length 20 (no room for a frame)", struct.pack(">I", 4 + TAG_LEN) + bytes(4 + TAG_LEN)),
        ("truncated frame, then EOF", encode_frame(SEND, p_u64(0) + p_str(":ECHO") + encode(1))[:-2]),
    ]
    for i, (what, data) in enumerate(cases):
        sock, n, _, _ = raw_dial(ctx, f"bad{i}")
        sock.sendall(data)
        if what.startswith("truncated"):
            sock.shutdown(socket.SHUT_WR)
        expect_eof(sock, 5, what)
        sock.close()
        echo_roundtrip(kc, ka, [kw("after"), i])
        log(f"closed: {what}; the other connection still echoes")
    # a 127-deep term is fine (dropped at an unknown agent, connection kept)
    sock, n, name_s, inc_s = raw_dial(ctx, "deep127")
    c = Connection(n, sock, name_s, inc_s, True)
    n.connections[name_s] = c
    c.start()
    c.send_frame(SEND, p_u64(0) + p_str("ffff") + encode(nest_list(127)))
    a = n.spawn_agent()
    echo_roundtrip(c, a, nest_list(126))  # echo's (message target) wrapper adds one level
    check(not c.closed.is_set(), "127 deep kept the connection")
    c.close()
    check(not kc.closed.is_set(), f"bystander connection lost: {kc.close_reason}")


def nest_list(n):
    t = None
    for _ in range(n):
        t = [t]
    return t


def sc_big(ctx):
    """A large message travels (a 4 MiB BYTES), and a frame right at the documented maximum is read."""
    n = ctx.node("big")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    blob = secrets.token_bytes(4 << 20)
    echo_roundtrip(c, a, blob, timeout=20)
    log("4 MiB echoed")
    c.close()


def sc_peer_silent(ctx):
    """The kernel stops (SIGSTOP): we declare it down after our timeout and tell our agents once."""
    import signal
    pid = ctx.args.kernel_pid
    check(pid, "--kernel-pid needed")
    n = ctx.node("stop")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    ok, aid = c.spawn(a, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, aid)
    b = n.spawn_agent()
    c.link(b, aid)
    # a round trip after the LINK: the kernel has handled it (frames are in order)
    echo_roundtrip(c, n.spawn_agent(), kw("linked"))
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_closed(c, 8, "stopped kernel")
        took = time.monotonic() - c.last_recv
    finally:
        os.kill(pid, signal.SIGCONT)
    log(f"declared down {took:.2f} s after the kernel's last frame")
    check(4.0 <= took <= 20, f"{took:.2f} s (not before the 4 s timeout)")
    _, notif = a.receive(1)
    check(notif == [Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("EXIT"), kw("NOCONNECTION"), ctx.peer], show(notif))
    kind, frm, reason = b.receive(1)
    check(reason == [kw("NOCONNECTION"), ctx.peer], show(reason))
    a.expect_nothing(0.3)
    # after SIGCONT the kernel works again (retried until it answers)
    n2 = ctx.node("stop2")
    deadline = time.monotonic() + 10
    while True:
        try:
            c2 = n2.dial(ctx.peer)
            break
        except (HandshakeError, OSError) as e:
            check(time.monotonic() < deadline, f"kernel unreachable after SIGCONT: {e}")
            time.sleep(0.2)
    echo_roundtrip(c2, n2.spawn_agent(), kw("awake"))
    c2.close()


def call(conn, agent, form, timeout=10.0):
    """Spawn `form` on the peer, monitored by `agent`; its return value (from the NOTICE)."""
    ok, aid = conn.spawn(agent, form, attach=ATTACH_MONITOR)
    check(ok, f"spawn {show(form)}: {aid}")
    kind, notif = agent.receive(timeout, match=lambda it: it[0] == "notice"
                                and isinstance(it[1], (list, Dotted)) and isinstance(_first(it[1]), Agent)
                                and _first(it[1]).aid == aid)
    items = notif if isinstance(notif, list) else notif.items
    check(len(items) >= 2 and items[1] == kw("OK"), f"{show(form)} did not return: {show(notif)}")
    return items[2] if len(items) == 3 else items[2:]


def _first(t):
    return t[0] if isinstance(t, list) else t.items[0]


def plist(t, key):
    for i in range(0, len(t) - 1, 2):
        if t[i] == kw(key):
            return t[i + 1]
    raise KeyError(key)


def peer_stats(conn, agent, peer_name):
    """The kernel's connection-stats entry for `peer_name` (the :DROPPED and :ERRORS counters)."""
    for entry in call(conn, agent, [sym("connection-stats")]) or []:
        if plist(entry, "NODE") == peer_name:
            return entry
    raise AssertionError(f"no connection-stats entry for {peer_name}")


def sc_drops(ctx):
    """Drops the document says are counted (:DROPPED): wrong run, unknown agent, NOTICE not attached."""
    n = ctx.node("drops")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    base = plist(peer_stats(c, a, n.name), "DROPPED")
    c.send_frame(SEND, p_u64(c.peer_inc ^ 1 or 2) + p_str(":ECHO") + encode(kw("wrong-run")))
    c.send("fffffff", kw("unknown"))
    ok, aid = c.spawn(a, [sym("receive")])
    check(ok, aid)
    # a NOTICE to an agent that is not attached to its `from`: dropped
    c.notice(a, aid, [a.term(), kw("OK"), 1])
    # an UNLINK / EXIT for another run: ignored
    c.send_frame(EXIT, p_str(a.id) + p_u64(c.peer_inc ^ 1 or 2) + p_str(aid) + encode(kw("old-run-exit")))
    after = plist(peer_stats(c, a, n.name), "DROPPED")
    log(f":DROPPED went from {base} to {after} (wrong-run SEND, unknown agent, NOTICE not attached, EXIT of an old run)")
    # counted per the document: the two SENDs (section 5 says a dropped SEND is counted; for a
    # dropped NOTICE or an ignored EXIT it says nothing about counting, and the kernel does not count them)
    check(after - base == 2, f"expected the 2 SEND drops to be counted, got {after - base}")
    # the agent is still alive: the NOTICE and the old-run EXIT did nothing
    c.link(a, aid, monitor=True)
    c.send(aid, kw("done"))
    _, notif = a.receive(5)
    check(notif == [Agent(f"{ctx.peer}/{aid}", c.peer_inc), kw("OK"), kw("done")], show(notif))
    c.close()


def sc_new_run(ctx):
    """A connection from a new run of a node replaces the old one at once; the old run's agents are gone."""
    n1 = ctx.node("run")
    c1 = n1.dial(ctx.peer)
    a1 = n1.spawn_agent()
    ok, aid = c1.spawn(a1, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, aid)
    n2 = ctx.node("run", incarnation=(n1.incarnation + 1) % (1 << 64) or 1)
    n2.short, n2.name = n1.short, n1.name
    c2 = n2.dial(ctx.peer)
    log(f"second run accepted while the first connection was open")
    wait_closed(c1, 3, "the first run's connection")
    kind, notif = a1.receive(2)
    check(kind == "notice" and kw("NOCONNECTION") in notif, show(notif))
    b = n2.spawn_agent()
    c2.link(b, aid, monitor=True)
    kind, notif = b.receive(5)
    log(f"the agent the old run monitored: {show(notif)}")
    check(isinstance(notif, Dotted) and notif.tail == kw("NOPROC"), show(notif))
    # a reference to the old run of us, sent by the new run: the kernel must not deliver it to the new run
    c2.send(":ECHO", [kw("to-old-run"), Agent(f"{n1.name}/{b.aid}", n1.incarnation)])
    c2.send(":ECHO", [kw("to-new-run"), b.term()])
    kind, m = b.receive(5)
    check(m == kw("to-new-run"), f"old-run reference reached the new run: {show(m)}")
    c2.close()


def sc_stale_requests(ctx):
    """A sender settles requests naming an agent of an earlier run of its peer itself (section 5, SEND): no SEND,
    EXIT or UNLINK for such an agent is written."""
    n1 = ctx.node("stale")
    c1 = n1.dial(ctx.peer)
    n1.spawn_agent()
    old = n1.spawn_agent().term()   # aid 1: not the id of the new run's first agent
    c1.close()
    n2 = ctx.node("stale", incarnation=(n1.incarnation + 1) % (1 << 64) or 1)
    n2.short, n2.name = n1.short, n1.name
    c2 = n2.dial(ctx.peer)
    b = n2.spawn_agent()
    for call in ([sym("unlink"), old], [sym("exit"), kw("stale"), old], [sym("send"), kw("stale"), old]):
        ok, aid = c2.spawn(b, call, attach=ATTACH_MONITOR)
        check(ok, aid)
        # the spawned agent's request, if any, comes before its NOTICE (one agent, one connection)
        _, notif = b.receive(5, match=lambda it, aid=aid: it[0] == "notice" and _first(it[1]).aid == aid)
        log(f"{show(call)} on the kernel -> {show(notif)}")
    with c2.lock:
        written = {KIND_NAMES[k]: c2.kinds_seen.get(k, 0) for k in (SEND, EXIT, UNLINK)}
    check(written == {"SEND": 0, "EXIT": 0, "UNLINK": 0}, f"requests for an earlier run were written: {written}")
    c2.close()


def sc_cluster(ctx):
    """Section 6: GROUP_JOIN/LEAVE/SYNC and GLOBAL_REGISTER/UNREGISTER/SYNC, bounds, the conflict rule."""
    n = ctx.node("cluster")
    pre = n.spawn_agent()
    n.join_group("PYSYNC", pre)              # announced by our GROUP_SYNC on connect
    n.register_global(f"py-sync-{os.getpid()}", pre)
    c = n.dial(ctx.peer)
    a = n.spawn_agent()

    def members(group):
        ms = call(c, a, [sym("group-members"), group]) or []
        return [m.id if isinstance(m, Agent) else m for m in ms]

    check(pre.id in members("PYSYNC"), "GROUP_SYNC member known")
    w = call(c, a, [sym("whereis-global"), f"py-sync-{os.getpid()}"])
    check(isinstance(w, Agent) and w.id == pre.id, f"GLOBAL_SYNC name known: {show(w)}")
    m = n.spawn_agent()
    n.join_group("PYG", m)
    check(members("PYG") == [m.id], f"GROUP_JOIN: {members('PYG')}")
    # ignored: another run's incarnation, a member of another node
    c.send_frame(GROUP_JOIN, p_u64(n.incarnation ^ 1 or 2) + p_str("PYBAD") + p_str(m.id))
    c.send_frame(GROUP_JOIN, p_u64(n.incarnation) + p_str("PYBAD") + p_str(f"{ctx.peer}/0"))
    check(members("PYBAD") == [], "wrong incarnation / foreign member ignored")
    c.send_frame(GROUP_LEAVE, p_u64(n.incarnation) + p_str("PYG") + p_str(m.id))
    check(members("PYG") == [], "GROUP_LEAVE")
    n.groups.discard(("PYG", m.id))
    # our member's exit leaves its groups (we send GROUP_LEAVE)
    m2 = n.spawn_agent()
    n.join_group("PYG2", m2)
    check(members("PYG2") == [m2.id], "joined PYG2")
    m2.exit(kw("gone"))
    check(members("PYG2") == [], "exit left the group")
    # a bound broken: a 256-byte group name is malformed and closes the connection
    # (checked last, below)

    # the kernel's own registrations come to us as GLOBAL_REGISTER, registered_at in microseconds
    watcher = n.spawn_agent()
    ok, k = c.spawn(watcher, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, k)
    kid = f"{ctx.peer}/{k}"
    name = f"contested-{os.getpid()}"
    check(call(c, a, [sym("register-global"), name, kid]) is not None, "register-global on the kernel")
    deadline = time.monotonic() + 3
    while name not in c.peer_globals and time.monotonic() < deadline:
        time.sleep(0.02)
    check(name in c.peer_globals, "GLOBAL_REGISTER received")
    at_k, holder = c.peer_globals[name]
    now_us = time.time_ns() // 1000
    log(f"kernel registered {name} at {at_k} (now {now_us}, diff {now_us - at_k} us), holder {holder}")
    check(holder == kid and abs(now_us - at_k) < 10_000_000, "registered_at is microseconds since the epoch")
    # our registration is refused locally (the name is known held)
    p = n.spawn_agent()
    try:
        n.register_global(name, p)
        raise AssertionError("local-first refusal")
    except ValueError:
        pass
    # a racing registration with an earlier registered_at wins: the kernel unregisters and kills its holder
    n.register_global(name, p, at=at_k - 1)
    _, notif = watcher.receive(5)
    log(f"kernel's losing holder: {show(notif)}")
    items = notif if isinstance(notif, list) else notif.items + [notif.tail]
    check(items[1] == kw("EXIT") and items[2] == kw("GLOBAL-NAME-CONFLICT") and items[3] == name,
          f"conflict exit: {show(notif)}")
    winner = items[4]
    check((winner.id if isinstance(winner, Agent) else winner) == p.id, f"winner {show(winner)}")
    deadline = time.monotonic() + 3
    while name in c.peer_globals and time.monotonic() < deadline:
        time.sleep(0.02)
    check(name not in c.peer_globals, "GLOBAL_UNREGISTER for the loser received")
    w = call(c, a, [sym("whereis-global"), name])
    check(isinstance(w, Agent) and w.id == p.id, f"whereis-global -> {show(w)}")
    # a racing registration with a later registered_at loses: the kernel keeps its holder, and so do we
    ok, k2 = c.spawn(watcher, [sym("receive")], attach=ATTACH_MONITOR)
    k2id = f"{ctx.peer}/{k2}"
    name2 = name + "-b"
    call(c, a, [sym("register-global"), name2, k2id])
    deadline = time.monotonic() + 3
    while name2 not in c.peer_globals and time.monotonic() < deadline:
        time.sleep(0.02)
    at_k2 = c.peer_globals[name2][0]
    q = n.spawn_agent()
    c.send_frame(GLOBAL_REGISTER, p_u64(n.incarnation) + p_u64(at_k2 + 1) + p_str(name2) + p_str(q.id))
    w = call(c, a, [sym("whereis-global"), name2])
    check(isinstance(w, Agent) and w.id == k2id, f"earlier registration kept: {show(w)}")
    watcher.expect_nothing(0.3)
    c.exit(a, k2, kw("cleanup"))
    watcher.receive(5)
    # our holder's exit: GLOBAL_UNREGISTER
    p.exit(kw("bye"))
    check(call(c, a, [sym("whereis-global"), name]) is None, "name vanished with its holder")
    # the kernel forgets our members and names when the connection is lost
    keep = n.spawn_agent()
    n.join_group("PYLOST", keep)
    c.close()
    n2 = ctx.node("cluster2")
    c2 = n2.dial(ctx.peer)
    a2 = n2.spawn_agent()
    ms = call(c2, a2, [sym("group-members"), "PYLOST"]) or []
    check(ms == [], f"members of a lost connection forgotten: {show(ms)}")
    check(call(c2, a2, [sym("whereis-global"), f"py-sync-{os.getpid()}"]) is None, "names of a lost connection")
    # bounds: a group name of 256 bytes is malformed
    c2.send_frame(GROUP_JOIN, p_u64(n2.incarnation) + p_str("G" * 256) + p_str(a2.id))
    wait_closed(c2, 3, "GROUP_JOIN with a 256-byte group")


def sc_pm_limits(ctx):
    """Port-mapper deadlines and bad input, in parallel (about 6 s)."""
    a = ctx.args
    results = {}

    def run(name, fn):
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001
            results[name] = e

    def error_after(sock, seconds):
        t0 = time.monotonic()
        kind, payload = read_frame(sock, MAX_PORT_MAPPER_FRAME, t0 + seconds)
        check(kind == PM_ERROR, f"kind {kind:#x}")
        msg = Fields(payload).str()
        expect_eof(sock, 2, "after ERROR")
        return msg, time.monotonic() - t0

    def first_request():
        s = socket.create_connection(("127.0.0.1", a.directory_port), timeout=5)
        t0 = time.monotonic()
        msg, _ = error_after(s, 8)
        return msg, time.monotonic() - t0

    def trickle():
        s = socket.create_connection(("127.0.0.1", a.directory_port), timeout=5)
        t0 = time.monotonic()
        data = encode_frame(PM_HELLO, PM_MAGIC + p_u8(1)) + encode_frame(PM_QUERY, p_str("x"))
        sent = 0
        try:
            for b in data:
                s.sendall(bytes([b]))
                sent += 1
                time.sleep(0.4)
        except OSError:
            pass
        # WELCOME may have come once HELLO was complete; then the ERROR
        s.settimeout(4)
        buf = b""
        while True:
            try:
                chunk = s.recv(4096)
            except (socket.timeout, OSError):
                break
            if not chunk:
                break
            buf += chunk
        kinds = []
        i = 0
        while i + 5 <= len(buf):
            ln = struct.unpack(">I", buf[i:i + 4])[0]
            kinds.append((buf[i + 4], buf[i + 5:i + 4 + ln]))
            i += 4 + ln
        check(kinds and kinds[-1][0] == PM_ERROR, f"trickle got {kinds}")
        return Fields(kinds[-1][1]).str(), time.monotonic() - t0, sent

    def idle():
        d = Directory("127.0.0.1", a.directory_port)
        d.query("x")
        t0 = time.monotonic()
        msg, _ = error_after(d.sock, 8)
        return msg, time.monotonic() - t0

    def boundary():
        out = {}
        s = pm_connect("127.0.0.1", a.directory_port)
        s.sendall(struct.pack(">I", MAX_PORT_MAPPER_FRAME + 1))
        out["over"] = error_after(s, 1)
        # exactly the maximum waits for the body, which never comes: the
        # request deadline, from the connect, ends it with an ERROR
        t0 = time.monotonic()
        s = pm_connect("127.0.0.1", a.directory_port)
        s.sendall(struct.pack(">I", MAX_PORT_MAPPER_FRAME))
        msg, _ = error_after(s, 20)
        out["exact"] = (msg, time.monotonic() - t0)
        s.close()
        s = pm_connect("127.0.0.1", a.directory_port)
        s.sendall(b"\x00\x00\x00\x00")
        out["zero"] = error_after(s, 1)
        return out

    def version():
        s = socket.create_connection(("127.0.0.1", a.directory_port), timeout=5)
        write_frame(s, PM_HELLO, PM_MAGIC + p_u8(2))
        return error_after(s, 2)

    def bad_requests():
        out = {}
        for what, port, frames in [
            ("LIST with a payload", a.directory_port, [(PM_LIST, b"\x00")]),
            ("QUERY with a trailing byte", a.directory_port, [(PM_QUERY, p_str("x") + b"\x00")]),
            ("QUERY not UTF-8", a.directory_port, [(PM_QUERY, p_u16(1) + b"\xff")]),
            ("second HELLO", a.directory_port, [(PM_HELLO, PM_MAGIC + p_u8(1))]),
            ("QUERY to the registry", a.registry_port, [(PM_QUERY, p_str("x"))]),
            ("REGISTER port 0", a.registry_port, [(PM_REGISTER, p_str(f"p0-{os.getpid()}") + p_u16(0))]),
            ("REGISTER bad name", a.registry_port, [(PM_REGISTER, p_str("a/b") + p_u16(1))]),
            ("REGISTER 256-byte name", a.registry_port, [(PM_REGISTER, p_str("n" * 256) + p_u16(1))]),
        ]:
            s = pm_connect("127.0.0.1", port)
            for k, p in frames:
                write_frame(s, k, p)
            out[what] = error_after(s, 2)[0]
        # after REGISTERED any frame is answered ERROR, and the registration ends
        name = f"after-{os.getpid()}"
        r = pm_register(name, 999, a.registry_port)
        write_frame(r, PM_LIST)
        out["frame after REGISTERED"] = error_after(r, 2)[0]
        d = Directory("127.0.0.1", a.directory_port)
        deadline = time.monotonic() + 2
        while d.query(name) is not None:
            check(time.monotonic() < deadline, "registration not ended")
            time.sleep(0.02)
        d.close()
        return out

    threads = [threading.Thread(target=run, args=(k, f)) for k, f in [
        ("first", first_request), ("trickle", trickle), ("idle", idle), ("boundary", boundary),
        ("version", version), ("bad", bad_requests)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for k, v in results.items():
        log(f"{k}: {v}")
    for k, v in results.items():
        if isinstance(v, Exception):
            raise AssertionError(f"{k}: {v!r}")
    msg, took = results["first"]
    check("first request timeout" in msg and 4.5 <= took <= 20, f"first request: {msg} after {took:.2f}")
    msg, took, _ = results["trickle"]
    check("first request timeout" in msg and 4.5 <= took <= 20, f"trickle: {msg} after {took:.2f}")
    msg, took = results["idle"]
    check("directory idle timeout" in msg and 4.5 <= took <= 20, f"idle: {msg} after {took:.2f}")
    b = results["boundary"]
    check(b["over"][1] < 0.5 and b["zero"][1] < 0.5, "0 or over 1 MiB: ERROR at once")
    msg, took = b["exact"]
    check("timeout" in msg and PM_REQUEST_DEADLINE - 0.5 <= took <= 20,
          f"exactly 1 MiB waits for the body until the request deadline: {msg} after {took:.2f} s")
    msg, _ = results["version"]
    check("1" in msg and "2" in msg, f"ERROR naming both versions: {msg}")
    check(len(results["bad"]) == 9, "every bad request answered ERROR")


def sc_node_limits(ctx):
    """Limits after the handshake: 16 MiB terms, 1,048,576 elements, the frame maximum; handshake 1 KiB."""
    keep = ctx.node("lkeep")
    kc = keep.dial(ctx.peer)
    ka = keep.spawn_agent()

    def attempt(tag, payload_term, expect_closed):
        sock, n, name_s, inc_s = raw_dial(ctx, tag)
        c = Connection(n, sock, name_s, inc_s, True)
        n.connections[name_s] = c
        c.start()
        c.send_raw(encode_frame(SEND, p_u64(0) + p_str("fffffff") + payload_term))
        a = n.spawn_agent()
        if expect_closed:
            wait_closed(c, 10, tag)
        else:
            echo_roundtrip(c, a, kw("alive"), timeout=20)
            check(not c.closed.is_set(), f"{tag}: closed")
            c.close()
        echo_roundtrip(kc, ka, tag, timeout=20)

    big = 16 * 1024 * 1024
    exact = b"\x01\x0a" + p_u32(big - 6) + bytes(big - 6)
    check(len(exact) == big, "16 MiB term")
    attempt("term-16MiB", exact, False)
    log("a term of exactly 16,777,216 bytes is accepted")
    attempt("term-16MiB+1", b"\x01\x0a" + p_u32(big - 5) + bytes(big - 5), True)
    attempt("vector-1048576", b"\x01\x0d" + p_u32(1_048_576) + bytes(1_048_576), False)
    attempt("vector-1048577", b"\x01\x0d" + p_u32(1_048_577) + bytes(1_048_577), True)
    # the node frame maximum: one more is refused at once; exactly the maximum
    # waits for the body, which never comes, so the connection lasts until the
    # documented deadline for a silent peer closes it (the heartbeat timeout
    # after our last frame, the handshake's PROOF, sent just before t0)
    # (a sealed connection's records: the frame maximum plus its length field and the 16-byte tag,
    # section 5)
    for length, at_once in [(MAX_NODE_FRAME + 4 + TAG_LEN + 1, True), (MAX_NODE_FRAME + 4 + TAG_LEN, False)]:
        sock, n, _, _ = raw_dial(ctx, f"len{length}")
        t0 = time.monotonic()
        sock.sendall(struct.pack(">I", length))
        # the kernel may have sent GROUP_SYNC etc. first
        took = seconds_to_eof(sock, t0, 20, f"length {length}")
        log(f"length {length}: closed after {took:.2f} s")
        if at_once:
            check(took < 2.0, f"length {length}: closed after {took:.2f} s, not at once")
        else:
            check(NODE_SILENCE_TIMEOUT - 0.5 <= took, f"length {length}: closed after {took:.2f} s, "
                  f"before the {NODE_SILENCE_TIMEOUT} s heartbeat timeout: it did not wait for the body")
        sock.close()
    # handshake frames: at most 1 KiB; exactly 1 KiB waits for the body until
    # the handshake deadline, from the connect
    port = keep.lookup(ctx.peer)
    for length, at_once in [(1025, True), (1024, False)]:
        t0 = time.monotonic()
        s = socket.create_connection(("localhost", port), timeout=5)
        s.sendall(struct.pack(">I", length))
        took = seconds_to_eof(s, t0, 20, f"handshake length {length}")
        log(f"handshake length {length}: closed after {took:.2f} s")
        if at_once:
            check(took < 2.0, f"handshake length {length}: closed after {took:.2f} s, not at once")
        else:
            check(HANDSHAKE_TIMEOUT - 0.5 <= took, f"handshake length {length}: closed after {took:.2f} s, "
                  f"before the {HANDSHAKE_TIMEOUT} s handshake deadline: it did not wait for the body")
        s.close()
    # our encoder refuses what a receiver would: nothing is sent, the connection stays
    try:
        kc.send(":ECHO", b"x" * big)
        raise AssertionError("16 MiB BYTES (term over 16 MiB) was sent")
    except EncodeError as e:
        log(f"sender refused: {e}")
    echo_roundtrip(kc, ka, kw("end"))
    kc.close()


def sc_handshake_deadline(ctx):
    """One 5 s deadline for the whole handshake, however the bytes trickle in; a second HELLO closes."""
    n = ctx.node("trickle")
    port = n.lookup(ctx.peer)
    hello = encode_frame(HS_HELLO, hello_payload(n.name, n.incarnation, secrets.token_bytes(32),
                                                 x25519_public(secrets.token_bytes(32))))
    results = {}

    def trickler():
        s = socket.create_connection(("localhost", port), timeout=5)
        t0 = time.monotonic()
        try:
            for b in hello:
                s.sendall(bytes([b]))
                time.sleep(0.1)
        except OSError:
            pass
        try:
            expect_eof(s, 8, "trickle")
            results["trickle"] = time.monotonic() - t0
        except AssertionError as e:
            results["trickle"] = e

    def silent():
        s = socket.create_connection(("localhost", port), timeout=5)
        t0 = time.monotonic()
        try:
            expect_eof(s, 8, "silent")
            results["silent"] = time.monotonic() - t0
        except AssertionError as e:
            results["silent"] = e

    ts = [threading.Thread(target=trickler), threading.Thread(target=silent)]
    for t in ts:
        t.start()
    # meanwhile: a second HELLO instead of PROOF
    s = socket.create_connection(("localhost", port), timeout=5)
    write_frame(s, HS_HELLO, hello[5:])
    kind, _ = read_frame(s, MAX_HANDSHAKE_FRAME, time.monotonic() + 5)
    check(kind == HS_CHALLENGE, "CHALLENGE")
    write_frame(s, HS_HELLO, hello[5:])
    expect_eof(s, 3, "second HELLO")
    # and a real node still gets in while they hang
    c = ctx.node("trickle-ok").dial(ctx.peer)
    c.close()
    for t in ts:
        t.join(12)
    log(f"closed after: {results}")
    for k in ("trickle", "silent"):
        v = results.get(k)
        check(isinstance(v, float) and 4.5 <= v <= 20, f"{k}: {v}")


def sc_cross_dial(ctx):
    """Both nodes dial each other at once: the dial of the node whose name sorts first wins on both sides."""
    for first in (True, False):
        tag = f"a{os.getpid()}" if first else f"z{os.getpid()}"
        srv = Node("localhost", tag, ctx.cookie, ctx.args.directory_port, ctx.args.registry_port)
        ctx.nodes.append(srv)
        we_win = srv.name < ctx.peer
        inbox = srv.spawn_agent("inbox")
        dial_result = {}
        dialed = threading.Event()

        def dial_back(peer):
            # the kernel is dialing us (its HELLO is in): dial it now, then let our side go on
            if dialed.is_set():
                return
            dialed.set()

            def go():
                try:
                    dial_result["conn"] = srv.dial(peer)
                except Exception as e:  # noqa: BLE001
                    dial_result["error"] = e
            t = threading.Thread(target=go)
            t.start()
            t.join(2.0)
        srv.on_hello = dial_back
        srv.listen()
        helper = ctx.node(f"x{int(first)}")
        hc = helper.dial(ctx.peer)
        ha = helper.spawn_agent()
        ok, aid = hc.spawn(ha, [sym("send"), kw("crossed"), f"{srv.name}/:INBOX"], attach=ATTACH_MONITOR)
        check(ok, aid)
        _, msg = inbox.receive(10)
        check(msg == kw("crossed"), show(msg))

        def live():
            return [c for c in srv.connections.values() if not c.closed.is_set()]
        # the losing dial's connection closes on its own: wait for that
        eventually(lambda: len(live()) == 1, 10, "one live connection")
        conns = live()
        log(f"{srv.name} vs {ctx.peer}: we sort first: {we_win}; our dial: "
            f"{'error ' + repr(dial_result['error']) if 'error' in dial_result else 'ok'}; inbound: {srv.inbound_log}; "
            f"dial log: {srv.dial_log}; live connections: {[(c.peer_name, 'ours' if c.dialed else 'theirs') for c in conns]}")
        check(len(conns) == 1, "one connection")
        check(conns[0].dialed == we_win, "the winner's dial is the connection")
        check("error" not in dial_result, f"our dial: {dial_result.get('error')!r}")
        echo_roundtrip(conns[0], inbox, kw("after-cross"))
        hc.close()
        srv.shutdown()


def sc_throttle(ctx):
    """64 handshake slots; failed handshakes throttled per address (32 tokens, 8/s); established ones unaffected."""
    n = ctx.node("thr")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    port = n.lookup(ctx.peer)
    before = call(c, a, [sym("node-info")])
    # the node takes a slot per connection in accept order: these 64 hold them all
    holders = [socket.create_connection(("localhost", port), timeout=5) for _ in range(64)]
    s = socket.create_connection(("localhost", port), timeout=5)
    write_frame(s, HS_HELLO, hello_payload("localhost/slot65", 1, secrets.token_bytes(32),
                                           x25519_public(secrets.token_bytes(32))))
    t0 = time.monotonic()
    expect_eof(s, 2, "65th handshake")
    log(f"65th concurrent handshake closed after {time.monotonic() - t0:.3f} s")
    echo_roundtrip(c, a, kw("established-unaffected"))
    for h in holders:
        h.close()
    # 64 failures cost 64 tokens (no lower than 0): new connections are closed unread
    # (tokens come back at 8 a second, so probe at once)
    t0 = time.monotonic()
    b = None
    while time.monotonic() - t0 < 2 and b != b"":
        s = socket.create_connection(("localhost", port), timeout=5)
        s.settimeout(0.1)
        try:
            b = s.recv(1)
        except socket.timeout:
            b = None
        except OSError:
            b = b""
        s.close()
    log(f"throttled (connection closed unread) after {time.monotonic() - t0:.3f} s: {b == b''}")
    t0 = time.monotonic()
    tries = 0
    while True:
        tries += 1
        try:
            c2 = ctx.node(f"thr{tries}").dial(ctx.peer)
            break
        except (HandshakeError, OSError) as e:
            check(time.monotonic() - t0 < 5, f"never got in: {e}")
            time.sleep(0.02)
    log(f"a correct handshake got in after {time.monotonic() - t0:.3f} s ({tries} tries)")
    c2.close()
    after = call(c, a, [sym("node-info")])
    log(f"node-info before: {show(before)}")
    log(f"node-info after:  {show(after)}")
    check(plist(after, "SLOTS-FULL") > plist(before, "SLOTS-FULL"), "slots-full counted")
    check(plist(after, "THROTTLED") > plist(before, "THROTTLED"), "throttled counted")
    check(b == b"", "connection closed unread while throttled")
    c.close()


def start_kernel(ctx, cookie_path, args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
    """A kernel (`-n`, then `args`) on ctx's port mapper with the cookie file `cookie_path`, stdin closed
    (stderr piped only for a caller that reads it, so a chatty kernel never blocks on a full pipe); its pid goes to --pid-file, so the check script kills it if this client dies first."""
    p = subprocess.Popen([os.path.join(ctx.args.bin, "erlangen-kernel"), "-n",
                          "--registry-port", str(ctx.args.registry_port),
                          "--directory-port", str(ctx.args.directory_port), "--cookie-file", cookie_path, *args],
                         stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
    if ctx.args.pid_file:
        with open(ctx.args.pid_file, "a") as fh:
            fh.write(f"{p.pid}\n")
    return p


def sc_clear(ctx):
    """Section 5 with `:seal nil`: a kernel started with --no-seal speaks clear frames with a node that does not
    seal either; a node that seals is refused with REFUSE 4 naming both settings, both ways round."""
    name = f"clear{os.getpid()}"
    p = start_kernel(ctx, ctx.args.cookie_file,
                     ["--no-seal", "-e", "(spawn '(async-echo) :name \"echo\")",
                      "-e", f'(node :host "localhost" :name "{name}")'])
    try:
        peer = f"localhost/{name}"
        clear = ctx.node("clear", seal=False)
        eventually(lambda: clear.lookup(peer) is not None, 10, f"{peer} registered")
        c = clear.dial(peer)
        check(not isinstance(c.sock, SealedSocket), "a clear connection")
        a = clear.spawn_agent()
        echo_roundtrip(c, a, [kw("in-clear"), "readable on the wire"])
        log(f"{peer} (--no-seal) and a node with seal nil: clear frames, echo answered")
        c.close()
        for who, node, target in [("a sealing node to the clear kernel", ctx.node("sealing"), peer),
                                  ("a clear node to the sealing kernel", ctx.node("clear2", seal=False), ctx.peer)]:
            try:
                node.dial(target)
                raise AssertionError(f"{who}: accepted")
            except Refused as e:
                check(e.code == REFUSE_SEAL and "seal t" in e.reason and "seal nil" in e.reason, f"{who}: {e}")
                log(f"{who}: {e}")
    finally:
        p.kill()
        p.wait()


def sc_kernels(ctx):
    """Cookie-file rules and the connection limit, on kernels started here."""
    import tempfile
    import shutil
    tmp = tempfile.mkdtemp(prefix="pyclient-kernels-",
                           dir=os.path.dirname(os.path.abspath(ctx.args.pid_file)) if ctx.args.pid_file else None)
    procs = []

    def start(name, cookie_path, extra=""):
        p = start_kernel(ctx, cookie_path, ["-e", f'(node :host "localhost" :name "{name}"{extra})'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)
        return p

    def wait_up(p, name):
        deadline = time.monotonic() + 10
        buf = b""
        os.set_blocking(p.stderr.fileno(), False)
        while time.monotonic() < deadline:
            chunk = p.stderr.read() or b""
            buf += chunk
            if f"node localhost/{name} listening".encode() in buf:
                return buf
            if p.poll() is not None:
                raise AssertionError(f"kernel {name} exited {p.returncode}: {buf.decode(errors='replace')}")
            time.sleep(0.05)
        raise AssertionError(f"kernel {name} did not come up: {buf!r}")

    try:
        def refused(what, content, mode=0o600):
            path = os.path.join(tmp, what.replace(" ", "-"))
            with open(path, "wb") as fh:
                fh.write(content)
            os.chmod(path, mode)
            p = start(f"bad{os.getpid()}", path)
            try:
                out, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{what}: the kernel started")
            err = err.decode(errors="replace")
            log(f"{what}: status {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}")
            check(p.returncode == 1 and path in err, f"{what}: status {p.returncode}, stderr {err!r}")
            try:
                load_cookie(path)
                raise AssertionError(f"{what}: our loader accepted it")
            except CookieError:
                pass

        refused("empty", b"")
        refused("only whitespace", b" \n\t\r\x0c ")
        refused("31 bytes", b"  " + b"x" * 31 + b"\n")
        refused("4097 bytes", b"y" * 4097)
        refused("group readable", b"z" * 64, 0o640)
        refused("others writable", b"z" * 64, 0o602)
        # not in the document ("readable or writable by group or others"): execute bits are refused too
        refused("group executable", b"z" * 64, 0o610)
        refused("others executable", b"z" * 64, 0o601)
        # created when missing: 64 lower-case hex digits and a newline, mode 0600
        created = os.path.join(tmp, "created")
        name = f"mk{os.getpid()}"
        p = start(name, created)
        wait_up(p, name)
        st = os.stat(created)
        raw = open(created, "rb").read()
        log(f"created cookie: mode {oct(st.st_mode & 0o777)}, {len(raw)} bytes")
        check(st.st_mode & 0o777 == 0o600 and len(raw) == 65 and raw.endswith(b"\n")
              and all(ch in b"0123456789abcdef" for ch in raw[:64]), "created cookie file")
        node = Node("localhost", f"py-mk-{os.getpid()}", load_cookie(created), ctx.args.directory_port)
        ctx.nodes.append(node)
        node.dial(f"localhost/{name}").close()
        p.terminate()
        # a binary cookie with whitespace inside and around it, not UTF-8: the trimmed bytes are the key
        binpath = os.path.join(tmp, "binary")
        core = b"\xff\xfe \t\x00" + secrets.token_bytes(40) + b" \n inside \x80"
        with open(binpath, "wb") as fh:
            fh.write(b" \t\r\n\x0c" + core + b"\r\n \t")
        os.chmod(binpath, 0o600)
        check(load_cookie(binpath) == core, "our trim")
        name = f"bin{os.getpid()}"
        p = start(name, binpath)
        wait_up(p, name)
        node = Node("localhost", f"py-bin-{os.getpid()}", core, ctx.args.directory_port)
        ctx.nodes.append(node)
        node.dial(f"localhost/{name}").close()
        wrong = Node("localhost", f"py-bin2-{os.getpid()}", b" \t\r\n\x0c" + core, ctx.args.directory_port)
        ctx.nodes.append(wrong)
        try:
            wrong.dial(f"localhost/{name}")
            raise AssertionError("untrimmed key accepted")
        except HandshakeError:
            pass
        log("binary cookie with inner whitespace: trimmed bytes are the key")
        p.terminate()
        # the connection limit: REFUSE code 2 beyond it (max-connections 1)
        name = f"lim{os.getpid()}"
        p = start(name, ctx.args.cookie_file, " :max-connections 1")
        wait_up(p, name)
        n1 = ctx.node("lim1")
        c1 = n1.dial(f"localhost/{name}")
        n2 = ctx.node("lim2")
        try:
            n2.dial(f"localhost/{name}")
            raise AssertionError("second connection accepted")
        except Refused as e:
            log(f"beyond max-connections: {e}")
            check(e.code == REFUSE_LIMIT, "code 2")
        check(not c1.closed.is_set(), "the first connection stays")
        c1.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(5)
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def sc_notice_scope(ctx):
    """A NOTICE reaches only an agent that monitors its sender (section 5): one linked to the sender, or one the
    sender monitors, does not get it, and the link or the sender's monitor stays."""
    n = ctx.node("notice")
    c = n.dial(ctx.peer)
    m = n.spawn_agent()

    def woken(k):
        # frames on one connection are handled in order: the NOTICE before was handled (or dropped) first
        c.send(k, kw("wake"))
        _, notif = m.receive(5, match=lambda it: it[0] == "notice" and _first(it[1]).aid == k)
        check(notif == [Agent(f"{ctx.peer}/{k}", c.peer_inc), kw("OK"), kw("wake")],
              f"the kernel agent received the NOTICE as a message: {show(notif)}")

    # linked to the sender: the NOTICE is dropped, the link stays
    p = n.spawn_agent()
    ok, k = c.spawn(m, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, k)
    c.link(p, k)
    c.notice(p, k, Dotted([p.term(), kw("EXIT")], kw("forged")))
    woken(k)
    kind, frm, reason = p.receive(5)
    check((kind, frm, reason) == ("exit", f"{ctx.peer}/{k}", [kw("OK"), kw("wake")]),
          f"the link was ended by the NOTICE: {kind} {show(reason)}")
    log("NOTICE to an agent linked to its sender: dropped, link kept")
    # monitored by the sender: the NOTICE is dropped, the sender's monitor stays
    q = n.spawn_agent()
    ok, k = c.spawn(m, [sym("receive")], attach=ATTACH_MONITOR)
    check(ok, k)
    c.link(q, k, monitor=True)
    c.notice(q, k, Dotted([q.term(), kw("EXIT")], kw("forged")))
    woken(k)
    _, notif = q.receive(5)
    check(notif == [Agent(f"{ctx.peer}/{k}", c.peer_inc), kw("OK"), kw("wake")],
          f"the sender's monitor was ended by its NOTICE: {show(notif)}")
    log("NOTICE to an agent its sender monitors: dropped, the monitor kept")
    c.close()


def sc_reverse_attach(ctx):
    """Kernel agents link to / monitor our agents (LINK frames to us); we answer with NOTICE, EXIT, :NOPROC.

    Uses the kernel's (watch-then-receive x) = (link x :monitor) then (receive), and (hold x) = (link x) then (receive),
    defined by the check script."""
    n = ctx.node("rev")
    c = n.dial(ctx.peer)
    w = n.spawn_agent()

    def wait_attached(local, mode, conn=None):
        conn = conn or c
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with conn.lock:
                for x in conn.attachments:
                    if x[0] == local.aid and x[2] == mode:
                        return x[1]
            time.sleep(0.02)
        raise AssertionError(f"no LINK ({mode}) for {local.id}")

    def result_of(k):
        _, notif = w.receive(5, match=lambda it: it[0] == "notice" and _first(it[1]).aid == k)
        return notif

    # a kernel agent monitors ours; our agent exits: we send NOTICE (agent :EXIT . reason)
    p = n.spawn_agent()
    ok, k = c.spawn(w, [sym("watch-then-receive"), p.term()], attach=ATTACH_MONITOR)
    check(ok, k)
    check(wait_attached(p, "monitored") == f"{ctx.peer}/{k}", "LINK monitor=1 from the watcher")
    p.exit(kw("bye"))
    notif = result_of(k)
    log(f"watcher received our NOTICE and returned it: {show(notif)}")
    check(notif == [Agent(f"{ctx.peer}/{k}", c.peer_inc), kw("OK"), Dotted([p.term(), kw("EXIT")], kw("bye"))],
          show(notif))
    # two-way: when the watcher exits, our watched agent gets an exit signal
    p2 = n.spawn_agent()
    ok, k = c.spawn(w, [sym("watch-then-receive"), p2.term()], attach=ATTACH_MONITOR)
    wait_attached(p2, "monitored")
    c.exit(w, k, kw("stop"))
    kind, frm, reason = p2.receive(5)
    log(f"the watcher was killed; our watched agent got: {kind} {show(reason)} from {frm}")
    check(kind == "exit" and reason == kw("stop") and frm == f"{ctx.peer}/{k}", f"{kind} {show(reason)}")
    result_of(k)
    # a kernel agent links to ours; our agent crashes: the kernel agent dies with the reason
    p3 = n.spawn_agent()
    ok, k = c.spawn(w, [sym("hold"), p3.term()], attach=ATTACH_MONITOR)
    check(wait_attached(p3, "link") == f"{ctx.peer}/{k}", "LINK monitor=0")
    p3.exit(kw("crash"))
    notif = result_of(k)
    check(notif == Dotted([Agent(f"{ctx.peer}/{k}", c.peer_inc), kw("EXIT")], kw("crash")), show(notif))
    # a LINK to an agent we do not have: we answer at once NOTICE (to :EXIT . :NOPROC)
    ok, k = c.spawn(w, [sym("watch-then-receive"), Agent(f"{n.name}/fff", n.incarnation)], attach=ATTACH_MONITOR)
    notif = result_of(k)
    log(f"watching a missing agent of ours: {show(notif)}")
    check(isinstance(notif, list) and notif[1] == kw("OK") and isinstance(notif[2], Dotted)
          and notif[2].tail == kw("NOPROC"), show(notif))
    # and EXIT :NOPROC for a link
    ok, k = c.spawn(w, [sym("hold"), Agent(f"{n.name}/fff", n.incarnation)], attach=ATTACH_MONITOR)
    notif = result_of(k)
    check(isinstance(notif, Dotted) and notif.tail == kw("NOPROC"), show(notif))
    # the kernel's side of a lost connection: another node of ours closes; its watcher and holder are told
    other = ctx.node("revP")
    oc = other.dial(ctx.peer)
    op = other.spawn_agent()
    ok, k1 = c.spawn(w, [sym("watch-then-receive"), op.term()], attach=ATTACH_MONITOR)
    ok, k2 = c.spawn(w, [sym("hold"), op.term()], attach=ATTACH_MONITOR)
    wait_attached(op, "monitored", oc)
    wait_attached(op, "link", oc)
    oc.close()
    n1 = result_of(k1)
    n2 = result_of(k2)
    log(f"after the other node's close: watcher {show(n1)}; holder {show(n2)}")
    check(n1 == [Agent(f"{ctx.peer}/{k1}", c.peer_inc), kw("OK"),
                 [op.term(), kw("EXIT"), kw("NOCONNECTION"), other.name]], f"monitor: {show(n1)}")
    check(n2 == [Agent(f"{ctx.peer}/{k2}", c.peer_inc), kw("EXIT"), kw("NOCONNECTION"), other.name],
          f"link: {show(n2)}")
    c.close()


def sc_documented(ctx):
    """Fine points PROTOCOL.md spells out (once found silent or imprecise by this client)."""
    n = ctx.node("obs")
    c = n.dial(ctx.peer)
    a = n.spawn_agent()

    # 1. section 4: a HELLO with incarnation 0 is malformed
    z = ctx.node("obs-zero")
    z.incarnation = 0
    try:
        z.dial(ctx.peer).close()
        check(False, "a HELLO with incarnation 0 was ACCEPTed")
    except HandshakeError as e:
        log(f"HELLO with incarnation 0: refused ({e})")
    # 2. section 5 NOTICE: the :NOPROC answer names the agent as the LINK did
    c.link(a, "fffffe", monitor=True)
    notice = a.receive(5)[1]
    want = Dotted([Agent(f"{ctx.peer}/fffffe"), kw("EXIT")], kw("NOPROC"))
    check(notice == want, f"NOPROC for to_incarnation 0: {show(notice)}")
    old_run = c.peer_inc ^ 1 or 2
    c.link(a, Agent(f"{ctx.peer}/fffffd", old_run), monitor=True)
    notice = a.receive(5)[1]
    want = Dotted([Agent(f"{ctx.peer}/fffffd", old_run), kw("EXIT")], kw("NOPROC"))
    check(notice == want, f"NOPROC for another run: {show(notice)}")
    # 3. section 5 agent ids: names match case-insensitively, only with the colon
    c.send(":echo", [kw("case"), a.term()])
    check(a.receive(5)[1] == kw("case"), "SEND to ':echo' reaches :ECHO")
    c.send("echo", [kw("nocolon"), a.term()])
    c.send(":ECHO", [kw("after"), a.term()])
    check(a.receive(5)[1] == kw("after"), "SEND to 'echo' (no colon) is dropped")
    # 4. section 5 agent ids: a non-canonical aid names no agent
    ok, aid = c.spawn(a, [sym("receive")])
    check(ok, "spawn")
    alias = "0" + aid.upper()
    c.link(a, alias, monitor=True)
    notice = a.receive(5)[1]
    check(isinstance(notice, Dotted) and notice.tail == kw("NOPROC"),
          f"LINK to aid {alias!r} (agent {aid!r}): {show(notice)}")
    c.send(aid, kw("end"))
    # 5. section 2: an AGENT naming the kernel's own agent stays an AGENT when sent back
    c.send(":ECHO", [Agent(f"{ctx.peer}/0"), a.term()])
    echoed = a.receive(5)[1]
    check(echoed == Agent(f"{ctx.peer}/0"), f"echoed AGENT: {echoed!r}")
    # 6. section 5 SEND: no SEND is written for a reference to another run of the peer
    before = c.received.get(SEND, 0)
    c.send(":ECHO", [kw("x"), Agent(a.id, n.incarnation ^ 1 or 2)])
    c.send(":ECHO", [kw("y"), a.term()])
    check(a.receive(5)[1] == kw("y"), "the echo of :Y")
    check(c.received.get(SEND, 0) - before == 1, "SEND frames written for another run of us")
    # 7. section 5 SEND: an ignored NOTICE is not counted in :DROPPED
    base = plist(peer_stats(c, a, n.name), "DROPPED")
    ok, aid = c.spawn(a, [sym("receive")])
    c.notice(a, aid, [a.term(), kw("OK"), 1])
    check(plist(peer_stats(c, a, n.name), "DROPPED") - base == 0, ":DROPPED after an ignored NOTICE")
    c.send(aid, kw("end"))
    # 8. section 4: the kernel shows its incarnation as the positive integer of the handshake
    info = call(c, a, [sym("node-info")])
    check(plist(info, "INCARNATION") == c.peer_inc,
          f"node-info :INCARNATION {plist(info, 'INCARNATION')} vs {c.peer_inc}")
    c.close()


# -- cluster membership (section 7) and claimed global names (section 6) ------

def node_names(conn, agent, *args):
    """The `:NODE` of every entry of the kernel's `(nodes ...)`, asked by remote spawn as every call."""
    return [plist(e, "NODE") for e in call(conn, agent, [sym("nodes"), *args]) or []]


def deferring(claims):
    """An `on_claim` that leaves every claim unanswered (a test answers it by hand), queuing
    (conn, req, at, name, holder) on `claims`."""
    def on_claim(conn, req, at, name, holder):
        claims.put((conn, req, at, name, holder))
        return "defer"
    return on_claim


def register_global_on(conn, watcher, name, kid):
    """(register-global name kid) on the kernel, in an agent `watcher` monitors; that agent's aid."""
    ok, r = conn.spawn(watcher, [sym("register-global"), name, kid], attach=ATTACH_MONITOR)
    check(ok, r)
    return r


def registration_outcome(watcher, r, seconds=15):
    """(ok, notice) of the registration agent `r` that `watcher` monitors."""
    _, notif = watcher.receive(seconds, match=lambda it: it[0] == "notice" and _first(it[1]).aid == r)
    items = notif if isinstance(notif, list) else notif.items
    return items[1] == kw("OK"), notif


def kind_name(kind):
    return KIND_NAMES.get(kind, f"{kind:#04x}") if kind is not None else "nothing"


def check_first_nodes(conn, me, what):
    """The peer's first frame after ACCEPT was NODES, visible, not naming `me`; returns its names."""
    eventually(lambda: conn.first_kind is not None or conn.closed.is_set(), 5, f"{what}: a first frame")
    check(conn.first_kind == NODES,
          f"{what}: the kernel's first frame after ACCEPT is {kind_name(conn.first_kind)}, not NODES"
          " (section 5, 'The first frame': 'a peer may send nothing else first')")
    hidden, names = conn.wait_nodes(5, what)
    check(not hidden, f"{what}: the kernel's NODES has bit 0 (hidden) set")
    check(me not in names, f"{what}: the kernel's NODES names the receiver: {names}")
    return names


def sc_first_nodes(ctx):
    """Section 5 'The first frame', section 7: the kernel's first frame after ACCEPT is NODES, visible, naming
    its members but never the receiver, whichever side dialed."""
    # 1. we dial, by hand: the first frame there is to read is NODES (we have sent nothing yet)
    sock, n, _, _ = raw_dial(ctx, "first-raw")
    kind, payload = read_frame(sock, MAX_NODE_FRAME, time.monotonic() + 5 * WAIT_SLACK)
    check(kind == NODES, f"first frame after ACCEPT (we dialed): {kind_name(kind)}, not NODES")
    hidden, names = decode_nodes(payload, n.name, ctx.peer)   # every bound of section 7
    check(not hidden, "the kernel's NODES says it is hidden")
    log(f"we dialed (hidden, nothing sent yet): the first frame is NODES, visible, naming {names}")
    sock.close()
    # 2. two visible members, one after the other: the second is told of the first, the first of the second
    v1 = ctx.node("first-v1", hidden=False)
    c1 = v1.dial(ctx.peer)
    names1 = check_first_nodes(c1, v1.name, "first visible member")
    a1 = v1.spawn_agent()
    # the kernel lists v1 once it has read v1's NODES: from then on v1 is a member it names
    eventually(lambda: v1.name in node_names(c1, a1), 10, f"{v1.name} in (nodes)")
    v2 = ctx.node("first-v2", hidden=False)
    c2 = v2.dial(ctx.peer)
    names2 = check_first_nodes(c2, v2.name, "second visible member")
    log(f"the kernel's first NODES: to {v1.short} {names1}, to {v2.short} {names2}")
    check(v1.name in names2, f"the first NODES to a new member names the member {v1.name}: {names2}")
    eventually(lambda: v2.name in c1.peer_nodes, 10, f"a NODES to {v1.short} naming the new member {v2.short}")
    log(f"{v1.short} was sent NODES frames {c1.nodes_frames}")
    c2.close()
    c1.close()
    # 3. the kernel dials us (it has a message for us): its first frame must be NODES too
    srv = ctx.node("first-srv", listen=True)
    inbox = srv.spawn_agent("inbox")
    asker = ctx.node("first-asker")
    ac = asker.dial(ctx.peer)
    aa = asker.spawn_agent()
    ok, aid = ac.spawn(aa, [sym("send"), kw("dialed"), f"{srv.name}/:INBOX"], attach=ATTACH_MONITOR)
    check(ok, aid)
    ic = take(srv.accepted, 10, "the kernel's dial of us")
    eventually(lambda: ic.first_kind is not None or ic.closed.is_set(), 5, "the kernel's first frame on its dial")
    log(f"the kernel dialed us: its first frame is {kind_name(ic.first_kind)}"
        + (f"; closed: {ic.close_reason}" if ic.closed.is_set() else ""))
    check_first_nodes(ic, srv.name, "the kernel's own dial (it had a SEND for us)")
    check(inbox.receive(5)[1] == kw("dialed"), "the SEND after the kernel's NODES")
    ac.close()


OPS_UPTIME = 4242   # what our node-info says, so the scenario can tell its answer


def sc_ops_query(ctx):
    """Section 8: a node in another language answers the kernel's management queries by registering OPS-QUERY:
    the kernel's (nodes) then lists it with the uptime it gave, and (node-info :node ...) returns its plist."""
    n = ctx.node("ops", hidden=False)
    n.answers_ops = True
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    c.wait_nodes(5)
    entries = call(c, a, [sym("nodes")]) or []
    mine = [e for e in entries if plist(e, "NODE") == n.name]
    log(f"(nodes) -> {show(entries)}")
    check(len(mine) == 1, f"{n.name} not in (nodes): {show(entries)}")
    check(plist(mine[0], "UPTIME") == OPS_UPTIME, f"our uptime not shown: {show(mine[0])}")
    info = call(c, a, [sym("node-info"), kw("node"), n.name])
    check(plist(info, "NODE") == n.name and plist(info, "UPTIME") == OPS_UPTIME, show(info))
    c.close()


def sc_visible_member(ctx):
    """Section 7 members, section 6 'claimed, then announced': a visible client is in (nodes), is asked
    GLOBAL_CLAIM for the kernel's registrations, and the kernel registers only once it answered GRANTED;
    HELD or COMPETING fails the registration. The kernel answers our claims as the table says."""
    n = ctx.node("vis", hidden=False)
    c = n.dial(ctx.peer)
    a = n.spawn_agent()
    hidden, names = c.wait_nodes(5)
    check(not hidden, "the kernel is visible")
    listed = node_names(c, a)
    log(f"(nodes) -> {listed}")
    check(n.name in listed, f"a visible client is a member: {n.name} not in (nodes) {listed}")
    claims = queue.Queue()
    n.on_claim = deferring(claims)
    ok, k = c.spawn(a, [sym("receive")])
    check(ok, k)
    kid = f"{ctx.peer}/{k}"
    w = n.spawn_agent()
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"

    def register(name):
        return register_global_on(c, w, name, kid)

    def outcome(r):
        return registration_outcome(w, r)

    def claim_for(name):
        conn, req, at, nm, holder = take(claims, 10, f"a GLOBAL_CLAIM for {name!r} to the member")
        check(conn is c and nm == name and holder == kid, f"claim for {nm!r} by {holder!r}, wanted {name!r} by {kid}")
        return req, at

    # GRANTED: registered only after the answer, and announced with the claim's registered_at
    name = f"claimed-{tag}"
    r = register(name)
    req, at = claim_for(name)
    # a unit check (microseconds since the epoch, not milliseconds or seconds), not a timing bound
    check(abs(time.time_ns() // 1000 - at) < 3600 * 10**6, f"registered_at {at} is not microseconds since the epoch")
    w.expect_nothing(0.3)
    check(call(c, a, [sym("whereis-global"), name]) is None, "the name is registered before the member answered")
    check(name not in c.peer_globals, "GLOBAL_REGISTER before the member answered")
    log(f"claim {req} for {name!r} at {at} unanswered: not registered, not announced")
    c.reply_claim(req, CLAIM_GRANTED)
    ok, notif = outcome(r)
    check(ok, f"the registration after GRANTED: {show(notif)}")
    eventually(lambda: name in c.peer_globals, 5, "GLOBAL_REGISTER after GRANTED")
    check(c.peer_globals[name] == (at, kid), f"GLOBAL_REGISTER {c.peer_globals[name]}, the claim said {(at, kid)}")
    w_ = call(c, a, [sym("whereis-global"), name])
    check(isinstance(w_, Agent) and w_.id == kid, f"whereis-global after GRANTED: {show(w_)}")
    log(f"after GRANTED: registered ({show(notif)}) and announced")
    # HELD and COMPETING fail the registration: nothing registered, nothing announced
    for answer in (CLAIM_HELD, CLAIM_COMPETING):
        what = CLAIM_ANSWER_NAMES[answer]
        name_x = f"refused-{what.lower()}-{tag}"
        r = register(name_x)
        req, _ = claim_for(name_x)
        c.reply_claim(req, answer, a.id)
        ok, notif = outcome(r)
        log(f"after {what}: {show(notif)}")
        check(not ok, f"the registration succeeded although the member answered {what}")
        check(call(c, a, [sym("whereis-global"), name_x]) is None, f"the name is registered after {what}")
        check(name_x not in c.peer_globals, f"GLOBAL_REGISTER after {what}")
    check(claims.empty(), "one claim per registration")
    # the kernel answers our claims (we are a visible node with a member: we claim before registering)
    n.on_claim = None
    mine = n.spawn_agent()
    replies = c.received.get(GLOBAL_CLAIM_REPLY, 0)
    ours = f"py-claimed-{tag}"
    n.register_global(ours, mine)
    check(c.received.get(GLOBAL_CLAIM_REPLY, 0) == replies + 1, "our registration was claimed from the kernel")
    w_ = call(c, a, [sym("whereis-global"), ours])
    check(isinstance(w_, Agent) and w_.id == mine.id, f"our claimed name on the kernel: {show(w_)}")
    try:
        n.register_global(name, mine, at=at - 1)   # the kernel holds it (even an earlier key must claim)
        raise AssertionError("a claim for a name the kernel holds was granted")
    except ClaimFailed as e:
        log(f"our claim for the kernel's name: {e}")
        check(e.answer == CLAIM_HELD and e.holder == kid, f"HELD naming {kid}: {e}")
    # crossing claims: the kernel claims (we do not answer yet) while we claim the same name
    n.on_claim = deferring(claims)
    for delta, we_win in ((+1, False), (-1, True)):
        name_c = f"crossed{delta:+d}-{tag}"
        r = register(name_c)
        req, at_k = claim_for(name_c)
        b = n.spawn_agent()
        try:
            n.register_global(name_c, b, at=at_k + delta)
            won = True
        except ClaimFailed as e:
            won = False
            check(e.answer == CLAIM_COMPETING and e.holder == kid, f"COMPETING naming {kid}: {e}")
        c.reply_claim(req, CLAIM_GRANTED)
        ok, notif = outcome(r)
        log(f"crossed claims, ours {delta:+d} us from the kernel's: we {'won' if won else 'lost'}; "
            f"the kernel's registration: {show(notif)}")
        check(won == we_win, f"our claim with key {'smaller' if we_win else 'larger'} than the kernel's: "
              f"{'won' if won else 'lost'}")
        check(ok == (not we_win), f"exactly one of two crossing claims succeeds: the kernel's {show(notif)}")
        holder = call(c, a, [sym("whereis-global"), name_c])
        check(isinstance(holder, Agent) and holder.id == (b.id if we_win else kid), f"holder {show(holder)}")
    c.exit(a, k, kw("cleanup"))   # its names vanish with it


def sc_hidden_member(ctx):
    """Section 7: a hidden client (flags 1, count 0) is listed by (nodes :hidden), not by (nodes), and is
    not a member: the kernel's registrations are not claimed from it (a visible client is asked)."""
    h = ctx.node("hid")
    c = h.dial(ctx.peer)
    a = h.spawn_agent()
    c.wait_nodes(5)
    v = ctx.node("hid-vis", hidden=False)
    vc = v.dial(ctx.peer)
    vc.wait_nodes(5)
    echo_roundtrip(vc, v.spawn_agent(), kw("nodes-read"))   # the kernel has read v's NODES
    echo_roundtrip(c, a, kw("nodes-read"))
    plain = node_names(c, a)
    with_hidden = node_names(c, a, kw("hidden"))
    log(f"(nodes) -> {plain}; (nodes :hidden) -> {with_hidden}")
    check(h.name not in plain, f"a hidden client is listed by (nodes): {plain}")
    check(h.name in with_hidden, f"a hidden client is not listed by (nodes :hidden): {with_hidden}")
    check(v.name in plain, f"the visible client is not listed by (nodes): {plain}")
    ok, k = c.spawn(a, [sym("receive")])
    check(ok, k)
    kid = f"{ctx.peer}/{k}"
    name = f"hidden-{os.getpid()}-{secrets.token_hex(3)}"
    check(call(c, a, [sym("register-global"), name, kid]) is not None, "register-global")
    eventually(lambda: name in c.peer_globals, 5, "GLOBAL_REGISTER to the hidden client")
    log(f"claims: the visible client got {[(x[2]) for x in vc.claims_received]}, the hidden one "
        f"{[(x[2]) for x in c.claims_received]}")
    check(any(x[2] == name for x in vc.claims_received), "the visible member was not asked GLOBAL_CLAIM")
    check(not c.claims_received and GLOBAL_CLAIM not in c.received, "the hidden client was asked GLOBAL_CLAIM")
    c.exit(a, k, kw("cleanup"))
    vc.close()
    c.close()


def sc_bad_nodes(ctx):
    """Section 7 bounds: each bad NODES (and each malformed section 6/7 frame) closes only its connection."""
    keep = ctx.node("nkeep")
    kc = keep.dial(ctx.peer)
    ka = keep.spawn_agent()
    base = plist(call(kc, ka, [sym("node-info")]), "CONNECTION-ERRORS")
    valid = encode_frame(NODES, encode_nodes([]))
    cases = [
        ("count 1025", lambda me: encode_frame(NODES, encode_nodes(
            [f"localhost/py-none-{os.getpid()}-{i}" for i in range(1025)]))),
        ("a name twice", lambda me: encode_frame(NODES, encode_nodes(["localhost/py-twice", "localhost/py-twice"]))),
        ("the receiver's name", lambda me: encode_frame(NODES, encode_nodes([ctx.peer]))),
        ("the sender's own name", lambda me: encode_frame(NODES, encode_nodes([me]))),
        ("a name without host", lambda me: encode_frame(NODES, encode_nodes(["nohost"]))),
        ("a name with three parts", lambda me: encode_frame(NODES, encode_nodes(["localhost/a/b"]))),
        ("a name with a space", lambda me: encode_frame(NODES, encode_nodes(["local host/x"]))),
        ("a name with an empty part", lambda me: encode_frame(NODES, encode_nodes(["localhost/"]))),
        ("a name part of 256 bytes", lambda me: encode_frame(NODES, encode_nodes(["localhost/" + "n" * 256]))),
        ("a name not ASCII", lambda me: encode_frame(NODES, encode_nodes(["localhost/\u00fc"]))),
        ("a hidden sender naming a node", lambda me: encode_frame(NODES, encode_nodes(["localhost/x"], hidden=True))),
        ("flag bit 1", lambda me: encode_frame(NODES, encode_nodes([], flags=0x02))),
        ("flag bit 7 (hidden too)", lambda me: encode_frame(NODES, encode_nodes([], flags=0x81))),
        ("a second NODES turning hidden", lambda me: valid + encode_frame(NODES, encode_nodes([], hidden=True))),
        ("a second NODES turning visible", lambda me: encode_frame(NODES, encode_nodes([], hidden=True)) + valid),
        ("count beyond the frame", lambda me: encode_frame(NODES, p_u8(0) + p_u16(2) + p_str("localhost/x"))),
        ("a byte after the last name", lambda me: encode_frame(NODES, encode_nodes(["localhost/x"]) + b"\x00")),
        # other section 7 / section 6 frames, after a valid NODES
        ("DISCONNECT code 2", lambda me: valid + encode_frame(DISCONNECT, p_u8(2) + p_str(ctx.peer))),
        ("DISCONNECT code 0", lambda me: valid + encode_frame(DISCONNECT, p_u8(0) + p_str(ctx.peer))),
        ("NODE_LOST without incarnation", lambda me: valid + encode_frame(NODE_LOST, p_str("localhost/x"))),
        ("GLOBAL_CLAIM with a 256-byte name", lambda me: valid + encode_frame(GLOBAL_CLAIM, encode_claim(
            1, 1, 1, "n" * 256, me + "/0"))),
        ("GLOBAL_CLAIM_REPLY answer 3", lambda me: valid + encode_frame(GLOBAL_CLAIM_REPLY, encode_claim_reply(1, 3))),
        ("GLOBAL_CLAIM_REPLY GRANTED with a holder", lambda me: valid + encode_frame(
            GLOBAL_CLAIM_REPLY, encode_claim_reply(1, CLAIM_GRANTED, ctx.peer + "/0"))),
        ("GLOBAL_CLAIM_REPLY HELD without a holder", lambda me: valid + encode_frame(
            GLOBAL_CLAIM_REPLY, encode_claim_reply(1, CLAIM_HELD))),
    ]
    for i, (what, frames) in enumerate(cases):
        sock, n, _, _ = raw_dial(ctx, f"nbad{i}")
        sock.sendall(frames(n.name))
        expect_eof(sock, 5 * WAIT_SLACK, what)
        sock.close()
        echo_roundtrip(kc, ka, [kw("after"), i])
        log(f"closed: {what}; the other connection still echoes")
    check(not kc.closed.is_set(), f"bystander connection lost: {kc.close_reason}")
    # the same frames made well are kept: a visible and a hidden NODES, a NODE_LOST nobody acts on
    for hidden in (False, True):
        ok = ctx.node(f"nok{int(hidden)}", hidden=hidden)
        oc = ok.dial(ctx.peer)
        oc.send_frame(NODE_LOST, p_str(f"localhost/py-none-{os.getpid()}") + p_u64(1))
        echo_roundtrip(oc, ok.spawn_agent(), kw("kept"))
        check(not oc.closed.is_set(), f"a valid {'hidden' if hidden else 'visible'} NODES: {oc.close_reason}")
        oc.close()
    # counted as errors on established connections (section 4: the kernel's node-info)
    errors = []

    def counted():
        errors.append(plist(call(kc, ka, [sym("node-info")]), "CONNECTION-ERRORS") - base)
        return errors[-1] >= len(cases)
    eventually(counted, 5, f"{len(cases)} connection errors counted (counted: {errors[-1:] or '?'})")
    log(f"node-info :CONNECTION-ERRORS went up by {errors[-1]} for {len(cases)} malformed frames")
    kc.close()


def sc_claims(ctx):
    """Section 6 claims, the edges: claims the kernel ignores and counts, a reply to no claim, malformed
    replies (the member is closed, and a lost member counts as granting), a member that never answers."""
    h = ctx.node("clh")
    hc = h.dial(ctx.peer)
    ha = h.spawn_agent()
    v = ctx.node("clv", hidden=False)
    vc = v.dial(ctx.peer)
    va = v.spawn_agent()
    vc.wait_nodes(5)
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    # a claim with another incarnation, and one for an agent of another node: ignored, counted, unanswered
    base = plist(peer_stats(vc, va, v.name), "DROPPED")
    vc.send_frame(GLOBAL_CLAIM, encode_claim(v.incarnation ^ 1 or 2, 1, 1, f"x-{tag}", va.id))
    vc.send_frame(GLOBAL_CLAIM, encode_claim(v.incarnation, 2, 1, f"y-{tag}", f"{ctx.peer}/0"))
    # a reply to no claim under way: ignored
    vc.send_frame(GLOBAL_CLAIM_REPLY, encode_claim_reply(987654321, CLAIM_GRANTED))
    after = plist(peer_stats(vc, va, v.name), "DROPPED")
    log(f"two ignored claims: :DROPPED {base} -> {after}; replies received: {vc.received.get(GLOBAL_CLAIM_REPLY, 0)}")
    check(after - base == 2, f"the two ignored claims counted as :DROPPED: {after - base}")
    check(vc.received.get(GLOBAL_CLAIM_REPLY, 0) == 0, "an ignored claim was answered")
    check(not vc.closed.is_set(), f"a reply to no claim closed the connection: {vc.close_reason}")
    # a claim for our own agent is answered: GRANTED (holder empty) for a free name
    answers = queue.Queue()
    with vc.lock:
        vc.claim_waiters[3] = answers
    vc.send_frame(GLOBAL_CLAIM, encode_claim(v.incarnation, 3, time.time_ns() // 1000, f"z-{tag}", va.id))
    answer = take(answers, 5, "a GLOBAL_CLAIM_REPLY to a claim for our own agent")
    check(answer == (CLAIM_GRANTED, ""), f"the answer to a claim for a free name: {answer}")
    vc.close()

    ok, k = hc.spawn(ha, [sym("receive")])
    check(ok, k)
    kid = f"{ctx.peer}/{k}"

    def register(name):
        return register_global_on(hc, ha, name, kid)

    def outcome(r, seconds=15):
        return registration_outcome(ha, r, seconds)

    # a malformed reply closes the member's connection; its loss counts as granting
    for i, (what, payload) in enumerate([
            ("answer 3", lambda req: encode_claim_reply(req, 3)),
            ("GRANTED with a holder", lambda req: encode_claim_reply(req, CLAIM_GRANTED, kid)),
            ("HELD without a holder", lambda req: encode_claim_reply(req, CLAIM_HELD)),
            ("COMPETING without a holder", lambda req: encode_claim_reply(req, CLAIM_COMPETING))]):
        m = ctx.node(f"clm{i}", hidden=False)
        claims = queue.Queue()
        m.on_claim = deferring(claims)
        mc = m.dial(ctx.peer)
        eventually(lambda: m.name in node_names(hc, ha), 10, f"{m.short} a member")
        name = f"lost-{i}-{tag}"
        r = register(name)
        _, req, _, nm, _ = take(claims, 10, f"{what}: a claim to the member")
        check(nm == name, nm)
        mc.send_frame(GLOBAL_CLAIM_REPLY, payload(req))
        wait_closed(mc, 5, f"GLOBAL_CLAIM_REPLY {what}")
        ok, notif = outcome(r)
        log(f"  the registration, its only member lost: {show(notif)}")
        check(ok, f"a member lost during the claim counts as granting: {show(notif)}")
        holder = call(hc, ha, [sym("whereis-global"), name])
        check(isinstance(holder, Agent) and holder.id == kid, f"whereis-global {show(holder)}")
    # a member that never answers fails the registration, not before twice the failure timeout plus 1 s
    m = ctx.node("clsilent", hidden=False)
    claims = queue.Queue()
    m.on_claim = deferring(claims)
    mc = m.dial(ctx.peer)
    eventually(lambda: m.name in node_names(hc, ha), 10, f"{m.short} a member")
    name = f"unanswered-{tag}"
    t0 = time.monotonic()
    r = register(name)
    take(claims, 10, "a claim to the silent member")
    ok, notif = outcome(r, 30)
    took = time.monotonic() - t0
    log(f"an unanswered claim: {show(notif)} after {took:.2f} s")
    check(not ok, f"registered without the member's answer: {show(notif)}")
    check(took >= 9.0, f"failed after {took:.2f} s, before 2 x 4 s + 1 s")
    check(call(hc, ha, [sym("whereis-global"), name]) is None, "registered after all")
    check(not mc.closed.is_set(), f"the silent member's connection: {mc.close_reason}")
    hc.exit(ha, k, kw("cleanup"))
    mc.close()
    hc.close()


def sc_overlap(ctx):
    """Section 7: NODE_LOST and the overlap rule (DISCONNECT code 1, REFUSE code 3), the exclusion lifted by a
    NODES naming the excluded node (the kernel dials it, NODES first), NODE_LOST for a member that fails."""
    pid = os.getpid()
    p = Node("localhost", f"py-ovA-{pid}", ctx.cookie, ctx.args.directory_port, ctx.args.registry_port, hidden=False)
    q = Node("localhost", f"py-ovB-{pid}", ctx.cookie, ctx.args.directory_port, ctx.args.registry_port, hidden=False)
    ctx.nodes += [p, q]
    check(p.name.encode() < q.name.encode(), "P sorts before Q")
    q.listen()
    pc = p.dial(ctx.peer)
    pa = p.spawn_agent()
    pc.wait_nodes(5)
    eventually(lambda: p.name in node_names(pc, pa), 10, "P a member")
    qc = q.dial(ctx.peer)
    qa = q.spawn_agent()
    check(p.name in check_first_nodes(qc, q.name, "Q's first NODES"), "Q's first NODES names the member P")
    eventually(lambda: q.name in pc.peer_nodes, 10, "a NODES to P naming Q")
    # Q reports losing P: ignored (Q sorts after P); P reports losing another run of Q: ignored
    qc.send_frame(NODE_LOST, p_str(p.name) + p_u64(p.incarnation))
    echo_roundtrip(qc, qa, kw("q-reported"))
    pc.send_frame(NODE_LOST, p_str(q.name) + p_u64(q.incarnation ^ 1 or 2))
    echo_roundtrip(pc, pa, kw("p-reported-other-run"))
    echo_roundtrip(qc, qa, kw("q-still-here"))
    check(not pc.closed.is_set() and not qc.closed.is_set(), "a report the overlap rule ignores cut a connection")
    check(set(node_names(pc, pa)) >= {p.name, q.name}, "both members after ignored reports")
    # P reports losing Q's run: the kernel excludes that run, sends Q DISCONNECT (1, P) and closes
    pc.send_frame(NODE_LOST, p_str(q.name) + p_u64(q.incarnation))
    wait_closed(qc, 5, "Q after P's NODE_LOST")
    check(qc.disconnect == (DISCONNECT_OVERLAP, p.name), f"DISCONNECT (1, {p.name}) last: {qc.disconnect}")
    check(not pc.closed.is_set(), f"P's connection: {pc.close_reason}")
    listed = node_names(pc, pa)
    check(q.name not in listed, f"Q still listed: {listed}")
    # that run of Q is refused with REFUSE 3 while the exclusion lasts
    try:
        q.dial(ctx.peer)
        raise AssertionError("an excluded run was accepted")
    except Refused as e:
        log(f"Q dials again: {e}")
        check(e.code == REFUSE_EXCLUDED, f"REFUSE code 3, got {e.code}")
    # P names Q in a NODES frame: the exclusion ends and the kernel dials Q (NODES its first frame)
    pc.send_frame(NODES, encode_nodes([q.name]))
    ic = take(q.accepted, 10, "the kernel's dial of Q after P named it")
    check_first_nodes(ic, q.name, "the kernel's dial of Q (connect_all)")
    echo_roundtrip(ic, qa, kw("q-back"))
    eventually(lambda: q.name in node_names(pc, pa), 10, "Q a member again")
    # Q fails (it closes: to the kernel a clean stop and a crash look alike): P is told NODE_LOST
    q.shutdown()
    eventually(lambda: (q.name, q.incarnation) in pc.node_lost, 10, "NODE_LOST (Q, its run) to P")
    log(f"P was told {pc.node_lost}")
    pc.close()


SCENARIOS = {
    "codec": (sc_codec, False),
    "port-mapper": (sc_port_mapper, True),
    "handshake": (sc_handshake, True),
    "wrong-cookie": (sc_wrong_cookie, True),
    "bad-hello": (sc_bad_hello, True),
    "send": (sc_send, True),
    "spawn-monitor": (sc_spawn_monitor, True),
    "link-exit": (sc_link_exit, True),
    "groups": (sc_groups, True),
    "inbound": (sc_inbound, True),
    "heartbeat": (sc_heartbeat, True),
    "silent-client": (sc_silent_client, True),
    "close": (sc_close, True),
    "malformed": (sc_malformed, True),
    "drops": (sc_drops, True),
    "reverse-attach": (sc_reverse_attach, True),
    "notice-scope": (sc_notice_scope, True),
    "new-run": (sc_new_run, True),
    "stale-requests": (sc_stale_requests, True),
    "cluster": (sc_cluster, True),
    "pm-limits": (sc_pm_limits, True),
    "node-limits": (sc_node_limits, True),
    "handshake-deadline": (sc_handshake_deadline, True),
    "cross-dial": (sc_cross_dial, True),
    "kernels": (sc_kernels, True),
    "clear": (sc_clear, True),
    "throttle": (sc_throttle, True),
    "documented": (sc_documented, True),
    "big": (sc_big, True),
    "peer-silent": (sc_peer_silent, True),
    "first-nodes": (sc_first_nodes, True),
    "visible-member": (sc_visible_member, True),
    "ops-query": (sc_ops_query, True),
    "hidden-member": (sc_hidden_member, True),
    "bad-nodes": (sc_bad_nodes, True),
    "claims": (sc_claims, True),
    "overlap": (sc_overlap, True),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--directory-port", type=int)
    p.add_argument("--registry-port", type=int)
    p.add_argument("--cookie-file")
    p.add_argument("--peer", help="the kernel node, host/node")
    p.add_argument("--kernel-pid", type=int, help="for peer-silent (SIGSTOP/SIGCONT)")
    p.add_argument("--bin", help="directory of the programs (for kernels)")
    p.add_argument("--pid-file", help="append the pid of every process started here")
    p.add_argument("scenario", nargs="+", help="|".join(SCENARIOS) + " or all")
    args = p.parse_args()
    names = list(SCENARIOS) if args.scenario == ["all"] else args.scenario
    failed = 0
    for name in names:
        fn, needs_node = SCENARIOS[name]
        ctx = None
        try:
            if needs_node:
                ctx = Ctx(args)
            fn(ctx)
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
        finally:
            if ctx:
                ctx.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
