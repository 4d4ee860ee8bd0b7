#!/usr/bin/env python3
"""
porterd integration tests: the real daemon on loopback sockets.

    python3 tests/integration/run.py --porterd build/porterd

It writes a config and a directory table into a temporary directory,
starts porterd on a free port of 127.0.0.1 (and [::1] when IPv6 loopback
works), talks SMTP to it byte by byte, with Python's smtplib and with
curl, then stops it with SIGTERM. One line per test (`ok NAME`,
`FAIL NAME: reason`, `skip NAME: reason`), then
`integration: N passed, M failed`; the exit status is 1 if any failed.

Python 3 standard library only. Every socket read has a deadline and
every test a time limit, so a hung daemon fails the run instead of
hanging it.
"""
import sys

sys.dont_write_bytecode = True  # keep tests/integration free of __pycache__

import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import threading
import time

from harness import (SANITIZER_MARKERS, Client, Daemon, Failure, Runner,
                     check, check_eq, count_replies, free_port,
                     ipv6_loopback_problem, listen_specs)

HOSTNAME = "mail.example.test"

# conf/example.table (the RFC 821 section 3.3 cast), then a few more
# entries for ambiguity, nameless users, list loops and empty lists.
TABLE = """\
# The example address directory of porterd.conf — see porterd.table(5).
#
# key                  kind     value
postmaster             user     Postmaster
hostmaster             user     Hostmaster
abuse                  user     Abuse Desk

jones                  user     Fred Jones
smith@example.test     user     Fred Smith
qsmith                 user     Quincy Smith

example-people         list     jones, smith, qsmith,
                                postel@usc-isif.example
all-staff              list     example-people, hostmaster

bob                    forward  bob@elsewhere.example
alice                  moved    alice@newco.example

# for the integration tests
anna                   user     Anna Gourzenkyinplatz
boris                  user     Boris Gourzenkyinplatz
nameless               user
loop-a                 list     loop-b, jones
loop-b                 list     loop-a, qsmith
ghosts                 list     nobody, alice
"""
TABLE_ENTRIES = sum(1 for line in TABLE.splitlines()
                    if line and not line[0].isspace() and not line.startswith("#"))


def config_text(port, with_ipv6, table="directory.table"):
    lines = [f"# porterd integration test config, port {port}"]
    lines += [f"listen      {spec}" for spec in listen_specs(port, with_ipv6)]
    lines += [
        f"hostname    {HOSTNAME}",
        "banner      porterd",
        "domains     example.test",
        f"directory   table {table}",
        "vrfy        on",
        "expn        on",
    ]
    return "\n".join(lines) + "\n"


GREETING = b"220 mail.example.test ESMTP porterd\r\n"
BYE = b"221 2.0.0 Bye\r\n"
OK = b"250 2.0.0 Ok\r\n"


def ehlo_reply(name, addr):
    return (f"250-{HOSTNAME} Hello {name} [{addr}]\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-PIPELINING\r\n"
            "250-VRFY\r\n"
            "250-EXPN\r\n"
            "250 HELP\r\n").encode()


JONES = b"250 2.1.5 Fred Jones <jones@example.test>\r\n"
QSMITH = b"250 2.1.5 Quincy Smith <qsmith@example.test>\r\n"
AMBIGUOUS = b"553 5.1.4 User ambiguous\r\n"
FORWARD = b"251 2.1.5 User not local; will forward to <bob@elsewhere.example>\r\n"
MOVED = b"551 5.1.6 User not local; please try <alice@newco.example>\r\n"
NOBODY = b"550 5.1.1 <nobody>: no such user here\r\n"
EXAMPLE_PEOPLE = (b"250-2.1.5 Fred Jones <jones@example.test>\r\n"
                  b"250-2.1.5 Fred Smith <smith@example.test>\r\n"
                  b"250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
                  b"250 2.1.5 <postel@usc-isif.example>\r\n")
TOO_LONG = b"500 5.5.2 Line too long\r\n"
CONTROL = b"500 5.5.2 Error: control characters in command\r\n"
UNKNOWN_VERB = b"500 5.5.2 Error: command not recognized\r\n"
ARG_8BIT = b"553 5.6.7 Non-ASCII argument requires the SMTPUTF8 parameter\r\n"
SHUTDOWN = b"421 4.3.2 mail.example.test Service shutting down\r\n"

# One command line (or a few) in, exactly these replies out; each on a
# fresh session, followed by a NOOP that must get the next reply (so a
# stray extra reply shows up as a failure).
DIALOGUE = [
    # RFC 821 section 3.3, example 3, and the argument forms
    ("vrfy_smith_ambiguous", b"VRFY Smith\r\n", AMBIGUOUS),
    ("vrfy_quincy_smith", b"VRFY Quincy Smith\r\n", QSMITH),
    ("vrfy_quincy_smith_spacing", b"VRFY quincy   SMITH\r\n", QSMITH),
    ("vrfy_jones", b"VRFY jones\r\n", JONES),
    ("vrfy_jones_upper", b"VRFY JONES\r\n", JONES),
    ("vrfy_jones_bracketed", b"VRFY <jones@example.test>\r\n", JONES),
    ("vrfy_jones_address_mixed_case", b"VRFY <Jones@Example.TEST>\r\n", JONES),
    ("vrfy_fred_jones_full_name", b"VRFY Fred Jones\r\n", JONES),
    ("vrfy_fred_ambiguous", b"VRFY Fred\r\n", AMBIGUOUS),
    ("vrfy_surname_ambiguous", b"VRFY Gourzenkyinplatz\r\n", AMBIGUOUS),
    ("vrfy_smith_address", b"VRFY smith@example.test\r\n",
     b"250 2.1.5 Fred Smith <smith@example.test>\r\n"),
    ("vrfy_nameless", b"VRFY nameless\r\n", b"250 2.1.5 <nameless@example.test>\r\n"),
    ("vrfy_list_is_mailbox", b"VRFY example-people\r\n",
     b"250 2.1.5 <example-people@example.test>\r\n"),
    ("vrfy_unknown_user", b"VRFY nobody\r\n", NOBODY),
    ("vrfy_unknown_address", b"VRFY nobody@example.test\r\n",
     b"550 5.1.1 <nobody@example.test>: no such user here\r\n"),
    ("vrfy_forward_251", b"VRFY bob\r\n", FORWARD),
    ("vrfy_moved_551", b"VRFY alice\r\n", MOVED),
    ("vrfy_not_local_domain", b"VRFY jones@elsewhere.example\r\n",
     b"550 5.1.2 <jones@elsewhere.example>: domain is not local here\r\n"),
    ("vrfy_smtputf8_parameter", b"VRFY jones SMTPUTF8\r\n", JONES),
    ("vrfy_empty_501", b"VRFY\r\n", b"501 5.5.4 Syntax: VRFY address\r\n"),
    ("vrfy_empty_brackets_501", b"VRFY <>\r\n", b"501 5.5.4 Syntax: VRFY address\r\n"),
    ("vrfy_unbalanced_501", b"VRFY <jones\r\n", b"501 5.5.4 Syntax: VRFY address\r\n"),
    ("vrfy_8bit_553", b"VRFY j\xc3\xb6rg\r\n", ARG_8BIT),
    ("vrfy_8bit_smtputf8_553", b"VRFY <j\xc3\xb6rg@example.test> SMTPUTF8\r\n", ARG_8BIT),
    # RFC 821 section 3.3, example 4, and the rest of EXPN
    ("expn_example_people", b"EXPN Example-People\r\n", EXAMPLE_PEOPLE),
    ("expn_all_staff_nested", b"EXPN all-staff\r\n",
     EXAMPLE_PEOPLE.replace(b"250 2.1.5 <postel", b"250-2.1.5 <postel")
     + b"250 2.1.5 Hostmaster <hostmaster@example.test>\r\n"),
    ("expn_loop", b"EXPN loop-a\r\n",
     b"250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
     b"250 2.1.5 Fred Jones <jones@example.test>\r\n"),
    ("expn_user", b"EXPN jones\r\n", JONES),
    ("expn_forward", b"EXPN bob\r\n", b"250 2.1.5 <bob@elsewhere.example>\r\n"),
    ("expn_moved", b"EXPN alice\r\n",
     b"550 5.1.6 User not local; please try <alice@newco.example>\r\n"),
    ("expn_ambiguous", b"EXPN Smith\r\n", b"550 5.1.4 User ambiguous\r\n"),
    ("expn_unknown", b"EXPN nosuch\r\n", b"550 5.1.1 <nosuch>: no such user here\r\n"),
    ("expn_empty_list", b"EXPN ghosts\r\n",
     b"550 5.1.1 <ghosts>: list has no members here\r\n"),
    ("expn_not_local_domain", b"EXPN staff@elsewhere.example\r\n",
     b"550 5.1.2 <staff@elsewhere.example>: domain is not local here\r\n"),
    ("expn_empty_501", b"EXPN\r\n", b"501 5.5.4 Syntax: EXPN list\r\n"),
    ("expn_8bit_553", b"EXPN \xff\r\n", ARG_8BIT),
    # the other commands
    ("helo", b"HELO client.example\r\n", b"250 mail.example.test\r\n"),
    ("helo_syntax_501", b"HELO two words\r\n", b"501 5.5.4 Syntax: HELO hostname\r\n"),
    ("ehlo_syntax_501", b"EHLO\r\n", b"501 5.5.4 Syntax: EHLO hostname\r\n"),
    ("noop", b"NOOP\r\n", OK),
    ("noop_with_argument", b"noop anything at all\r\n", OK),
    ("rset", b"RSET\r\n", OK),
    ("rset_syntax_501", b"RSET now\r\n", b"501 5.5.4 Syntax: RSET\r\n"),
    ("help", b"HELP\r\n",
     b"214-2.0.0 Commands: HELO EHLO VRFY EXPN NOOP RSET HELP QUIT\r\n"
     b"214 2.0.0 End of HELP info; see porterd(8)\r\n"),
    ("quit_syntax_501", b"QUIT now\r\n", b"501 5.5.4 Syntax: QUIT\r\n"),
    ("mail_502", b"MAIL FROM:<a@example.test>\r\n",
     b"502 5.5.1 MAIL command not implemented\r\n"),
    ("rcpt_502", b"RCPT TO:<jones@example.test>\r\n",
     b"502 5.5.1 RCPT command not implemented\r\n"),
    ("data_502", b"DATA\r\n", b"502 5.5.1 DATA command not implemented\r\n"),
    ("unknown_verb_500", b"XYZZY\r\n", UNKNOWN_VERB),
    ("empty_line_500", b"\r\n", UNKNOWN_VERB),
    # framing
    ("nul_byte_in_command", b"VRFY jo\x00nes\r\nNOOP\r\n", CONTROL + OK),
    ("bare_cr_in_command", b"VRFY jo\rnes\r\n", CONTROL),
    ("escape_byte_in_command", b"VRFY \x1b[31mjones\r\n", CONTROL),
    ("bare_lf_line_ending", b"NOOP\nVRFY jones\n", OK + JONES),
    ("line_limit_2048_accepted", b"NOOP" + b" " * 2042 + b"\r\n", OK),
    ("line_limit_2049_too_long", b"NOOP" + b" " * 2043 + b"\r\n", TOO_LONG),
    ("long_line_10000_then_noop", b"A" * 10000 + b"\r\nNOOP\r\n", TOO_LONG + OK),
]


class Context:
    def __init__(self, args):
        self.binary = os.path.abspath(args.porterd)
        self.tmp = tempfile.mkdtemp(prefix="porterd-it-")
        self.ipv6_problem = ("--no-ipv6 given" if args.no_ipv6
                             else ipv6_loopback_problem())
        self.ipv6 = self.ipv6_problem is None
        self.daemons = []       # every daemon started, for the final sweep
        self.outputs = []       # (what, text) of short-lived runs to scan
        self.main = None
        with open(os.path.join(self.tmp, "directory.table"), "w") as f:
            f.write(TABLE)

    @property
    def addr(self):
        return ("127.0.0.1", self.main.port)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start_daemon(self, name, nofile=None):
        """Write NAME.conf on a free port, start porterd, wait until it
        greets. A port taken in the meantime is retried."""
        last = ""
        for attempt in range(3):
            port = free_port(self.ipv6)
            conf = self.path(f"{name}.conf")
            with open(conf, "w") as f:
                f.write(config_text(port, self.ipv6))
            d = Daemon(self.binary, conf, self.path(f"{name}.log"), port)
            d.start(nofile)
            self.daemons.append(d)
            if d.wait_ready():
                return d
            last = d.log_tail()
            if b"Address already in use" not in d.log():
                break
        raise Failure(f"{name} daemon exited with {d.returncode} at start: {last}")

    def cleanup(self):
        for d in self.daemons:
            d.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def session(ctx, addr=None):
    """A client that has read the greeting (and checked it)."""
    c = Client(addr or ctx.addr)
    try:
        check_eq(c.reply(), GREETING, "greeting")
    except BaseException:
        c.close()
        raise
    return c


def quit_session(c):
    check_eq(c.cmd(b"QUIT\r\n"), BYE, "reply to QUIT")
    check_eq(c.read_to_eof(), b"", "bytes after 221")


def answers_fresh_session(ctx, what="a fresh session"):
    with session(ctx) as c:
        check_eq(c.cmd(b"VRFY jones\r\n"), JONES, f"VRFY jones on {what}")
        quit_session(c)


# --- raw dialogue -----------------------------------------------------------

def t_greeting(ctx):
    with Client(ctx.addr) as c:
        check_eq(c.reply(), GREETING, "greeting")
        quit_session(c)


def t_ehlo(ctx):
    with session(ctx) as c:
        check_eq(c.cmd(b"EHLO client.example\r\n"), ehlo_reply("client.example", "127.0.0.1"),
                 "EHLO reply")
        # a second EHLO starts afresh and answers the same way
        check_eq(c.cmd(b"ehlo [127.0.0.1]\r\n"), ehlo_reply("[127.0.0.1]", "127.0.0.1"),
                 "second EHLO reply")
        quit_session(c)


def t_dialogue(ctx, data, want):
    with session(ctx) as c:
        c.send(data)
        got = c.replies(count_replies(want))
        check_eq(got, want, f"replies to {data[:80]!r}")
        check_eq(c.cmd(b"NOOP\r\n"), OK, "the NOOP after (in sync)")
        quit_session(c)


def t_quit_closes(ctx):
    with session(ctx) as c:
        # nothing after QUIT is answered, and the connection closes
        c.send(b"QUIT\r\nNOOP\r\n")
        check_eq(c.read_to_eof(), BYE, "everything after QUIT")


# --- pipelining -------------------------------------------------------------

def t_pipelined_group(ctx):
    with session(ctx) as c:
        c.send(b"EHLO c.example\r\nVRFY jones\r\nEXPN example-people\r\nVRFY Smith\r\n"
               b"VRFY nobody\r\nVRFY bob\r\nNOOP\r\nEXPN loop-a\r\nQUIT\r\n")
        want = (ehlo_reply("c.example", "127.0.0.1") + JONES + EXAMPLE_PEOPLE + AMBIGUOUS
                + NOBODY + FORWARD + OK
                + b"250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
                + b"250 2.1.5 Fred Jones <jones@example.test>\r\n" + BYE)
        check_eq(c.read_to_eof(), want, "replies to the pipelined group")


def t_pipelined_one_read(ctx):
    """The replies to a group of VRFYs sent in one segment are all there
    for a single recv after a short pause."""
    group = b"VRFY jones\r\nVRFY qsmith\r\nVRFY bob\r\nVRFY alice\r\nVRFY Smith\r\nNOOP\r\n"
    want = JONES + QSMITH + FORWARD + MOVED + AMBIGUOUS + OK
    with session(ctx) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(group)
        with selectors.DefaultSelector() as sel:
            sel.register(c.sock, selectors.EVENT_READ)
            check(sel.select(5), "no reply within 5 s")
        time.sleep(0.2)
        c.sock.settimeout(5)
        got = c.sock.recv(65536)
        check_eq(got, want, "a single recv after the group")
        quit_session(c)


def t_pipelined_flow_control(ctx):
    """20,000 pipelined commands sent by one thread while another reads:
    about 240 kB in, 1 MB out, every reply in order. The daemon stops
    reading when the client falls behind, and picks up again."""
    cycle = [(b"VRFY jones\r\n", JONES), (b"VRFY qsmith\r\n", QSMITH),
             (b"VRFY bob\r\n", FORWARD), (b"VRFY nobody\r\n", NOBODY),
             (b"EXPN example-people\r\n", EXAMPLE_PEOPLE)]
    n = 20000
    data = b"".join(cycle[i % len(cycle)][0] for i in range(n)) + b"QUIT\r\n"
    want = b"".join(cycle[i % len(cycle)][1] for i in range(n)) + BYE
    c = session(ctx)
    errors = []

    def sender():
        try:
            c.sock.sendall(data)
        except OSError as e:
            errors.append(e)

    try:
        c.sock.settimeout(20)
        # first read nothing, so the daemon's output fills and it must stop
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(0.5)
        got = bytearray()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            chunk = c.sock.recv(262144)
            if not chunk:
                break
            got += chunk
        t.join(5)
        check(not errors, f"sending failed: {errors}")
        check(len(got) == len(want),
              f"got {len(got)} bytes of replies, want {len(want)}")
        if got != want:
            i = next(i for i in range(len(want)) if got[i] != want[i])
            raise Failure(f"replies differ at byte {i}: got {bytes(got[i:i+60])!r}, "
                          f"want {want[i:i+60]!r}")
    finally:
        c.close()


# --- line framing over the wire ---------------------------------------------

def t_long_line_split_across_writes(ctx):
    """A 10,000-byte line arriving in pieces, its CRLF split as well."""
    with session(ctx) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(10):
            c.send(b"B" * 1000)
            time.sleep(0.01)
        c.send(b"\r")
        time.sleep(0.05)
        c.send(b"\nNO")
        time.sleep(0.05)
        c.send(b"OP\r\n")
        check_eq(c.replies(2), TOO_LONG + OK, "replies")
        quit_session(c)


def t_megabyte_line_slowly(ctx):
    """1 MB with no line end, sent in 64 kB pieces with pauses: it is
    discarded as it comes, the daemon serves others meanwhile, and the
    session resynchronises at the next CRLF."""
    with session(ctx) as c:
        chunk = b"x" * 65536
        for i in range(16):
            c.send(chunk)
            time.sleep(0.02)
            if i == 8:
                answers_fresh_session(ctx, "another session meanwhile")
        check(c.buf == b"", f"a reply before the line ended: {c.buf!r}")
        c.send(b"\r\nNOOP\r\n")
        check_eq(c.replies(2), TOO_LONG + OK, "replies once the line ended")
        quit_session(c)
    answers_fresh_session(ctx)


def t_partial_line_waits(ctx):
    with session(ctx) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(b"VRF")
        time.sleep(0.2)
        c.send(b"Y jon")
        time.sleep(0.2)
        c.send(b"es\r")
        time.sleep(0.2)
        c.send(b"\n")
        check_eq(c.reply(), JONES, "reply to the assembled line")
        quit_session(c)


# --- abrupt ends --------------------------------------------------------------

RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends RST


def t_abrupt_disconnects(ctx):
    before = ctx.main.log().count(b"event=disconnect")
    # closes before reading the greeting
    Client(ctx.addr).close()
    # half a command, then close
    with session(ctx) as c:
        c.send(b"VRFY jo")
    # a command, closed without reading its reply
    with Client(ctx.addr) as c:
        c.send(b"VRFY jones\r\n")
    # many commands, then a reset (SO_LINGER 0) while replies are due
    with session(ctx) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        c.send(b"EXPN example-people\r\n" * 2000)
    # half a command, then a reset
    with session(ctx) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        c.send(b"EXPN exa")
    ctx.main.wait_log(rb"event=disconnect", count=before + 5)
    answers_fresh_session(ctx)


def t_half_close(ctx):
    """A client that sends its commands and shuts down its side still
    gets every reply (TCP half-close)."""
    with session(ctx) as c:
        c.send(b"VRFY jones\r\nNOOP\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        check_eq(c.read_to_eof(), JONES + OK, "replies after the client's FIN")
    # a long pipelined batch and its FIN while replies are backed up: every
    # command before the FIN still gets its reply
    n = 50000  # 600 kB in, 2 MB out
    with session(ctx) as c:
        sender = threading.Thread(target=c.sock.sendall, args=(b"VRFY jones\r\n" * n,),
                                  daemon=True)
        sender.start()
        time.sleep(0.3)  # read nothing yet: the daemon's output backs up
        got = bytearray()
        deadline = time.monotonic() + 15
        while sender.is_alive() and time.monotonic() < deadline:
            chunk = c.sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        sender.join(1)
        c.sock.shutdown(socket.SHUT_WR)
        got = bytes(got) + c.read_to_eof(timeout=15)
        check(got == JONES * n, f"{got.count(JONES)} of {n} replies after the client's FIN")


# --- many at once -------------------------------------------------------------

def t_concurrent_200(ctx):
    """200 sessions open at once: every greeting read before any command,
    then VRFY jones and QUIT on each, every session read to its end."""
    n = 200
    want = GREETING + JONES + BYE
    socks, bufs, eof = [], {}, set()
    sel = selectors.DefaultSelector()

    def pump(done, deadline, what):
        """Read every session until done(s) or its end of stream."""
        pending = {s for s in socks if not done(s) and s not in eof}
        for s in pending:
            sel.register(s, selectors.EVENT_READ)
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Failure(f"{len(pending)} of {n} sessions still waiting for {what}")
                for key, _ in sel.select(remaining):
                    s = key.fileobj
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        chunk = b""
                    bufs[s] += chunk
                    if not chunk:
                        eof.add(s)
                    if not chunk or done(s):
                        sel.unregister(s)
                        pending.discard(s)
        finally:
            for s in pending:
                sel.unregister(s)

    try:
        for _ in range(n):
            s = socket.create_connection(ctx.addr, timeout=5)
            s.setblocking(False)
            socks.append(s)
            bufs[s] = b""
        deadline = time.monotonic() + 15
        pump(lambda s: bufs[s].endswith(b"\n"), deadline, "the greeting")
        bad = [bufs[s] for s in socks if bufs[s] != GREETING]
        check(not bad, f"{len(bad)} of {n} bad greetings, e.g. {bad[:1]!r}")
        for s in socks:
            check_eq(s.send(b"VRFY jones\r\nQUIT\r\n"), 18, "bytes sent")
        pump(lambda s: False, deadline, "the end after QUIT")
        bad = [bufs[s] for s in socks if bufs[s] != want]
        check(not bad, f"{len(bad)} of {n} sessions got other replies, e.g. {bad[:1]!r}")
    finally:
        for s in socks:
            s.close()
        sel.close()
    answers_fresh_session(ctx)


# --- other clients ------------------------------------------------------------

def t_smtplib(ctx):
    s = smtplib.SMTP("127.0.0.1", ctx.main.port, timeout=5)
    try:
        code, _ = s.ehlo("client.example")
        check_eq(code, 250, "ehlo() code")
        for ext in ("vrfy", "expn", "pipelining", "enhancedstatuscodes", "help"):
            check(s.has_extn(ext), f"has_extn({ext!r}) is false; features {s.esmtp_features}")
        check_eq(s.verify("jones"), (250, b"2.1.5 Fred Jones <jones@example.test>"),
                 "verify('jones')")
        check_eq(s.verify("nobody")[0], 550, "verify('nobody') code")
        check_eq(s.verify("bob"), (251, b"2.1.5 User not local; will forward to "
                                        b"<bob@elsewhere.example>"), "verify('bob')")
        check_eq(s.expn("example-people"),
                 (250, b"2.1.5 Fred Jones <jones@example.test>\n"
                       b"2.1.5 Fred Smith <smith@example.test>\n"
                       b"2.1.5 Quincy Smith <qsmith@example.test>\n"
                       b"2.1.5 <postel@usc-isif.example>"), "expn('example-people')")
        check_eq(s.noop(), (250, b"2.0.0 Ok"), "noop()")
        check_eq(s.rset(), (250, b"2.0.0 Ok"), "rset()")
        check_eq(s.quit(), (221, b"2.0.0 Bye"), "quit()")
    finally:
        s.close()


def curl(args):
    try:
        return subprocess.run(["curl", "-s", "-m", "10"] + args, capture_output=True,
                              timeout=15, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure(f"curl {' '.join(args)} did not finish in 15 s")


def t_curl_vrfy(ctx):
    url = f"smtp://127.0.0.1:{ctx.main.port}"
    r = curl([url, "--mail-rcpt", "jones"])
    check_eq((r.returncode, r.stdout), (0, JONES), "curl VRFY jones (status, output)")
    r = curl([url, "--mail-rcpt", "<qsmith@example.test>"])
    check_eq((r.returncode, r.stdout), (0, QSMITH), "curl VRFY qsmith (status, output)")
    # an unknown user is an error for curl, and nothing is printed
    r = curl([url, "--mail-rcpt", "nobody"])
    check(r.returncode != 0, f"curl VRFY nobody exited 0, printed {r.stdout!r}")


def t_curl_expn(ctx):
    url = f"smtp://127.0.0.1:{ctx.main.port}"
    r = curl(["-X", "EXPN", "--mail-rcpt", "example-people", url])
    check_eq((r.returncode, r.stdout), (0, EXAMPLE_PEOPLE), "curl EXPN (status, output)")


def t_ipv6(ctx):
    with session(ctx, ("::1", ctx.main.port)) as c:
        check_eq(c.cmd(b"EHLO c.example\r\n"), ehlo_reply("c.example", "::1"), "EHLO over ::1")
        check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY over ::1")
        quit_session(c)
    ctx.main.wait_log(rb"event=connect client=::1\n")


# --- the log ------------------------------------------------------------------

LOG_LINE = re.compile(rb"porterd: level=(err|warning|info|debug) event=[a-z_]+( [a-z_]+=(\"[^\"]*\"|[^ \"]*))*")
ESCAPED_VALUE = re.compile(rb'^(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\x[0-9a-f]{2})*(?:\.\.\.)?$')


def log_form_problems(log):
    """Lines of a porterd log that are not one well-formed event each."""
    problems = []
    check(log.endswith(b"\n") or log == b"", "the log does not end with a newline")
    for line in log.split(b"\n")[:-1]:
        if any(b >= 0x80 for b in line):
            problems.append(f"raw 8-bit byte in {line[:120]!r}")
        elif not LOG_LINE.fullmatch(line):
            problems.append(f"malformed line {line[:120]!r}")
        else:
            for m in re.finditer(rb'query="([^"]*)"', line):
                if not ESCAPED_VALUE.match(m.group(1)):
                    problems.append(f"unescaped query in {line[:120]!r}")
    return problems


def t_log_escaping(ctx):
    with session(ctx) as c:
        check_eq(c.cmd(b'VRFY a"b\\c\r\n'), b'550 5.1.1 <a"b\\c>: no such user here\r\n',
                 "VRFY with quote and backslash")
        check_eq(c.cmd(b"VRFY t\tab\r\n"), b"550 5.1.1 <t\tab>: no such user here\r\n",
                 "VRFY with a tab")
        check_eq(c.cmd(b"VRFY z\xc3\xa9\xffq\r\n"), ARG_8BIT, "VRFY with 8-bit bytes")
        check_eq(c.cmd(b"EXPN \xe9t\xe9\r\n"), ARG_8BIT, "EXPN with 8-bit bytes")
        # an attempt to forge a log line: the CR LF ends the command
        c.send(b"VRFY x\r\nporterd: level=info event=forged\r\n")
        check_eq(c.replies(2), b"550 5.1.1 <x>: no such user here\r\n" + UNKNOWN_VERB,
                 "VRFY x, then the forged line as a command")
        check_eq(c.cmd(b"VRFY x\rporterd: level=info event=forged2\r\n"), CONTROL,
                 "a bare CR in VRFY")
        many = b'"\\' * 100  # 800 bytes once escaped: longer than a log value
        check_eq(c.cmd(b"VRFY " + many + b"\r\n"),
                 b"550 5.1.1 <" + many + b">: no such user here\r\n", "VRFY of quotes")
        quit_session(c)
    ctx.main.wait_log(rb'query="\\x22\\x5c\\x22\\x5c', timeout=3)
    log = ctx.main.log()
    check(b'event=vrfy client=127.0.0.1 query="a\\x22b\\x5cc" result=unknown code=550\n'
          in log, "no log line with query=\"a\\x22b\\x5cc\"")
    check(b'query="t\\x09ab" result=unknown code=550\n' in log,
          "no log line with query=\"t\\x09ab\"")
    check(not re.search(rb"(^|\n)porterd: level=info event=forged", log),
          "a forged log line")
    long_line = re.search(rb'query="((?:\\x22\\x5c)+[^"]*)"', log)
    check(long_line is not None, "no log line for the long query")
    check(len(long_line.group(0)) <= 1024, "a log value longer than a log line")
    problems = log_form_problems(log)
    check(not problems, "; ".join(problems[:3]))


# --- the command line ---------------------------------------------------------

def run_porterd(ctx, args, what):
    try:
        r = subprocess.run([ctx.binary] + args, capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        raise Failure(f"porterd {' '.join(args)} did not exit in 10 s")
    ctx.outputs.append((what, r.stdout + r.stderr))
    return r


def t_check_good(ctx):
    conf = ctx.main.config
    r = run_porterd(ctx, ["-t", "-c", conf], "-t good")
    check_eq(r.returncode, 0, f"exit status (stderr {r.stderr!r})")
    check_eq(r.stdout.decode(),
             f"porterd: {conf}: configuration ok, {TABLE_ENTRIES} directory entries\n",
             "stdout")


def t_check_unknown_directive(ctx):
    conf = ctx.path("unknown-directive.conf")
    with open(conf, "w") as f:
        f.write("listen 127.0.0.1:9\nhostname mail.example.test\nfrobnicate yes\n"
                "directory table directory.table\n")
    r = run_porterd(ctx, ["-t", "-c", conf], "-t unknown directive")
    check_eq(r.returncode, 1, "exit status")
    check(f"porterd: {conf}:3: unknown directive".encode() in r.stderr,
          f"stderr {r.stderr!r} does not name {conf}:3")
    check(b"configuration ok" not in r.stdout, f"stdout says {r.stdout!r}")


def t_check_bad_table_kind(ctx):
    table = ctx.path("bad-kind.table")
    conf = ctx.path("bad-kind.conf")
    with open(table, "w") as f:
        f.write("# a table with a kind porterd does not know\n"
                "jones   user   Fred Jones\n"
                "smith   wizard Fred Smith\n")
    with open(conf, "w") as f:
        f.write(config_text(9, False, table="bad-kind.table"))
    r = run_porterd(ctx, ["-t", "-c", conf], "-t bad table")
    check_eq(r.returncode, 1, "exit status")
    check(f"porterd: {table}:3: ".encode() in r.stderr,
          f"stderr {r.stderr!r} does not name {table}:3")
    check(b"wizard" in r.stderr, f"stderr {r.stderr!r} does not name the kind")


def t_check_missing_file(ctx):
    conf = ctx.path("no-such.conf")
    r = run_porterd(ctx, ["-t", "-c", conf], "-t missing")
    check_eq(r.returncode, 1, "exit status")
    check(conf.encode() in r.stderr, f"stderr {r.stderr!r} does not name {conf}")


def t_version(ctx):
    r = run_porterd(ctx, ["-V"], "-V")
    check_eq(r.returncode, 0, "exit status")
    check(re.fullmatch(rb"porterd \d+\.\d+\.\d+\S*\n", r.stdout) is not None,
          f"stdout {r.stdout!r}")


def t_bad_option(ctx):
    r = run_porterd(ctx, ["-Z"], "-Z")
    check_eq(r.returncode, 1, "exit status")
    check(b"usage: porterd" in r.stderr, f"stderr {r.stderr!r}")


def t_second_daemon_same_port(ctx):
    log = ctx.path("second.log")
    d = Daemon(ctx.binary, ctx.main.config, log, ctx.main.port)
    d.start()
    ctx.daemons.append(d)
    rc = d.wait_exit(10)
    if rc is None:
        d.stop()
        raise Failure("a second daemon on the same port kept running")
    text = d.log()
    ctx.outputs.append(("second daemon", text))
    check_eq(rc, 1, f"exit status (log {text!r})")
    check(f"127.0.0.1:{ctx.main.port}".encode() in text,
          f"the message does not name the address: {text!r}")
    answers_fresh_session(ctx, "the first daemon")


# --- stopping -------------------------------------------------------------------

def t_sigterm_open_sessions(ctx):
    d = ctx.start_daemon("sigterm")
    a = b = None
    try:
        a = session(ctx, ("127.0.0.1", d.port))
        check_eq(a.cmd(b"EHLO c.example\r\n"), ehlo_reply("c.example", "127.0.0.1"), "EHLO")
        b = session(ctx, ("127.0.0.1", d.port))
        b.send(b"VRFY jo")  # half a command waiting
        d.wait_log(rb"event=connect", count=3)
        time.sleep(0.1)
        d.send_signal(signal.SIGTERM)
        check_eq(a.read_to_eof(), SHUTDOWN, "what the EHLO'd session reads")
        check_eq(b.read_to_eof(), SHUTDOWN, "what the half-command session reads")
    finally:
        for c in (a, b):
            if c is not None:
                c.close()
        rc = d.stop()
    check(not d.killed, "the daemon did not exit within 10 s of SIGTERM")
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")
    log = d.log()
    check(b"event=shutdown signal=TERM\n" in log, "no event=shutdown signal=TERM")
    check_eq(log.count(b"reason=shutdown\n"), 2, "disconnect reason=shutdown lines")
    check(log.endswith(b"event=stop\n"), f"the log does not end with event=stop: {d.log_tail(2)}")


def t_sigint_stalled_client(ctx):
    """SIGINT while one client reads nothing at all (its replies fill the
    buffers) and another idles: the idle one gets its 421, and the daemon
    still exits 0 after its grace period."""
    d = ctx.start_daemon("sigint")
    idle = stalled = None
    try:
        idle = session(ctx, ("127.0.0.1", d.port))
        stalled = Client(("127.0.0.1", d.port))
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sock.setblocking(False)
        sent = 0
        burst = b"EXPN example-people\r\n" * 1000
        deadline = time.monotonic() + 5
        stuck_since = None
        while time.monotonic() < deadline and sent < 64 << 20:
            try:
                sent += stalled.sock.send(burst)
                stuck_since = None
            except BlockingIOError:
                if stuck_since is None:
                    stuck_since = time.monotonic()
                elif time.monotonic() - stuck_since > 0.5:
                    break  # the daemon stopped reading: flow control works
                time.sleep(0.02)
        check(stuck_since is not None,
              f"the daemon took {sent} bytes without the client reading a reply")
        t0 = time.monotonic()
        d.send_signal(signal.SIGINT)
        check_eq(idle.read_to_eof(), SHUTDOWN, "what the idle session reads")
        rc = d.wait_exit(10)
        took = time.monotonic() - t0
    finally:
        for c in (idle, stalled):
            if c is not None:
                c.close()
        d.stop(timeout=2)  # signaled already: a kill -9 only if still there
    check(rc is not None, "the daemon did not exit within 10 s of SIGINT")
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")
    log = d.log()
    check(b"event=shutdown signal=INT\n" in log, "no event=shutdown signal=INT")
    check(b"event=shutdown_grace_expired open=1\n" in log,
          f"no grace expiry for the stalled session (exit after {took:.1f} s): {d.log_tail(4)}")


def t_fd_exhaustion_recovers(ctx):
    """A daemon limited to 40 descriptors, asked for 80 sessions: the
    first ones are served, the rest wait in the backlog (accepting pauses
    instead of spinning), and are served once the first ones leave."""
    d = ctx.start_daemon("nofile", nofile=40)
    clients = []
    try:
        for _ in range(80):
            clients.append(Client(("127.0.0.1", d.port)))
        time.sleep(0.5)
        with selectors.DefaultSelector() as sel:
            for c in clients:
                sel.register(c.sock, selectors.EVENT_READ, c)
            readable = {key.data for key, _ in sel.select(0)}
        served = [c for c in clients if c in readable]
        waiting = [c for c in clients if c not in readable]
        check(len(served) >= 10, f"only {len(served)} of 80 sessions greeted")
        check(waiting, "all 80 sessions greeted: the descriptor limit did not bite")
        d.wait_log(rb"event=accept_error", timeout=3)
        for c in served:
            check_eq(c.reply(), GREETING, "greeting of a first session")
            check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY on a first session")
            quit_session(c)
            c.close()
        for c in waiting:
            check_eq(c.reply(), GREETING, "greeting of a session that waited")
            check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY on a session that waited")
            quit_session(c)
            c.close()
    finally:
        for c in clients:
            c.close()
        rc = d.stop()
    check(not d.killed, "the daemon did not exit within 10 s of SIGTERM")
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")


def t_main_daemon_exit(ctx):
    rc = ctx.main.stop()
    check(not ctx.main.killed, "the daemon did not exit within 10 s of SIGTERM (killed)")
    check_eq(rc, 0, f"exit status (log {ctx.main.log_tail()})")
    log = ctx.main.log()
    check(b"event=shutdown signal=TERM\n" in log, "no event=shutdown signal=TERM")
    check(log.endswith(b"event=stop\n"), f"the log does not end with event=stop: "
                                         f"{ctx.main.log_tail(2)}")


def t_main_log_well_formed(ctx):
    problems = log_form_problems(ctx.main.log())
    check(not problems, f"{len(problems)} bad lines: " + "; ".join(problems[:3]))


def t_sanitizers_clean(ctx):
    found = []
    texts = [(os.path.basename(d.log_path), d.log()) for d in ctx.daemons]
    texts += ctx.outputs
    for what, text in texts:
        for marker in SANITIZER_MARKERS:
            i = text.find(marker.encode())
            if i >= 0:
                found.append(f"{what}: {text[max(0, i - 40):i + 160]!r}")
    check(not found, f"sanitizer reports: {' | '.join(found[:3])}")


# --- main -----------------------------------------------------------------------

def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--porterd", required=True, help="the porterd binary to test")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--no-ipv6", action="store_true",
                    help="listen on 127.0.0.1 only, as if IPv6 loopback did not work")
    args = ap.parse_args()
    if not os.access(args.porterd, os.X_OK):
        print(f"run.py: {args.porterd}: not an executable", file=sys.stderr)
        return 2
    raise_fd_limit(1024)  # 200 sessions here and in the daemon

    # a SIGTERM to the runner still stops the daemons and removes the files
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    t0 = time.monotonic()
    runner = Runner()
    ctx = Context(args)
    try:
        try:
            ctx.main = ctx.start_daemon("main")
        except Failure as e:
            runner.fail("daemon_starts", str(e))
        else:
            runner.ok("daemon_starts")
            run_all(ctx, runner)
        runner.run("sanitizers_clean", t_sanitizers_clean, ctx)
    finally:
        for d in ctx.daemons:
            if d.proc is not None and d.proc.poll() is None:
                runner.fail(os.path.basename(d.log_path), "still running at the end; killed")
        if args.keep:
            print(f"# kept {ctx.tmp}")
            for d in ctx.daemons:
                d.kill()
        else:
            ctx.cleanup()
    print(f"# {time.monotonic() - t0:.1f} s, {runner.skipped} skipped; slowest: "
          f"{runner.slowest()}", flush=True)
    print(f"integration: {runner.passed} passed, {runner.failed} failed", flush=True)
    return 1 if runner.failed else 0


def run_all(ctx, runner):
    r = runner.run
    r("greeting", t_greeting, ctx)
    r("ehlo", t_ehlo, ctx)
    for name, data, want in DIALOGUE:
        r(name, t_dialogue, ctx, data, want)
    r("quit_closes", t_quit_closes, ctx)
    r("pipelined_group", t_pipelined_group, ctx)
    r("pipelined_replies_one_read", t_pipelined_one_read, ctx)
    r("pipelined_flow_control", t_pipelined_flow_control, ctx)
    r("partial_line_waits", t_partial_line_waits, ctx)
    r("long_line_split_across_writes", t_long_line_split_across_writes, ctx)
    r("megabyte_line_slowly", t_megabyte_line_slowly, ctx)
    r("abrupt_disconnects", t_abrupt_disconnects, ctx)
    r("half_close", t_half_close, ctx)
    r("concurrent_200", t_concurrent_200, ctx)
    r("smtplib", t_smtplib, ctx)
    if shutil.which("curl"):
        r("curl_vrfy", t_curl_vrfy, ctx)
        r("curl_expn", t_curl_expn, ctx)
    else:
        runner.skip("curl_vrfy", "curl is not installed")
        runner.skip("curl_expn", "curl is not installed")
    if ctx.ipv6:
        r("ipv6", t_ipv6, ctx)
    else:
        runner.skip("ipv6", ctx.ipv6_problem)
    r("log_escaping", t_log_escaping, ctx)
    r("check_config_ok", t_check_good, ctx)
    r("check_unknown_directive", t_check_unknown_directive, ctx)
    r("check_bad_table_kind", t_check_bad_table_kind, ctx)
    r("check_missing_config", t_check_missing_file, ctx)
    r("version", t_version, ctx)
    r("bad_option", t_bad_option, ctx)
    r("second_daemon_same_port", t_second_daemon_same_port, ctx)
    r("sigterm_open_sessions", t_sigterm_open_sessions, ctx)
    r("sigint_stalled_client", t_sigint_stalled_client, ctx)
    r("fd_exhaustion_recovers", t_fd_exhaustion_recovers, ctx)
    r("daemon_exits_0_on_sigterm", t_main_daemon_exit, ctx)
    r("log_well_formed", t_main_log_well_formed, ctx)


if __name__ == "__main__":
    sys.exit(main())
