/*
 * limit — the reference responder for porterd's benchmarks ("the ceiling").
 *
 * It speaks just enough SMTP for bench/load to drive it: a greeting, then
 * a canned "250 2.0.0 ok" for every input line, with one exception so a
 * mail client can be served: "DATA" is answered 354 and the message is
 * swallowed up to its ".". There is no parsing, no lookup, no timer and no
 * logging, so whatever porterd is measured against, this is the cost of the
 * network and the event loop alone: the fastest any server on this host
 * could answer, and the least memory an idle session could take.
 *
 * One thread, one level-triggered epoll loop. Each wakeup reads once and
 * answers every line of that read with one write. An idle connection holds
 * only a small struct: its buffers exist only while they hold something.
 *
 * usage: limit [-l addr] [-p port]	(default 127.0.0.1 2525)
 * Runs until SIGINT or SIGTERM, then exits 0. Prints only errors.
 */
#define _GNU_SOURCE		/* accept4() */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define INPUT_SIZE	4096		/* one line, as the brief asks */
#define OUTPUT_HIGH	(1024 * 1024)	/* stop reading a client above this */
#define LISTEN_BACKLOG	4096
#define ACCEPT_BATCH	512		/* accepts per wakeup; the rest next time */
#define MAX_EVENTS	1024

static const char GREETING[] = "220 limit ESMTP\r\n";
static const char REPLY_OK[] = "250 2.0.0 ok\r\n";
static const char REPLY_DATA[] = "354 go ahead\r\n";

/*
 * Everything a connection needs between wakeups. Kept small on purpose:
 * it is the idle-session memory reference.
 */
struct client {
	char *in;		/* partial line left over, or NULL */
	char *out;		/* replies the socket did not take, or NULL */
	uint32_t outlen;	/* bytes in out */
	uint32_t outoff;	/* bytes of out already written */
	uint16_t inlen;		/* bytes in in */
	uint8_t in_data;	/* between DATA and "." */
	uint8_t overlong;	/* swallowing the rest of an answered long line */
	uint32_t events;	/* the epoll mask now registered */
};

static volatile sig_atomic_t stopping;

/* fd-indexed, sized to RLIMIT_NOFILE: finds every client at exit. */
static struct client **clients;
static size_t nclients_max;

static int epfd = -1;
static int listen_fd = -1;
static bool accept_paused;	/* out of descriptors: wait for a close */

/*
 * Scratch space shared by all clients: a read lands here, the replies to
 * it are built here, and only what is left over is copied to the heap.
 * Worst case: every byte of a full read is a line ending.
 */
static char read_buf[INPUT_SIZE];
static char reply_buf[INPUT_SIZE * (sizeof(REPLY_OK) - 1)];

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: limit [-l addr] [-p port]\n");
	exit(2);
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		perror("limit: getrlimit");
		exit(1);
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		perror("limit: setrlimit");
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		rl.rlim_cur = 1024 * 1024;
	nclients_max = rl.rlim_cur;
}

static int parse_port(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < 1 || v > 65535) {
		fprintf(stderr, "limit: bad port: %s\n", s);
		exit(2);
	}
	return (int)v;
}

/* Fills ss from a numeric IPv4 or IPv6 address; returns its length. */
static socklen_t make_sockaddr(struct sockaddr_storage *ss, const char *addr,
    int port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return sizeof(*sin);
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		return sizeof(*sin6);
	}
	fprintf(stderr, "limit: not a numeric address: %s\n", addr);
	exit(2);
}

static int open_listener(const char *addr, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = make_sockaddr(&ss, addr, port);
	int one = 1;
	int fd;

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		perror("limit: socket");
		exit(1);
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		perror("limit: SO_REUSEADDR");
	if (bind(fd, (struct sockaddr *)&ss, len) == -1) {
		fprintf(stderr, "limit: bind %s port %d: %s\n", addr, port,
		    strerror(errno));
		exit(1);
	}
	if (listen(fd, LISTEN_BACKLOG) == -1) {
		perror("limit: listen");
		exit(1);
	}
	return fd;
}

static void set_events(int fd, struct client *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	if (c->events == events)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == -1)
		perror("limit: epoll_ctl");
	c->events = events;
}

static void resume_accepting(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = listen_fd };

	if (!accept_paused)
		return;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) == -1)
		perror("limit: epoll_ctl listener");
	accept_paused = false;
}

static void close_client(int fd)
{
	struct client *c = clients[fd];

	/* close() drops the epoll registration too. */
	close(fd);
	free(c->in);
	free(c->out);
	free(c);
	clients[fd] = NULL;
	/* A descriptor came free: if accept ran out, it may go on. */
	resume_accepting();
}

/*
 * Chooses what to wait for: output pending needs EPOLLOUT, and too much
 * output pending stops reading so a client that never reads its replies
 * cannot make us buffer without end.
 */
static void update_events(int fd, struct client *c)
{
	uint32_t pending = c->outlen - c->outoff;
	uint32_t events = 0;

	if (pending <= OUTPUT_HIGH)
		events |= EPOLLIN;
	if (pending > 0)
		events |= EPOLLOUT;
	set_events(fd, c, events);
}

/* Keeps bytes the socket would not take, after any already kept. */
static bool keep_output(struct client *c, const char *buf, size_t len)
{
	size_t pending = c->outlen - c->outoff;
	char *p;

	if (c->outoff > 0) {
		memmove(c->out, c->out + c->outoff, pending);
		c->outoff = 0;
		c->outlen = (uint32_t)pending;
	}
	p = realloc(c->out, pending + len);
	if (p == NULL)
		return false;
	memcpy(p + pending, buf, len);
	c->out = p;
	c->outlen = (uint32_t)(pending + len);
	return true;
}

/* Writes what is pending; false when the connection is dead. */
static bool flush_output(int fd, struct client *c)
{
	ssize_t n;

	if (c->outlen == c->outoff)
		return true;
	n = write(fd, c->out + c->outoff, c->outlen - c->outoff);
	if (n == -1)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
	c->outoff += (uint32_t)n;
	if (c->outoff == c->outlen) {
		/* Drained: an idle client keeps no buffer. */
		free(c->out);
		c->out = NULL;
		c->outlen = c->outoff = 0;
	}
	return true;
}

/*
 * Sends a batch of replies in one write when nothing is queued before it;
 * otherwise (order matters) queues it behind what is already waiting.
 */
static bool send_replies(int fd, struct client *c, const char *buf, size_t len)
{
	ssize_t n = 0;

	if (len == 0)
		return true;
	if (c->outlen == c->outoff) {
		n = write(fd, buf, len);
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				return false;
			n = 0;
		}
		if ((size_t)n == len)
			return true;
	}
	return keep_output(c, buf + n, len - (size_t)n);
}

/* The reply one complete line earns, or NULL for a line of message data. */
static const char *answer_line(struct client *c, const char *line, size_t len)
{
	if (c->in_data) {
		if (len == 3 && memcmp(line, ".\r\n", 3) == 0) {
			c->in_data = 0;
			return REPLY_OK;
		}
		return NULL;
	}
	if (len == 6 && strncasecmp(line, "DATA\r\n", 6) == 0) {
		c->in_data = 1;
		return REPLY_DATA;
	}
	return REPLY_OK;
}

/*
 * Answers every complete line in buf[0..len) into reply_buf; returns how
 * many bytes of buf were consumed (the rest is a partial line) and the
 * reply length through *rlen.
 */
static size_t answer_lines(struct client *c, const char *buf, size_t len,
    size_t *rlen)
{
	size_t pos = 0, r = 0;
	const char *nl, *reply;

	while (pos < len) {
		nl = memchr(buf + pos, '\n', len - pos);
		if (nl == NULL)
			break;
		if (c->overlong) {
			/* The tail of a line already answered. */
			c->overlong = 0;
		} else {
			reply = answer_line(c, buf + pos,
			    (size_t)(nl - buf) + 1 - pos);
			if (reply != NULL) {
				memcpy(reply_buf + r, reply, sizeof(REPLY_OK) - 1);
				r += sizeof(REPLY_OK) - 1;
			}
		}
		pos = (size_t)(nl - buf) + 1;
	}
	if (pos == 0 && len == INPUT_SIZE) {
		/*
		 * A full buffer and no line end: answer the line once now,
		 * like any line, and swallow the rest of it as it comes.
		 */
		if (!c->overlong && !c->in_data) {
			memcpy(reply_buf + r, REPLY_OK, sizeof(REPLY_OK) - 1);
			r += sizeof(REPLY_OK) - 1;
		}
		c->overlong = 1;
		pos = len;
	}
	*rlen = r;
	return pos;
}

/* Keeps a partial line for the next read; frees the buffer when none. */
static bool keep_partial(struct client *c, const char *rest, size_t len)
{
	if (len == 0) {
		free(c->in);
		c->in = NULL;
		c->inlen = 0;
		return true;
	}
	if (c->in == NULL && (c->in = malloc(INPUT_SIZE)) == NULL)
		return false;
	memmove(c->in, rest, len);
	c->inlen = (uint16_t)len;
	return true;
}

/*
 * One read, every line of it answered, one write. The read lands after the
 * partial line in the client's own buffer if it has one, else in the
 * shared scratch buffer.
 */
static void on_readable(int fd, struct client *c)
{
	char *buf = c->in != NULL ? c->in : read_buf;
	size_t have = c->in != NULL ? c->inlen : 0;
	size_t used, rlen;
	ssize_t n;

	n = read(fd, buf + have, INPUT_SIZE - have);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		close_client(fd);
		return;
	}
	if (n == -1)
		return;
	have += (size_t)n;
	used = answer_lines(c, buf, have, &rlen);
	if (!keep_partial(c, buf + used, have - used) ||
	    !send_replies(fd, c, reply_buf, rlen)) {
		close_client(fd);
		return;
	}
	update_events(fd, c);
}

static void on_writable(int fd, struct client *c)
{
	if (!flush_output(fd, c)) {
		close_client(fd);
		return;
	}
	update_events(fd, c);
}

static void add_client(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	struct client *c;

	if ((size_t)fd >= nclients_max || (c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->events = EPOLLIN;
	clients[fd] = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		perror("limit: epoll_ctl client");
		close_client(fd);
		return;
	}
	if (!send_replies(fd, c, GREETING, sizeof(GREETING) - 1)) {
		close_client(fd);
		return;
	}
	update_events(fd, c);
}

/*
 * Out of descriptors: stop watching the listener (level-triggered, it
 * would wake us forever) until some client closes.
 */
static void pause_accepting(void)
{
	if (epoll_ctl(epfd, EPOLL_CTL_DEL, listen_fd, NULL) == -1)
		perror("limit: epoll_ctl listener");
	accept_paused = true;
}

static void accept_clients(void)
{
	int fd;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			add_client(fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE) {
			perror("limit: accept");
			pause_accepting();
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			perror("limit: accept");
		}
		return;
	}
}

static void dispatch(const struct epoll_event *ev)
{
	int fd = ev->data.fd;
	struct client *c;

	if (fd == listen_fd) {
		accept_clients();
		return;
	}
	c = clients[fd];
	if (c == NULL)
		return;
	if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		on_readable(fd, c);
		if (clients[fd] == NULL)
			return;
	}
	if (ev->events & EPOLLOUT)
		on_writable(fd, c);
}

/*
 * SIGINT and SIGTERM stay blocked except inside epoll_pwait(), so a signal
 * can never slip in between the check of `stopping` and the wait.
 */
static void setup_signals(sigset_t *waitmask)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, waitmask);
	sigdelset(waitmask, SIGINT);
	sigdelset(waitmask, SIGTERM);
}

static void run(const sigset_t *waitmask)
{
	struct epoll_event events[MAX_EVENTS];
	int n;

	while (!stopping) {
		n = epoll_pwait(epfd, events, MAX_EVENTS, -1, waitmask);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			perror("limit: epoll_wait");
			exit(1);
		}
		for (int i = 0; i < n; i++)
			dispatch(&events[i]);
	}
}

static void free_clients(void)
{
	for (size_t fd = 0; fd < nclients_max; fd++)
		if (clients[fd] != NULL)
			close_client((int)fd);
	free(clients);
}

int main(int argc, char **argv)
{
	struct epoll_event ev = { .events = EPOLLIN };
	const char *addr = "127.0.0.1";
	sigset_t waitmask;
	int port = 2525;
	int ch;

	while ((ch = getopt(argc, argv, "l:p:")) != -1) {
		switch (ch) {
		case 'l':
			addr = optarg;
			break;
		case 'p':
			port = parse_port(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	raise_nofile();
	clients = calloc(nclients_max, sizeof(*clients));
	if (clients == NULL) {
		fprintf(stderr, "limit: out of memory\n");
		return 1;
	}
	setup_signals(&waitmask);
	listen_fd = open_listener(addr, port);
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		perror("limit: epoll_create1");
		return 1;
	}
	ev.data.fd = listen_fd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) == -1) {
		perror("limit: epoll_ctl listener");
		return 1;
	}
	run(&waitmask);
	free_clients();
	close(listen_fd);
	close(epfd);
	return 0;
}
