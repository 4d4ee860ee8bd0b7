"""
The pgsql directory backend against a real PostgreSQL server: initdb and
postgres on a loopback port of the run's temporary directory (as the
postgres account when the suite runs as root), a postfixadmin-style schema
loaded with psql, and porterd answering VRFY, EXPN and RCPT from it. Then
the server is stopped under porterd (VRFY 252 2.4.3, RCPT 451 4.3.0,
never 550, never a hang) and started again (answers come back by
themselves), and a server that accepts and never answers is given its
timeout. Skipped only when the PostgreSQL binaries are missing; every
process started here is stopped by PID, pass or fail.
"""
import glob
import os
import pwd
import signal
import socket
import subprocess
import threading
import time

from harness import (Client, Failure, check, check_config_refused, check_eq, free_port,
                     porterd_check, reload_and_wait, run_porterd)

AS_ROOT = os.geteuid() == 0
TIMEOUT = 2             # the backend's timeout=, seconds
SILENT_TIMEOUT = 1      # the silent server's daemon's timeout=
START_TIMEOUT = 20.0    # seconds PostgreSQL may take to accept connections
RESUME_TIMEOUT = 20.0   # seconds porterd may take to answer again

SCHEMA = r"""
CREATE ROLE porterd LOGIN;
CREATE DATABASE mail;
\connect mail
CREATE TABLE mailbox (
    username   text PRIMARY KEY,
    local_part text NOT NULL,
    domain     text NOT NULL,
    name       text,
    active     boolean NOT NULL DEFAULT true
);
CREATE TABLE alias (
    address text PRIMARY KEY,
    goto    text NOT NULL,
    domain  text NOT NULL,
    active  boolean NOT NULL DEFAULT true
);
-- lists kept one member a row, beside postfixadmin's comma-separated goto
CREATE TABLE list_member (
    list     text NOT NULL,
    position integer NOT NULL,
    member   text NOT NULL
);
INSERT INTO mailbox (username, local_part, domain, name, active) VALUES
    ('jones@example.test',    'jones',    'example.test', 'Fred Jones',   true),
    ('smith@example.test',    'smith',    'example.test', 'Fred Smith',   true),
    ('qsmith@example.test',   'qsmith',   'example.test', 'Quincy Smith', true),
    ('nameless@example.test', 'nameless', 'example.test', NULL,           true),
    ('o''brien@example.test', 'o''brien', 'example.test', 'Pat O''Brien', true),
    ('gone@example.test',     'gone',     'example.test', 'Gone Away',    false),
    ('anna@example.test',     'anna',     'example.test', 'Anna Gourzenkyinplatz',  true),
    ('boris@example.test',    'boris',    'example.test', 'Boris Gourzenkyinplatz', true),
    ('slowpoke@example.test', 'slowpoke', 'example.test', 'Slow Poke',    true),
    ('jones@other.test',      'jones',    'other.test',   'Other Jones',  true);
INSERT INTO alias (address, goto, domain) VALUES
    -- postfixadmin keeps an alias to itself for every mailbox
    ('jones@example.test', 'jones@example.test', 'example.test'),
    ('example-people@example.test',
     'jones@example.test,smith@example.test, qsmith@example.test,postel@usc-isif.example',
     'example.test'),
    ('bob@example.test', 'bob@elsewhere.example', 'example.test'),
    ('helpdesk@example.test', 'qsmith@example.test', 'example.test');
INSERT INTO list_member (list, position, member) VALUES
    ('staff@example.test', 1, 'example-people@example.test'),
    ('staff@example.test', 2, 'nameless');
GRANT SELECT ON mailbox, alias, list_member TO porterd;
"""

# "name" is quoted as SQL allows, so the directive's value holds \" escapes
QUERY_USER = ('SELECT "name" FROM mailbox '
              'WHERE local_part = $1 AND domain = $2 AND active')
# the same, three seconds slow for slowpoke: a server slower than timeout
QUERY_USER_SLOW = ('SELECT "name" FROM mailbox, '
                   "pg_sleep(CASE WHEN $1 = 'slowpoke' THEN 3 ELSE 0 END) "
                   "WHERE local_part = $1 AND domain = $2 AND active")
QUERY_LIST = ("SELECT goto FROM alias WHERE address = $1 || '@' || $2 AND active "
              "UNION ALL (SELECT member FROM list_member "
              "WHERE list = $1 || '@' || $2 ORDER BY position)")
QUERY_NAME = ("SELECT username, name FROM mailbox WHERE domain = $2 AND active "
              "AND (lower(name) = $1 OR $1 = ANY (string_to_array(lower(name), ' ')))")

# The example of porterd.conf(5) and README.md, word for word.
EXAMPLE = ('directory pgsql conninfo="hostaddr=192.0.2.10 dbname=postfix user=porterd" '
           'query_user="SELECT name FROM mailbox WHERE local_part = $1 AND domain = $2 '
           'AND active" query_list="SELECT goto FROM alias WHERE address = $1 || \'@\' || '
           '$2 AND active" query_name="SELECT username, name FROM mailbox WHERE domain = $2 '
           'AND active AND (lower(name) = $1 OR $1 = ANY (string_to_array(lower(name), '
           '\' \')))" timeout=5s pool=2')
DOCS = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", doc)
        for doc in ("README.md", os.path.join("man", "porterd.conf.5"))]

JONES = b"250 2.1.5 Fred Jones <jones@example.test>\r\n"
TEMPFAIL_VRFY = b"252 2.4.3 "
TEMPFAIL_RCPT = b"451 4.3.0 "


def pg_bindir():
    """The newest PostgreSQL server binaries installed, or None."""
    def version(d):
        v = d.split("/")[-2]
        return int(v) if v.isdigit() else 0
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(os.path.join(d, n), os.X_OK)
               for n in ("initdb", "postgres", "psql", "pg_isready")):
            return d
    return None


class Postgres:
    """One PostgreSQL server of our own: data, socket and log in the run's
    temporary directory, TCP on 127.0.0.1:port only, trust authentication."""

    def __init__(self, ctx, bindir):
        self.ctx = ctx
        self.bindir = bindir
        self.data = ctx.path("postgresql-data")
        self.sockdir = ctx.path("postgresql-sock")
        self.log_path = ctx.path("postgresql.log")
        self.port = free_port(False)
        self.proc = None
        self.account = pwd.getpwnam("postgres") if AS_ROOT else None

    def tool(self, name):
        return os.path.join(self.bindir, name)

    def popen_args(self):
        """Run as the postgres account when we are root (it refuses root)."""
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid,
                "extra_groups": [], "env": dict(os.environ, HOME=self.account.pw_dir)}

    def own(self, path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def initdb(self):
        self.own(self.data)
        self.own(self.sockdir)
        r = subprocess.run([self.tool("initdb"), "-D", self.data, "-A", "trust",
                            "-U", "postgres", "-E", "UTF8", "--no-sync"],
                           capture_output=True, timeout=60, cwd="/", **self.popen_args())
        check(r.returncode == 0, f"initdb exited {r.returncode}: {r.stderr[-300:]!r}")

    def start(self):
        """Start postgres itself (not pg_ctl), so its PID is ours."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.tool("postgres"), "-D", self.data, "-p", str(self.port),
                 "-k", self.sockdir, "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "max_connections=20",
                 "-c", "shared_buffers=16MB"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                **self.popen_args())
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"postgres exited {self.proc.returncode}: {self.log_tail()}")
            r = subprocess.run([self.tool("pg_isready"), "-q", "-U", "postgres",
                                "-d", "postgres", "-h", "127.0.0.1",
                                "-p", str(self.port), "-t", "1"], timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise Failure(f"postgres not ready within {START_TIMEOUT:.0f} s: {self.log_tail()}")

    def psql(self, sql, db="postgres"):
        r = subprocess.run([self.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-At", "-f", "-"],
                           input=sql.encode(), capture_output=True, timeout=30, cwd="/")
        check(r.returncode == 0, f"psql exited {r.returncode}: {r.stderr[-300:]!r}")
        return r.stdout.decode()

    def stop(self):
        """Fast shutdown (SIGINT): sessions are cut, as when it is stopped
        for maintenance. SIGKILL if it takes too long."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-400:].decode("utf-8", "backslashreplace")
        except FileNotFoundError:
            return ""


class SilentServer:
    """Accepts TCP connections on loopback and never says a word."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sock.close()


class Proxy:
    """A TCP relay to PostgreSQL that can cut connections: each of the
    next `kills` queries (a chunk from porterd opening with a Parse
    message, 'P') closes its connection instead of reaching the server,
    as when a server or a firewall dropped an idle connection unseen."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.kills = 0
        self.killed = 0
        self.lock = threading.Lock()
        self.socks = []
        self.stopping = False
        self.threads = [threading.Thread(target=self.serve, daemon=True)]
        self.threads[0].start()

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                continue
            with self.lock:
                self.socks += [c, u]
            for a, b, watch in ((c, u, True), (u, c, False)):
                t = threading.Thread(target=self.pump, args=(a, b, watch), daemon=True)
                t.start()
                self.threads.append(t)

    def take_kill(self, chunk):
        with self.lock:
            if self.kills > 0 and chunk[:1] == b"P":
                self.kills -= 1
                self.killed += 1
                return True
        return False

    def pump(self, src, dst, watch):
        src.settimeout(0.2)
        while not self.stopping:
            try:
                chunk = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk or (watch and self.take_kill(chunk)):
                break
            try:
                dst.sendall(chunk)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=5)
        with self.lock:
            for s in self.socks:
                s.close()
        self.sock.close()


def directory_line(port, timeout=TIMEOUT, pool=2, query_user=QUERY_USER):
    """The directive, its values quoted as porterd.conf(5) says."""
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return (f"pgsql conninfo={q(f'hostaddr=127.0.0.1 port={port} dbname=mail user=porterd')}"
            f" query_user={q(query_user)} query_list={q(QUERY_LIST)}"
            f" query_name={q(QUERY_NAME)} timeout={timeout}s pool={pool}")


def cmd(d, data):
    """One command on a fresh session; (reply, seconds it took)."""
    with Client(("127.0.0.1", d.port)) as c:
        c.reply()
        t0 = time.monotonic()
        r = c.cmd(data)
        took = time.monotonic() - t0
        c.send(b"QUIT\r\n")
        c.reply()
    return r, took


DIALOGUE = [
    ("pgsql_vrfy_user", b"VRFY jones\r\n", JONES),
    ("pgsql_vrfy_user_address", b"VRFY <Jones@Example.TEST>\r\n", JONES),
    ("pgsql_vrfy_user_nameless", b"VRFY nameless\r\n",
     b"250 2.1.5 <nameless@example.test>\r\n"),
    ("pgsql_vrfy_user_inactive_550", b"VRFY gone\r\n",
     b"550 5.1.1 <gone>: no such user here\r\n"),
    ("pgsql_vrfy_list", b"VRFY example-people\r\n",
     b"250 2.1.5 <example-people@example.test>\r\n"),
    ("pgsql_vrfy_list_one_local_member", b"VRFY helpdesk\r\n",
     b"250 2.1.5 <helpdesk@example.test>\r\n"),
    ("pgsql_vrfy_forward_251", b"VRFY bob\r\n",
     b"251 2.1.5 User not local; will forward to <bob@elsewhere.example>\r\n"),
    ("pgsql_vrfy_unknown_550", b"VRFY nobody\r\n",
     b"550 5.1.1 <nobody>: no such user here\r\n"),
    ("pgsql_vrfy_full_name", b"VRFY Quincy Smith\r\n",
     b"250 2.1.5 Quincy Smith <qsmith@example.test>\r\n"),
    ("pgsql_vrfy_full_name_spacing", b"VRFY  quincy \t SMITH\r\n",
     b"250 2.1.5 Quincy Smith <qsmith@example.test>\r\n"),
    ("pgsql_vrfy_name_word", b"VRFY Quincy\r\n",
     b"250 2.1.5 Quincy Smith <qsmith@example.test>\r\n"),
    # a local part is a key, tried before any name
    ("pgsql_vrfy_key_before_name", b"VRFY Smith\r\n",
     b"250 2.1.5 Fred Smith <smith@example.test>\r\n"),
    ("pgsql_vrfy_ambiguous_553", b"VRFY Gourzenkyinplatz\r\n",
     b"553 5.1.4 User ambiguous\r\n"),
    ("pgsql_vrfy_ambiguous_fred_553", b"VRFY Fred\r\n", b"553 5.1.4 User ambiguous\r\n"),
    ("pgsql_expn_list", b"EXPN example-people\r\n",
     b"250-2.1.5 Fred Jones <jones@example.test>\r\n"
     b"250-2.1.5 Fred Smith <smith@example.test>\r\n"
     b"250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
     b"250 2.1.5 <postel@usc-isif.example>\r\n"),
    ("pgsql_expn_rows_nested", b"EXPN staff\r\n",
     b"250-2.1.5 Fred Jones <jones@example.test>\r\n"
     b"250-2.1.5 Fred Smith <smith@example.test>\r\n"
     b"250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
     b"250-2.1.5 <postel@usc-isif.example>\r\n"
     b"250 2.1.5 <nameless@example.test>\r\n"),
    # client text is a bound parameter: quotes, backslashes and
    # semicolons are looked up as they are, never run
    ("pgsql_vrfy_quote_in_local_part", b"VRFY o'brien\r\n",
     b"250 2.1.5 Pat O'Brien <o'brien@example.test>\r\n"),
    ("pgsql_vrfy_injection_550", b"VRFY x'||'';DROP TABLE mailbox;--\\\r\n",
     b"550 5.1.1 <x'||'';DROP TABLE mailbox;--\\>: no such user here\r\n"),
    ("pgsql_rcpt_injection_550",
     b"HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n"
     b"RCPT TO:<\"a\\\"';DROP TABLE alias;--\\\\\"@example.test>\r\n",
     b"250 mail.example.test\r\n250 2.1.0 Ok\r\n"
     b"550 5.1.1 <\"a\\\"';DROP TABLE alias;--\\\\\"@example.test>: "
     b"no such user here\r\n"),
    ("pgsql_tables_intact", b"VRFY jones\r\nEXPN helpdesk\r\n",
     JONES + b"250 2.1.5 Quincy Smith <qsmith@example.test>\r\n"),
]


def t_dialogue(ctx, state, data, want):
    check(state.get("daemon") is not None, "no pgsql daemon (an earlier test failed)")
    with Client(("127.0.0.1", state["daemon"].port)) as c:
        c.reply()
        c.send(data)
        n = sum(1 for line in want.split(b"\r\n") if line[3:4] == b" ")
        got = c.replies(n)
        check_eq(got, want, f"replies to {data!r}")
        check_eq(c.cmd(b"NOOP\r\n"), b"250 2.0.0 Ok\r\n", "NOOP after")


def t_server_starts(ctx, state, pg):
    pg.initdb()
    pg.start()
    pg.psql(SCHEMA)
    check_eq(pg.psql("SELECT count(*) FROM mailbox", db="mail").strip(), "10",
             "mailboxes loaded")


def t_daemon_starts(ctx, state, pg):
    """A database's rows are not counted: the load line says no number."""
    d = state["daemon"] = ctx.start_daemon("pgsql", directories=[directory_line(pg.port)])
    d.wait_log(rb"event=directory_open backend=pgsql\n")
    check(b"backend=pgsql entries=" not in d.log(), f"an entry count for pgsql: {d.log_tail()}")


def t_check_config(ctx, state, pg):
    """porterd -t opens the backend without connecting: fine with the
    server down, and a host name is refused with the reason."""
    d = state["daemon"]
    r = run_porterd(ctx, ["-t", "-c", d.config], "-t pgsql")
    check_eq(r.returncode, 0, f"porterd -t: {r.stderr[-300:]!r}")
    with open(d.config) as f:
        text = f.read().replace("hostaddr=127.0.0.1", "host=db.invalid")
    _, r = porterd_check(ctx, "pgsql-badhost", text)
    check_config_refused(r, b"host 'db.invalid' is a name")


def t_delivered(ctx, state, base):
    d = state["daemon"]
    c = base.mail_session(ctx, d)
    try:
        body = b"Subject: from PostgreSQL\r\n\r\nHello Fred and Quincy.\r\n"
        qid = base.send_mail(c, ["jones@example.test", "helpdesk@example.test"], body)
        base.expect_delivered(ctx, d.store, qid,
                              ["jones@example.test", "qsmith@example.test"], body)
        base.quit_session(c)
    finally:
        c.close()


def rcpt(d):
    """RCPT for jones on a fresh session; (reply, seconds it took)."""
    with Client(("127.0.0.1", d.port)) as c:
        c.reply()
        c.cmd(b"HELO c.example\r\n")
        c.cmd(b"MAIL FROM:<a@remote.example>\r\n")
        t0 = time.monotonic()
        r = c.cmd(b"RCPT TO:<jones@example.test>\r\n")
        took = time.monotonic() - t0
        c.send(b"QUIT\r\n")
        c.reply()
    return r, took


def expect_tempfail(d, timeout, what):
    """VRFY, EXPN and RCPT answer a temporary failure, within timeout
    and a margin, several times over."""
    for i in range(3):
        for data, want in ((b"VRFY jones\r\n", TEMPFAIL_VRFY),
                           (b"EXPN example-people\r\n", TEMPFAIL_VRFY),
                           (None, TEMPFAIL_RCPT)):
            r, took = rcpt(d) if data is None else cmd(d, data)
            check(r.startswith(want), f"{what}, try {i + 1}: {data or b'RCPT'!r} "
                  f"answered {r!r}, want {want!r}")
            check(took < timeout + 1.5, f"{what}: the answer took {took:.1f} s "
                  f"(timeout {timeout} s)")


def t_server_stopped(ctx, state, pg):
    pg.stop()
    expect_tempfail(state["daemon"], TIMEOUT, "PostgreSQL stopped")


def t_server_restarted(ctx, state, pg):
    pg.start()
    d = state["daemon"]
    deadline = time.monotonic() + RESUME_TIMEOUT
    r = b""
    while time.monotonic() < deadline:
        r, _ = cmd(d, b"VRFY jones\r\n")
        if r == JONES:
            break
        check(r.startswith(TEMPFAIL_VRFY), f"while it comes back: {r!r}")
        time.sleep(0.2)
    check_eq(r, JONES, f"VRFY jones within {RESUME_TIMEOUT:.0f} s of the restart")
    check_eq(rcpt(d)[0], b"250 2.1.5 Ok\r\n", "RCPT jones after the restart")
    d.wait_log(rb"event=pgsql_up slot=", count=1)


def t_reload(ctx, state, pg):
    """SIGHUP: the new config's backend connects on its own; the old one
    is closed."""
    d = state["daemon"]
    reload_and_wait(d, d.log().count(b"event=reload ") + 1)
    r, _ = cmd(d, b"VRFY jones\r\n")
    check_eq(r, JONES, "VRFY jones after the reload")


def t_silent_server(ctx, state):
    silent = SilentServer()
    try:
        d = ctx.start_daemon("pgsql-silent", directories=[
            directory_line(silent.port, timeout=SILENT_TIMEOUT)])
        state["silent"] = d
        r, took = cmd(d, b"VRFY jones\r\n")
        check(r.startswith(TEMPFAIL_VRFY), f"VRFY answered {r!r}")
        check(took < SILENT_TIMEOUT + 1.5, f"VRFY took {took:.1f} s")
        expect_tempfail(d, SILENT_TIMEOUT, "a server that never answers")
        check_eq(d.stop(), 0, "exit status of the silent server's daemon")
        d.wait_log(rb"event=pgsql_down slot=0 error=\"no connection within 1s\"")
    finally:
        silent.close()


def t_dead_connection_retried(ctx, state, pg):
    """A query whose connection dies under it is asked again on a fresh
    one; when that dies too, the answer is a temporary failure, and the
    next lookup is answered by itself."""
    proxy = state["relay"] = Proxy(pg.port)     # closed by run()
    d = state["proxy"] = ctx.start_daemon("pgsql-proxy", directories=[
        directory_line(proxy.port, timeout=1, pool=1, query_user=QUERY_USER_SLOW)])
    check_eq(cmd(d, b"VRFY jones\r\n")[0], JONES, "VRFY jones through the relay")
    proxy.kills = 1
    check_eq(cmd(d, b"VRFY jones\r\n")[0], JONES, "VRFY jones, its query cut once")
    check_eq(proxy.killed, 1, "queries cut")
    proxy.kills = 2
    r, took = cmd(d, b"VRFY jones\r\n")
    check(r.startswith(TEMPFAIL_VRFY), f"VRFY jones, its query cut twice: {r!r}")
    check_eq(proxy.killed, 3, "queries cut")
    check_eq(cmd(d, b"VRFY jones\r\n")[0], JONES, "VRFY jones afterwards")


def t_slow_query(ctx, state):
    """A query slower than timeout: 252 2.4.3 at the timeout, and its late
    result is never taken for the next lookup's."""
    check(state.get("proxy") is not None, "no relayed daemon (an earlier test failed)")
    d = state["proxy"]
    r, took = cmd(d, b"VRFY slowpoke\r\n")
    check(r.startswith(TEMPFAIL_VRFY), f"VRFY slowpoke: {r!r}")
    check(0.8 < took < 2.5, f"VRFY slowpoke took {took:.1f} s (timeout 1 s)")
    check_eq(cmd(d, b"VRFY jones\r\n")[0], JONES, "VRFY jones right after")
    d.wait_log(rb"event=pgsql_timeout query=query_user timeout=1s waiting=answer")


def t_documented_example(ctx, state, pg):
    """The documented example works as written, pointed at our server."""
    for doc in DOCS:
        with open(doc, encoding="utf-8") as f:
            check(EXAMPLE in f.read(), f"{os.path.basename(doc)} lacks the example")
    line = EXAMPLE.replace("hostaddr=192.0.2.10 dbname=postfix",
                           f"hostaddr=127.0.0.1 port={pg.port} dbname=mail")
    d = state["example"] = ctx.start_daemon("pgsql-example",
                                            directories=[line[len("directory "):]])
    for data, want in ((b"VRFY jones\r\n", JONES),
                       (b"VRFY bob\r\n", b"251 2.1.5 User not local; will forward to "
                        b"<bob@elsewhere.example>\r\n"),
                       (b"VRFY Quincy Smith\r\n",
                        b"250 2.1.5 Quincy Smith <qsmith@example.test>\r\n"),
                       (b"VRFY Gourzenkyinplatz\r\n", b"553 5.1.4 User ambiguous\r\n"),
                       (b"VRFY gone\r\n", b"550 5.1.1 <gone>: no such user here\r\n")):
        check_eq(cmd(d, data)[0], want, f"reply to {data!r}")
    check_eq(d.stop(), 0, "exit status of the example's daemon")


def t_daemons_exit_0(ctx, state):
    for key in ("daemon", "silent", "proxy", "example"):
        d = state.get(key)
        if d is not None:
            check_eq(d.stop(), 0, f"exit status of the {key} daemon")
            for line in d.log().splitlines():
                check(line.startswith(b"porterd: "), f"a stray line in its log: {line!r}")


def run(ctx, runner, base):
    names = (["pgsql_server_starts", "pgsql_daemon_starts", "pgsql_check_config"]
             + [n for n, _, _ in DIALOGUE]
             + ["pgsql_rcpt_delivered", "pgsql_documented_example", "pgsql_server_stopped", "pgsql_server_restarted",
                "pgsql_reload", "pgsql_dead_connection_retried", "pgsql_slow_query",
                "pgsql_silent_server", "pgsql_daemons_exit_0"])
    bindir = pg_bindir()
    if bindir is None:
        for n in names:
            runner.skip(n, "PostgreSQL server binaries (initdb, postgres) not installed")
        return
    pg = Postgres(ctx, bindir)
    state = {}
    r = runner.run
    try:
        r("pgsql_server_starts", t_server_starts, ctx, state, pg)
        r("pgsql_daemon_starts", t_daemon_starts, ctx, state, pg)
        r("pgsql_check_config", t_check_config, ctx, state, pg)
        for name, data, want in DIALOGUE:
            r(name, t_dialogue, ctx, state, data, want)
        r("pgsql_rcpt_delivered", t_delivered, ctx, state, base)
        r("pgsql_documented_example", t_documented_example, ctx, state, pg)
        r("pgsql_server_stopped", t_server_stopped, ctx, state, pg)
        r("pgsql_server_restarted", t_server_restarted, ctx, state, pg)
        r("pgsql_reload", t_reload, ctx, state, pg)
        r("pgsql_dead_connection_retried", t_dead_connection_retried, ctx, state, pg)
        r("pgsql_slow_query", t_slow_query, ctx, state)
        r("pgsql_silent_server", t_silent_server, ctx, state)
        r("pgsql_daemons_exit_0", t_daemons_exit_0, ctx, state)
    finally:
        for d in (state.get(k) for k in ("daemon", "silent", "proxy", "example")):
            if d is not None:
                d.kill()
        if state.get("relay") is not None:
            state["relay"].close()
        pg.stop()
