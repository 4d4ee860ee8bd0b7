#!/usr/bin/env python3
"""
porterd integration tests: the real daemon on loopback sockets.

    python3 tests/integration/run.py --porterd build/porterd

It writes a config and a directory table into a temporary directory,
starts porterd on a free port of 127.0.0.1 (and [::1] when IPv6 loopback
works), talks SMTP to it byte by byte, with Python's smtplib, with curl
and with swaks (tests skipped when those are missing), then stops it with
SIGTERM. The privacy and abuse limits (VRFY/EXPN policy, tarpit, rate
budget, connection limits, timeouts) are tested on daemons of their own,
with clients bound to 127.0.0.2 and other 127/8 addresses standing for
other hosts. Each daemon delivers into NAME-mail/<domain>/<local> of the
temporary directory; every message a daemon acknowledges is recorded and
checked on disk at once and again at the end (mail_ledger: one complete
copy per recipient, nothing unacknowledged, tmp/ empty). Run as root,
every daemon switches to nobody:nogroup once it has bound its ports
(porterd's privilege drop), so the Maildir roots are given to nobody;
the privilege, chroot, pidfile and -d tests check that. One line per
test (`ok NAME`, `FAIL NAME: reason`, `skip NAME: reason`), then
`integration: N passed, M failed`; the exit status is 1 if any failed.

Python 3 standard library only. Every socket read has a deadline and
every test a time limit, so a hung daemon fails the run instead of
hanging it.
"""
import sys

sys.dont_write_bytecode = True  # keep tests/integration free of __pycache__

import argparse
import ctypes
import email.message
import email.utils
import grp
import importlib
import os
import pwd
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

from harness import (QUEUED, RECEIVED_DATE, SANITIZER_MARKERS, STOP_TIMEOUT, Client,
                     Daemon, Failure, MailStore, Runner, check, check_config_ok, check_eq,
                     count_replies, daemon_env, free_port, ipv6_loopback_problem,
                     listen_specs, porterd_check, run_porterd, stop_ok, vm_rss_kb)

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
l\u00e4ste                  list     jones, far@elsewhere.example
"""
TABLE_ENTRIES = sum(1 for line in TABLE.splitlines()
                    if line and not line[0].isspace() and not line.startswith("#"))


def config_text(port, with_ipv6, table="directory.table", maildir="mail/%d/%u",
                extra=(), directories=None):
    """A config; extra is more directive lines (none given above: a
    directive given twice is an error; vrfy and expn, and the lifted
    limits below, are left out when extra sets them). directories, when
    given, replaces the table line: the words after "directory", one
    string a directive, in chain order."""
    given = {line.split()[0] for line in extra if line.strip()}
    lines = [f"# porterd integration test config, port {port}"]
    lines += [f"listen      {spec}" for spec in listen_specs(port, with_ipv6)]
    lines += [
        f"hostname    {HOSTNAME}",
        "banner      porterd",
        "domains     example.test",
        f"maildir     {maildir}",
    ]
    if directories is None:
        directories = [f"table {table}"]
    lines += [f"directory   {d}" for d in directories]
    # Everything is told to the main daemon's clients; the policy tests
    # set vrfy and expn themselves.
    lines += [f"{key:11} {value}" for key, value in (("vrfy", "on"), ("expn", "on"))
              if key not in given]
    # The suite opens hundreds of connections from 127.0.0.1 and many
    # error-heavy sessions: lift those limits unless a test sets them.
    lines += [f"{key} {value}" for key, value in LIFTED_LIMITS.items() if key not in given]
    lines += [f"{key:11} {value}" for key, value in RUN_AS.items() if key not in given]
    lines += list(extra)
    return "\n".join(lines) + "\n"


LIFTED_LIMITS = {
    "max_clients": "100000",
    "max_clients_per_ip": "100000",
    "error_soft_limit": "1000",
    "error_hard_limit": "1000",
}

# Started as root, porterd switches to its `user` once it has bound its
# ports, and there is no porterd account here: the suite's daemons then
# run as Debian's nobody:nogroup, and what they write must be theirs
# (daemon_owned_dir).
AS_ROOT = os.geteuid() == 0
RUN_AS = {"user": "nobody", "group": "nogroup"} if AS_ROOT else {}


def daemon_owned_dir(path):
    """A directory the daemons may write in: made, and given to
    nobody:nogroup when the suite runs as root."""
    os.makedirs(path, exist_ok=True)
    if AS_ROOT:
        os.chown(path, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)


GREETING = b"220 mail.example.test ESMTP porterd\r\n"
BYE = b"221 2.0.0 Bye\r\n"
OK = b"250 2.0.0 Ok\r\n"


DEFAULT_MAX_SIZE = 10 * 1024 * 1024     # max_message_size 10m, the default


def ehlo_reply(name, addr, size=DEFAULT_MAX_SIZE, vrfy=True, expn=True):
    """The reply to EHLO; vrfy and expn: whether they are advertised."""
    return (f"250-{HOSTNAME} Hello {name} [{addr}]\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-PIPELINING\r\n"
            f"250-SIZE {size}\r\n"
            "250-8BITMIME\r\n"
            "250-SMTPUTF8\r\n"
            + ("250-VRFY\r\n" if vrfy else "")
            + ("250-EXPN\r\n" if expn else "")
            + "250 HELP\r\n").encode()


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
    # SMTPUTF8 is offered now: with the parameter, 8-bit is looked up
    ("vrfy_8bit_smtputf8", b"VRFY <j\xc3\xb6rg@example.test> SMTPUTF8\r\n",
     b"550 5.1.1 <j\xc3\xb6rg@example.test>: no such user here\r\n"),
    ("vrfy_8bit_bare_smtputf8", b"VRFY j\xc3\xb6rg SMTPUTF8\r\n",
     b"550 5.1.1 <j\xc3\xb6rg>: no such user here\r\n"),
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
     b"214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA VRFY EXPN NOOP RSET HELP QUIT\r\n"
     b"214 2.0.0 End of HELP info; see porterd(8)\r\n"),
    ("quit_syntax_501", b"QUIT now\r\n", b"501 5.5.4 Syntax: QUIT\r\n"),
    # the mail commands, out of order on a fresh session
    ("mail_before_helo_503", b"MAIL FROM:<a@example.test>\r\n",
     b"503 5.5.1 Error: send HELO/EHLO first\r\n"),
    ("rcpt_before_mail_503", b"RCPT TO:<jones@example.test>\r\n",
     b"503 5.5.1 Error: need MAIL command\r\n"),
    ("data_before_mail_503", b"DATA\r\n", b"503 5.5.1 Error: need RCPT command\r\n"),
    ("helo_mail_data_503", b"HELO c.example\r\nDATA\r\n",
     b"250 mail.example.test\r\n503 5.5.1 Error: need RCPT command\r\n"),
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
        self.bench = os.path.abspath(args.bench) if args.bench else None
        self.make_vars = args.make_vars.split()
        self.tmp = tempfile.mkdtemp(prefix="porterd-it-")
        self.ipv6_problem = ("--no-ipv6 given" if args.no_ipv6
                             else ipv6_loopback_problem())
        self.ipv6 = self.ipv6_problem is None
        self.daemons = []       # every daemon started, for the final sweep
        self.outputs = []       # (what, text) of short-lived runs to scan
        self.main = None
        self.limit_daemons = {}  # name: Daemon, see limit_daemon()
        self.acked = []         # every message a daemon acknowledged: Acked
        if AS_ROOT:
            os.chmod(self.tmp, 0o711)   # the daemons, as nobody, reach their Maildirs
        with open(os.path.join(self.tmp, "directory.table"), "w", encoding="utf-8") as f:
            f.write(TABLE)

    @property
    def addr(self):
        return ("127.0.0.1", self.main.port)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start_daemon(self, name, nofile=None, extra=(), env=None, directories=None):
        """Write NAME.conf on a free port, start porterd, wait until it
        greets. A port taken in the meantime is retried. Its mail goes
        to NAME-mail/<domain>/<local> (d.store); extra adds config lines,
        env variables to its environment, directories replaces the
        directory line (see config_text)."""
        last = ""
        for attempt in range(3):
            port = free_port(self.ipv6)
            conf = self.path(f"{name}.conf")
            with open(conf, "w") as f:
                f.write(config_text(port, self.ipv6, maildir=f"{name}-mail/%d/%u",
                                    extra=extra, directories=directories))
            d = Daemon(self.binary, conf, self.path(f"{name}.log"), port)
            d.store = MailStore(self.path(f"{name}-mail"))
            daemon_owned_dir(d.store.root)
            d.start(nofile, env)
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


def ask_all(ctx, d, rows, check_reply=None):
    """Each (command, reply) row on one session of daemon d; check_reply,
    when given, is called with what and each reply as well."""
    with session(ctx, ("127.0.0.1", d.port)) as c:
        for cmd, want in rows:
            got = c.cmd(cmd)
            if check_reply is not None:
                check_reply(f"reply to {cmd!r}", got)
            check_eq(got, want, f"reply to {cmd!r}")
        quit_session(c)


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
    # no error replies: 4,000 of them would (rightly) end the session at
    # error_hard_limit, which is not what this test is about
    cycle = [(b"VRFY jones\r\n", JONES), (b"VRFY qsmith\r\n", QSMITH),
             (b"VRFY bob\r\n", FORWARD), (b"NOOP\r\n", OK),
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
    reasons = re.findall(rb"event=disconnect client=127\.0\.0\.1 reason=(\w+)\n",
                         ctx.main.log())
    check(b"eof" in reasons[-5:] and b"error" in reasons[-5:],
          f"disconnect reasons of a FIN and a reset: {reasons[-5:]}")
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


# --- mail: helpers ---------------------------------------------------------------

SENDER = "sender@remote.example"
MAIL_OK = b"250 2.1.0 Ok\r\n"
RCPT_OK = b"250 2.1.5 Ok\r\n"
DATA_GO = b"354 End data with <CR><LF>.<CR><LF>\r\n"
NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
BARE_NEWLINE = b"554 5.6.0 Message contains a bare CR or LF; lines must end in CRLF\r\n"
LONG_DATA_LINE = b"554 5.6.0 Message contains a line longer than 1000 octets\r\n"
SIZE_EXCEEDED = b"552 5.3.4 Message size exceeds fixed limit\r\n"
TOO_MANY_RCPTS = b"452 4.5.3 Error: too many recipients\r\n"
SMALL_MAX_SIZE = 64 * 1024      # the "small" daemon: max_message_size 64k
SMALL_MAX_RCPTS = 3             # and max_recipients 3


class Acked:
    """A message a daemon answered 250 at the end of its data: what must
    be in new/, one complete copy per recipient mailbox, for good."""

    def __init__(self, store, qid, rcpts, body, sender=SENDER,
                 helo="client.example", proto="ESMTP", addr="127.0.0.1"):
        self.store = store
        self.qid = qid
        self.rcpts = sorted(r.lower() for r in rcpts)   # "local@domain" mailboxes
        self.body = body
        self.sender = sender
        self.helo = helo
        self.proto = proto
        self.addr = addr
        self.when = time.time()


def first_difference(got, want):
    i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
             min(len(got), len(want)))
    return (f"{len(got)} octets, want {len(want)}; from octet {i}: "
            f"got {got[max(0, i - 10):i + 30]!r}, want {want[max(0, i - 10):i + 30]!r}")


def delivery_problems(a, index):
    """What is wrong with the copies of acknowledged message a, given
    MailStore.by_qid()."""
    files = index.get(a.qid, [])
    got = sorted(d.mailbox for d in files)
    if got != a.rcpts:
        return [f"id {a.qid}: copies in {got}, want exactly one in each of {a.rcpts}"]
    problems = []
    want_for = a.rcpts[0] if len(a.rcpts) == 1 else None
    for d in files:
        what = f"id {a.qid} in {d.mailbox}"
        for field, got_v, want_v in (("Return-Path", d.sender, a.sender),
                                     ("Received from", d.helo, a.helo),
                                     ("Received address", d.addr, a.addr),
                                     ("Received by", d.host, HOSTNAME),
                                     ("Received with", d.proto, a.proto),
                                     ("Received for", d.for_rcpt, want_for)):
            if got_v != want_v:
                problems.append(f"{what}: {field} {got_v!r}, want {want_v!r}")
        if not RECEIVED_DATE.fullmatch(d.date):
            problems.append(f"{what}: Received date {d.date!r}")
        elif abs(email.utils.parsedate_to_datetime(d.date).timestamp() - a.when) > 10:
            problems.append(f"{what}: Received date {d.date!r} is not the time of delivery")
        if d.body != a.body:
            problems.append(f"{what}: body of {first_difference(d.body, a.body)}")
    return problems


def expect_delivered(ctx, store, qid, rcpts, body, **kw):
    """qid was acknowledged: its copies must be there now (and stay
    there: the ledger test looks again at the end)."""
    a = Acked(store, qid, rcpts, body, **kw)
    ctx.acked.append(a)
    problems = delivery_problems(a, store.by_qid())
    check(not problems, "; ".join(problems[:3]))
    return a


def check_nothing_new(store, before, what):
    new = sorted(store.snapshot() - before)
    check(not new, f"{what}: {len(new)} new files in new/, e.g. {new[:1]}")


def stuffed(body):
    """The DATA text for body (lines ending in CRLF): dot-stuffed, then
    the terminating ".", as a client sends it."""
    lines = body.split(b"\r\n")
    check(lines[-1] == b"", f"test bug: body {body[-20:]!r} does not end in CRLF")
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines[:-1]) + b".\r\n"


def queued_id(reply, what="the reply to the end of the data"):
    m = QUEUED.fullmatch(reply)
    if m is None:
        raise Failure(f"{what}: got {reply!r}, want 250 2.0.0 Ok: queued as <17 hex digits>")
    return m.group(1).decode()


def envelope(rcpts, sender=SENDER, params=""):
    cmds = f"MAIL FROM:<{sender}>{params}\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts)
    return cmds.encode() + b"DATA\r\n", MAIL_OK + RCPT_OK * len(rcpts) + DATA_GO


def start_data(c, rcpts, sender=SENDER):
    """MAIL, RCPT.. and DATA in one write (PIPELINING), up to the 354."""
    data, want = envelope(rcpts, sender)
    c.send(data)
    check_eq(c.replies(len(rcpts) + 2), want, "replies to MAIL, RCPT, DATA")


def send_mail(c, rcpts, body, sender=SENDER):
    """One whole transaction; returns the queue id."""
    start_data(c, rcpts, sender)
    return queued_id(c.cmd(stuffed(body)))


def mail_session(ctx, daemon=None, helo="client.example", size=DEFAULT_MAX_SIZE):
    """A session that has said EHLO."""
    d = daemon or ctx.main
    c = session(ctx, ("127.0.0.1", d.port))
    try:
        check_eq(c.cmd(f"EHLO {helo}\r\n".encode()), ehlo_reply(helo, "127.0.0.1", size),
                 "EHLO reply")
    except BaseException:
        c.close()
        raise
    return c


def no_reply_yet(c, wait=0.15):
    """Nothing has come from the daemon within wait seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(c.sock, selectors.EVENT_READ)
        ready = sel.select(wait)
    if ready:
        c.sock.settimeout(1)
        raise Failure(f"a reply before the end of the data: {c.buf + c.sock.recv(4096)!r}")


def small_daemon(ctx):
    """A second daemon with max_message_size 64k and max_recipients 3,
    started on first use."""
    if getattr(ctx, "small", None) is None:
        ctx.small = ctx.start_daemon("small", extra=[
            f"max_message_size {SMALL_MAX_SIZE // 1024}k",
            f"max_recipients {SMALL_MAX_RCPTS}"])
    return ctx.small


# --- mail: dialogues ----------------------------------------------------------------

HELO_C = (b"HELO c.example\r\n", b"250 mail.example.test\r\n")
HELO_MAIL = (b"HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n",
             b"250 mail.example.test\r\n" + MAIL_OK)

# (name, prelude, data, want): the prelude and its replies first, then
# data in, exactly want out, then a NOOP answered 250 2.0.0 Ok.
MAIL_DIALOGUE = [
    ("mail_null_sender", HELO_C, b"MAIL FROM:<>\r\n", MAIL_OK),
    ("mail_params_accepted", HELO_C,
     b"mail from: <a@remote.example> BODY=8BITMIME SIZE=1000\r\n", MAIL_OK),
    ("mail_body_7bit", HELO_C, b"MAIL FROM:<a@remote.example> body=7bit\r\n", MAIL_OK),
    ("mail_smtputf8", HELO_C, b"MAIL FROM:<a@remote.example> SMTPUTF8\r\n", MAIL_OK),
    ("mail_size_at_limit", HELO_C,
     f"MAIL FROM:<a@remote.example> SIZE={DEFAULT_MAX_SIZE}\r\n".encode(), MAIL_OK),
    ("mail_size_over_552", HELO_C,
     f"MAIL FROM:<a@remote.example> SIZE={DEFAULT_MAX_SIZE + 1}\r\n".encode(),
     SIZE_EXCEEDED),
    ("mail_size_not_number_501", HELO_C, b"MAIL FROM:<a@remote.example> SIZE=ten\r\n",
     b"501 5.5.4 Bad parameter value\r\n"),
    ("mail_body_9bit_501", HELO_C, b"MAIL FROM:<a@remote.example> BODY=9BIT\r\n",
     b"501 5.5.4 Bad parameter value\r\n"),
    ("mail_ret_555", HELO_C, b"MAIL FROM:<a@remote.example> RET=FULL\r\n",
     b"555 5.5.4 Unsupported parameter\r\n"),
    ("mail_no_brackets_501", HELO_C, b"MAIL FROM:a@remote.example\r\n",
     b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    ("mail_to_501", HELO_C, b"MAIL TO:<a@remote.example>\r\n",
     b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    ("mail_bad_address_501", HELO_C, b"MAIL FROM:<a..b@remote.example>\r\n",
     b"501 5.1.7 Bad sender address syntax\r\n"),
    ("mail_local_too_long_553", HELO_C,
     b"MAIL FROM:<" + b"a" * 65 + b"@remote.example>\r\n",
     b"553 5.1.7 Sender address too long\r\n"),
    ("mail_8bit_553", HELO_C, b"MAIL FROM:<j\xc3\xb6rg@remote.example>\r\n", ARG_8BIT),
    ("mail_8bit_smtputf8", HELO_C, b"MAIL FROM:<j\xc3\xb6rg@remote.example> SMTPUTF8\r\n",
     MAIL_OK),
    ("mail_nested_503", HELO_MAIL, b"MAIL FROM:<b@remote.example>\r\n",
     b"503 5.5.1 Error: nested MAIL command\r\n"),
    ("rcpt_user", HELO_MAIL, b"RCPT TO:<jones@example.test>\r\n", RCPT_OK),
    ("rcpt_user_mixed_case", HELO_MAIL, b"RCPT TO:<JONES@Example.TEST>\r\n", RCPT_OK),
    ("rcpt_quoted_local_part", HELO_MAIL, b'RCPT TO:<"jones"@example.test>\r\n', RCPT_OK),
    ("rcpt_postmaster_no_domain", HELO_MAIL, b"RCPT TO:<postmaster>\r\n", RCPT_OK),
    ("rcpt_list", HELO_MAIL, b"RCPT TO:<example-people@example.test>\r\n", RCPT_OK),
    ("rcpt_list_loop", HELO_MAIL, b"RCPT TO:<loop-a@example.test>\r\n", RCPT_OK),
    ("rcpt_unknown_550", HELO_MAIL, b"RCPT TO:<nobody@example.test>\r\n",
     b"550 5.1.1 <nobody@example.test>: no such user here\r\n"),
    ("rcpt_list_no_local_550", HELO_MAIL, b"RCPT TO:<ghosts@example.test>\r\n",
     b"550 5.1.1 <ghosts@example.test>: list has no local members here\r\n"),
    ("rcpt_forward_551", HELO_MAIL, b"RCPT TO:<bob@example.test>\r\n",
     b"551 5.1.6 User not local; please try <bob@elsewhere.example>\r\n"),
    ("rcpt_moved_551", HELO_MAIL, b"RCPT TO:<alice@example.test>\r\n",
     b"551 5.1.6 User not local; please try <alice@newco.example>\r\n"),
    ("rcpt_relay_554", HELO_MAIL, b"RCPT TO:<jones@elsewhere.example>\r\n",
     b"554 5.7.1 <jones@elsewhere.example>: Relay access denied\r\n"),
    ("rcpt_source_route_relay_554", HELO_MAIL,
     b"RCPT TO:<@relay.example:jones@elsewhere.example>\r\n",
     b"554 5.7.1 <jones@elsewhere.example>: Relay access denied\r\n"),
    ("rcpt_null_501", HELO_MAIL, b"RCPT TO:<>\r\n",
     b"501 5.1.3 Bad recipient address syntax\r\n"),
    ("rcpt_notify_555", HELO_MAIL, b"RCPT TO:<jones@example.test> NOTIFY=NEVER\r\n",
     b"555 5.5.4 Unsupported parameter\r\n"),
    ("rcpt_no_brackets_501", HELO_MAIL, b"RCPT TO:jones@example.test\r\n",
     b"501 5.5.4 Syntax: RCPT TO:<address>\r\n"),
    ("rcpt_8bit_without_smtputf8_553", HELO_MAIL, b"RCPT TO:<j\xc3\xb6rg@example.test>\r\n",
     ARG_8BIT),
    ("data_no_valid_rcpt_554", HELO_MAIL,
     b"RCPT TO:<nobody@example.test>\r\nDATA\r\n",
     b"550 5.1.1 <nobody@example.test>: no such user here\r\n"
     b"554 5.5.1 Error: no valid recipients\r\n"),
    ("data_argument_501", HELO_MAIL, b"RCPT TO:<jones@example.test>\r\nDATA now\r\n",
     RCPT_OK + b"501 5.5.4 Syntax: DATA\r\n"),
]


def t_mail_dialogue(ctx, prelude, data, want):
    with session(ctx) as c:
        c.send(prelude[0])
        check_eq(c.replies(count_replies(prelude[1])), prelude[1], "replies to the prelude")
        c.send(data)
        check_eq(c.replies(count_replies(want)), want, f"replies to {data[:80]!r}")
        check_eq(c.cmd(b"NOOP\r\n"), OK, "the NOOP after (in sync)")
        quit_session(c)


# --- mail: swaks --------------------------------------------------------------------

SWAKS_QUEUED = re.compile(rb"\n<-  250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\n")


def swaks(ctx, args, daemon=None):
    d = daemon or ctx.main
    cmd = ["swaks", "--server", f"127.0.0.1:{d.port}", "--timeout", "10",
           "--helo", "swaks.example", "--from", SENDER] + args
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure(f"swaks {' '.join(args)} did not finish in 20 s")
    return r


def swaks_queued(r):
    check_eq(r.returncode, 0, f"swaks exit status (stderr {r.stderr[-200:]!r})")
    m = SWAKS_QUEUED.search(r.stdout)
    check(m is not None, f"no 'queued as' in swaks' transcript: {r.stdout[-300:]!r}")
    return m.group(1).decode()


def swaks_sent_body(out):
    """The message as swaks sent it: its ' -> ' lines after the 354 up
    to the lone '.', dot-stuffing removed, each line ending in CRLF."""
    lines = out.split(b"\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(b"<-  354 ")), None)
    check(start is not None, f"no 354 in swaks' transcript: {out[-300:]!r}")
    body = []
    for line in lines[start + 1:]:
        check(line.startswith(b" -> "), f"unexpected transcript line {line!r} in the data")
        text = line[4:]
        if text.endswith(b"\r"):  # swaks prints what it sent, CR and all
            text = text[:-1]
        if text == b".":
            return b"".join(body)
        body.append((text[1:] if text.startswith(b".") else text) + b"\r\n")
    raise Failure("the data in swaks' transcript has no end")


SWAKS_TEXT = (b"Subject: swaks plain\r\nX-Test: porterd\r\n\r\nline one\r\n"
              b".leading dot\r\n..two dots\r\n.\r\n\tindented\r\nlast line\r\n")


def t_swaks_plain(ctx):
    store = ctx.main.store
    data = SWAKS_TEXT.replace(b"\r\n", b"\n").rstrip(b"\n").decode()
    r = swaks(ctx, ["--to", "jones@example.test", "--data", data])
    qid = swaks_queued(r)
    expect_delivered(ctx, store, qid, ["jones@example.test"], SWAKS_TEXT, helo="swaks.example")
    check_eq(swaks_sent_body(r.stdout), SWAKS_TEXT, "the message in swaks' transcript")
    check(re.search(rb"\n -> \.\.leading dot\r?\n", r.stdout) is not None,
          "swaks did not dot-stuff '.leading dot'")


def t_swaks_helo(ctx):
    """--protocol SMTP: HELO, and the Received line says SMTP."""
    r = swaks(ctx, ["--protocol", "SMTP", "--to", "qsmith@example.test",
                    "--data", "Subject: helo\n\nsent after HELO"])
    qid = swaks_queued(r)
    check(b"\n -> HELO swaks.example\n" in r.stdout, "swaks did not say HELO")
    expect_delivered(ctx, ctx.main.store, qid, ["qsmith@example.test"],
                     b"Subject: helo\r\n\r\nsent after HELO\r\n",
                     helo="swaks.example", proto="SMTP")


def t_swaks_pipeline(ctx):
    r = swaks(ctx, ["--pipeline", "--to", "jones@example.test,qsmith@example.test",
                    "--data", "Subject: pipelined\n\nMAIL RCPT RCPT DATA in one go"])
    qid = swaks_queued(r)
    check(re.search(rb"\n -> MAIL FROM:<[^\n]*>\n -> RCPT TO:<jones@example.test>\n"
                    rb" -> RCPT TO:<qsmith@example.test>\n -> DATA\n", r.stdout) is not None,
          f"swaks did not pipeline MAIL, RCPT, DATA: {r.stdout[:600]!r}")
    expect_delivered(ctx, ctx.main.store, qid, ["jones@example.test", "qsmith@example.test"],
                     b"Subject: pipelined\r\n\r\nMAIL RCPT RCPT DATA in one go\r\n",
                     helo="swaks.example")


EIGHT_BIT = ("Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u20ac 5, "
             "\u65e5\u672c\u8a9e, \U0001F600").encode() + b" latin-1 \xe9t\xe9 \xff\xfe\x80"


def t_swaks_8bit(ctx):
    """A body with UTF-8 and other 8-bit octets, from a file: every octet
    lands unchanged. (This swaks has no way to add BODY=8BITMIME to MAIL:
    smtplib_8bitmime sends that.)"""
    text = (b"Subject: 8-bit\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            b"\r\n" + EIGHT_BIT + b"\r\nsecond line \xc3\xa9\r\n")
    path = ctx.path("swaks-8bit.txt")
    with open(path, "wb") as f:
        f.write(text.replace(b"\r\n", b"\n").rstrip(b"\n"))
    r = swaks(ctx, ["--to", "jones@example.test", "--data", "@" + path])
    qid = swaks_queued(r)
    expect_delivered(ctx, ctx.main.store, qid, ["jones@example.test"], text,
                     helo="swaks.example")
    check_eq(swaks_sent_body(r.stdout), text, "the message in swaks' transcript")


def t_swaks_list(ctx):
    """all-staff (example-people: jones smith qsmith postel@usc-isif; and
    hostmaster) plus jones again: one copy to each local member, none for
    the remote one, which is logged as skipped."""
    store = ctx.main.store
    r = swaks(ctx, ["--to", "all-staff@example.test,jones@example.test",
                    "--data", "Subject: to all staff\n\nhello everyone"])
    qid = swaks_queued(r)
    expect_delivered(ctx, store, qid,
                     ["jones@example.test", "smith@example.test", "qsmith@example.test",
                      "hostmaster@example.test"],
                     b"Subject: to all staff\r\n\r\nhello everyone\r\n", helo="swaks.example")
    check(not any(mb.endswith("@usc-isif.example") for mb in store.mailboxes()),
          f"a Maildir for the remote member: {sorted(store.mailboxes())}")
    ctx.main.wait_log(rb'event=rcpt_skip client=127\.0\.0\.1 list="all-staff@example\.test" '
                      rb'member="postel@usc-isif\.example" reason=remote\n')


def t_swaks_unknown(ctx):
    store = ctx.main.store
    before = store.snapshot()
    r = swaks(ctx, ["--to", "nobody@example.test"])
    check(r.returncode != 0, "swaks exited 0 for an unknown recipient")
    check(b"\n<** 550 5.1.1 <nobody@example.test>: no such user here\n" in r.stdout,
          f"no 550 in swaks' transcript: {r.stdout[-300:]!r}")
    check(b" -> DATA\n" not in r.stdout, "swaks went on to DATA")
    check_nothing_new(store, before, "after the unknown recipient")


def t_swaks_relay(ctx):
    store = ctx.main.store
    before = store.snapshot()
    r = swaks(ctx, ["--to", "someone@elsewhere.example"])
    check(r.returncode != 0, "swaks exited 0 for a relay attempt")
    check(b"\n<** 554 5.7.1 <someone@elsewhere.example>: Relay access denied\n" in r.stdout,
          f"no 554 5.7.1 in swaks' transcript: {r.stdout[-300:]!r}")
    check_nothing_new(store, before, "after the relay attempt")
    check(not any(mb.endswith("@elsewhere.example") for mb in store.mailboxes()),
          f"a Maildir for the relay target: {sorted(store.mailboxes())}")


# --- mail: smtplib ------------------------------------------------------------------

class RecordingSMTP(smtplib.SMTP):
    """smtplib.SMTP that keeps the message its DATA sent and the reply."""
    data_sent = None
    data_reply = None

    def data(self, msg):
        self.data_sent = msg
        self.data_reply = super().data(msg)
        return self.data_reply


def smtplib_client(ctx):
    return RecordingSMTP("127.0.0.1", ctx.main.port, local_hostname="client.example",
                         timeout=5)


def smtplib_sent(s):
    """The message body smtplib sent (it adds a final CRLF if missing) and
    the queue id it was answered."""
    code, text = s.data_reply
    check_eq(code, 250, f"DATA reply code ({text!r})")
    m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-F]{17})", text)
    check(m is not None, f"DATA reply {text!r}")
    body = s.data_sent
    check(isinstance(body, bytes), f"smtplib sent {type(body)}")
    return (body if body.endswith(b"\r\n") else body + b"\r\n"), m.group(1).decode()


def t_smtplib_two_recipients(ctx):
    s = smtplib_client(ctx)
    try:
        msg = (b"From: sender@remote.example\r\nTo: jones, qsmith\r\nSubject: two\r\n\r\n"
               b"one message, two recipients\r\n")
        check_eq(s.sendmail(SENDER, ["jones@example.test", "qsmith@example.test"], msg), {},
                 "refused recipients")
        body, qid = smtplib_sent(s)
        check_eq(body, msg, "what smtplib sent")
        s.quit()
    finally:
        s.close()
    expect_delivered(ctx, ctx.main.store, qid, ["jones@example.test", "qsmith@example.test"],
                     msg)


def t_smtplib_dot_lines(ctx):
    """send_message() with lines that start with dots: smtplib stuffs
    them, the copy on disk has them as written."""
    m = email.message.EmailMessage()
    m["From"] = SENDER
    m["To"] = "anna@example.test"
    m["Subject"] = "dots"
    m.set_content(".leading dot\n..two dots\n.\n...\n. space\nend.\n.\n")
    s = smtplib_client(ctx)
    try:
        check_eq(s.send_message(m), {}, "refused recipients")
        body, qid = smtplib_sent(s)
        s.quit()
    finally:
        s.close()
    for line in (b"\r\n.leading dot\r\n", b"\r\n..two dots\r\n", b"\r\n.\r\n...\r\n",
                 b"\r\n. space\r\n"):
        check(line in body, f"test bug: smtplib's message lacks {line!r}: {body!r}")
    expect_delivered(ctx, ctx.main.store, qid, ["anna@example.test"], body)


def t_smtplib_refused(ctx):
    store = ctx.main.store
    before = store.snapshot()
    s = smtplib_client(ctx)
    try:
        try:
            s.sendmail(SENDER, ["nobody@example.test"], b"Subject: x\r\n\r\nlost\r\n")
        except smtplib.SMTPRecipientsRefused as e:
            check_eq(e.recipients,
                     {"nobody@example.test": (550, b"5.1.1 <nobody@example.test>: "
                                                   b"no such user here")},
                     "refused recipients")
        else:
            raise Failure("no SMTPRecipientsRefused for an unknown user")
        check_nothing_new(store, before, "after SMTPRecipientsRefused")
        # some refused, one taken: the message goes to that one only
        msg = b"Subject: partly refused\r\n\r\nfor boris only\r\n"
        refused = s.sendmail(SENDER, ["nobody@example.test", "boris@example.test",
                                      "alice@example.test", "x@elsewhere.example"], msg)
        check_eq(refused, {
            "nobody@example.test": (550, b"5.1.1 <nobody@example.test>: no such user here"),
            "alice@example.test": (551, b"5.1.6 User not local; please try "
                                        b"<alice@newco.example>"),
            "x@elsewhere.example": (554, b"5.7.1 <x@elsewhere.example>: "
                                         b"Relay access denied")}, "refused recipients")
        body, qid = smtplib_sent(s)
        s.quit()
    finally:
        s.close()
    expect_delivered(ctx, store, qid, ["boris@example.test"], msg)


def t_smtplib_8bitmime(ctx):
    """MAIL ... BODY=8BITMIME and a body of 8-bit octets: unchanged on disk."""
    msg = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + EIGHT_BIT + b"\r\n.\xc3\xa9 dot first\r\n")
    s = smtplib_client(ctx)
    try:
        check_eq(s.sendmail(SENDER, ["jones@example.test"], msg,
                            mail_options=["BODY=8BITMIME"]), {}, "refused recipients")
        body, qid = smtplib_sent(s)
        s.quit()
    finally:
        s.close()
    expect_delivered(ctx, ctx.main.store, qid, ["jones@example.test"], msg)


def t_smtplib_smtputf8(ctx):
    """MAIL ... SMTPUTF8 with a UTF-8 sender: Return-Path keeps it, and the
    Received line says UTF8SMTP (RFC 6531)."""
    sender = "j\u00f6rg@b\u00fccher.example"
    msg = "Subject: utf-8\r\n\r\nvon J\u00f6rg\r\n".encode()
    s = smtplib_client(ctx)
    try:
        check_eq(s.sendmail(sender, ["qsmith@example.test"], msg,
                            mail_options=["SMTPUTF8", "BODY=8BITMIME"]), {},
                 "refused recipients")
        body, qid = smtplib_sent(s)
        s.quit()
    finally:
        s.close()
    expect_delivered(ctx, ctx.main.store, qid, ["qsmith@example.test"], msg, sender=sender,
                     proto="UTF8SMTP")


# --- mail: raw sockets --------------------------------------------------------------

def t_data_dot_stuffing(ctx):
    """Lines of dots, stuffed on the wire, arrive unstuffed; an empty
    message is just the trace fields; a null sender is Return-Path: <>."""
    store = ctx.main.store
    body = (b".\r\n..\r\n...\r\n.x\r\n..x\r\nx.\r\n. \r\n.\t\r\n\r\n \r\n"
            b"a line\r\n.\r\n")
    wire = stuffed(body)
    check(wire.startswith(b"..\r\n...\r\n....\r\n..x\r\n...x\r\nx.\r\n"),
          f"test bug: stuffing {wire!r}")
    with mail_session(ctx) as c:
        qid = send_mail(c, ["jones@example.test"], body)
        expect_delivered(ctx, store, qid, ["jones@example.test"], body)
        # the empty message
        start_data(c, ["jones@example.test"])
        qid = queued_id(c.cmd(b".\r\n"))
        expect_delivered(ctx, store, qid, ["jones@example.test"], b"")
        # the null sender, and <postmaster> without a domain
        qid = send_mail(c, ["postmaster"], b"bounce\r\n", sender="")
        expect_delivered(ctx, store, qid, ["postmaster@example.test"], b"bounce\r\n",
                         sender="")
        quit_session(c)


def t_data_end_split(ctx):
    """The data's end arriving in pieces at awkward places, and
    look-alikes of it split the same way: the daemon answers only after
    the real CRLF.CRLF, never before."""
    store = ctx.main.store
    body = b"Subject: split\r\n\r\nline\r\n.\r\n..\r\n.x\r\nlast\r\n"
    wire = stuffed(body)
    # cuts near the end, in the stuffed look-alikes of the end, everywhere
    n = len(wire)
    fake = wire.index(b"\r\n..\r\n")
    splits = [[n - k] for k in range(1, 8)]
    splits += [[n - 5, n - 4, n - 3, n - 2, n - 1],     # every octet of CRLF.CRLF alone
               [n - 12, n - 9, n - 6],                   # inside the look-alikes
               [fake + i for i in range(1, 6)],
               list(range(1, n))]                        # one octet at a time
    with mail_session(ctx) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for cuts in splits:
            start_data(c, ["anna@example.test"])
            pieces = [wire[a:b] for a, b in zip([0] + cuts, cuts + [n])]
            for piece in pieces[:-1]:
                c.send(piece)
                if len(pieces) < 10:
                    time.sleep(0.02)
            no_reply_yet(c, 0.1)
            c.send(pieces[-1])
            qid = queued_id(c.reply(), f"reply after the data cut at {cuts[:5]}")
            expect_delivered(ctx, store, qid, ["anna@example.test"], body)
        check_eq(c.cmd(b"NOOP\r\n"), OK, "NOOP after (in sync)")
        quit_session(c)


SMUGGLED = (b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<qsmith@example.test>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\nforged\r\n")


def t_data_smuggling(ctx):
    """An end of data made with a bare LF or CR, then commands and a
    second message: all one message, refused once with 554 5.6.0 at the
    real end; nothing is delivered and the session is in sync."""
    store = ctx.main.store
    before = store.snapshot()
    fakes = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\r\r\n",
             b"\n..\n", b"\r\n\n.\r\n"]
    with mail_session(ctx) as c:
        for fake in fakes:
            start_data(c, ["jones@example.test"])
            c.send(b"Subject: first\r\n\r\ntext" + fake + SMUGGLED + b".\r\n")
            check_eq(c.reply(), BARE_NEWLINE, f"the reply to data with {fake!r}")
            check_eq(c.cmd(b"NOOP\r\n"), OK, f"NOOP after {fake!r} (exactly one reply)")
        # the bare newlines alone, no smuggling
        for text in (b"bare LF\n", b"bare CR\rin a line\r\n", b"ends in CR\r"):
            start_data(c, ["jones@example.test"])
            c.send(text + b"\r\n.\r\n")
            check_eq(c.reply(), BARE_NEWLINE, f"the reply to {text!r}")
        check_eq(c.cmd(b"NOOP\r\n"), OK, "NOOP at the end")
        quit_session(c)
    check_nothing_new(store, before, "after the smuggling attempts")
    log = ctx.main.log()
    check(b"evil@remote.example" not in log,
          "the smuggled MAIL FROM was executed (it is in the log)")


def t_data_long_line(ctx):
    """1000 octets with the CRLF is the longest line; the 1001st is
    refused (554 5.6.0) at the end, in sync. A stuffing dot does not count."""
    store = ctx.main.store
    with mail_session(ctx) as c:
        before = store.snapshot()
        start_data(c, ["jones@example.test"])
        c.send(b"x" * 999 + b"\r\n.\r\nNOOP\r\n")
        check_eq(c.replies(2), LONG_DATA_LINE + OK, "replies to a 1001-octet line, NOOP")
        start_data(c, ["jones@example.test"])
        c.send(b"ok\r\n" + b"y" * 5000 + b"\r\nmore\r\n.\r\n")
        check_eq(c.reply(), LONG_DATA_LINE, "reply to a 5002-octet line")
        check_nothing_new(store, before, "after the long lines")
        body = b"x" * 998 + b"\r\n" + b"." + b"y" * 997 + b"\r\n"
        qid = send_mail(c, ["jones@example.test"], body)
        expect_delivered(ctx, store, qid, ["jones@example.test"], body)
        quit_session(c)


def t_large_message(ctx):
    """max_message_size's default, 10m: exactly 10 MiB is taken and lands
    intact; one octet more is refused 552 at the end, in sync."""
    store = ctx.main.store
    line = b"L" * 998 + b"\r\n"
    n, rest = divmod(DEFAULT_MAX_SIZE, len(line))
    body = line * n + b"\r\n" * (rest // 2)
    check_eq(len(body), DEFAULT_MAX_SIZE, "test bug: body size")
    with mail_session(ctx) as c:
        c.timeout = 20
        before = store.snapshot()
        start_data(c, ["qsmith@example.test"])
        c.send(stuffed(body + b"\r\n") + b"NOOP\r\n")
        check_eq(c.replies(2), SIZE_EXCEEDED + OK, "replies to 10 MiB + 2, NOOP")
        check_nothing_new(store, before, "after the refused message")
        qid = send_mail(c, ["qsmith@example.test"], body)
        quit_session(c)
    expect_delivered(ctx, store, qid, ["qsmith@example.test"], body)


def t_default_max_recipients(ctx):
    """max_recipients' default, 100: the same user 100 times is taken, the
    101st RCPT is refused 452, and the user gets one copy."""
    store = ctx.main.store
    with mail_session(ctx) as c:
        c.send(b"MAIL FROM:<a@remote.example>\r\n" + b"RCPT TO:<Jones@example.test>\r\n" * 101
               + b"DATA\r\n")
        check_eq(c.replies(103), MAIL_OK + RCPT_OK * 100 + TOO_MANY_RCPTS + DATA_GO,
                 "replies to MAIL, 101 RCPTs, DATA")
        body = b"Subject: 100 times\r\n\r\none copy\r\n"
        qid = queued_id(c.cmd(stuffed(body)))
        quit_session(c)
    expect_delivered(ctx, store, qid, ["jones@example.test"], body, sender="a@remote.example")


def t_rcpt_skip_log_escaped(ctx):
    """A list whose name is UTF-8 (RCPT with SMTPUTF8) and has a remote
    member: the event=rcpt_skip line escapes the list name like every
    other logged value (no raw 8-bit octets in the log)."""
    d = small_daemon(ctx)
    with mail_session(ctx, d, size=SMALL_MAX_SIZE) as c:
        check_eq(c.cmd(b"MAIL FROM:<a@remote.example> SMTPUTF8\r\n"), MAIL_OK, "MAIL")
        check_eq(c.cmd("RCPT TO:<l\u00e4ste@example.test>\r\n".encode()), RCPT_OK,
                 "RCPT to the UTF-8 list")
        check_eq(c.cmd(b"RSET\r\n"), OK, "RSET")
        quit_session(c)
    d.wait_log(rb'event=rcpt client=127\.0\.0\.1 query="l\\xc3\\xa4ste@example\.test" '
               rb'result=list code=250\n')
    lines = [line for line in d.log().split(b"\n")
             if b"event=rcpt_skip" in line and b"far@elsewhere" in line]
    check_eq(len(lines), 1, f"event=rcpt_skip lines ({lines})")
    want = (b'event=rcpt_skip client=127.0.0.1 list="l\\xc3\\xa4ste@example.test" '
            b'member="far@elsewhere.example" reason=remote')
    check(not any(b >= 0x80 for b in lines[0]), f"raw 8-bit in {lines[0]!r}")
    check(lines[0].endswith(want), f"log line {lines[0]!r}, want it to end {want!r}")


def t_rset_between(ctx):
    """RSET and HELO end a transaction: its recipients get nothing."""
    store = ctx.main.store
    before = store.snapshot()
    with mail_session(ctx) as c:
        c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<anna@example.test>\r\nRSET\r\n"
               b"RCPT TO:<boris@example.test>\r\nDATA\r\n")
        check_eq(c.replies(5), MAIL_OK + RCPT_OK + OK + NEED_MAIL + NEED_RCPT,
                 "replies around RSET")
        c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<anna@example.test>\r\n"
               b"EHLO again.example\r\nDATA\r\n")
        check_eq(c.replies(4), MAIL_OK + RCPT_OK + ehlo_reply("again.example", "127.0.0.1")
                 + NEED_RCPT, "replies around a second EHLO")
        check_nothing_new(store, before, "after RSET")
        qid = send_mail(c, ["boris@example.test"], b"after RSET\r\n")
        check_eq(c.cmd(b"RSET\r\n"), OK, "RSET after a message")
        qid2 = send_mail(c, ["boris@example.test"], b"after RSET again\r\n")
        quit_session(c)
    check(qid != qid2, f"two messages with id {qid}")
    expect_delivered(ctx, store, qid, ["boris@example.test"], b"after RSET\r\n",
                     helo="again.example")
    expect_delivered(ctx, store, qid2, ["boris@example.test"], b"after RSET again\r\n",
                     helo="again.example")
    check_eq(len(store.snapshot() - before), 2, "files delivered")


def t_pipelined_transactions(ctx):
    """Whole transactions, data and QUIT included, in one write."""
    store = ctx.main.store
    b1 = b"Subject: p1\r\n\r\nfirst\r\n"
    b2 = b"Subject: p2\r\n\r\n.second\r\n"
    batch = (b"EHLO pipe.example\r\n"
             b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<anna@example.test>\r\n"
             b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<boris@example.test>\r\nDATA\r\n"
             + stuffed(b1) +
             b"MAIL FROM:<b@remote.example> SIZE=100\r\nRCPT TO:<jones@example.test>\r\n"
             b"DATA\r\n" + stuffed(b2) + b"NOOP\r\nQUIT\r\n")
    with session(ctx) as c:
        c.send(batch)
        got = c.read_to_eof()
    m = re.fullmatch(re.escape(ehlo_reply("pipe.example", "127.0.0.1") + MAIL_OK + RCPT_OK
                               + b"550 5.1.1 <nobody@example.test>: no such user here\r\n"
                               + RCPT_OK + DATA_GO)
                     + rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\r\n"
                     + re.escape(MAIL_OK + RCPT_OK + DATA_GO)
                     + rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\r\n"
                     + re.escape(OK + BYE), got)
    check(m is not None, f"replies to the batch: {got!r}")
    q1, q2 = (g.decode() for g in m.groups())
    expect_delivered(ctx, store, q1, ["anna@example.test", "boris@example.test"], b1,
                     sender="a@remote.example", helo="pipe.example")
    expect_delivered(ctx, store, q2, ["jones@example.test"], b2,
                     sender="b@remote.example", helo="pipe.example")


def t_many_in_one_session(ctx):
    store = ctx.main.store
    rcpts = ["anna@example.test", "boris@example.test", "nameless@example.test"]
    sent = []
    with mail_session(ctx) as c:
        for i in range(50):
            rcpt = [rcpts[i % 3]] if i % 5 else rcpts
            body = f"Subject: number {i}\r\n\r\nmessage {i} of 50\r\n".encode()
            sent.append((send_mail(c, rcpt, body), rcpt, body))
        quit_session(c)
    qids = [q for q, _, _ in sent]
    check_eq(len(set(qids)), 50, "distinct queue ids")
    for qid, rcpt, body in sent:
        expect_delivered(ctx, store, qid, rcpt, body)


def t_concurrent_senders(ctx):
    """20 sessions at once, each sending 10 messages: 200 files, one per
    acknowledged message."""
    store = ctx.main.store
    before = store.snapshot()
    rcpts = ["anna@example.test", "boris@example.test", "hostmaster@example.test",
             "abuse@example.test"]
    results, errors = [], []

    def sender(t):
        try:
            c = Client(ctx.addr, timeout=15)
            try:
                check_eq(c.reply(), GREETING, "greeting")
                helo = f"c{t}.example"
                check_eq(c.cmd(f"EHLO {helo}\r\n".encode()), ehlo_reply(helo, "127.0.0.1"),
                         "EHLO")
                for i in range(10):
                    rcpt = rcpts[(t + i) % len(rcpts)]
                    body = f"Subject: {t}/{i}\r\n\r\nthread {t} message {i}\r\n".encode()
                    results.append((send_mail(c, [rcpt], body), rcpt, body, helo))
                quit_session(c)
            finally:
                c.close()
        except Exception as e:
            errors.append(f"sender {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(20)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 25
    for th in threads:
        th.join(max(0.1, deadline - time.monotonic()))
    check(not any(th.is_alive() for th in threads), "senders still running after 25 s")
    check(not errors, f"{len(errors)} senders failed: {'; '.join(errors[:2])}")
    check_eq(len(results), 200, "messages acknowledged")
    check_eq(len({q for q, _, _, _ in results}), 200, "distinct queue ids")
    for qid, rcpt, body, helo in results:
        expect_delivered(ctx, store, qid, [rcpt], body, helo=helo)
    check_eq(len(store.snapshot() - before), 200, "files delivered")


# --- mail: limits (the "small" daemon) -----------------------------------------------

def t_oversize(ctx):
    d = small_daemon(ctx)
    store = d.store
    before = store.snapshot()
    with mail_session(ctx, d, size=SMALL_MAX_SIZE) as c:
        c.send(f"MAIL FROM:<a@remote.example> SIZE={SMALL_MAX_SIZE + 1}\r\n".encode())
        check_eq(c.reply(), SIZE_EXCEEDED, "MAIL with SIZE over the limit")
        check_eq(c.cmd(f"MAIL FROM:<a@remote.example> SIZE={SMALL_MAX_SIZE}\r\n".encode()),
                 MAIL_OK, "MAIL with SIZE at the limit")
        check_eq(c.cmd(b"RSET\r\n"), OK, "RSET")
        # 100 kB with no SIZE: read to its end, then 552, and in sync
        big = (b"z" * 78 + b"\r\n") * 1280
        start_data(c, ["jones@example.test"])
        c.send(big)
        no_reply_yet(c, 0.2)
        c.send(b".\r\nNOOP\r\n")
        check_eq(c.replies(2), SIZE_EXCEEDED + OK, "replies to 100 kB, then NOOP")
        # exactly the limit, and one octet more
        line = b"w" * 98 + b"\r\n"
        at_limit = line * (SMALL_MAX_SIZE // 100) + b"v" * (SMALL_MAX_SIZE % 100 - 2) + b"\r\n"
        check_eq(len(at_limit), SMALL_MAX_SIZE, "test bug: body size")
        start_data(c, ["jones@example.test"])
        c.send(stuffed(at_limit[:-2] + b"v\r\n"))
        check_eq(c.reply(), SIZE_EXCEEDED, f"reply to {SMALL_MAX_SIZE + 1} octets")
        check_nothing_new(store, before, "after the refused messages")
        qid = send_mail(c, ["jones@example.test"], at_limit)
        quit_session(c)
    expect_delivered(ctx, store, qid, ["jones@example.test"], at_limit)
    d.wait_log(rb"event=message client=127\.0\.0\.1 refused=552\n", count=2)


def t_too_many_recipients(ctx):
    """max_recipients 3: the fourth accepted RCPT is refused 452; a
    refused RCPT does not count, a list counts once."""
    d = small_daemon(ctx)
    with mail_session(ctx, d, size=SMALL_MAX_SIZE) as c:
        c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<anna@example.test>\r\n"
               b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<example-people@example.test>\r\n"
               b"RCPT TO:<boris@example.test>\r\nRCPT TO:<abuse@example.test>\r\nDATA\r\n")
        check_eq(c.replies(7), MAIL_OK + RCPT_OK
                 + b"550 5.1.1 <nobody@example.test>: no such user here\r\n"
                 + RCPT_OK + RCPT_OK + TOO_MANY_RCPTS + DATA_GO, "replies")
        body = b"Subject: limited\r\n\r\nthree RCPTs, five mailboxes\r\n"
        qid = queued_id(c.cmd(stuffed(body)))
        check_eq(c.cmd(b"MAIL FROM:<a@remote.example>\r\n"), MAIL_OK, "the next MAIL")
        check_eq(c.cmd(b"RCPT TO:<abuse@example.test>\r\n"), RCPT_OK,
                 "RCPT in the next transaction (the count starts afresh)")
        quit_session(c)
    expect_delivered(ctx, d.store, qid,
                     ["anna@example.test", "jones@example.test", "smith@example.test",
                      "qsmith@example.test", "boris@example.test"], body,
                     sender="a@remote.example")


def t_delivery_failure_undone(ctx):
    """A recipient whose Maildir cannot be made (a file is in its place):
    451 4.3.0, and the copy already made for the other recipient is
    removed as well (the client will send again); once the way is clear,
    the same message goes through."""
    d = small_daemon(ctx)
    store = d.store
    blocker = os.path.join(store.root, "example.test", "postmaster")
    daemon_owned_dir(os.path.dirname(blocker))
    body = b"Subject: blocked\r\n\r\nanna first, then postmaster fails\r\n"
    with open(blocker, "w") as f:
        f.write("not a Maildir\n")
    try:
        before = store.snapshot()
        with mail_session(ctx, d, size=SMALL_MAX_SIZE) as c:
            start_data(c, ["anna@example.test", "postmaster"])
            check_eq(c.cmd(stuffed(body)),
                     b"451 4.3.0 Error: cannot deliver now; try again later\r\n",
                     "reply when a copy cannot be written")
            check_eq(c.cmd(b"NOOP\r\n"), OK, "NOOP after (in sync)")
            check_nothing_new(store, before, "after the failed delivery")
            check_eq(store.files("tmp"), [], "files left in tmp/")
            d.wait_log(rb'event=delivery_failed id=[0-9A-F]{17} rcpt="postmaster@example\.test" '
                       rb'error="[^"]*/postmaster[/a-zA-Z0-9.]*: Not a directory"\n')
            d.wait_log(rb'event=delivery_failed id=[0-9A-F]{17} rcpt="anna@example\.test" '
                       rb'error="copy removed: another recipient failed"\n')
            d.wait_log(rb"event=message client=127\.0\.0\.1 id=[0-9A-F]{17} size=\d+ rcpts=2 "
                       rb"code=451\n")
            os.unlink(blocker)
            qid = send_mail(c, ["anna@example.test", "postmaster"], body)
            quit_session(c)
    finally:
        if os.path.isfile(blocker):
            os.unlink(blocker)
    expect_delivered(ctx, store, qid, ["anna@example.test", "postmaster@example.test"], body)


def t_abrupt_during_data(ctx):
    """Clients that vanish inside DATA, or right after the final dot
    without reading the reply: the daemon goes on serving, leaves no
    partial file and nothing in tmp/. (A message whose reply was never
    read may or may not be delivered, but if it is, it is whole.)"""
    d = ctx.start_daemon("abrupt")
    store = d.store
    whole = b"Subject: gone\r\n\r\nMARK-W sent whole, reply not read\r\n"
    try:
        with mail_session(ctx, d) as c:             # half a message, then RST
            start_data(c, ["jones@example.test"])
            c.send(b"Subject: half\r\n\r\nMARK-H " + b"h" * 5000)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        with mail_session(ctx, d) as c:             # whole message, then RST
            start_data(c, ["jones@example.test"])
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
            c.send(stuffed(whole))
        with mail_session(ctx, d) as c:             # whole message and QUIT, then FIN
            start_data(c, ["qsmith@example.test"])
            c.send(stuffed(whole) + b"QUIT\r\n")
        with mail_session(ctx, d) as c:             # half a message, then FIN
            start_data(c, ["jones@example.test"])
            c.send(b"Subject: half\r\n\r\nMARK-H\r\n.")
        d.wait_log(rb"event=disconnect", count=5)   # 4 and wait_ready's
        with mail_session(ctx, d) as c:
            body = b"Subject: after\r\n\r\nthe daemon still delivers\r\n"
            qid = send_mail(c, ["anna@example.test"], body)
            quit_session(c)
    finally:
        rc = d.stop()
    check(not d.killed, "the daemon did not exit within 10 s of SIGTERM")
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")
    expect_delivered(ctx, store, qid, ["anna@example.test"], body)
    for x in store.delivered():
        check(x.ok, f"{x.path}: not a whole porterd message: {x.data[:80]!r}")
        check(b"MARK-H" not in x.data, f"{x.path}: a message that never ended was delivered")
        check(x.qid == qid or x.body == whole, f"{x.path}: unexpected file {x.data[:120]!r}")
    check_eq(store.files("tmp"), [], "files left in tmp/")


def t_half_close_after_data(ctx):
    """A client that sends a whole message and shuts down its side (TCP
    half-close) still gets the reply to it, as it does for other
    commands (half_close): with QUIT after the data, and without."""
    d = ctx.start_daemon("halfclose")
    store = d.store
    body = b"Subject: half-close\r\n\r\nMARK-Q then QUIT and FIN\r\n"
    try:
        with mail_session(ctx, d) as c:
            data, want = envelope(["jones@example.test"])
            c.send(data + stuffed(body) + b"QUIT\r\n")
            c.sock.shutdown(socket.SHUT_WR)
            got = c.read_to_eof()
            m = re.fullmatch(re.escape(want) + rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\r\n"
                             + re.escape(BYE), got)
            check(m is not None, f"replies to a message, QUIT and FIN: {got!r}")
            expect_delivered(ctx, store, m.group(1).decode(), ["jones@example.test"], body)
        body2 = b"Subject: half-close\r\n\r\nMARK-F then FIN, no QUIT\r\n"
        with mail_session(ctx, d) as c:
            data, want = envelope(["qsmith@example.test"])
            c.send(data + stuffed(body2))
            c.sock.shutdown(socket.SHUT_WR)
            got = c.read_to_eof()
        m = re.fullmatch(re.escape(want) + rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\r\n", got)
        check(m is not None, f"replies to a message and FIN, no QUIT: {got!r}")
        expect_delivered(ctx, store, m.group(1).decode(), ["qsmith@example.test"], body2)
    finally:
        rc = d.stop()
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")


def t_ipv6_mail(ctx):
    """A message over [::1]: the Received line names [IPv6:::1] (RFC 5321 4.1.3)."""
    store = ctx.main.store
    body = b"Subject: over IPv6\r\n\r\nfrom ::1\r\n"
    with session(ctx, ("::1", ctx.main.port)) as c:
        check_eq(c.cmd(b"EHLO v6.example\r\n"), ehlo_reply("v6.example", "::1"), "EHLO over ::1")
        qid = send_mail(c, ["anna@example.test"], body)
        quit_session(c)
    expect_delivered(ctx, store, qid, ["anna@example.test"], body, helo="v6.example",
                     addr="IPv6:::1")


# --- mail: stopping ------------------------------------------------------------------

def t_sigterm_during_data(ctx):
    """SIGTERM while sessions are inside DATA: each message under way is
    read to its end, delivered and answered 250, then 421 and close; an
    idle session gets its 421 at once; a command pipelined behind a
    message is not run; a message never finished is cut off after
    shutdown_timeout with nothing of it on disk; the daemon exits 0."""
    d = ctx.start_daemon("sigterm-data", extra=("shutdown_timeout 3s",))
    store = d.store
    acked_body = b"Subject: before\r\n\r\nacknowledged before the signal\r\n"
    b_body = b"Subject: partial\r\n\r\nMARK-B half a line, finished after the signal\r\n"
    c_body = b"Subject: almost\r\n\r\n" + b"MARK-C\r\n" * 100
    e_body = b"Subject: racing\r\n\r\nMARK-E sent just before the signal\r\n"
    clients = []
    try:
        a = mail_session(ctx, d)
        clients.append(a)
        qid = send_mail(a, ["jones@example.test"], acked_body)
        expect_delivered(ctx, store, qid, ["jones@example.test"], acked_body)
        b = mail_session(ctx, d)                       # half a line of data
        clients.append(b)
        start_data(b, ["qsmith@example.test"])
        b_text = stuffed(b_body)
        b.send(b_text[:40])
        c = mail_session(ctx, d)                       # all but the last octet
        clients.append(c)
        start_data(c, ["anna@example.test", "boris@example.test"])
        c_text = stuffed(c_body)
        c.send(c_text[:-1])
        e = mail_session(ctx, d)                       # whole, with a NOOP behind
        clients.append(e)
        start_data(e, ["abuse@example.test"])
        f = mail_session(ctx, d)                       # never finished
        clients.append(f)
        start_data(f, ["hostmaster@example.test"])
        f.send(b"Subject: never\r\n\r\nMARK-F never finished\r\n")
        time.sleep(0.3)   # the daemon has read what was sent
        e.send(stuffed(e_body) + b"NOOP\r\n")
        d.send_signal(signal.SIGTERM)
        check_eq(a.read_to_eof(), SHUTDOWN, "what the idle session reads")
        d.wait_log(rb"event=shutdown signal=TERM")
        no_reply_yet(b)
        no_reply_yet(c)
        b.send(b_text[40:])
        c.send(c_text[-1:])
        for cl, body, rcpts, what in ((b, b_body, ["qsmith@example.test"], "half a line"),
                                      (c, c_body, ["anna@example.test", "boris@example.test"],
                                       "all but one octet"),
                                      (e, e_body, ["abuse@example.test"], "racing")):
            got = cl.read_to_eof()
            m = re.fullmatch(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\r\n" + re.escape(SHUTDOWN),
                             got)
            check(m is not None, f"what the session with {what} reads: {got!r}")
            expect_delivered(ctx, store, m.group(1).decode(), rcpts, body)
        t0 = time.monotonic()
        f_got = f.read_to_eof(timeout=10)
        took = time.monotonic() - t0
        check_eq(f_got, SHUTDOWN, "what the unfinished message's session reads at the end")
        check(took < 5, f"the unfinished message was cut off {took:.1f} s later")
    finally:
        for cl in clients:
            cl.close()
        rc = d.stop()
    check(not d.killed, "the daemon did not exit within 10 s of SIGTERM")
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")
    check(b"event=shutdown_grace_expired open=1\n" in d.log(), "no grace expiry logged")
    # on disk: the four acknowledged messages, nothing of F, tmp/ empty
    for x in store.delivered():
        check(x.ok, f"{x.path}: not a whole porterd message: {x.data[:80]!r}")
        check(b"MARK-F" not in x.data, f"{x.path}: the unfinished message was delivered")
    check_eq(store.files("tmp"), [], "files left in tmp/")


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def t_crash_before_link(ctx):
    """A daemon killed (-9) between writing a copy in tmp/ and linking it
    into new/ (PORTERD_TEST_DELIVERY_PAUSE stops it there): the client
    has no 250, and new/ has nothing, in particular nothing partial."""
    d = ctx.start_daemon("crash", env={"PORTERD_TEST_DELIVERY_PAUSE": "1"})
    store = d.store
    body = b"Subject: crash\r\n\r\nnever acknowledged\r\n"
    try:
        with mail_session(ctx, d) as c:
            start_data(c, ["jones@example.test"])
            c.send(stuffed(body))
            deadline = time.monotonic() + 5
            while proc_state(d.pid) != "T":
                check(time.monotonic() < deadline,
                      f"the daemon did not stop itself before link (state {proc_state(d.pid)})")
                time.sleep(0.02)
            d.kill()
            try:
                got = c.read_to_eof()
            except ConnectionResetError:
                got = b""
            check_eq(got, b"", "what the client reads from the killed daemon")
    finally:
        d.kill()
    check_eq(d.proc.returncode, -signal.SIGKILL, "exit status")
    check_eq(store.files("new"), [], "files in new/")
    tmp = store.files("tmp")
    check_eq(len(tmp), 1, f"files in tmp/ ({tmp})")
    with open(tmp[0][1], "rb") as f:
        left = f.read()
    check(left.endswith(b"\r\n" + body), f"the tmp/ copy is not whole: {left[-80:]!r}")


# --- mail: the ledger ----------------------------------------------------------------

def t_mail_ledger(ctx):
    """After the daemons stopped: every message acknowledged is in new/,
    exactly one complete copy per recipient; new/ has nothing that was not
    acknowledged; tmp/ and cur/ are empty; the log tells the same story."""
    daemons = [d for d in (ctx.main, getattr(ctx, "small", None)) if d is not None]
    problems = []
    total = 0
    for d in daemons:
        name = os.path.basename(d.log_path)
        check(d.proc.poll() is not None, f"{name}: still running")
        acked = [a for a in ctx.acked if a.store is d.store]
        total += len(acked)
        qids = [a.qid for a in acked]
        if len(set(qids)) != len(qids):
            problems.append(f"{name}: a queue id acknowledged twice")
        index = d.store.by_qid()
        for x in index.pop(None, []):
            problems.append(f"{x.path}: not a porterd message: {x.data[:80]!r}")
        for a in acked:
            problems += delivery_problems(a, index)
        for q in sorted(set(index) - set(qids)):
            problems.append(f"{name}: id {q} in {[x.mailbox for x in index[q]]} "
                            f"never acknowledged")
        for sub in ("tmp", "cur"):
            left = d.store.files(sub)
            if left:
                problems.append(f"{name}: {len(left)} files in {sub}/, e.g. {left[0][1]}")
        log = d.log()
        for a in acked:
            line = (f"event=message client={a.addr.removeprefix('IPv6:')} id={a.qid} size={len(a.body)} "
                    f"rcpts={len(a.rcpts)} code=250\n").encode()
            if line not in log:
                problems.append(f"{name}: no log line {line!r}")
        files = d.store.delivered()
        for x in files:
            line = f'event=delivered id={x.qid} rcpt="{x.mailbox}" path="{x.path}"\n'
            if line.encode() not in log:
                problems.append(f"{name}: no log line {line!r}")
        n = len(re.findall(rb"event=delivered ", log))
        if n != len(files):
            problems.append(f"{name}: {n} event=delivered lines for {len(files)} files")
    check(not problems, f"{len(problems)} problems: " + "; ".join(problems[:3]))
    check(total >= 250, f"only {total} acknowledged messages in the ledger")


def t_small_daemon_exit(ctx):
    stop_ok(small_daemon(ctx))


# --- the command line ---------------------------------------------------------

def t_check_good(ctx):
    conf = ctx.main.config
    r = run_porterd(ctx, ["-t", "-c", conf], "-t good")
    check_config_ok(r, conf, TABLE_ENTRIES)


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


def check_config_error(ctx, name, maildir="mail/%d/%u", extra=(), message=""):
    conf, r = porterd_check(ctx, name, config_text(9, False, maildir=maildir, extra=extra))
    check_eq(r.returncode, 1, f"exit status (stdout {r.stdout!r})")
    check(f"porterd: {conf}:".encode() in r.stderr and message.encode() in r.stderr,
          f"stderr {r.stderr!r} does not name {conf} and say {message!r}")


def t_check_maildir_without_u(ctx):
    check_config_error(ctx, "maildir-no-u", maildir="mail/%d",
                       message="maildir: the template has no %u")


def t_check_maildir_bad_escape(ctx):
    check_config_error(ctx, "maildir-escape", maildir="mail/%x/%u",
                       message="maildir: unknown escape '%x'")


def t_check_max_message_size_small(ctx):
    check_config_error(ctx, "size-1023", extra=["max_message_size 1023"],
                       message="max_message_size: '1023' is not a number from 1024")


def t_check_max_recipients_zero(ctx):
    check_config_error(ctx, "rcpts-0", extra=["max_recipients 0"],
                       message="max_recipients: '0' is not a number from 1")


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


def second_daemon_fails(ctx, first, log_name, why):
    """Start another daemon with first's config, which must exit 1 at
    once (why: what it shares with first); returns its log."""
    d = Daemon(ctx.binary, first.config, ctx.path(log_name), first.port)
    d.start()
    ctx.daemons.append(d)
    rc = d.wait_exit(10)
    if rc is None:
        d.stop()
        raise Failure(f"a second daemon with the same {why} kept running")
    text = d.log()
    ctx.outputs.append((f"second daemon, same {why}", text))
    check_eq(rc, 1, f"exit status (log {text!r})")
    return text


def t_second_daemon_same_port(ctx):
    text = second_daemon_fails(ctx, ctx.main, "second.log", "port")
    check(f"127.0.0.1:{ctx.main.port}".encode() in text,
          f"the message does not name the address: {text!r}")
    answers_fresh_session(ctx, "the first daemon")


# --- running as a system daemon ----------------------------------------------
#
# Privileges, pidfile, -d and syslog. A daemon that detaches (-d) is no
# child of the runner: the runner makes itself the subreaper while it
# starts one, so the daemon is handed to it, not to init, and is reaped
# here with its exit status; it is stopped by the pid in its pidfile.

NOBODY_IDS = {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4, "Groups": ["65534"]}
PR_SET_CHILD_SUBREAPER = 36


def status_ids(path):
    """The Uid, Gid and Groups lines of a /proc status file, split."""
    ids = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in NOBODY_IDS:
                ids[key] = value.split()
    return ids


def set_subreaper(on):
    """Orphaned descendants go to this process (on) or to init again
    (off); False when the kernel or libc refuses."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def proc_stat(pid):
    """(command name, state, parent pid) of a process, also of a zombie;
    None when it is gone."""
    try:
        text = read_text(f"/proc/{pid}/stat")
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 1:].split()
    return comm, fields[0], int(fields[1])


def porterd_children(ctx):
    """Pids of porterd processes handed to this one as subreaper, exited
    or not (not the ones it started itself, which subprocess reaps)."""
    mine = {d.proc.pid for d in ctx.daemons if d.proc is not None}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in mine:
            continue
        st = proc_stat(int(name))
        if st is not None and st[0] == "porterd" and st[2] == os.getpid():
            found.append(int(name))
    return found


def reap(pid, timeout=STOP_TIMEOUT):
    """Wait for a child handed over as subreaper; its exit status, or
    None (killed by SIGKILL) when it outlives timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def daemon_config(ctx, name, extra=()):
    """NAME.conf on a free port with NAME-mail for its Maildirs, for a
    daemon not started through ctx.start_daemon(); (path, port)."""
    port = free_port(ctx.ipv6)
    daemon_owned_dir(ctx.path(f"{name}-mail"))
    conf = ctx.path(f"{name}.conf")
    with open(conf, "w") as f:
        f.write(config_text(port, ctx.ipv6, maildir=f"{name}-mail/%d/%u", extra=extra))
    return conf, port


def read_text(path):
    with open(path) as f:
        return f.read()


def t_root_drops_privileges(ctx):
    """Started as root with user nobody and group nogroup: once it
    serves, the process and every thread (the delivery workers were
    started before the switch) run as nobody:nogroup with no other
    group, and mail is still delivered, into files nobody owns."""
    d = ctx.start_daemon("privileges", extra=["user nobody", "group nogroup"])
    try:
        d.wait_log(rb"event=privileges user=nobody uid=65534 group=nogroup gid=65534 "
                   rb"chroot=none\n")
        check_eq(status_ids(f"/proc/{d.pid}/status"), NOBODY_IDS, "ids of the process")
        tasks = sorted(os.listdir(f"/proc/{d.pid}/task"), key=int)
        check(len(tasks) > 1, f"{len(tasks)} task: where are the delivery workers?")
        for task in tasks:
            check_eq(status_ids(f"/proc/{d.pid}/task/{task}/status"), NOBODY_IDS,
                     f"ids of task {task} of {len(tasks)}")
        body = b"Subject: as nobody\r\n\r\ndelivered by an unprivileged porterd\r\n"
        with mail_session(ctx, d) as c:
            qid = send_mail(c, ["jones@example.test"], body)
            quit_session(c)
        expect_delivered(ctx, d.store, qid, ["jones@example.test"], body)
        for m in d.store.by_qid()[qid]:
            check_eq(os.stat(m.path).st_uid, 65534, f"owner of {m.path}")
    finally:
        d.stop()
    check_stopped(d)


def become_nobody():
    os.setgroups([])
    os.setgid(grp.getgrnam("nogroup").gr_gid)
    os.setuid(pwd.getpwnam("nobody").pw_uid)


def t_not_root_keeps_its_user(ctx):
    """Started by someone other than root (nobody, when the suite runs
    as root) on a port over 1024: nothing to drop, it serves as before,
    and a `user` it does not run as is a warning, not an error."""
    conf, port = daemon_config(ctx, "not-root", extra=["user daemon"])
    d = Daemon(ctx.binary, conf, ctx.path("not-root.log"), port)
    with open(d.log_path, "ab") as log:
        d.proc = subprocess.Popen([ctx.binary, "-c", conf], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log, env=daemon_env(), close_fds=True,
                                  preexec_fn=become_nobody if AS_ROOT else None)
    ctx.daemons.append(d)
    try:
        check(d.wait_ready(), f"exited with {d.returncode}: {d.log_tail()}")
        uid = 65534 if AS_ROOT else os.geteuid()
        d.wait_log(rf"porterd: level=warning event=privileges_kept user=daemon uid={uid} "
                   rf"reason=not_started_as_root\n".encode())
        check(b"event=privileges " not in d.log(), "it says it switched to another user")
        check_eq(status_ids(f"/proc/{d.pid}/status")["Uid"], [str(uid)] * 4, "its uid")
        answers_fresh_session_on(ctx, d)
    finally:
        d.stop()
    check_stopped(d)


def t_pidfile_lifecycle(ctx):
    """pidfile: a stale one (no process holds it) is taken over and then
    names the daemon; a second daemon with the same pidfile stops at it
    (exit 1, the holder named, no port bound) while the first serves on;
    SIGTERM removes it. Its directory belongs to nobody: the daemon
    removes it after the switch."""
    rundir = ctx.path("pidfile-run")
    daemon_owned_dir(rundir)
    pidfile = os.path.join(rundir, "porterd.pid")
    with open(pidfile, "w") as f:
        f.write("4194303\n")
    d = ctx.start_daemon("pidfile", extra=["pidfile pidfile-run/porterd.pid"])
    try:
        check_eq(read_text(pidfile), f"{d.pid}\n", "the pidfile")
        text = second_daemon_fails(ctx, d, "pidfile-second.log", "pidfile")
        want = f"porterd: {pidfile}: held by running porterd (pid {d.pid})\n".encode()
        check(want in text, f"the second daemon's log {text!r} lacks {want!r}")
        check(b"event=listen" not in text, "the second daemon bound its ports first")
        check_eq(read_text(pidfile), f"{d.pid}\n", "the pidfile after the second daemon")
        answers_fresh_session_on(ctx, d)
    finally:
        d.stop()
    check_stopped(d)
    check(not os.path.exists(pidfile), "the pidfile is still there after SIGTERM")


def t_daemonize(ctx):
    """-d: the command exits 0, saying nothing, once the daemon serves;
    the pidfile names the daemon, which is neither the command nor a
    session leader; it answers; SIGTERM to the pid in the pidfile stops
    it, exit 0, and the pidfile is gone."""
    rundir = ctx.path("daemonize-run")
    daemon_owned_dir(rundir)
    pidfile = os.path.join(rundir, "porterd.pid")
    conf, port = daemon_config(ctx, "daemonize", extra=["pidfile daemonize-run/porterd.pid"])
    reaper = set_subreaper(True)
    pid = None
    try:
        r = run_porterd(ctx, ["-d", "-c", conf], "-d")
        check_eq((r.returncode, r.stdout, r.stderr), (0, b"", b""),
                 "porterd -d: exit status, stdout, stderr")
        text = read_text(pidfile)
        check(re.fullmatch(r"[1-9][0-9]*\n", text) is not None, f"the pidfile holds {text!r}")
        pid = int(text)
        check_eq(proc_stat(pid)[0], "porterd", f"the process {pid} the pidfile names")
        sid = os.getsid(pid)
        check(sid != pid, "the daemon leads a session (it could get a terminal)")
        check(sid != os.getsid(0), "the daemon is still in the caller's session")
        with session(ctx, ("127.0.0.1", port)) as c:
            check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY jones")
            quit_session(c)
        os.kill(pid, signal.SIGTERM)
        if reaper:
            check_eq(reap(pid), 0, "the daemon's exit status after SIGTERM")
        else:
            wait_gone(pid)
        pid = None
        check(not os.path.exists(pidfile), "the pidfile is still there after SIGTERM")
    finally:
        if pid is not None:
            kill_detached(ctx, pid)
        set_subreaper(False)


def kill_detached(ctx, pid):
    """A detached daemon a test failed to stop: SIGKILL by its pid, and
    reap it when it was handed to this process."""
    if pid in porterd_children(ctx):
        reap(pid, timeout=0)
        return
    st = proc_stat(pid)
    if st is not None and st[0] == "porterd" and st[1] != "Z":
        os.kill(pid, signal.SIGKILL)


def wait_gone(pid, timeout=STOP_TIMEOUT):
    """Without a subreaper: until pid has exited (gone, or a zombie of init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = proc_stat(pid)
        if st is None or st[1] == "Z":
            return
        time.sleep(0.02)
    raise Failure(f"the daemon (pid {pid}) did not exit within {timeout:.0f} s of SIGTERM")


def t_daemonize_errors(ctx):
    """-d that cannot start exits 1 with the error on its stderr: found
    before it detaches (a broken config) or by the daemon after (its
    port is taken; the pidfile it took is removed). -d -f is a usage
    error."""
    bad = ctx.path("daemonize-bad.conf")
    with open(bad, "w") as f:
        f.write("listen 127.0.0.1:9\nfrobnicate yes\ndirectory table directory.table\n")
    r = run_porterd(ctx, ["-d", "-c", bad], "-d bad config")
    check_eq(r.returncode, 1, f"exit status with a broken config (stderr {r.stderr!r})")
    check(f"porterd: {bad}:2: unknown directive 'frobnicate'\n".encode() in r.stderr,
          f"stderr {r.stderr!r}")

    rundir = ctx.path("daemonize-taken-run")
    daemon_owned_dir(rundir)
    conf = ctx.path("daemonize-taken.conf")
    with open(conf, "w") as f:  # the main daemon's port
        f.write(f"listen 127.0.0.1:{ctx.main.port}\nhostname {HOSTNAME}\n"
                "directory table directory.table\nmaildir main-mail/%d/%u\n"
                "pidfile daemonize-taken-run/porterd.pid\n"
                + "".join(f"{key} {value}\n" for key, value in RUN_AS.items()))
    reaper = set_subreaper(True)
    try:
        r = run_porterd(ctx, ["-d", "-c", conf], "-d port taken")
        for pid in porterd_children(ctx) if reaper else ():
            reap(pid)
    finally:
        set_subreaper(False)
    check_eq(r.returncode, 1, f"exit status with the port taken (stderr {r.stderr!r})")
    want = f"porterd: listen 127.0.0.1:{ctx.main.port}: Address already in use\n"
    check(want.encode() in r.stderr, f"stderr {r.stderr!r} lacks {want!r}")
    check_eq(os.listdir(rundir), [], "left in the pidfile's directory")

    r = run_porterd(ctx, ["-d", "-f", "-c", conf], "-d -f")
    check_eq(r.returncode, 1, "exit status of -d -f")
    check(b"porterd: -d and -f exclude each other\n" in r.stderr and b"usage: porterd"
          in r.stderr, f"stderr {r.stderr!r}")
    answers_fresh_session(ctx, "the main daemon")


def t_chroot(ctx):
    """chroot: the daemon serves with its root at DIR (here the test
    directory, which holds its Maildirs: maildir must be inside) and
    delivers by the path inside it. LeakSanitizer needs /proc, which the
    chroot hides, so it is off for this daemon."""
    d = ctx.start_daemon("chroot", extra=[f"chroot {ctx.tmp}"],
                         env={"ASAN_OPTIONS": "detect_leaks=0"})
    try:
        check_eq(os.readlink(f"/proc/{d.pid}/root"), ctx.tmp, "the daemon's root")
        body = b"Subject: chrooted\r\n\r\ndelivered inside the chroot\r\n"
        with mail_session(ctx, d) as c:
            qid = send_mail(c, ["jones@example.test"], body)
            quit_session(c)
        expect_delivered(ctx, d.store, qid, ["jones@example.test"], body)
        d.wait_log(rf'event=delivered id={qid} rcpt="jones@example\.test" '
                   rf'path="/chroot-mail/example\.test/jones/new/'.encode())
    finally:
        d.stop()
    check_stopped(d)


def t_log_syslog(ctx):
    """log syslog: the lines go to /dev/log (for a syslog daemon to
    read, not this test) and nothing to stderr."""
    d = ctx.start_daemon("syslog", extra=["log syslog"])
    try:
        answers_fresh_session_on(ctx, d)
    finally:
        d.stop()
    check_eq((d.returncode, d.log()), (0, b""), "exit status and stderr")


def run_daemon_mode(ctx, runner):
    r = runner.run
    if AS_ROOT:
        r("root_drops_privileges", t_root_drops_privileges, ctx)
        r("chroot", t_chroot, ctx)
    else:
        runner.skip("root_drops_privileges", "not run as root")
        runner.skip("chroot", "not run as root")
    r("not_root_keeps_its_user", t_not_root_keeps_its_user, ctx)
    r("pidfile_lifecycle", t_pidfile_lifecycle, ctx)
    r("daemonize", t_daemonize, ctx)
    r("daemonize_errors", t_daemonize_errors, ctx)
    if os.path.exists("/dev/log"):
        r("log_syslog", t_log_syslog, ctx)
    else:
        runner.skip("log_syslog", "no /dev/log to send to")


# --- privacy and abuse limits -----------------------------------------------------
#
# Each limit is tested on a daemon of its own, configured by extra lines
# on top of config_text() (so the main daemon keeps its LIFTED_LIMITS).
# A daemon with `trusted 127.0.0.1/32` sees a client bound to 127.0.0.2 as
# a stranger: on Linux all of 127/8 is loopback.

CANNOT_VRFY = b"252 2.5.0 Cannot VRFY user; send some mail, I'll try my best\r\n"
VRFY_DISABLED = b"502 5.5.1 VRFY command is disabled\r\n"
EXPN_DISABLED = b"502 5.5.1 EXPN command is disabled\r\n"
EXPN_DENIED = b"550 5.7.1 Access denied to you\r\n"
TOO_MANY_ERRORS = b"421 4.7.0 mail.example.test Error: too many errors\r\n"
TOO_MANY_CONNECTIONS = b"421 4.7.0 mail.example.test Error: too many connections\r\n"
TIMED_OUT = b"421 4.4.2 mail.example.test Error: timeout exceeded\r\n"
POSTMASTER = b"250 2.1.5 Postmaster <postmaster@example.test>\r\n"
HOSTMASTER = b"250 2.1.5 Hostmaster <hostmaster@example.test>\r\n"
ABUSE = b"250 2.1.5 Abuse Desk <abuse@example.test>\r\n"
FRED_SMITH = b"250 2.1.5 Fred Smith <smith@example.test>\r\n"
BOB_EXPANDED = b"250 2.1.5 <bob@elsewhere.example>\r\n"
VRFY_SYNTAX = b"501 5.5.4 Syntax: VRFY address\r\n"
HELO_OK = b"250 mail.example.test\r\n"

UNTRUSTED = "127.0.0.2"     # outside `trusted 127.0.0.1/32`

# Daemons shared by the tests of one kind (their tests change no state
# another depends on); started on first use, stopped by limit_daemons_exit_0.
LIMIT_DAEMONS = {
    "policy-252": ["vrfy 252", "expn off", "trusted 127.0.0.1/32"],
    # the values of vrfy and expn are matched without regard to case
    "policy-off": ["vrfy off", "expn OFF", "trusted 127.0.0.1/32 ::1"],
    "policy-public": ["vrfy 252", "expn off", "trusted 127.0.0.1/32",
                      "public jones smith@example.test"],
    "policy-none": ["vrfy 252", "expn off", "trusted none"],
    "timeouts": ["command_timeout 2s", "data_timeout 2s"],
}

# error_soft_limit 2, error_hard_limit 6, error_delay 1s; VRFY of unknown
# users is the error, and the budget must not get in the way.
TARPIT = ["trusted 127.0.0.1/32", "vrfy on", "error_soft_limit 2", "error_hard_limit 6",
          "error_delay 1s", "vrfy_rate 1000/1m"]


def limit_daemon(ctx, name):
    if name not in ctx.limit_daemons:
        ctx.limit_daemons[name] = ctx.start_daemon(name, extra=LIMIT_DAEMONS[name])
    return ctx.limit_daemons[name]


def own_daemon(ctx, name, extra):
    """A daemon for one test, once wait_ready's session is gone (it would
    count against connection limits)."""
    d = ctx.start_daemon(name, extra=extra)
    try:
        d.wait_log(rb"event=disconnect client=127\.0\.0\.1 reason=quit\n")
    except BaseException:
        d.stop()
        raise
    return d


def check_stopped(d):
    """After d.stop(): it exited 0 by itself, and its log is well formed."""
    check(not d.killed, f"{os.path.basename(d.log_path)}: no exit within 10 s of SIGTERM")
    check_eq(d.returncode, 0, f"exit status (log {d.log_tail()})")
    problems = log_form_problems(d.log())
    check(not problems, "; ".join(problems[:3]))


def limit_session(ctx, d, source=None, host="127.0.0.1", sockopts=()):
    """A session with daemon d from source (an address of 127/8), or over
    host ("::1"), that has read the greeting."""
    c = Client((host, d.port), source=source, sockopts=sockopts)
    try:
        check_eq(c.reply(), GREETING, f"greeting to {source or host}")
    except BaseException:
        c.close()
        raise
    return c


def answers_fresh_session_on(ctx, d):
    with limit_session(ctx, d) as c:
        check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY jones on a fresh session")
        quit_session(c)


def converse(c, exchanges, who):
    """One command at a time, each answered exactly as given."""
    for data, want in exchanges:
        check_eq(c.cmd(data), want, f"{who}: reply to {data!r}")


def check_took(took, low, high, what):
    check(low <= took <= high, f"{what} after {took:.2f} s, want {low:.1f} to {high:.1f} s")


def unknown_user(n):
    return f"550 5.1.1 <nobody{n}>: no such user here\r\n".encode()


# --- VRFY and EXPN policy -----------------------------------------------------------

# What a stranger is told under vrfy 252 and expn off with the default
# public list: the generic 252 for every well-formed request but the
# public addresses, which get the truth; EXPN is disabled.
STRANGER_252 = [
    (b"VRFY jones\r\n", CANNOT_VRFY),
    (b"VRFY <jones@example.test>\r\n", CANNOT_VRFY),
    (b"VRFY Fred Jones\r\n", CANNOT_VRFY),
    (b"VRFY nobody\r\n", CANNOT_VRFY),      # nor whether it is unknown
    (b"VRFY bob\r\n", CANNOT_VRFY),
    (b"VRFY alice\r\n", CANNOT_VRFY),
    (b"VRFY Smith\r\n", CANNOT_VRFY),
    (b"VRFY postmaster\r\n", POSTMASTER),
    (b"VRFY <Postmaster@Example.TEST>\r\n", POSTMASTER),
    (b"VRFY HOSTMASTER\r\n", HOSTMASTER),
    (b"VRFY abuse\r\n", ABUSE),
    (b"VRFY\r\n", VRFY_SYNTAX),
    (b"EXPN example-people\r\n", EXPN_DISABLED),
    (b"EXPN nobody\r\n", EXPN_DISABLED),
    (b"EXPN postmaster\r\n", EXPN_DISABLED),
    (b"NOOP\r\n", OK),
]

# What a trusted client is told on any of the policy daemons.
TRUSTED_TRUTH = [
    (b"VRFY jones\r\n", JONES),
    (b"VRFY nobody\r\n", NOBODY),
    (b"VRFY bob\r\n", FORWARD),
    (b"VRFY postmaster\r\n", POSTMASTER),
    (b"EXPN example-people\r\n", EXAMPLE_PEOPLE),
    (b"EXPN bob\r\n", BOB_EXPANDED),
]


def policy_dialogue(ctx, name, host, source, exchanges, vrfy, expn):
    d = limit_daemon(ctx, name)
    addr = source or host
    with limit_session(ctx, d, source=source, host=host) as c:
        converse(c, [(b"EHLO c.example\r\n", ehlo_reply("c.example", addr, vrfy=vrfy,
                                                         expn=expn))] + exchanges,
                 f"{name} daemon, client {addr}")
        quit_session(c)
    return d


def t_policy_252_trusted(ctx):
    """vrfy 252, expn off, trusted 127.0.0.1/32: 127.0.0.1 is offered
    both and told the truth."""
    policy_dialogue(ctx, "policy-252", "127.0.0.1", None, TRUSTED_TRUTH, True, True)


def t_policy_252_stranger(ctx, host, source):
    """The same daemon to 127.0.0.2 (or ::1): VRFY offered, EXPN not;
    the generic 252 but for the public addresses; EXPN 502."""
    d = policy_dialogue(ctx, "policy-252", host, source, STRANGER_252, True, False)
    addr = re.escape((source or host).encode())
    d.wait_log(rb"event=vrfy client=" + addr + rb' query="postmaster" result=user code=250\n')
    check(not re.search(rb"event=(vrfy|expn) client=" + addr + rb' query="(jones|nobody)"',
                        d.log()), "the directory was asked about jones or nobody for a stranger")


def t_policy_vrfy_off(ctx):
    """vrfy off, expn OFF: a stranger is offered neither; VRFY is 502
    for every argument, public ones and none at all included; a trusted
    client still gets everything."""
    policy_dialogue(ctx, "policy-off", "127.0.0.1", UNTRUSTED, [
        (b"VRFY jones\r\n", VRFY_DISABLED),
        (b"VRFY postmaster\r\n", VRFY_DISABLED),
        (b"VRFY <postmaster@example.test>\r\n", VRFY_DISABLED),
        (b"VRFY abuse\r\n", VRFY_DISABLED),
        (b"VRFY\r\n", VRFY_DISABLED),
        (b"EXPN example-people\r\n", EXPN_DISABLED),
        (b"NOOP\r\n", OK)], False, False)
    policy_dialogue(ctx, "policy-off", "127.0.0.1", None, TRUSTED_TRUTH, True, True)


def t_policy_trusted_ipv6(ctx):
    """trusted 127.0.0.1/32 ::1: a client on ::1 is trusted under vrfy off."""
    policy_dialogue(ctx, "policy-off", "::1", None, TRUSTED_TRUTH, True, True)


def t_policy_public_custom(ctx):
    """public jones smith@example.test replaces the default list: jones in
    any form and smith@example.test are verified for strangers,
    postmaster no longer is; EXPN stays off."""
    policy_dialogue(ctx, "policy-public", "127.0.0.1", UNTRUSTED, [
        (b"VRFY jones\r\n", JONES),
        (b"VRFY <JONES@Example.Test>\r\n", JONES),
        (b"VRFY smith@example.test\r\n", FRED_SMITH),
        (b"VRFY <smith@example.test>\r\n", FRED_SMITH),
        (b"VRFY postmaster\r\n", CANNOT_VRFY),
        (b"VRFY abuse\r\n", CANNOT_VRFY),
        (b"VRFY qsmith\r\n", CANNOT_VRFY),
        (b"VRFY nobody\r\n", CANNOT_VRFY),
        (b"EXPN jones\r\n", EXPN_DISABLED)], True, False)
    policy_dialogue(ctx, "policy-public", "127.0.0.1", None,
                    TRUSTED_TRUTH + [(b"VRFY qsmith\r\n", QSMITH)], True, True)


def t_policy_trusted_none(ctx, host):
    """trusted none: 127.0.0.1 (and ::1) are strangers too."""
    policy_dialogue(ctx, "policy-none", host, None, STRANGER_252, True, False)


# --- the tarpit -------------------------------------------------------------------------

def timed_cmd(c, data, limit=10):
    """Send data, read one reply; (reply, seconds it took)."""
    t = time.monotonic()
    c.send(data)
    got = c.reply(t + limit)
    return got, time.monotonic() - t


def timed_group(c, data, want, limit=12):
    """Send data, read len(want) octets; (what came, seconds to the first
    octet, seconds to the last)."""
    t = time.monotonic()
    c.send(data)
    deadline = t + limit
    c._fill(deadline, "the first reply to the group")
    first = time.monotonic() - t
    while len(c.buf) < len(want):
        c._fill(deadline, f"the replies to the group ({len(want)} octets)")
    got, c.buf = c.buf, b""
    return got, first, time.monotonic() - t


def t_tarpit(ctx):
    """error_soft_limit 2, error_hard_limit 6, error_delay 1s, one error at
    a time from a stranger: errors 1 and 2 at once, 3 after 1 s, 4 after
    2 s, 5 after 3 s, a NOOP between them at once; the 6th is followed by
    421 too many errors and the end."""
    d = ctx.start_daemon("tarpit", extra=TARPIT)
    try:
        with limit_session(ctx, d, source=UNTRUSTED) as c:
            for n in (1, 2):
                got, took = timed_cmd(c, f"VRFY nobody{n}\r\n".encode())
                check_eq(got, unknown_user(n), f"reply to VRFY nobody{n}")
                check(took < 0.5, f"error reply {n} (within the soft limit) after {took:.2f} s")
            for n, delay in ((3, 1), (4, 2), (5, 3)):
                got, took = timed_cmd(c, f"VRFY nobody{n}\r\n".encode())
                check_eq(got, unknown_user(n), f"reply to VRFY nobody{n}")
                check_took(took, 0.8 * delay, delay + 2.5, f"error reply {n}")
                got, took = timed_cmd(c, b"NOOP\r\n")
                check_eq(got, OK, f"reply to the NOOP after error {n}")
                check(took < 0.5, f"the NOOP after error {n} was answered after {took:.2f} s")
            t = time.monotonic()
            c.send(b"VRFY nobody6\r\n")
            check_eq(c.read_to_eof(timeout=10), unknown_user(6) + TOO_MANY_ERRORS,
                     "everything after VRFY nobody6")
            check_took(time.monotonic() - t, 0, 6.5, "error reply 6, the 421 and the end")
        d.wait_log(rb"event=too_many_errors client=127\.0\.0\.2 errors=6\n")
        d.wait_log(rb"event=disconnect client=127\.0\.0\.2 reason=\w+\n")
        with limit_session(ctx, d, source=UNTRUSTED) as c:   # a new session starts afresh
            got, took = timed_cmd(c, b"VRFY nobody1\r\n")
            check_eq(got, unknown_user(1), "VRFY nobody1 on a new session")
            check(took < 0.5, f"the first error of a new session after {took:.2f} s")
            quit_session(c)
    finally:
        d.stop()
    check_stopped(d)


def t_tarpit_pipelined(ctx):
    """Errors pipelined past the soft limit: nothing is read or answered
    while a reply is held; the group's replies leave together, in order,
    after the delays (1 s; then 2 s + 3 s); at the 6th error, 421."""
    d = ctx.start_daemon("tarpit-pipelined", extra=TARPIT)
    try:
        with limit_session(ctx, d, source=UNTRUSTED) as c:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            want = unknown_user(1) + unknown_user(2) + unknown_user(3) + OK
            got, first, last = timed_group(
                c, b"VRFY nobody1\r\nVRFY nobody2\r\nVRFY nobody3\r\nNOOP\r\n", want)
            check_eq(got, want, "replies to 3 errors and a NOOP in one write")
            check_took(first, 0.8, 3.5, "the first reply to the first group")
            check(last - first < 0.25, f"the replies to the first group came apart over "
                                       f"{last - first:.2f} s")
            want = unknown_user(4) + unknown_user(5) + OK
            got, first, last = timed_group(c, b"VRFY nobody4\r\nVRFY nobody5\r\nNOOP\r\n", want)
            check_eq(got, want, "replies to 2 more errors and a NOOP in one write")
            check_took(first, 0.8 * 5, 5 + 3.5, "the first reply to the second group")
            check(last - first < 0.25, f"the replies to the second group came apart over "
                                       f"{last - first:.2f} s")
            c.send(b"VRFY nobody6\r\nNOOP\r\n")
            check_eq(c.read_to_eof(timeout=10), unknown_user(6) + TOO_MANY_ERRORS,
                     "everything after the 6th error (the NOOP unanswered)")
        d.wait_log(rb"event=too_many_errors client=127\.0\.0\.2 errors=6\n")
    finally:
        d.stop()
    check_stopped(d)


def t_tarpit_delay_0(ctx):
    """error_delay 0 disables the delay, not the limits: error_soft_limit
    1, error_hard_limit 4, four errors in one write are answered at once,
    then 421 too many errors and the end."""
    d = ctx.start_daemon("tarpit-0", extra=["trusted 127.0.0.1/32", "vrfy on",
                                            "error_soft_limit 1", "error_hard_limit 4",
                                            "error_delay 0", "vrfy_rate 1000/1m"])
    try:
        with limit_session(ctx, d, source=UNTRUSTED) as c:
            t = time.monotonic()
            c.send(b"".join(f"VRFY nobody{n}\r\n".encode() for n in range(1, 5)) + b"NOOP\r\n")
            check_eq(c.read_to_eof(timeout=5),
                     b"".join(unknown_user(n) for n in range(1, 5)) + TOO_MANY_ERRORS,
                     "everything after 4 errors and a NOOP in one write")
            check(time.monotonic() - t < 0.5, f"the replies took {time.monotonic() - t:.2f} s")
        d.wait_log(rb"event=too_many_errors client=127\.0\.0\.2 errors=4\n")
    finally:
        d.stop()
    check_stopped(d)


# --- the VRFY budget -------------------------------------------------------------------------

def t_vrfy_rate(ctx):
    """vrfy_rate 3/1m: a truthful VRFY, a refused RCPT and a truthful EXPN
    spend a stranger's budget over two sessions (public addresses and
    accepted recipients are free); then VRFY is the generic 252 and EXPN
    550 5.7.1, on a new session too, while postmaster is still verified,
    RCPT still refuses, and 127.0.0.1 (trusted) and 127.0.0.3 (another
    budget) are told the truth."""
    d = ctx.start_daemon("rate", extra=["vrfy on", "expn on", "vrfy_rate 3/1m",
                                        "trusted 127.0.0.1/32"])
    unknown_rcpt = b"550 5.1.1 <nobody@example.test>: no such user here\r\n"
    try:
        with limit_session(ctx, d, source=UNTRUSTED) as c:
            converse(c, [(b"VRFY postmaster\r\n", POSTMASTER)] * 4
                     + [(b"VRFY jones\r\n", JONES)],                          # 1
                     "first session")
            quit_session(c)
        with limit_session(ctx, d, source=UNTRUSTED) as c:
            converse(c, [
                (b"HELO c.example\r\n", HELO_OK),
                (b"MAIL FROM:<a@remote.example>\r\n", MAIL_OK),
                (b"RCPT TO:<jones@example.test>\r\n", RCPT_OK),
                (b"RCPT TO:<postmaster>\r\n", RCPT_OK),
                (b"RCPT TO:<nobody@example.test>\r\n", unknown_rcpt),         # 2
                (b"EXPN bob\r\n", BOB_EXPANDED),                                # 3
                (b"VRFY jones\r\n", CANNOT_VRFY),
                (b"EXPN bob\r\n", EXPN_DENIED),
                (b"VRFY nobody\r\n", CANNOT_VRFY),
                (b"RCPT TO:<nobody@example.test>\r\n", unknown_rcpt),
                (b"RCPT TO:<qsmith@example.test>\r\n", RCPT_OK),
                (b"VRFY postmaster\r\n", POSTMASTER)], "second session")
            quit_session(c)
        with limit_session(ctx, d, source=UNTRUSTED) as c:
            converse(c, [
                (b"VRFY jones\r\n", CANNOT_VRFY),
                (b"VRFY qsmith\r\n", CANNOT_VRFY),
                (b"EXPN example-people\r\n", EXPN_DENIED),
                (b"EXPN bob\r\n", EXPN_DENIED),
                (b"VRFY postmaster\r\n", POSTMASTER),
                (b"VRFY abuse\r\n", ABUSE)], "third session")
            quit_session(c)
        with limit_session(ctx, d) as c:
            converse(c, TRUSTED_TRUTH * 2, "trusted 127.0.0.1")
            quit_session(c)
        with limit_session(ctx, d, source="127.0.0.3") as c:
            converse(c, [(b"VRFY jones\r\n", JONES), (b"EXPN bob\r\n", BOB_EXPANDED)],
                     "127.0.0.3, a budget of its own")
            quit_session(c)
        d.wait_log(rb"event=rate_limited client=127\.0\.0\.2\n", count=5)
        log = d.log()
        for other in (b"127.0.0.1", b"127.0.0.3"):
            check(b"event=rate_limited client=" + other + b"\n" not in log,
                  f"{other.decode()} was rate limited")
    finally:
        d.stop()
    check_stopped(d)


# --- connection limits ------------------------------------------------------------------------

def refused_connection(d, source):
    with Client(("127.0.0.1", d.port), source=source) as c:
        return c.read_to_eof()


def t_max_clients_per_ip(ctx):
    """max_clients_per_ip 3: three sessions from 127.0.0.2, the fourth is
    answered 421 and closed; 127.0.0.1 is still served; once one of the
    three leaves, 127.0.0.2 gets a session again."""
    d = own_daemon(ctx, "per-ip", ["max_clients_per_ip 3"])
    sessions = []
    try:
        for _ in range(3):
            sessions.append(limit_session(ctx, d, source=UNTRUSTED))
        check_eq(refused_connection(d, UNTRUSTED), TOO_MANY_CONNECTIONS,
                 "what the 4th connection from 127.0.0.2 reads")
        d.wait_log(rb"event=refused client=127\.0\.0\.2 reason=max_clients_per_ip\n")
        for c in sessions:
            check_eq(c.cmd(b"NOOP\r\n"), OK, "NOOP on the three sessions")
        with limit_session(ctx, d) as c:
            converse(c, [(b"VRFY jones\r\n", JONES)], "127.0.0.1 meanwhile")
            quit_session(c)
        quit_session(sessions.pop(0))
        sessions.append(limit_session(ctx, d, source=UNTRUSTED))
        check_eq(sessions[-1].cmd(b"VRFY jones\r\n"), JONES, "VRFY on the new session")
        check_eq(refused_connection(d, UNTRUSTED), TOO_MANY_CONNECTIONS,
                 "what a 4th connection from 127.0.0.2 reads again")
        d.wait_log(rb"event=refused client=127\.0\.0\.2 reason=max_clients_per_ip\n", count=2)
        for c in sessions:
            quit_session(c)
        check_eq(d.log().count(b"event=connect client=127.0.0.2\n"), 4,
                 "sessions from 127.0.0.2 in the log")
    finally:
        for c in sessions:
            c.close()
        d.stop()
    check_stopped(d)


def t_max_clients(ctx):
    """max_clients 5: five sessions from three addresses; a sixth from a
    fourth address, or from one already there, is refused; once one
    leaves, a new one is served."""
    d = own_daemon(ctx, "max-clients", ["max_clients 5"])
    sessions = []
    try:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.3", "127.0.0.3", "127.0.0.4"):
            sessions.append(limit_session(ctx, d, source=source))
        for source in ("127.0.0.5", "127.0.0.1"):
            check_eq(refused_connection(d, source), TOO_MANY_CONNECTIONS,
                     f"what a 6th connection, from {source}, reads")
        d.wait_log(rb"event=refused client=127\.0\.0\.[15] reason=max_clients\n", count=2)
        for c in sessions:
            check_eq(c.cmd(b"NOOP\r\n"), OK, "NOOP on the five sessions")
        quit_session(sessions.pop(2))
        sessions.append(limit_session(ctx, d, source="127.0.0.5"))
        check_eq(sessions[-1].cmd(b"VRFY jones\r\n"), JONES, "VRFY on the new session")
        check_eq(refused_connection(d, "127.0.0.6"), TOO_MANY_CONNECTIONS,
                 "what a 6th connection reads again")
        for c in sessions:
            quit_session(c)
    finally:
        for c in sessions:
            c.close()
        d.stop()
    check_stopped(d)


# --- timeouts ------------------------------------------------------------------------------

class Watcher(threading.Thread):
    """Reads a client to its end in the background: what came, and when
    the first octet and the end came."""

    def __init__(self, c, limit=15):
        super().__init__(daemon=True)
        self.c, self.limit = c, limit
        self.data, self.first, self.end, self.error = c.buf, None, None, None

    def run(self):
        s = self.c.sock
        s.settimeout(self.limit)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                if self.first is None:
                    self.first = time.monotonic()
                self.data += chunk
        except OSError as e:
            self.error = e
        self.end = time.monotonic()


def t_command_timeout_idle(ctx):
    """command_timeout 2s: a client that says nothing is answered 421
    4.4.2 after about 2 s and closed; one that sends a whole command every
    second stays well past 2 s, then, idle, gets its 421 2 s after its
    last reply."""
    d = limit_daemon(ctx, "timeouts")
    idle = limit_session(ctx, d, source="127.0.0.3")
    t_idle = time.monotonic()
    watcher = Watcher(idle)
    watcher.start()
    try:
        with limit_session(ctx, d) as c:
            t0 = time.monotonic()
            for i in range(4):
                time.sleep(max(0.0, t0 + i - time.monotonic()))
                check_eq(c.cmd(b"NOOP\r\n"), OK, f"NOOP {i + 1}, at {i} s")
            t_last = time.monotonic()
            check_eq(c.read_to_eof(timeout=8), TIMED_OUT, "what the steady client reads, idle")
            check_took(time.monotonic() - t_last, 1.6, 4.0,
                       "the 421 to the steady client, counted from its last reply,")
        watcher.join(8)
        check(not watcher.is_alive(), "the idle client was not closed")
        check_eq((watcher.data, watcher.error), (TIMED_OUT, None), "what the idle client reads")
        check_took(watcher.first - t_idle, 1.6, 4.0, "the 421 to the idle client")
        check(watcher.end - watcher.first < 0.5, "the idle client's connection stayed open "
                                                 "after the 421")
        d.wait_log(rb"event=disconnect client=127\.0\.0\.3 reason=timeout\n")
    finally:
        idle.close()


def trickle(ctx, d, head, line):
    """Send head at once, then line one octet every 0.5 s, while another
    client does a round trip each time. (seconds to the 421 from the
    greeting, what came, octets of line sent, slowest round trip)."""
    slow = limit_session(ctx, d, source="127.0.0.4")
    t0 = time.monotonic()
    other = limit_session(ctx, d)
    worst = 0.0
    sent = 0
    sel = selectors.DefaultSelector()
    try:
        slow.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if head:
            slow.send(head)
        sel.register(slow.sock, selectors.EVENT_READ)
        while time.monotonic() - t0 < 7:
            if sent < len(line) and time.monotonic() >= t0 + 0.5 * sent:
                try:
                    slow.sock.send(line[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    pass        # closed already: what it said is waiting
                sent += 1
                t = time.monotonic()
                check_eq(other.cmd(b"VRFY jones\r\n"), JONES, "the other client's VRFY")
                worst = max(worst, time.monotonic() - t)
            wait = max(0.0, t0 + 0.5 * sent - time.monotonic()) if sent < len(line) else 0.5
            if sel.select(wait):
                got = slow.read_to_eof(timeout=5)
                return time.monotonic() - t0, got, sent, worst
        return None, slow.buf, sent, worst
    finally:
        sel.close()
        slow.close()
        other.close()


def t_command_timeout_slowloris(ctx):
    """A client trickling a command one octet every 0.5 s gains nothing:
    421 about 2 s after the greeting, long before the line's end; another
    client is served promptly all along."""
    line = b"VRFY jones\r\n"     # whole only after 5.5 s
    took, got, sent, worst = trickle(ctx, limit_daemon(ctx, "timeouts"), b"", line)
    check(took is not None, f"no 421 within 7 s; {sent} octets sent, got {got!r}")
    check_eq(got, TIMED_OUT, "what the trickling client reads")
    check_took(took, 1.6, 4.0, "the 421 to the trickling client")
    check(sent < len(line), "the whole line went out before the 421")
    check(worst < 0.5, f"a round trip of the other client took {worst:.2f} s")


def t_command_timeout_long_line(ctx):
    """The same with an over-long line: 2100 octets without a line end at
    once (more than a command line holds, so the daemon discards as it
    reads), then one more octet every 0.5 s: still 421 about 2 s after
    the greeting; the deadline is per line, however long the line."""
    took, got, sent, worst = trickle(ctx, limit_daemon(ctx, "timeouts"), b"x" * 2100,
                                     b"x" * 20)
    check(took is not None, f"no 421 within 7 s after 2100 octets and one more every 0.5 s "
                            f"({sent} sent): every octet of the discarded line renews the "
                            f"deadline; got {got!r}")
    check_eq(got, TIMED_OUT, "what the trickling client reads")
    check_took(took, 1.6, 4.0, "the 421 to the trickling client")
    check(worst < 0.5, f"a round trip of the other client took {worst:.2f} s")


def t_data_timeout_pause(ctx):
    """data_timeout 2s: a pause of more than 2 s inside DATA gets 421
    4.4.2 and the end; nothing is delivered."""
    d = limit_daemon(ctx, "timeouts")
    before = d.store.snapshot()
    with mail_session(ctx, d) as c:
        start_data(c, ["jones@example.test"])
        c.send(b"Subject: paused\r\n\r\nfirst part, then nothing\r\n")
        t = time.monotonic()
        check_eq(c.read_to_eof(timeout=8), TIMED_OUT, "what a client pausing in DATA reads")
        check_took(time.monotonic() - t, 1.6, 4.0, "the 421 to the pause")
    d.wait_log(rb"event=disconnect client=127\.0\.0\.1 reason=timeout\n")
    check_nothing_new(d.store, before, "after the timeout in DATA")
    check_eq(d.store.files("tmp"), [], "files in tmp/")


def t_data_timeout_steady(ctx):
    """Data arriving every 0.5 s for 4 s, twice data_timeout and
    command_timeout in all: no timeout, and the end of data is answered
    250 and delivered."""
    d = limit_daemon(ctx, "timeouts")
    lines = [b"Subject: steady\r\n", b"\r\n"] + [f"line {i}\r\n".encode() for i in range(7)]
    body = b"".join(lines)
    with mail_session(ctx, d) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start_data(c, ["qsmith@example.test"])
        t0 = time.monotonic()
        for i, line in enumerate(lines):
            time.sleep(max(0.0, t0 + 0.5 * i - time.monotonic()))
            c.send(line)
            no_reply_yet(c, 0)
        time.sleep(max(0.0, t0 + 0.5 * len(lines) - time.monotonic()))
        check(time.monotonic() - t0 > 4, "test bug: the data took less than 4 s")
        qid = queued_id(c.cmd(b".\r\n"), "the reply to the end of the slow data")
        expect_delivered(ctx, d.store, qid, ["qsmith@example.test"], body)
        check_eq(c.cmd(b"NOOP\r\n"), OK, "NOOP after")
        quit_session(c)


# --- clients that do not read -------------------------------------------------------------------

def flood_until_stuck(c, data, stuck_for, limit, cap=64 << 20, on_send=None):
    """Send data again and again without reading until the socket takes
    nothing for stuck_for seconds (True), or limit seconds or cap octets
    pass (False). Returns (stuck, octets sent)."""
    c.sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + limit
    stuck_since = None
    while time.monotonic() < deadline and sent < cap:
        try:
            sent += c.sock.send(data)
            stuck_since = None
            if on_send is not None:
                on_send(sent)
        except BlockingIOError:
            now = time.monotonic()
            if stuck_since is None:
                stuck_since = now
            elif now - stuck_since >= stuck_for:
                return True, sent
            time.sleep(0.02)
    return False, sent


SMALL_RCVBUF = (socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


def t_unread_replies_memory(ctx):
    """A client that sends EXPN after EXPN and never reads a reply (with a
    big send buffer of its own, it pushes several MB): the daemon stops
    reading from it, its memory stays bounded (VmRSS grows by less than
    50 MB), and other clients are served meanwhile and after. (The MB
    pushed sit in the kernel's socket buffers, not in the daemon.)"""
    d = ctx.start_daemon("flood")
    peak = [0]
    flood = None
    try:
        rss0 = vm_rss_kb(d.pid)

        def sample(_sent):
            peak[0] = max(peak[0], vm_rss_kb(d.pid))

        flood = Client(("127.0.0.1", d.port), source="127.0.0.3", sockopts=[SMALL_RCVBUF])
        burst = b"EXPN all-staff\r\nEXPN example-people\r\n" * 2000   # 76 kB, 2 MB of replies
        stuck, sent = flood_until_stuck(flood, burst, 1.0, 15, on_send=sample)
        check(stuck, f"the daemon took {sent} octets without the client reading a reply")
        check(sent >= 1 << 20, f"only {sent} octets pushed: the kernel's socket buffers "
                               f"are too small for this test (net.ipv4.tcp_wmem)")
        sample(sent)
        for i in range(3):
            with limit_session(ctx, d) as c:
                t = time.monotonic()
                check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY of another client")
                check_eq(c.cmd(b"EXPN example-people\r\n"), EXAMPLE_PEOPLE,
                         "EXPN of another client")
                check(time.monotonic() - t < 1, "another client waited "
                                                f"{time.monotonic() - t:.2f} s")
                quit_session(c)
            sample(sent)
            time.sleep(0.2)
        grew = peak[0] - rss0
        check(grew < 50 * 1024, f"VmRSS grew by {grew} kB (from {rss0} kB) while the "
                                f"client pushed {sent} octets")
        flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        flood.close()
        d.wait_log(rb"event=disconnect client=127\.0\.0\.3 reason=error\n")
        answers_fresh_session_on(ctx, d)
        check(b"reason=nomem" not in d.log(), "a session ran out of memory")
    finally:
        if flood is not None:
            flood.close()
        d.stop()
    check_stopped(d)


def t_unread_replies_timeout(ctx):
    """command_timeout 2s also bounds how long replies may stay unread:
    the client that stops reading is dropped within a few seconds, and
    another is served meanwhile."""
    d = limit_daemon(ctx, "timeouts")
    flood = Client(("127.0.0.1", d.port), source="127.0.0.5", sockopts=[SMALL_RCVBUF])
    try:
        stuck, sent = flood_until_stuck(flood, b"EXPN example-people\r\n" * 1000, 0.3, 5)
        t = time.monotonic()
        check(stuck, f"the daemon took {sent} octets without the client reading a reply")
        answers_fresh_session_on(ctx, d)
        d.wait_log(rb"event=disconnect client=127\.0\.0\.5 reason=\w+\n", timeout=10)
        check_took(time.monotonic() - t, 0, 7, "the end of the client that reads nothing")
    finally:
        flood.close()


def t_limit_daemons_exit(ctx):
    """The shared limit daemons exit 0 on SIGTERM; their logs are well formed."""
    problems = []
    for name, d in ctx.limit_daemons.items():
        rc = d.stop()
        if d.killed or rc != 0:
            problems.append(f"{name}: exit status {rc}{' (killed)' if d.killed else ''}")
        problems += [f"{name}: {p}" for p in log_form_problems(d.log())]
    check(not problems, "; ".join(problems[:3]))


def run_limits(ctx, runner):
    r = runner.run
    no_v6 = ctx.ipv6_problem
    r("policy_252_trusted", t_policy_252_trusted, ctx)
    r("policy_252_stranger", t_policy_252_stranger, ctx, "127.0.0.1", UNTRUSTED)
    r("policy_vrfy_off", t_policy_vrfy_off, ctx)
    r("policy_public_custom", t_policy_public_custom, ctx)
    r("policy_trusted_none", t_policy_trusted_none, ctx, "127.0.0.1")
    if ctx.ipv6:
        r("policy_252_stranger_ipv6", t_policy_252_stranger, ctx, "::1", None)
        r("policy_trusted_ipv6", t_policy_trusted_ipv6, ctx)
        r("policy_trusted_none_ipv6", t_policy_trusted_none, ctx, "::1")
    else:
        for name in ("policy_252_stranger_ipv6", "policy_trusted_ipv6",
                     "policy_trusted_none_ipv6"):
            runner.skip(name, no_v6)
    r("tarpit", t_tarpit, ctx)
    r("tarpit_pipelined", t_tarpit_pipelined, ctx)
    r("tarpit_delay_0", t_tarpit_delay_0, ctx)
    r("vrfy_rate", t_vrfy_rate, ctx)
    r("max_clients_per_ip", t_max_clients_per_ip, ctx)
    r("max_clients", t_max_clients, ctx)
    r("command_timeout_idle", t_command_timeout_idle, ctx)
    r("command_timeout_slowloris", t_command_timeout_slowloris, ctx)
    r("command_timeout_long_line", t_command_timeout_long_line, ctx)
    r("data_timeout_pause", t_data_timeout_pause, ctx)
    r("data_timeout_steady", t_data_timeout_steady, ctx)
    r("unread_replies_memory", t_unread_replies_memory, ctx)
    r("unread_replies_timeout", t_unread_replies_timeout, ctx)
    r("limit_daemons_exit_0", t_limit_daemons_exit, ctx)


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
    d = ctx.start_daemon("sigint", extra=("shutdown_timeout 3s",))
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


def t_socket_activation(ctx):
    """Started the way systemd socket activation starts it (a listening
    socket as descriptor 3, LISTEN_FDS=1, LISTEN_PID its own pid),
    porterd serves that socket and binds none of its own listen lines;
    SIGTERM stops it with exit 0."""
    passed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    passed.bind(("127.0.0.1", 0))
    passed.listen(16)
    port = passed.getsockname()[1]
    ignored = free_port(False)      # the config's own listen line
    conf = ctx.path("activated.conf")
    with open(conf, "w") as f:
        f.write(config_text(ignored, False, maildir="activated-mail/%d/%u"))
    d = Daemon(ctx.binary, conf, ctx.path("activated.log"), port)
    d.store = MailStore(ctx.path("activated-mail"))
    fd = passed.fileno()
    # sh keeps its pid through exec, so $$ is porterd's pid
    script = (f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 '
              f'exec "$0" -c "$1"') if fd != 3 else 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -c "$1"'
    with open(d.log_path, "ab") as log:
        d.proc = subprocess.Popen(["/bin/sh", "-c", script, ctx.binary, conf],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  env=daemon_env(), pass_fds=(fd,))
    ctx.daemons.append(d)
    passed.close()                  # porterd holds it now
    try:
        check(d.wait_ready(), f"the activated daemon exited: {d.log_tail()}")
        with session(ctx, ("127.0.0.1", port)) as c:
            check_eq(c.cmd(b"VRFY jones\r\n"), JONES, "VRFY on the passed socket")
        check(re.search(rb"event=listen address=127\.0\.0\.1 fd=3 source=systemd\n", d.log()),
              f"no listen line for the passed socket: {d.log_tail()}")
        check(b"event=listen address=127.0.0.1:" not in d.log(),
              "the config's listen line was bound too")
        try:
            socket.create_connection(("127.0.0.1", ignored), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        check(refused, "something answers on the config's own listen address")
    finally:
        rc = d.stop()
    check_eq(rc, 0, f"exit status after SIGTERM (log {d.log_tail()})")


def t_install_destdir(ctx):
    """make install into a DESTDIR: binary, config (never overwritten),
    table, man pages and the systemd unit, with the installed paths; the
    installed binary accepts the installed config."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    dest = ctx.path("destdir")
    make_vars = ctx.make_vars or [f"BUILD={os.path.dirname(ctx.binary)}"]

    def install():
        proc = subprocess.run(["make", "-s", "--no-print-directory", "install",
                               f"DESTDIR={dest}", "PREFIX=/usr"] + make_vars,
                              cwd=root, capture_output=True, text=True, timeout=120)
        check_eq(proc.returncode, 0, f"make install: {proc.stdout} {proc.stderr}")
        return proc.stdout
    install()
    for f in ("usr/sbin/porterd", "etc/porterd/porterd.conf", "etc/porterd/example.table",
              "usr/share/man/man8/porterd.8", "usr/share/man/man5/porterd.conf.5",
              "usr/share/man/man5/porterd.table.5", "usr/lib/systemd/system/porterd.service",
              "usr/lib/systemd/system/porterd.socket", "usr/sbin/porterd-makemap",
              "usr/share/man/man8/porterd-makemap.8"):
        check(os.path.isfile(os.path.join(dest, f)), f"{f} not installed")
    conf = os.path.join(dest, "etc/porterd/porterd.conf")
    with open(conf) as f:
        text = f.read()
    for line in ("maildir     /var/mail/vhosts/%d/%u", "listen      0.0.0.0:25",
                 "listen      [::]:25", "vrfy        252", "expn        off"):
        check(f"\n{line}\n" in text, f"the installed config lacks {line!r}")
    check(not [ln for ln in text.splitlines() if ln.startswith("listen") and "2525" in ln],
          "the installed config still listens on 2525")
    check("\nuser " not in text and "\ngroup " not in text,
          "the installed config names a user or group (the default, porterd, is meant)")
    with open(os.path.join(dest, "usr/lib/systemd/system/porterd.service")) as f:
        unit = f.read()
    check("ExecStart=/usr/sbin/porterd -f -c /etc/porterd/porterd.conf\n" in unit,
          "the unit's ExecStart does not run the installed porterd on the installed config")
    check("ExecStartPre=/usr/sbin/porterd -t -c /etc/porterd/porterd.conf\n" in unit,
          "the unit does not check the config before starting")
    check("@" not in unit.replace("@usc", ""), "unfilled placeholder in the unit")
    with open(ctx.binary, "rb") as f:
        notify = b"sd_notify" in f.read()
    check(f"\nType={'notify' if notify else 'simple'}\n" in unit,
          f"the unit's Type does not match the build (sd_notify linked: {notify})")
    check("ExecReload=/usr/sbin/porterd -t -c /etc/porterd/porterd.conf\n"
          "ExecReload=/bin/kill -HUP $MAINPID\n" in unit,
          "the unit's reload does not check the config, then send SIGHUP")
    installed = os.path.join(dest, "usr/sbin/porterd")
    try:
        pwd.getpwnam("porterd")
        account = True
    except KeyError:
        account = False
    if AS_ROOT and not account:
        # Only `make install` without DESTDIR creates the account: as
        # root, -t says it is missing, as the start would.
        proc = subprocess.run([installed, "-t", "-c", conf], capture_output=True, text=True,
                              timeout=30)
        check(proc.returncode == 1 and "user porterd: no such user" in proc.stderr,
              f"installed porterd -t as root without a porterd account: {proc.stderr!r}")
        with open(conf) as f:
            text = f.read()
        conf = ctx.path("installed-as-nobody.conf")
        with open(conf, "w") as f:
            f.write(text.replace("directory   table example.table",
                                 f"directory   table {dest}/etc/porterd/example.table")
                    + "user nobody\ngroup nogroup\n")
    proc = subprocess.run([installed, "-t", "-c", conf], capture_output=True, text=True,
                          timeout=30)
    ctx.outputs.append(("installed porterd -t", (proc.stdout + proc.stderr).encode()))
    check_eq(proc.returncode, 0, f"installed porterd -t on the installed config: {proc.stderr}")
    conf = os.path.join(dest, "etc/porterd/porterd.conf")
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        proc = subprocess.run([analyze, "verify"] + [os.path.join(
            dest, "usr/lib/systemd/system", unit) for unit in ("porterd.service",
                                                               "porterd.socket")],
            capture_output=True, text=True, timeout=60)
        bad = [ln for ln in proc.stderr.splitlines()
               if "Unknown" in ln or "unknown" in ln or "Invalid" in ln]
        check(not bad, f"systemd-analyze verify: {bad}")
    with open(conf, "a") as f:
        f.write("# edited by the administrator\n")
    out = install()
    check("keeping existing" in out, f"a second install did not say it kept the config: {out}")
    with open(conf) as f:
        check(f.read().endswith("# edited by the administrator\n"),
              "a second make install overwrote the administrator's config")


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


# --- the benchmark's tools ----------------------------------------------------
# bench/load and bench/limit are measured with, so they are tested too: the
# load generator must check every reply, or a benchmark could count errors
# as speed. Small counts: these are correctness tests, never timings.

def run_load(ctx, mode, port, args):
    """Run bench/load; (exit status, {key: value} of its result line)."""
    argv = [os.path.join(ctx.bench, "load"), mode, "-p", str(port), "-t", "20"] + args
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    ctx.outputs.append((f"load {mode}", (proc.stdout + proc.stderr).encode()))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("mode=")]
    check_eq(len(lines), 1, f"result lines of load {mode} ({proc.stdout!r} {proc.stderr!r})")
    return proc.returncode, dict(kv.split("=", 1) for kv in lines[0].split())


def check_load(ctx, mode, port, args, want_done):
    rc, res = run_load(ctx, mode, port, args)
    check_eq((rc, res["done"], res["errors"]), (0, str(want_done), "0"),
             f"load {mode} {' '.join(args)}: exit, done, errors ({res})")
    check(float(res["rate"]) > 0, f"load {mode}: a rate ({res})")


def t_bench_load_porterd(ctx):
    """The load generator drives the real daemon in each mode; every
    message it had acknowledged is in the Maildir; a wrong reply code is
    an error and exit 1."""
    d = ctx.start_daemon("bench")
    try:
        check_load(ctx, "session", d.port, ["-c", "4", "-n", "40", "-a", "jones,postmaster"], 40)
        check_load(ctx, "pipeline", d.port, ["-c", "4", "-d", "8", "-n", "2000", "-a", "jones"],
                   2000)
        check_load(ctx, "mail", d.port, ["-c", "4", "-n", "30", "-M", "4",
                                         "-a", "jones@example.test"], 30)
        rc, res = run_load(ctx, "session", d.port, ["-c", "2", "-n", "4", "-e", "550",
                                                    "-a", "jones"])
        check(rc == 1 and int(res["errors"]) > 0,
              f"load expecting 550 where porterd answers 250: exit {rc}, {res}")
    finally:
        d.stop()
    got = len(d.store.files("new"))
    check_eq(got, 30, "messages in new/ after load mail -n 30")


def t_bench_limit(ctx):
    """The reference responder greets, answers every line, serves a mail
    transaction, and exits 0 on SIGTERM."""
    port = free_port(False)
    log = open(ctx.path("limit.log"), "wb")
    proc = subprocess.Popen([os.path.join(ctx.bench, "limit"), "-l", "127.0.0.1",
                             "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                check(time.monotonic() < deadline and proc.poll() is None,
                      "limit is not listening")
                time.sleep(0.05)
        check_load(ctx, "session", port, ["-c", "4", "-n", "40"], 40)
        check_load(ctx, "pipeline", port, ["-c", "4", "-n", "2000"], 2000)
        check_load(ctx, "mail", port, ["-c", "4", "-n", "30"], 30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log.close()
    with open(ctx.path("limit.log"), "rb") as f:
        ctx.outputs.append(("limit", f.read()))
    check_eq(rc, 0, "limit's exit status after SIGTERM")


# --- main -----------------------------------------------------------------------

def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--porterd", required=True, help="the porterd binary to test")
    ap.add_argument("--make-vars", default="",
                    help="make variables the daemon was built with, e.g. "
                         "'BUILD=build/asan SANITIZE=1', for the install test")
    ap.add_argument("--bench", help="the directory of the benchmark's load and limit "
                    "binaries, to test them too")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--only", metavar="REGEX",
                    help="run only the tests whose names match (while working on them)")
    ap.add_argument("--no-ipv6", action="store_true",
                    help="listen on 127.0.0.1 only, as if IPv6 loopback did not work")
    args = ap.parse_args()
    if not os.access(args.porterd, os.X_OK):
        print(f"run.py: {args.porterd}: not an executable", file=sys.stderr)
        return 2
    raise_fd_limit(4096)  # 1,000 sessions at once in t_operations, and the daemon

    # a SIGTERM to the runner still stops the daemons and removes the files
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    t0 = time.monotonic()
    runner = Runner(args.only)
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
            if d.proc is not None and d.proc.poll() is None and not args.only:
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


def run_mail(ctx, runner):
    r = runner.run
    for name, prelude, data, want in MAIL_DIALOGUE:
        r(name, t_mail_dialogue, ctx, prelude, data, want)
    if shutil.which("swaks"):
        r("swaks_plain", t_swaks_plain, ctx)
        r("swaks_helo", t_swaks_helo, ctx)
        r("swaks_pipeline", t_swaks_pipeline, ctx)
        r("swaks_8bit", t_swaks_8bit, ctx)
        r("swaks_list", t_swaks_list, ctx)
        r("swaks_unknown_user", t_swaks_unknown, ctx)
        r("swaks_relay_denied", t_swaks_relay, ctx)
    else:
        for name in ("swaks_plain", "swaks_helo", "swaks_pipeline", "swaks_8bit",
                     "swaks_list", "swaks_unknown_user", "swaks_relay_denied"):
            runner.skip(name, "swaks is not installed")
    r("smtplib_two_recipients", t_smtplib_two_recipients, ctx)
    r("smtplib_dot_lines", t_smtplib_dot_lines, ctx)
    r("smtplib_recipients_refused", t_smtplib_refused, ctx)
    r("smtplib_8bitmime", t_smtplib_8bitmime, ctx)
    r("smtplib_smtputf8", t_smtplib_smtputf8, ctx)
    r("data_dot_stuffing", t_data_dot_stuffing, ctx)
    r("data_end_split", t_data_end_split, ctx)
    r("data_smuggling_refused", t_data_smuggling, ctx)
    r("data_long_line", t_data_long_line, ctx)
    r("large_message", t_large_message, ctx)
    r("default_max_recipients", t_default_max_recipients, ctx)
    r("rset_between_transactions", t_rset_between, ctx)
    r("pipelined_transactions", t_pipelined_transactions, ctx)
    r("many_messages_one_session", t_many_in_one_session, ctx)
    r("concurrent_senders", t_concurrent_senders, ctx)
    r("oversize_refused_in_sync", t_oversize, ctx)
    r("too_many_recipients", t_too_many_recipients, ctx)
    r("delivery_failure_undone", t_delivery_failure_undone, ctx)
    r("rcpt_skip_log_escaped", t_rcpt_skip_log_escaped, ctx)
    r("abrupt_during_data", t_abrupt_during_data, ctx)
    r("half_close_after_data", t_half_close_after_data, ctx)
    if ctx.ipv6:
        r("ipv6_mail", t_ipv6_mail, ctx)
    else:
        runner.skip("ipv6_mail", ctx.ipv6_problem)
    r("sigterm_during_data", t_sigterm_during_data, ctx)
    r("crash_before_link", t_crash_before_link, ctx)


def run_all(ctx, runner):
    r = runner.run
    if ctx.bench is not None:
        r("bench_load_porterd", t_bench_load_porterd, ctx)
        r("bench_limit", t_bench_limit, ctx)
    r("greeting", t_greeting, ctx)
    r("ehlo", t_ehlo, ctx)
    r("install_destdir", t_install_destdir, ctx)
    r("socket_activation", t_socket_activation, ctx)
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
    run_mail(ctx, runner)
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
    r("check_maildir_without_u", t_check_maildir_without_u, ctx)
    r("check_maildir_bad_escape", t_check_maildir_bad_escape, ctx)
    r("check_max_message_size_too_small", t_check_max_message_size_small, ctx)
    r("check_max_recipients_zero", t_check_max_recipients_zero, ctx)
    r("version", t_version, ctx)
    r("bad_option", t_bad_option, ctx)
    r("second_daemon_same_port", t_second_daemon_same_port, ctx)
    run_daemon_mode(ctx, runner)
    r("sigterm_open_sessions", t_sigterm_open_sessions, ctx)
    r("sigint_stalled_client", t_sigint_stalled_client, ctx)
    r("fd_exhaustion_recovers", t_fd_exhaustion_recovers, ctx)
    run_limits(ctx, runner)
    r("daemon_exits_0_on_sigterm", t_main_daemon_exit, ctx)
    r("small_daemon_exits_0", t_small_daemon_exit, ctx)
    run_modules(ctx, runner)
    r("mail_ledger", t_mail_ledger, ctx)
    r("log_well_formed", t_main_log_well_formed, ctx)


def run_modules(ctx, runner):
    """The tests kept in modules of their own, tests/integration/t_*.py,
    in name order: each has run(ctx, runner, base), base being this
    module (its helpers: session, quit_session, config_text, ...)."""
    here = os.path.dirname(os.path.abspath(__file__))
    base = sys.modules[__name__]
    for fname in sorted(os.listdir(here)):
        if fname.startswith("t_") and fname.endswith(".py"):
            mod = importlib.import_module(fname[:-3])
            mod.run(ctx, runner, base)


if __name__ == "__main__":
    sys.exit(main())
