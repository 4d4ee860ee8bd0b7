"""
harness — the plumbing of porterd's integration tests: free loopback
ports, a daemon started, reloaded and stopped by PID, `porterd -t` and
its verdict, fixture files, a byte-exact SMTP client with deadlines, and
the test registry with its per-test time limit.

Python 3 standard library only. Nothing here talks to anything but
127.0.0.1 and ::1.
"""
import os
import re
import resource
import signal
import socket
import subprocess
import time

# Text a sanitizer prints when it finds something (ASan, UBSan, LSan).
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "runtime error:",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
)

IO_TIMEOUT = 5.0        # seconds any single read or write may take
READY_TIMEOUT = 10.0    # seconds a daemon may take to accept connections
STOP_TIMEOUT = 10.0     # seconds a daemon may take to exit after a signal
TEST_TIME_LIMIT = 30    # seconds any one test may take, all in all


class Failure(Exception):
    """A test's expectation did not hold; the message says how."""


class TestTimeLimit(Exception):
    """A test ran past TEST_TIME_LIMIT."""




def check_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def check(cond, message):
    if not cond:
        raise Failure(message)


# --- addresses and ports ----------------------------------------------------

def ipv6_loopback_problem():
    """None when [::1] can listen and be connected to, else the reason."""
    if not socket.has_ipv6:
        return "this Python has no IPv6 support"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as srv:
            srv.bind(("::1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            with socket.create_connection(("::1", port), timeout=2):
                pass
    except OSError as e:
        return f"IPv6 loopback unusable: {e}"
    return None


def free_port(with_ipv6):
    """A TCP port free on 127.0.0.1 (and on ::1 when with_ipv6)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            if not with_ipv6:
                return port
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port found")


def listen_specs(port, with_ipv6):
    specs = [f"127.0.0.1:{port}"]
    if with_ipv6:
        specs.append(f"[::1]:{port}")
    return specs


# --- the daemon -------------------------------------------------------------

def daemon_env():
    env = os.environ.copy()
    # Sanitizer reports must go to stderr (the log) and make the exit fail.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class Daemon:
    """One porterd process, started with -c CONFIG, stderr to LOG."""

    def __init__(self, binary, config, log_path, port):
        self.binary = binary
        self.config = config
        self.log_path = log_path
        self.port = port
        self.proc = None
        self.returncode = None
        self.killed = False
        self.signaled = False   # a stop signal was sent already

    def start(self, nofile=None, env=None):
        """Start it; nofile limits its open descriptors (RLIMIT_NOFILE),
        env adds variables to its environment."""
        def limit():
            if nofile is not None:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=dict(daemon_env(), **(env or {})), close_fds=True,
                preexec_fn=limit if nofile is not None else None)

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def log_tail(self, n=8):
        lines = self.log().decode("utf-8", "backslashreplace").splitlines()
        return " | ".join(lines[-n:])

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until 127.0.0.1:port greets; False when the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                return False
            try:
                c = Client(("127.0.0.1", self.port), timeout=2)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                c.reply()
                c.send(b"QUIT\r\n")
                c.reply()
            finally:
                c.close()
            return True
        raise Failure(f"daemon did not accept connections within {timeout:.0f} s: "
                      f"{self.log_tail()}")

    def wait_log(self, pattern, timeout=3.0, count=1):
        """Wait until the log holds count matches of the regex (bytes)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            n = len(rx.findall(self.log()))
            if n >= count:
                return n
            if time.monotonic() >= deadline:
                raise Failure(f"log has {n} of {count} lines matching {pattern!r}: "
                              f"{self.log_tail()}")
            time.sleep(0.02)

    def send_signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            self.signaled = True
            os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal the daemon (unless a stop signal was sent already: a
        second one may find the default action) and wait; kill -9 it after
        timeout. Returns its exit status (negative: the signal that
        ended it)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if not self.signaled:
                self.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self.returncode = self.proc.returncode
        return self.returncode

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def kill(self):
        """Last resort at exit: SIGKILL by PID if still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def stop_ok(d):
    """SIGTERM; d must exit 0 by itself, within STOP_TIMEOUT."""
    rc = d.stop()
    check(not d.killed, "the daemon did not exit within 10 s of SIGTERM")
    check_eq(rc, 0, f"exit status (log {d.log_tail()})")


def reload_and_wait(d, count, what="event=reload "):
    """SIGHUP, then wait for the count-th reload outcome line of d's log
    (event=reload or event=reload_failed) and return it; it must hold
    what, unless what is None."""
    d.send_signal(signal.SIGHUP)
    d.signaled = False      # a reload is not a stop
    d.wait_log(rb"event=reload(_failed)? ", timeout=20, count=count)
    last = [ln for ln in d.log().splitlines()
            if b"event=reload " in ln or b"event=reload_failed" in ln][-1]
    if what is not None:
        check(what.encode() in last, f"last reload outcome: {last!r}, wanted {what!r}")
    return last


# --- the command line and its files -------------------------------------------

def write_fixture(ctx, name, text, mode=0o644):
    """The file NAME of the run's directory, holding text, replaced at once
    as an administrator's editor or script would; mode 0o644 lets the
    daemons read it (nobody, when the suite runs as root)."""
    path = ctx.path(name)
    with open(path + ".new", "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path + ".new", mode)
    os.replace(path + ".new", path)
    return path


def line_number(path, text):
    """The number of the first line of the file holding text."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if text in line:
                return n
    raise AssertionError(f"no line with {text!r} in {path}")


def run_porterd(ctx, args, what):
    """porterd with args, to its exit; its output is kept to be scanned
    for sanitizer reports."""
    try:
        r = subprocess.run([ctx.binary] + args, capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        raise Failure(f"porterd {' '.join(args)} did not exit in 10 s")
    ctx.outputs.append((what, r.stdout + r.stderr))
    return r


def porterd_check(ctx, name, config):
    """porterd -t on NAME.conf, written with config: its path and the
    completed run."""
    conf = ctx.path(f"{name}.conf")
    with open(conf, "w") as f:
        f.write(config)
    return conf, run_porterd(ctx, ["-t", "-c", conf], f"-t {name}")


def check_config_ok(r, conf, entries):
    """porterd -t r found conf good, with entries directory entries."""
    check_eq(r.returncode, 0, f"exit status (stderr {r.stderr!r})")
    check_eq(r.stdout.decode(),
             f"porterd: {conf}: configuration ok, {entries} directory entries\n",
             "stdout")


def check_config_refused(r, want):
    """porterd -t r refused its config, saying want (bytes)."""
    check_eq(r.returncode, 1, f"exit status (stdout {r.stdout!r})")
    check(want in r.stderr, f"stderr {r.stderr!r} does not say {want!r}")
    check(b"configuration ok" not in r.stdout, f"stdout says {r.stdout!r}")


# --- a byte-exact client ----------------------------------------------------

class Client:
    """An SMTP client that sends bytes as given and reads replies as
    received, each read bounded by a deadline."""

    def __init__(self, addr, timeout=IO_TIMEOUT, source=None, sockopts=()):
        """source: the local address to connect from (on Linux any of
        127/8 is loopback, so 127.0.0.2 is another client host);
        sockopts: (level, option, value) set before connecting."""
        host, port = addr
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.timeout = timeout
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            for level, option, value in sockopts:
                self.sock.setsockopt(level, option, value)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _fill(self, deadline, what):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure(f"timed out waiting for {what}; have {self.buf[-200:]!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Failure(f"timed out waiting for {what}; have {self.buf[-200:]!r}")
        if not chunk:
            raise Failure(f"connection closed waiting for {what}; have {self.buf[-200:]!r}")
        self.buf += chunk

    def line(self, deadline=None):
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buf:
            self._fill(deadline, "a reply line")
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def reply(self, deadline=None):
        """One whole reply, multi-line or not, as the raw bytes received."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        lines = []
        while True:
            line = self.line(deadline)
            lines.append(line)
            if not (len(line) >= 4 and line[3:4] == b"-"):
                return b"".join(lines)

    def replies(self, n, deadline=None):
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        return b"".join(self.reply(deadline) for _ in range(n))

    def cmd(self, data):
        self.send(data)
        return self.reply()

    def read_to_eof(self, timeout=None):
        """Everything until the server closes."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure(f"server did not close; have {self.buf[-200:]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise Failure(f"server did not close; have {self.buf[-200:]!r}")
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                data, self.buf = self.buf, b""
                return data
            self.buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def vm_rss_kb(pid):
    """The resident set size of a process, in kB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure(f"no VmRSS in /proc/{pid}/status")


def count_replies(data):
    """How many replies (final lines) a byte string holds."""
    return sum(1 for line in data.split(b"\r\n")
               if len(line) >= 4 and line[3:4] == b" ")


# --- Maildirs -----------------------------------------------------------------

# What porterd writes before the body: RFC 5321 4.4 trace fields.
DELIVERED_HEAD = re.compile(
    rb"Return-Path: <([^<>\r\n]*)>\r\n"
    rb"Received: from ([^ \r\n]+) \(\[([^\]\r\n]+)\]\)\r\n"
    rb"\tby ([^ \r\n]+) \(porterd\) with (ESMTP|SMTP|UTF8SMTP) id ([0-9A-F]{17})"
    rb"(?:\r\n\tfor <([^<>\r\n]+)>)?;\r\n"
    rb"\t([^\r\n]+)\r\n")
RECEIVED_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} [+-]\d{4}")
QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as ([0-9A-F]{17})\r\n")


class Delivered:
    """One file in a new/ directory, taken apart."""

    def __init__(self, mailbox, path, data):
        self.mailbox = mailbox      # "local@domain", from the directory names
        self.path = path
        self.data = data
        m = DELIVERED_HEAD.match(data)
        self.ok = m is not None
        if m is None:
            self.qid = None
            return
        (sender, helo, addr, host, proto, qid, rcpt, date) = m.groups()
        self.sender = sender.decode("utf-8", "backslashreplace")
        self.helo = helo.decode("ascii", "backslashreplace")
        self.addr = addr.decode("ascii", "backslashreplace")
        self.host = host.decode("ascii", "backslashreplace")
        self.proto = proto.decode()
        self.qid = qid.decode()
        self.for_rcpt = rcpt.decode("utf-8", "backslashreplace") if rcpt else None
        self.date = date.decode("ascii", "backslashreplace")
        self.body = data[m.end():]


class MailStore:
    """The Maildirs of one daemon: ROOT/<domain>/<local>/{tmp,new,cur},
    as its `maildir ROOT/%d/%u` makes them. Files in new/ never change
    once there, so each is read once."""

    def __init__(self, root):
        self.root = root
        self._cache = {}    # path: Delivered

    def mailboxes(self):
        """{"local@domain": directory} of every Maildir made so far."""
        found = {}
        try:
            domains = os.listdir(self.root)
        except FileNotFoundError:
            return found
        for domain in domains:
            ddir = os.path.join(self.root, domain)
            if not os.path.isdir(ddir):
                continue
            for local in os.listdir(ddir):
                found[f"{local}@{domain}"] = os.path.join(ddir, local)
        return found

    def files(self, sub):
        """[(mailbox, path)] of the files in every Maildir's sub/."""
        out = []
        for mailbox, mdir in sorted(self.mailboxes().items()):
            try:
                names = os.listdir(os.path.join(mdir, sub))
            except (FileNotFoundError, NotADirectoryError):
                continue
            out += [(mailbox, os.path.join(mdir, sub, n)) for n in sorted(names)]
        return out

    def snapshot(self):
        """The paths in every new/ now."""
        return {path for _, path in self.files("new")}

    def delivered(self):
        """Every file in new/, as Delivered."""
        out = []
        for mailbox, path in self.files("new"):
            d = self._cache.get(path)
            if d is None:
                with open(path, "rb") as f:
                    d = Delivered(mailbox, path, f.read())
                self._cache[path] = d
            out.append(d)
        return out

    def by_qid(self):
        """{queue id: [Delivered]}; unparseable files under None."""
        index = {}
        for d in self.delivered():
            index.setdefault(d.qid, []).append(d)
        return index


# --- the registry -----------------------------------------------------------

class Runner:
    def __init__(self, only=None):
        self.only = re.compile(only) if only else None   # --only: names to run
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.times = {}         # name: seconds

    def _alarm(self, signum, frame):
        raise TestTimeLimit()

    def run(self, name, fn, *args):
        """Run one test, bounded by TEST_TIME_LIMIT; print its line."""
        if self.only is not None and not self.only.search(name):
            return
        old = signal.signal(signal.SIGALRM, self._alarm)
        signal.alarm(TEST_TIME_LIMIT)
        t0 = time.monotonic()
        try:
            fn(*args)
        except Failure as e:
            self.fail(name, str(e))
        except TestTimeLimit:
            self.fail(name, f"took longer than {TEST_TIME_LIMIT} s")
        except Exception as e:  # a crash of the test is a failure too
            self.fail(name, f"{type(e).__name__}: {e}")
        else:
            self.ok(name)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
            self.times[name] = time.monotonic() - t0

    def slowest(self, n=3):
        top = sorted(self.times.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {secs:.1f} s" for name, secs in top)

    def ok(self, name):
        self.passed += 1
        print(f"ok {name}", flush=True)

    def fail(self, name, reason):
        self.failed += 1
        reason = reason.replace("\n", "\\n")
        print(f"FAIL {name}: {reason}", flush=True)

    def skip(self, name, reason):
        self.skipped += 1
        print(f"skip {name}: {reason}", flush=True)
