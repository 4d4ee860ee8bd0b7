/*
 * server — binds every `listen` address and hands accepted sockets to
 * conn. It keeps the list of open connections so a stop reaches them all.
 * An accept error (out of descriptors) pauses accepting briefly instead
 * of spinning.
 */
#include "porterd/server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "porterd/config.h"
#include "porterd/conn.h"
#include "porterd/delivery.h"
#include "porterd/log.h"

/* How long accepting pauses after an accept error such as EMFILE. */
#define ACCEPT_PAUSE_MSECS 100
/* Threads that write and fsync Maildir copies. */
#define DELIVERY_WORKERS 4
/* How long a stop waits for sessions to flush their 421. */
#define SHUTDOWN_GRACE_SECS 5

struct server {
	struct event_base *base;
	struct config *cfg;
	struct evconnlistener *listeners[CONFIG_LISTEN_MAX];
	size_t nlisteners;
	struct event *accept_pause;
	struct event *grace;
	struct conn_list conns;
	struct delivery *delivery;
	bool stopping;
};

struct event_base *server_base(const struct server *srv)
{
	return srv->base;
}

static void format_peer(const struct sockaddr *sa, char *buf, size_t size)
{
	const void *addr = NULL;

	if (sa->sa_family == AF_INET)
		addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (addr == NULL || evutil_inet_ntop(sa->sa_family, addr, buf, size) == NULL)
		snprintf(buf, size, "unknown");
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;
	char peer[64];

	(void)l;
	(void)salen;
	format_peer(sa, peer, sizeof(peer));
	conn_new(srv, &srv->conns, srv->cfg, srv->delivery, fd, peer);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_enable(srv->listeners[i]);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct server *srv = arg;
	struct timeval pause = { 0, ACCEPT_PAUSE_MSECS * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	log_event(LOG_LEVEL_WARN, "event=accept_error error=\"%s\"",
		  evutil_socket_error_to_string(err));
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i]);
	evtimer_add(srv->accept_pause, &pause);
}

static int listen_one(struct server *srv, const char *spec, char *err,
		      size_t errsize)
{
	struct sockaddr_storage ss;
	int len = (int)sizeof(ss);
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
			 LEV_OPT_CLOSE_ON_EXEC;
	struct evconnlistener *l;

	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(err, errsize, "listen %s: not an address and port", spec);
		return -1;
	}
	if (ss.ss_family == AF_INET6)
		flags |= LEV_OPT_BIND_IPV6ONLY;	/* [::] and 0.0.0.0 may coexist */
	l = evconnlistener_new_bind(srv->base, accept_cb, srv, flags, 511,
				    (struct sockaddr *)&ss, len);
	if (l == NULL) {
		snprintf(err, errsize, "listen %s: %s", spec, strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(l, accept_error_cb);
	srv->listeners[srv->nlisteners++] = l;
	log_event(LOG_LEVEL_INFO, "event=listen address=%s", spec);
	return 0;
}

int server_new(struct event_base *base, struct config *cfg,
	       struct server **srv_r, char *err, size_t errsize)
{
	struct server *srv = calloc(1, sizeof(*srv));

	if (srv == NULL) {
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	srv->base = base;
	srv->cfg = config_ref(cfg);
	srv->accept_pause = evtimer_new(base, accept_resume_cb, srv);
	srv->delivery = delivery_new(base, cfg->maildir, DELIVERY_WORKERS);
	if (srv->accept_pause == NULL || srv->delivery == NULL) {
		snprintf(err, errsize, "cannot start: out of memory or threads");
		server_free(&srv);
		return -1;
	}
	for (size_t i = 0; i < cfg->nlisten; i++) {
		if (listen_one(srv, cfg->listen[i], err, errsize) < 0) {
			server_free(&srv);
			return -1;
		}
	}
	*srv_r = srv;
	return 0;
}

static void close_listeners(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	srv->nlisteners = 0;
}

static void grace_expired_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	log_event(LOG_LEVEL_WARN, "event=shutdown_grace_expired open=%zu",
		  srv->conns.count);
	event_base_loopexit(srv->base, NULL);
}

void server_shutdown(struct server *srv)
{
	struct timeval grace = { SHUTDOWN_GRACE_SECS, 0 };

	if (srv->stopping)
		return;
	srv->stopping = true;
	close_listeners(srv);
	srv->grace = evtimer_new(srv->base, grace_expired_cb, srv);
	evtimer_add(srv->grace, &grace);
	conn_list_shutdown(&srv->conns);
	if (srv->conns.count == 0)
		event_base_loopexit(srv->base, NULL);
}

void server_conn_closed(struct server *srv)
{
	if (srv->stopping && srv->conns.count == 0)
		event_base_loopexit(srv->base, NULL);
}

void server_free(struct server **srvp)
{
	struct server *srv = *srvp;

	if (srv == NULL)
		return;
	srv->stopping = false;	/* no loop exit requests from here on */
	conn_list_free(&srv->conns);
	close_listeners(srv);
	/* After the sessions: it finishes every message already handed over. */
	delivery_free(&srv->delivery);
	if (srv->accept_pause != NULL)
		event_free(srv->accept_pause);
	if (srv->grace != NULL)
		event_free(srv->grace);
	config_unref(&srv->cfg);
	free(srv);
	*srvp = NULL;
}
