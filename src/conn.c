/*
 * conn — one client connection: socket in, session in the middle, socket
 * out. The only module that touches client sockets.
 *
 * The hot path makes as few system calls as the work allows: one recv()
 * per readable event into a stack buffer the session reads in place, and
 * one send of every reply the input produced, made before the callback
 * returns (a write event is only armed when the socket would block). An
 * idle connection holds no buffer: input that the session has not taken
 * (an incomplete line, or commands behind an outstanding lookup) is kept
 * in c->in, replies the socket has not taken in c->out, both empty
 * otherwise.
 *
 * It must never read ahead of the session: while a lookup or a delivery
 * is outstanding, while the session is closing, or while the client
 * leaves too many replies unread, the read event is off, so one
 * connection's memory stays bounded by CONN_INPUT_HIGH + CONN_OUTPUT_HIGH.
 *
 * One timer per connection serves two purposes. As a deadline it bounds
 * each command line (command_timeout, from the previous reply to the
 * line's end, so a client trickling a byte at a time gains nothing) and
 * each stretch of message data (data_timeout); as a tarpit it holds the
 * session's replies back for the delay the session asks for.
 */
#include "porterd/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/log.h"
#include "porterd/server.h"
#include "porterd/session.h"

/* One recv() takes at most this much; on the stack, never per session. */
#define CONN_READ_CHUNK 16384

struct conn {
	struct server *srv;
	struct conn_list *list;
	struct conn *prev, *next;
	evutil_socket_t fd;
	struct event *rev;	/* readable; added only while reading */
	struct event *wev;	/* writable; added only while output waits */
	struct event *timer;	/* the deadline, or the tarpit */
	struct evbuffer *in;	/* input the session has not taken yet */
	struct evbuffer *out;	/* replies the socket has not taken yet */
	struct session *session;
	const char *close_reason;
	uint64_t progress;	/* session_progress() when the deadline was set */
	unsigned write_timeout;	/* seconds a client may leave replies unread */
	bool eof;		/* the client closed its side: answer, then close */
	bool renew;		/* set a fresh deadline at the next chance */
	bool holding;		/* the timer is a tarpit: output held back */
	bool draining;		/* the server is stopping */
	bool reading;		/* rev is added */
	bool writing;		/* wev is added */
};

static void conn_sink_write(void *arg, const char *buf, size_t len)
{
	struct conn *c = arg;

	if (evbuffer_add(c->out, buf, len) < 0) {
		/* Out of memory for replies: the session cannot stay in sync. */
		c->close_reason = "nomem";
	}
}

static void list_insert(struct conn_list *list, struct conn *c)
{
	c->list = list;
	c->next = list->head;
	if (list->head != NULL)
		list->head->prev = c;
	list->head = c;
	list->count++;
}

static void list_remove(struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		c->list->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->list->count--;
}

static void event_release(struct event **ev)
{
	if (*ev != NULL)
		event_free(*ev);
	*ev = NULL;
}

/* Why c closes, for the log: a QUIT, the client's FIN, or what failed. */
static const char *close_reason(const struct conn *c)
{
	if (c->close_reason != NULL)
		return c->close_reason;
	if (c->draining)
		return "shutdown";
	return c->eof && !session_closing(c->session) ? "eof" : "quit";
}

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	struct server *srv;

	if (c == NULL)
		return;
	srv = c->srv;
	if (c->session != NULL)
		log_event(LOG_LEVEL_INFO, "event=disconnect client=%s reason=%s",
			  session_client_addr(c->session), close_reason(c));
	list_remove(c);
	event_release(&c->rev);
	event_release(&c->wev);
	event_release(&c->timer);
	server_conn_closed(srv, c->session != NULL ? session_client_addr(c->session) : NULL);
	session_free(&c->session);
	if (c->in != NULL)
		evbuffer_free(c->in);
	if (c->out != NULL)
		evbuffer_free(c->out);
	evutil_closesocket(c->fd);
	free(c);
	*cp = NULL;
	server_conn_maybe_done(srv);
}

static size_t output_pending(const struct conn *c)
{
	return evbuffer_get_length(c->out);
}

/* The session may take input now. */
static bool session_ready(const struct conn *c)
{
	return !session_blocked(c->session) && !session_closing(c->session) &&
	       output_pending(c) <= CONN_OUTPUT_HIGH && c->close_reason == NULL;
}

/* Feed len bytes at p, window by window, while the session takes them;
 * returns how many it took. */
static size_t feed(struct conn *c, const char *p, size_t len)
{
	size_t done = 0;

	while (done < len && session_ready(c)) {
		size_t window = len - done < CONN_FEED_WINDOW ? len - done : CONN_FEED_WINDOW;
		size_t used = session_feed(c->session, p + done, window);

		done += used;
		if (used == 0)
			break;	/* an incomplete line: wait for more */
	}
	return done;
}

/* Feed what waits in c->in. */
static void feed_buffered(struct conn *c)
{
	size_t avail = evbuffer_get_length(c->in);
	const char *p;

	if (avail == 0 || !session_ready(c))
		return;
	p = (const char *)evbuffer_pullup(c->in, (ev_ssize_t)avail);
	if (p == NULL) {
		c->close_reason = "nomem";
		return;
	}
	evbuffer_drain(c->in, feed(c, p, avail));
}

/* Keep what the session did not take, for when it can. */
static void keep_input(struct conn *c, const char *p, size_t len)
{
	if (len > 0 && !session_closing(c->session) &&
	    evbuffer_add(c->in, p, len) < 0)
		c->close_reason = "nomem";
}

/*
 * Read once: the common case (nothing buffered) is fed straight from the
 * stack buffer and leaves nothing behind but an incomplete line.
 */
static void conn_read(struct conn *c)
{
	char chunk[CONN_READ_CHUNK];
	size_t buffered = evbuffer_get_length(c->in);
	size_t room = CONN_INPUT_HIGH - buffered;
	ssize_t n;

	if (room > sizeof(chunk))
		room = sizeof(chunk);
	do
		n = recv(c->fd, chunk, room, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			c->close_reason = "error";
		return;
	}
	if (n == 0) {
		/* A half-close: what the client sent before it is still
		 * answered (a message in delivery gets its 250), then close. */
		c->eof = true;
		feed_buffered(c);
		return;
	}
	if (buffered == 0) {
		size_t used = feed(c, chunk, (size_t)n);

		keep_input(c, chunk + used, (size_t)n - used);
	} else {
		keep_input(c, chunk, (size_t)n);
		feed_buffered(c);
	}
}

static void set_reading(struct conn *c, bool on)
{
	if (on == c->reading)
		return;
	c->reading = on;
	if (on)
		event_add(c->rev, NULL);
	else
		event_del(c->rev);
}

/* Send what is pending now; arm the write event only if the socket
 * would block. Held back entirely while the tarpit holds. Returns false
 * when the socket failed: the connection is beyond saving. */
static bool conn_flush(struct conn *c)
{
	if (!c->holding && output_pending(c) > 0 &&
	    evbuffer_write(c->out, c->fd) < 0 &&
	    errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		c->close_reason = "error";
		return false;
	}
	if (output_pending(c) > 0 && !c->holding) {
		if (!c->writing) {
			/* A client that stops reading its replies is dropped
			 * as one that stops sending commands. */
			struct timeval tv = { (time_t)c->write_timeout, 0 };

			event_add(c->wev, &tv);
			c->writing = true;
		}
	} else if (c->writing) {
		event_del(c->wev);
		c->writing = false;
	}
	return true;
}

/*
 * Set the one timer: a tarpit when the session asks for a delay (its
 * replies stay unsent until then), nothing while it waits for a lookup or
 * a delivery, else a deadline renewed only when input was consumed.
 */
static void conn_set_timer(struct conn *c)
{
	const struct config *cfg = session_config(c->session);
	unsigned delay = session_delay_ms(c->session);
	struct timeval tv;

	if (delay > 0) {
		if (!c->holding) {
			c->holding = true;
			tv.tv_sec = delay / 1000;
			tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
			evtimer_add(c->timer, &tv);
		}
		return;
	}
	if (session_blocked(c->session)) {
		evtimer_del(c->timer);
		c->renew = true;	/* a fresh deadline once it answers */
		return;
	}
	if (c->renew || c->progress != session_progress(c->session) ||
	    !evtimer_pending(c->timer, NULL)) {
		c->renew = false;
		c->progress = session_progress(c->session);
		tv.tv_sec = (time_t)(session_in_data(c->session) ? cfg->data_timeout
								 : cfg->command_timeout);
		tv.tv_usec = 0;
		evtimer_add(c->timer, &tv);
	}
}

/* The session is over (or the client left): close once flushed. */
static bool conn_finishing(const struct conn *c)
{
	return session_closing(c->session) || (c->eof && !session_blocked(c->session));
}

/*
 * After any event: send what the session wrote, close if the session is
 * over, else read only when the session can take more input. Returns
 * false when c was freed.
 */
static bool conn_settle(struct conn *c)
{
	if (c->close_reason != NULL && !session_closing(c->session)) {
		conn_free(&c);
		return false;
	}
	if (conn_finishing(c)) {
		set_reading(c, false);
		if (!conn_flush(c) || output_pending(c) == 0) {
			conn_free(&c);
			return false;
		}
		return true;	/* the write event closes once flushed */
	}
	conn_set_timer(c);	/* first: a tarpit holds this very output */
	if (!conn_flush(c)) {
		conn_free(&c);
		return false;
	}
	set_reading(c, !session_blocked(c->session) &&
		       output_pending(c) <= CONN_OUTPUT_HIGH &&
		       evbuffer_get_length(c->in) < CONN_INPUT_HIGH);
	return true;
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	conn_read(c);
	conn_settle(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	if (what & EV_TIMEOUT) {
		c->close_reason = "write_timeout";
		conn_free(&c);
		return;
	}
	if (!conn_flush(c)) {
		conn_free(&c);
		return;
	}
	/* The client read its replies: take up the commands that waited. */
	if (!conn_finishing(c))
		feed_buffered(c);
	conn_settle(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->holding) {
		c->holding = false;
		session_delay_done(c->session);
		feed_buffered(c);
	} else {
		c->close_reason = "timeout";
		session_timeout(c->session);
	}
	conn_settle(c);
}

/* Replies pile up unread: the session stops taking commands mid-window,
 * so a burst of pipelined EXPNs cannot outgrow the bound. */
static bool conn_backlogged(void *arg)
{
	return output_pending(arg) > CONN_OUTPUT_HIGH;
}

/* A lookup or delivery answered later: its reply goes out, the commands
 * behind it may run. */
static void conn_resume(void *arg)
{
	struct conn *c = arg;

	feed_buffered(c);
	conn_settle(c);
}

static bool conn_events_new(struct conn *c)
{
	struct event_base *base = server_base(c->srv);

	c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wev = event_new(base, c->fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
	c->timer = evtimer_new(base, conn_timer_cb, c);
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	return c->rev != NULL && c->wev != NULL && c->timer != NULL &&
	       c->in != NULL && c->out != NULL;
}

bool conn_new(struct server *srv, struct conn_list *list, struct config *cfg,
	      const struct session_env *env, evutil_socket_t fd,
	      const char *client_addr)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct session_io io;

	if (c == NULL) {
		evutil_closesocket(fd);
		return false;
	}
	c->srv = srv;
	c->fd = fd;
	c->write_timeout = cfg->command_timeout;
	io = (struct session_io){
		.sink = { .write = conn_sink_write, .arg = c },
		.resume = conn_resume,
		.backlogged = conn_backlogged,
		.arg = c,
	};
	list_insert(list, c);
	c->session = conn_events_new(c) ? session_new(cfg, env, client_addr, &io) : NULL;
	if (c->session == NULL) {
		c->close_reason = "nomem";
		conn_free(&c);
		return false;
	}
	log_event(LOG_LEVEL_INFO, "event=connect client=%s", client_addr);
	session_start(c->session);
	/* From here on, conn_free() accounts for the client's slot. */
	conn_settle(c);
	return true;
}

struct refusal {
	char buf[REPLY_LINE_MAX];
	size_t len;
};

static void refusal_write(void *arg, const char *buf, size_t len)
{
	struct refusal *r = arg;

	if (len <= sizeof(r->buf) - r->len) {
		memcpy(r->buf + r->len, buf, len);
		r->len += len;
	}
}

void conn_refuse(evutil_socket_t fd, const struct config *cfg)
{
	struct refusal r = { .len = 0 };
	struct reply_sink sink = { refusal_write, &r };

	reply_send(&sink, REPLY_TOO_MANY_CONNECTIONS, cfg->hostname);
	/* Best effort: a fresh socket's buffer takes one line; never block. */
	(void)send(fd, r.buf, r.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
}

void conn_list_shutdown(struct conn_list *list)
{
	struct conn *c = list->head;

	while (c != NULL) {
		struct conn *next = c->next;

		c->draining = true;
		session_drain(c->session);
		conn_settle(c);
		c = next;
	}
}

void conn_list_abort(struct conn_list *list)
{
	while (list->head != NULL) {
		struct conn *c = list->head;

		c->close_reason = "shutdown";
		c->holding = false;
		session_shutdown(c->session);
		(void)conn_flush(c);	/* best effort: the 421, if it fits */
		conn_free(&c);
	}
}

void conn_list_free(struct conn_list *list)
{
	while (list->head != NULL) {
		struct conn *c = list->head;
		conn_free(&c);
	}
}
