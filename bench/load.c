/*
 * load — the load generator for porterd's benchmarks.
 *
 * It drives an SMTP server (porterd, or bench/limit as the ceiling) in one
 * of four ways and prints one result line:
 *
 *   session   whole sessions: connect, EHLO, a few VRFYs, QUIT
 *   pipeline  long-lived connections, each keeping -d VRFYs in flight
 *   idle      many greeted connections held open doing nothing (memory)
 *   mail      sessions that deliver -M messages each
 *
 * One process, one thread, non-blocking sockets, one level-triggered epoll
 * loop: a load generator that needs more CPU than the server it measures
 * measures itself. Every run stops by itself: when the work is done, at
 * the -t time bound, or after MAX_ERRORS errors.
 *
 * Connections live in a fixed array of slots. A slot whose connection is
 * closed (session over, or an error) is refilled from the main loop, never
 * from inside a callback, so a server that refuses every connection costs
 * a short retry pause rather than a busy loop or a deep recursion. Every
 * epoll registration carries the slot's generation, so an event for a
 * descriptor closed earlier in the same batch is recognised and dropped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INPUT_SIZE	4096	/* one reply line at most */
#define MAX_EVENTS	1024
#define IDLE_INFLIGHT	256	/* idle: connects awaiting greeting at once */
#define MAX_ERRORS	1000	/* past this the server is broken: stop */
#define ERRORS_SHOWN	5
#define RETRY_MS	10	/* pause before refilling after a failed start */
#define STDIN_TAG	UINT32_MAX

enum mode { M_SESSION, M_PIPELINE, M_IDLE, M_MAIL };

static const char *const mode_names[] = {
	[M_SESSION] = "session", [M_PIPELINE] = "pipeline",
	[M_IDLE] = "idle", [M_MAIL] = "mail",
};

/* What a connection waits for; the reply it reads answers this. */
enum phase {
	P_FREE,		/* slot unused */
	P_CONNECTING,	/* non-blocking connect() under way */
	P_GREETING,
	P_EHLO,
	P_VRFY,		/* session: one VRFY at a time */
	P_QUIT,
	P_PIPE,		/* pipeline: up to -d VRFYs in flight */
	P_HELD,		/* idle: greeted, held open */
	P_MAIL,		/* mail: MAIL, RCPT... and DATA replies */
	P_DATA,		/* mail: the reply to the end of the message */
};

struct options {
	enum mode mode;
	const char *host;
	int port;
	int conns;
	long count;
	double seconds;
	int vrfys;
	int depth;
	int expect;
	long msg_bytes;
	int rcpts;
	int msgs;
	char *addr_list;	/* -a, split in place */
	char **addrs;
	int naddrs;
};

struct conn {
	int fd;
	uint32_t gen;		/* bumped on close: stale events are dropped */
	enum phase phase;
	uint32_t events;	/* the epoll mask now registered */
	bool busy;		/* holds a session (session) or a claim (mail) */
	int left;		/* session: VRFYs to go; mail: messages to go */
	int got;		/* mail: replies of this MAIL group so far */
	int inflight;		/* pipeline: VRFYs sent, not answered */
	int ring_head;		/* pipeline: oldest send time in ring */
	double *ring;		/* pipeline: send times, -d of them */
	double t0;		/* session or message start */
	size_t inlen;
	char *out;
	size_t outlen, outoff, outcap;
	char in[INPUT_SIZE];
};

/* A prepared command line. */
struct cmd {
	char *text;
	size_t len;
};

static struct options opt = {
	.host = "127.0.0.1", .port = 2525, .conns = 50, .count = 10000,
	.seconds = 60, .vrfys = 3, .depth = 16, .expect = 250,
	.msg_bytes = 1024, .rcpts = 1, .msgs = 10,
};

static struct {
	int epfd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct conn *slots;
	int *free_slots;	/* stack of unused slot indices */
	int nfree;
	struct cmd *vrfy_cmds;	/* one per -a address */
	struct cmd *rcpt_cmds;
	char *message;
	size_t message_len;
	size_t addr_next;	/* cycles through the -a list */

	double start, deadline;
	double t_first, t_last;	/* the interval the rate is measured over */
	double *lat;		/* latencies of completed items, -n at most */
	long nlat;

	long done;		/* sessions, replies or messages completed */
	long errors;
	long active;		/* session: sessions under way */
	long claims;		/* mail: messages some connection will send */
	long sent;		/* pipeline: VRFYs sent and not lost */
	long started;		/* idle: connections attempted */
	long connecting;	/* idle: attempts not yet greeted */
	long held;		/* idle: greeted and open */
	long greeted;		/* idle: greeted, open or not */
	bool ready;		/* idle: every attempt greeted or failed */
	double t_ready;
	bool finished;
	bool timed_out;
	bool retry_soon;	/* a start failed: wake up soon to try again */
} R;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		die(1, "out of memory (%zu x %zu bytes)", n, size);
	return p;
}

/* ---- options ------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
	    "usage: load MODE [-H host] [-p port] [-c conns] [-n count] "
	    "[-t seconds] [-k vrfys]\n"
	    "            [-d depth] [-a addr[,addr...]] [-e code] [-m bytes] "
	    "[-r rcpts] [-M msgs]\n"
	    "MODE: session | pipeline | idle | mail\n");
	exit(2);
}

static long parse_long(int ch, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "load: -%c: want a number from %ld to %ld: %s\n",
		    ch, min, max, s);
		usage();
	}
	return v;
}

static double parse_seconds(const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *s == '\0' || *end != '\0' || !(v > 0) || v > 1e6) {
		fprintf(stderr, "load: -t: want seconds, more than 0: %s\n", s);
		usage();
	}
	return v;
}

static enum mode parse_mode(const char *s)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(s, mode_names[i]) == 0)
			return (enum mode)i;
	fprintf(stderr, "load: unknown mode: %s\n", s);
	usage();
	return M_SESSION;	/* not reached */
}

/* Splits -a in place; refuses empty entries and anything unprintable. */
static void split_addrs(void)
{
	char *s = opt.addr_list, *p;
	int n = 1;

	for (p = s; *p != '\0'; p++) {
		if (*p == ',')
			n++;
		else if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			die(2, "-a: addresses must be printable, without spaces");
	}
	opt.addrs = xcalloc((size_t)n, sizeof(*opt.addrs));
	for (int i = 0; i < n; i++) {
		opt.addrs[i] = s;
		if ((p = strchr(s, ',')) != NULL) {
			*p = '\0';
			s = p + 1;
		}
		if (*opt.addrs[i] == '\0')
			die(2, "-a: empty address in the list");
	}
	opt.naddrs = n;
}

static void parse_options(int argc, char **argv)
{
	static char default_addr[] = "postmaster";
	int ch;

	if (argc < 2 || argv[1][0] == '-')
		usage();
	opt.mode = parse_mode(argv[1]);
	opt.addr_list = default_addr;
	/* MODE stands in for the program name, so getopt starts after it. */
	argc--;
	argv++;
	while ((ch = getopt(argc, argv, "H:p:c:n:t:k:d:a:e:m:r:M:")) != -1) {
		switch (ch) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = (int)parse_long(ch, optarg, 1, 65535); break;
		case 'c': opt.conns = (int)parse_long(ch, optarg, 1, 1000000); break;
		case 'n': opt.count = parse_long(ch, optarg, 1, 100000000); break;
		case 't': opt.seconds = parse_seconds(optarg); break;
		case 'k': opt.vrfys = (int)parse_long(ch, optarg, 0, 1000000); break;
		case 'd': opt.depth = (int)parse_long(ch, optarg, 1, 65536); break;
		case 'a': opt.addr_list = optarg; break;
		case 'e': opt.expect = (int)parse_long(ch, optarg, 200, 599); break;
		case 'm': opt.msg_bytes = parse_long(ch, optarg, 1, 64L << 20); break;
		case 'r': opt.rcpts = (int)parse_long(ch, optarg, 1, 100000); break;
		case 'M': opt.msgs = (int)parse_long(ch, optarg, 1, 1000000); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	split_addrs();
}

/* ---- setup -------------------------------------------------------------- */

static void raise_nofile(void)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)opt.conns + 16;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		die(1, "getrlimit: %s", strerror(errno));
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		die(2, "-c %d needs %llu descriptors; the hard limit is %llu "
		    "(raise it with ulimit -Hn)", opt.conns,
		    (unsigned long long)need, (unsigned long long)rl.rlim_max);
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		die(1, "setrlimit: %s", strerror(errno));
}

static void resolve_host(void)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&R.addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&R.addr;

	if (inet_pton(AF_INET, opt.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)opt.port);
		R.addrlen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, opt.host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)opt.port);
		R.addrlen = sizeof(*sin6);
	} else {
		die(2, "-H: not a numeric IPv4 or IPv6 address: %s", opt.host);
	}
}

static struct cmd make_cmd(const char *fmt, const char *arg)
{
	struct cmd c;
	int n = snprintf(NULL, 0, fmt, arg);

	c.text = xcalloc((size_t)n + 1, 1);
	snprintf(c.text, (size_t)n + 1, fmt, arg);
	c.len = (size_t)n;
	return c;
}

/* The command lines are formatted once, not once per command. */
static void prepare_commands(void)
{
	R.vrfy_cmds = xcalloc((size_t)opt.naddrs, sizeof(*R.vrfy_cmds));
	R.rcpt_cmds = xcalloc((size_t)opt.naddrs, sizeof(*R.rcpt_cmds));
	for (int i = 0; i < opt.naddrs; i++) {
		R.vrfy_cmds[i] = make_cmd("VRFY %s\r\n", opt.addrs[i]);
		R.rcpt_cmds[i] = make_cmd("RCPT TO:<%s>\r\n", opt.addrs[i]);
	}
}

/*
 * The one message every mail session sends: headers, then 76-character
 * lines of 'x' (never a leading dot, so no dot-stuffing) up to about -m
 * bytes, then the terminating ".".
 */
static void build_message(void)
{
	static const char body_line[] =
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
	const size_t line_len = sizeof(body_line) - 1;
	size_t cap, len;
	int n;

	cap = (size_t)opt.msg_bytes + 256 + strlen(opt.addrs[0]);
	R.message = xcalloc(cap, 1);
	n = snprintf(R.message, cap,
	    "From: <load@load.test>\r\nTo: <%s>\r\nSubject: load\r\n"
	    "Message-ID: <1@load.test>\r\n\r\n", opt.addrs[0]);
	len = (size_t)n;
	while (len + line_len + 3 <= (size_t)opt.msg_bytes) {
		memcpy(R.message + len, body_line, line_len);
		len += line_len;
	}
	memcpy(R.message + len, ".\r\n", 3);
	R.message_len = len + 3;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	resolve_host();
	prepare_commands();
	if (opt.mode == M_MAIL)
		build_message();
	if (opt.mode != M_IDLE)
		R.lat = xcalloc((size_t)opt.count, sizeof(*R.lat));
	R.slots = xcalloc((size_t)opt.conns, sizeof(*R.slots));
	R.free_slots = xcalloc((size_t)opt.conns, sizeof(*R.free_slots));
	/* Pushed in reverse so slot 0 is used first. */
	for (int i = opt.conns - 1; i >= 0; i--) {
		R.slots[i].fd = -1;
		if (opt.mode == M_PIPELINE)
			R.slots[i].ring = xcalloc((size_t)opt.depth, sizeof(double));
		R.free_slots[R.nfree++] = i;
	}
	if ((R.epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die(1, "epoll_create1: %s", strerror(errno));
}

/* ---- errors ------------------------------------------------------------- */

/* Prints a reply line with its control characters made visible. */
static void print_escaped(FILE *f, const char *s, size_t len)
{
	size_t shown = len < 200 ? len : 200;

	fputc('"', f);
	for (size_t i = 0; i < shown; i++) {
		unsigned char u = (unsigned char)s[i];

		if (u == '\r')
			fputs("\\r", f);
		else if (u == '\n')
			fputs("\\n", f);
		else if (u == '"' || u == '\\')
			fprintf(f, "\\%c", u);
		else if (u < 0x20 || u >= 0x7f)
			fprintf(f, "\\x%02x", u);
		else
			fputc(u, f);
	}
	fputc('"', f);
	if (shown < len)
		fprintf(f, "... (%zu bytes)", len);
}

static const char *phase_command(const struct conn *c)
{
	switch (c->phase) {
	case P_CONNECTING:	return "connect";
	case P_GREETING:	return "greeting";
	case P_EHLO:		return "EHLO";
	case P_VRFY:
	case P_PIPE:		return "VRFY";
	case P_QUIT:		return "QUIT";
	case P_HELD:		return "held";
	case P_MAIL:
		if (c->got == 0)
			return "MAIL";
		return c->got <= opt.rcpts ? "RCPT" : "DATA";
	case P_DATA:		return "message";
	case P_FREE:		break;
	}
	return "?";
}

static void close_conn(struct conn *c);

/*
 * Counts an error, shows the first few, and closes the connection; the
 * main loop refills the slot (except in idle mode).
 */
static void conn_error(struct conn *c, const char *what, const char *line,
    size_t len)
{
	R.errors++;
	if (R.errors <= ERRORS_SHOWN) {
		fprintf(stderr, "load: %s: %s: %s", mode_names[opt.mode],
		    phase_command(c), what);
		if (line != NULL) {
			fputs(": ", stderr);
			print_escaped(stderr, line, len);
		}
		fputc('\n', stderr);
	}
	close_conn(c);
	if (R.errors >= MAX_ERRORS && !R.finished) {
		fprintf(stderr, "load: %s: %ld errors, giving up\n",
		    mode_names[opt.mode], R.errors);
		R.finished = true;
	}
}

/* ---- connections -------------------------------------------------------- */

static uint64_t event_tag(const struct conn *c)
{
	return (uint64_t)c->gen << 32 | (uint64_t)(c - R.slots);
}

static void set_events(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = event_tag(c) };

	if (c->events == events)
		return;
	if (epoll_ctl(R.epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		die(1, "epoll_ctl: %s", strerror(errno));
	c->events = events;
}

/* Releases what the connection held in the run's accounting. */
static void release_conn(struct conn *c)
{
	if (c->busy && opt.mode == M_SESSION)
		R.active--;
	if (c->busy && opt.mode == M_MAIL)
		R.claims--;
	c->busy = false;
	/* VRFYs lost with a connection go back to the budget. */
	R.sent -= c->inflight;
	c->inflight = 0;
	c->ring_head = 0;
	if (opt.mode == M_IDLE) {
		if (c->phase == P_HELD)
			R.held--;
		else
			R.connecting--;
	}
}

static void close_conn(struct conn *c)
{
	if (c->phase == P_FREE)
		return;
	release_conn(c);
	close(c->fd);	/* also drops the epoll registration */
	c->fd = -1;
	c->gen++;
	c->phase = P_FREE;
	c->inlen = 0;
	c->outlen = c->outoff = 0;
	R.free_slots[R.nfree++] = (int)(c - R.slots);
}

static void append(struct conn *c, const char *s, size_t len)
{
	size_t cap = c->outcap != 0 ? c->outcap : 256;
	char *p;

	if (c->outlen + len > c->outcap) {
		while (cap < c->outlen + len)
			cap *= 2;
		if ((p = realloc(c->out, cap)) == NULL)
			die(1, "out of memory for output");
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, s, len);
	c->outlen += len;
}

static void append_cmd(struct conn *c, const struct cmd *cmd)
{
	append(c, cmd->text, cmd->len);
}

static const struct cmd *next_addr(const struct cmd *cmds)
{
	return &cmds[R.addr_next++ % (size_t)opt.naddrs];
}

/*
 * One write of whatever is pending; what the socket does not take waits
 * for EPOLLOUT. False when the connection failed (and is closed).
 */
static bool flush_conn(struct conn *c)
{
	ssize_t n = 0;

	if (c->outoff < c->outlen) {
		n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			conn_error(c, strerror(errno), NULL, 0);
			return false;
		}
		if (n > 0)
			c->outoff += (size_t)n;
	}
	if (c->outoff == c->outlen) {
		c->outoff = c->outlen = 0;
		set_events(c, EPOLLIN);
	} else {
		set_events(c, EPOLLIN | EPOLLOUT);
	}
	return true;
}

/* Claims the slot's work in the run's accounting before connecting. */
static void claim_work(struct conn *c)
{
	c->busy = opt.mode == M_SESSION || opt.mode == M_MAIL;
	if (opt.mode == M_SESSION)
		R.active++;
	else if (opt.mode == M_MAIL)
		R.claims++;
	else if (opt.mode == M_IDLE) {
		R.started++;
		R.connecting++;
	}
}

static void connected(struct conn *c)
{
	c->phase = P_GREETING;
	set_events(c, EPOLLIN);
}

/* Starts a connection in a free slot; false if it failed at once. */
static bool start_conn(struct conn *c)
{
	struct epoll_event ev;
	int one = 1;
	int fd, rc;

	c->got = c->inflight = c->ring_head = 0;
	claim_work(c);
	c->phase = P_CONNECTING;
	fd = socket(R.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		die(1, "socket: %s", strerror(errno));
	c->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->events = EPOLLOUT;
	ev.events = c->events;
	ev.data.u64 = event_tag(c);
	if (epoll_ctl(R.epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		die(1, "epoll_ctl: %s", strerror(errno));
	c->t0 = now();	/* a session's latency counts from connect() */
	rc = connect(fd, (struct sockaddr *)&R.addr, R.addrlen);
	if (rc == 0) {
		connected(c);
		return true;
	}
	if (errno == EINPROGRESS)
		return true;
	conn_error(c, strerror(errno), NULL, 0);
	return false;
}

static void on_connect_done(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_error(c, strerror(err), NULL, 0);
		return;
	}
	connected(c);
}

/* Whether a free slot should get a new connection now. */
static bool want_conn(void)
{
	if (R.finished)
		return false;
	switch (opt.mode) {
	case M_SESSION:
		return R.done + R.active < opt.count;
	case M_MAIL:
		return R.done + R.claims < opt.count;
	case M_PIPELINE:
		return R.sent < opt.count;
	case M_IDLE:
		return R.started < opt.conns && R.connecting < IDLE_INFLIGHT;
	}
	return false;
}

/* Refills free slots; each slot gets at most one attempt per call. */
static void fill_slots(void)
{
	int attempts = R.nfree;
	struct conn *c;

	R.retry_soon = false;
	while (attempts-- > 0 && R.nfree > 0 && want_conn()) {
		c = &R.slots[R.free_slots[--R.nfree]];
		if (!start_conn(c))
			R.retry_soon = true;
	}
}

/* ---- results ------------------------------------------------------------ */

static void record_latency(double seconds)
{
	if (R.nlat < opt.count)
		R.lat[R.nlat++] = seconds;
}

/* The time of an item's completion, for the rate's interval. */
static void completed(double t)
{
	R.done++;
	R.t_last = t;
}

/* ---- the modes' protocol steps ------------------------------------------ */

static void send_vrfy(struct conn *c)
{
	append_cmd(c, next_addr(R.vrfy_cmds));
}

static void send_quit(struct conn *c)
{
	static const struct cmd quit = { "QUIT\r\n", 6 };

	append_cmd(c, &quit);
	c->phase = P_QUIT;
}

/* Session: the next VRFY, or QUIT when -k are done. */
static void session_next(struct conn *c)
{
	if (c->left > 0) {
		c->left--;
		send_vrfy(c);
		c->phase = P_VRFY;
	} else {
		send_quit(c);
	}
}

/* Pipeline: sends up to `want` VRFYs, within the run's budget. */
static void pipeline_send(struct conn *c, int want, double t)
{
	int slot;

	if (R.t_first == 0 && want > 0 && R.sent < opt.count)
		R.t_first = t;
	while (want-- > 0 && R.sent < opt.count && c->inflight < opt.depth) {
		slot = (c->ring_head + c->inflight) % opt.depth;
		c->ring[slot] = t;
		c->inflight++;
		R.sent++;
		send_vrfy(c);
	}
}

/* Mail: MAIL, the RCPTs and DATA in one batch. */
static void mail_send_group(struct conn *c, double t)
{
	static const struct cmd mail = {
		"MAIL FROM:<load@load.test>\r\n", 28
	};
	static const struct cmd data = { "DATA\r\n", 6 };

	c->left--;
	c->got = 0;
	c->t0 = t;
	append_cmd(c, &mail);
	for (int i = 0; i < opt.rcpts; i++)
		append_cmd(c, next_addr(R.rcpt_cmds));
	append_cmd(c, &data);
	c->phase = P_MAIL;
}

/*
 * Mail: after EHLO or a delivered message, the next message if this
 * connection has one to go and the run still needs it, else QUIT. A claim
 * is one message some connection has promised to send: a connection takes
 * one when it connects, gives it up when its message is acknowledged, and
 * takes another only while done + claims stays under -n, so no more
 * messages are sent than needed.
 */
static void mail_next(struct conn *c, double t)
{
	if (c->left > 0 && !c->busy && R.done + R.claims < opt.count) {
		c->busy = true;
		R.claims++;
	}
	if (c->busy && c->left > 0) {
		mail_send_group(c, t);
		return;
	}
	if (c->busy) {
		c->busy = false;
		R.claims--;
	}
	send_quit(c);
}

static void idle_greeted(struct conn *c)
{
	c->phase = P_HELD;
	R.connecting--;
	R.held++;
	R.greeted++;
}

static void on_greeting(struct conn *c, double t)
{
	switch (opt.mode) {
	case M_SESSION:
	case M_MAIL:
		append(c, "EHLO load.test\r\n", 16);
		c->phase = P_EHLO;
		break;
	case M_PIPELINE:
		c->phase = P_PIPE;
		pipeline_send(c, opt.depth, t);
		break;
	case M_IDLE:
		idle_greeted(c);
		break;
	}
}

static void on_ehlo(struct conn *c, double t)
{
	if (opt.mode == M_SESSION) {
		c->left = opt.vrfys;
		session_next(c);
	} else {
		c->left = opt.msgs;
		mail_next(c, t);
	}
}

static void on_quit(struct conn *c, double t)
{
	if (opt.mode == M_SESSION) {
		record_latency(t - c->t0);
		completed(t);
		if (R.done >= opt.count)
			R.finished = true;
	}
	close_conn(c);
}

static void on_pipe_reply(struct conn *c, double t)
{
	record_latency(t - c->ring[c->ring_head]);
	completed(t);
	c->ring_head = (c->ring_head + 1) % opt.depth;
	c->inflight--;
	if (R.done >= opt.count) {
		R.finished = true;
		return;
	}
	pipeline_send(c, 1, t);
}

static void on_mail_reply(struct conn *c)
{
	if (++c->got < opt.rcpts + 2)
		return;
	/* The 354: the message follows in one write. */
	append(c, R.message, R.message_len);
	c->phase = P_DATA;
}

static void on_message_done(struct conn *c, double t)
{
	record_latency(t - c->t0);
	completed(t);
	c->busy = false;
	R.claims--;
	if (R.done >= opt.count) {
		R.finished = true;
		return;
	}
	mail_next(c, t);
}

/*
 * The code the next final reply must carry: 0 for any 2xx, -1 when no
 * reply is expected at all.
 */
static int expected_code(const struct conn *c)
{
	switch (c->phase) {
	case P_GREETING:	return 220;
	case P_EHLO:		return 250;
	case P_VRFY:		return opt.expect;
	case P_PIPE:		return c->inflight > 0 ? opt.expect : -1;
	case P_QUIT:		return 0;
	case P_MAIL:		return c->got == opt.rcpts + 1 ? 354 : 250;
	case P_DATA:		return 250;
	default:		return -1;
	}
}

/* Moves the connection one step on a well-formed, expected reply. */
static void advance(struct conn *c, double t)
{
	switch (c->phase) {
	case P_GREETING:	on_greeting(c, t); break;
	case P_EHLO:		on_ehlo(c, t); break;
	case P_VRFY:		session_next(c); break;
	case P_QUIT:		on_quit(c, t); break;
	case P_PIPE:		on_pipe_reply(c, t); break;
	case P_MAIL:		on_mail_reply(c); break;
	case P_DATA:		on_message_done(c, t); break;
	default:		break;
	}
}

/*
 * Checks one reply line; true when it is final. "DDD-text" continues,
 * "DDD text" and "DDD" end a reply; anything else is malformed.
 */
static bool parse_reply_line(const char *line, size_t len, int *code,
    bool *final)
{
	if (len < 5 || line[len - 2] != '\r')
		return false;
	for (int i = 0; i < 3; i++)
		if (line[i] < '0' || line[i] > '9')
			return false;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (line[3] == '-' || line[3] == ' ') {
		*final = line[3] == ' ';
		return true;
	}
	*final = true;
	return len == 5;	/* "DDD\r\n" */
}

/* Handles one complete line; false when the connection is gone. */
static bool on_line(struct conn *c, const char *line, size_t len, double t)
{
	int want = expected_code(c);
	int code;
	bool final;

	if (!parse_reply_line(line, len, &code, &final)) {
		conn_error(c, "malformed reply", line, len);
		return false;
	}
	if (want == -1) {
		conn_error(c, "unexpected reply", line, len);
		return false;
	}
	if (!final)
		return true;
	if (want == 0 ? code / 100 != 2 : code != want) {
		conn_error(c, "unexpected reply", line, len);
		return false;
	}
	advance(c, t);
	return c->phase != P_FREE && !R.finished;
}

/* Takes every complete line out of the input buffer. */
static bool consume_lines(struct conn *c, double t)
{
	size_t pos = 0, len;
	char *nl;

	while (pos < c->inlen) {
		nl = memchr(c->in + pos, '\n', c->inlen - pos);
		if (nl == NULL)
			break;
		len = (size_t)(nl - (c->in + pos)) + 1;
		if (!on_line(c, c->in + pos, len, t))
			return false;
		pos += len;
	}
	if (pos == 0 && c->inlen == INPUT_SIZE) {
		conn_error(c, "reply line too long", c->in, c->inlen);
		return false;
	}
	memmove(c->in, c->in + pos, c->inlen - pos);
	c->inlen -= pos;
	return true;
}

/*
 * One read, every reply in it handled, and the commands those replies
 * called for leave together in one write.
 */
static void on_readable(struct conn *c)
{
	ssize_t n;
	double t;

	n = read(c->fd, c->in + c->inlen, INPUT_SIZE - c->inlen);
	if (n == 0) {
		conn_error(c, "connection closed by server", NULL, 0);
		return;
	}
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_error(c, strerror(errno), NULL, 0);
		return;
	}
	t = now();
	c->inlen += (size_t)n;
	if (!consume_lines(c, t))
		return;
	flush_conn(c);
}

static void on_stdin(void)
{
	char buf[512];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
		R.finished = true;
}

static void dispatch(const struct epoll_event *ev)
{
	uint32_t idx = (uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	struct conn *c;

	if (idx == STDIN_TAG) {
		on_stdin();
		return;
	}
	c = &R.slots[idx];
	if (c->gen != gen || c->phase == P_FREE)
		return;		/* for a descriptor since closed */
	if (c->phase == P_CONNECTING) {
		if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_connect_done(c);
		return;
	}
	if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		on_readable(c);
		if (c->gen != gen || c->phase == P_FREE || R.finished)
			return;
	}
	if (ev->events & EPOLLOUT)
		flush_conn(c);
}

/* ---- the run ------------------------------------------------------------ */

/*
 * Idle: once every attempt is greeted or failed, say so and start
 * watching stdin. A stdin epoll cannot watch (a file, /dev/null, closed)
 * has nothing more to say: that is its end.
 */
static void check_idle_ready(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = STDIN_TAG };

	if (R.ready || R.started < opt.conns || R.connecting > 0)
		return;
	R.ready = true;
	R.t_ready = now();
	printf("ready conns=%ld\n", R.held);
	fflush(stdout);
	if (epoll_ctl(R.epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev) == -1)
		R.finished = true;
}

static int wait_ms(double t)
{
	/* Rounded up, so the deadline has passed when the wait ends. */
	double ms = (R.deadline - t) * 1000 + 1;

	if (ms < 0)
		ms = 0;
	if (R.retry_soon && ms > RETRY_MS)
		ms = RETRY_MS;
	return (int)ms;
}

static void run(void)
{
	struct epoll_event events[MAX_EVENTS];
	double t;
	int n;

	R.start = now();
	R.deadline = R.start + opt.seconds;
	while (!R.finished) {
		fill_slots();
		if (opt.mode == M_IDLE)
			check_idle_ready();
		if (R.finished)
			break;
		t = now();
		if (t >= R.deadline) {
			/* Idle's hold ending at -t is its normal end. */
			R.timed_out = !(opt.mode == M_IDLE && R.ready);
			break;
		}
		n = epoll_wait(R.epfd, events, MAX_EVENTS, wait_ms(t));
		if (n == -1 && errno != EINTR)
			die(1, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n && !R.finished; i++)
			dispatch(&events[i]);
	}
}

/*
 * Closes everything left. A pipeline connection says QUIT first (one
 * write, unanswered: the run is over).
 */
static void close_all(void)
{
	for (int i = 0; i < opt.conns; i++) {
		struct conn *c = &R.slots[i];

		if (c->phase == P_FREE)
			continue;
		if (opt.mode == M_PIPELINE && c->phase == P_PIPE &&
		    write(c->fd, "QUIT\r\n", 6) == -1) {
			/* The server is gone: nothing more to tell it. */
		}
		close(c->fd);
		c->phase = P_FREE;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted latencies, in milliseconds. */
static double percentile_ms(double p)
{
	long rank;

	if (R.nlat == 0)
		return 0;
	/* ceil(p * n) without libm. */
	rank = (long)(p * (double)R.nlat);
	if ((double)rank < p * (double)R.nlat)
		rank++;
	if (rank < 1)
		rank = 1;
	return R.lat[rank - 1] * 1000;
}

static int report_idle(void)
{
	double secs = (R.ready ? R.t_ready : now()) - R.start;

	printf("mode=idle conns=%d held=%ld errors=%ld seconds=%.3f rate=%.1f%s\n",
	    opt.conns, R.held, R.errors, secs,
	    secs > 0 ? (double)R.greeted / secs : 0,
	    R.timed_out ? " timeout=1" : "");
	return R.held == opt.conns && R.errors == 0 && !R.timed_out ? 0 : 1;
}

static int report(void)
{
	double from = opt.mode == M_PIPELINE ? R.t_first : R.start;
	double secs = R.done > 0 ? R.t_last - from : now() - R.start;

	if (opt.mode == M_IDLE)
		return report_idle();
	qsort(R.lat, (size_t)R.nlat, sizeof(*R.lat), cmp_double);
	printf("mode=%s conns=%d done=%ld errors=%ld seconds=%.3f rate=%.1f "
	    "p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
	    mode_names[opt.mode], opt.conns, R.done, R.errors, secs,
	    secs > 0 ? (double)R.done / secs : 0,
	    percentile_ms(0.50), percentile_ms(0.99), percentile_ms(1.0));
	if (opt.mode == M_MAIL)
		printf(" bytes=%zu", R.message_len);
	printf("%s\n", R.timed_out ? " timeout=1" : "");
	return R.done == opt.count && R.errors == 0 ? 0 : 1;
}

static void free_all(void)
{
	for (int i = 0; i < opt.conns; i++) {
		free(R.slots[i].out);
		free(R.slots[i].ring);
	}
	for (int i = 0; i < opt.naddrs; i++) {
		free(R.vrfy_cmds[i].text);
		free(R.rcpt_cmds[i].text);
	}
	free(R.vrfy_cmds);
	free(R.rcpt_cmds);
	free(R.slots);
	free(R.free_slots);
	free(R.lat);
	free(R.message);
	free(opt.addrs);
	close(R.epfd);
}

int main(int argc, char **argv)
{
	int status;

	parse_options(argc, argv);
	setup();
	run();
	close_all();
	status = report();
	fflush(stdout);
	free_all();
	return status;
}
