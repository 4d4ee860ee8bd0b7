/*
 * conn — one client connection: bufferevent in, session in the middle,
 * bufferevent out. The only module that touches client sockets.
 *
 * It must never read ahead of the session: while a lookup is outstanding,
 * while the session is closing, or while the client leaves too many
 * replies unread, reading is disabled, so one connection's memory stays
 * bounded by CONN_INPUT_HIGH + CONN_OUTPUT_HIGH. Replies produced while
 * processing one batch of input are appended to the output buffer and
 * leave together in one write when the callback returns.
 *
 * One timer per connection serves two purposes. As a deadline it bounds
 * each command line (command_timeout, from the previous reply to the
 * line's end, so a client trickling a byte at a time gains nothing) and
 * each stretch of message data (data_timeout); as a tarpit it holds the
 * session's replies back for the delay the session asks for.
 */
#include "porterd/conn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/log.h"
#include "porterd/server.h"
#include "porterd/session.h"

struct conn {
	struct server *srv;
	struct conn_list *list;
	struct conn *prev, *next;
	struct bufferevent *bev;
	struct session *session;
	const char *close_reason;
	struct event *timer;	/* the deadline, or the tarpit */
	bool eof;		/* the client closed its side: answer, then close */
	uint64_t progress;	/* session_progress() when the deadline was set */
	bool renew;		/* set a fresh deadline at the next chance */
	bool holding;		/* the timer is a tarpit: output held back */
};

static void conn_sink_write(void *arg, const char *buf, size_t len)
{
	struct conn *c = arg;

	if (bufferevent_write(c->bev, buf, len) < 0) {
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

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	struct server *srv;

	if (c == NULL)
		return;
	srv = c->srv;
	if (c->session != NULL)
		log_event(LOG_LEVEL_INFO, "event=disconnect client=%s reason=%s",
			  session_client_addr(c->session),
			  c->close_reason != NULL ? c->close_reason : "quit");
	list_remove(c);
	if (c->timer != NULL)
		event_free(c->timer);
	server_conn_closed(srv, c->session != NULL ? session_client_addr(c->session) : NULL);
	session_free(&c->session);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
	*cp = NULL;
	server_conn_maybe_done(srv);
}

static void conn_set_timer(struct conn *c);
static bool conn_settle(struct conn *c);

static size_t output_pending(const struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Feed buffered input to the session, window by window, while it wants it. */
static void conn_feed_input(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (!session_blocked(c->session) && !session_closing(c->session) &&
	       output_pending(c) <= CONN_OUTPUT_HIGH && c->close_reason == NULL) {
		size_t avail = evbuffer_get_length(in);
		size_t window = avail < CONN_FEED_WINDOW ? avail : CONN_FEED_WINDOW;
		const char *p;
		size_t used;

		if (window == 0)
			break;
		p = (const char *)evbuffer_pullup(in, (ev_ssize_t)window);
		if (p == NULL) {
			c->close_reason = "nomem";
			break;
		}
		used = session_feed(c->session, p, window);
		evbuffer_drain(in, used);
		if (used == 0)
			break;	/* an incomplete line: wait for more */
	}
}

/*
 * Set the one timer: a tarpit when the session asks for a delay (its
 * replies stay unsent until then), nothing while it waits for a lookup or
 * a delivery, else a deadline renewed only when input was consumed.
 */
static void conn_set_timer(struct conn *c)
{
	const struct config *cfg = server_config(c->srv);
	unsigned delay = session_delay_ms(c->session);
	struct timeval tv;

	if (delay > 0) {
		if (!c->holding) {
			c->holding = true;
			bufferevent_disable(c->bev, EV_WRITE);
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

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->holding) {
		c->holding = false;
		session_delay_done(c->session);
		bufferevent_enable(c->bev, EV_WRITE);
		conn_feed_input(c);
	} else {
		c->close_reason = "timeout";
		session_timeout(c->session);
	}
	conn_settle(c);
}

/*
 * After any event: close if the session is over, else read only when the
 * session can take more input. Returns false when c was freed.
 */
static bool conn_settle(struct conn *c)
{
	if (c->close_reason != NULL && !session_closing(c->session)) {
		conn_free(&c);
		return false;
	}
	if (session_closing(c->session) || (c->eof && !session_blocked(c->session))) {
		bufferevent_disable(c->bev, EV_READ);
		if (output_pending(c) == 0) {
			conn_free(&c);
			return false;
		}
		return true;	/* the write callback closes once flushed */
	}
	if (session_blocked(c->session) || output_pending(c) > CONN_OUTPUT_HIGH)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
	conn_set_timer(c);
	return true;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	conn_feed_input(c);
	conn_settle(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (session_closing(c->session) || (c->eof && !session_blocked(c->session))) {
		if (output_pending(c) == 0)
			conn_free(&c);
		return;
	}
	/* The client read its replies: take up the commands that waited. */
	conn_feed_input(c);
	conn_settle(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		/* A half-close: what the client sent before it is still
		 * answered (a message in delivery gets its 250), then close. */
		c->eof = true;
		conn_feed_input(c);
		conn_settle(c);
		return;
	}
	c->close_reason = what & BEV_EVENT_TIMEOUT ? "write_timeout" : "error";
	conn_free(&c);
}

/* Replies pile up unread: the session stops taking commands mid-window,
 * so a burst of pipelined EXPNs cannot outgrow the bound. */
static bool conn_backlogged(void *arg)
{
	return output_pending(arg) > CONN_OUTPUT_HIGH;
}

/* A lookup answered later: its reply is out, the next commands may run. */
static void conn_resume(void *arg)
{
	struct conn *c = arg;

	conn_feed_input(c);
	conn_settle(c);
}

struct conn *conn_new(struct server *srv, struct conn_list *list,
		      struct config *cfg, const struct session_env *env,
		      evutil_socket_t fd, const char *client_addr)
{
	/* A client that stops reading its replies is dropped as one that
	 * stops sending commands. */
	struct timeval write_timeout = { (time_t)cfg->command_timeout, 0 };
	struct conn *c = calloc(1, sizeof(*c));
	struct session_io io;

	if (c == NULL) {
		evutil_closesocket(fd);
		return NULL;
	}
	c->srv = srv;
	c->bev = bufferevent_socket_new(server_base(srv), fd, BEV_OPT_CLOSE_ON_FREE);
	io = (struct session_io){
		.sink = { .write = conn_sink_write, .arg = c },
		.resume = conn_resume,
		.backlogged = conn_backlogged,
		.arg = c,
	};
	c->timer = evtimer_new(server_base(srv), conn_timer_cb, c);
	c->session = c->bev != NULL && c->timer != NULL
		     ? session_new(cfg, env, client_addr, &io) : NULL;
	list_insert(list, c);
	if (c->session == NULL) {
		if (c->bev == NULL)
			evutil_closesocket(fd);
		c->close_reason = "nomem";
		conn_free(&c);
		return NULL;
	}
	log_event(LOG_LEVEL_INFO, "event=connect client=%s", client_addr);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_INPUT_HIGH);
	bufferevent_set_timeouts(c->bev, NULL, &write_timeout);
	session_start(c->session);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	conn_set_timer(c);
	return c;
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

		c->close_reason = "shutdown";
		session_shutdown(c->session);
		conn_settle(c);
		c = next;
	}
}

void conn_list_free(struct conn_list *list)
{
	while (list->head != NULL) {
		struct conn *c = list->head;
		conn_free(&c);
	}
}
