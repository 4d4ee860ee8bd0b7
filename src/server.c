/*
 * server — binds every `listen` address and hands accepted sockets to
 * conn. It keeps the list of open connections so a stop reaches them all.
 * An accept error (out of descriptors) pauses accepting briefly instead
 * of spinning.
 */
#include "porterd/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "porterd/config.h"
#include "porterd/conn.h"
#include "porterd/daemon.h"
#include "porterd/directory.h"
#include "porterd/delivery.h"
#include "porterd/log.h"
#include "porterd/ratelimit.h"
#include "porterd/session.h"
#include "porterd/strutil.h"

/* How long accepting pauses after an accept error such as EMFILE. */
#define ACCEPT_PAUSE_MSECS 100
/* Connections the kernel may queue unaccepted (capped by somaxconn): a
 * burst of connects must wait for accept(), not overflow into clients
 * that wait for a greeting that never comes. */
#define LISTEN_BACKLOG 4096
/* Threads that write and fsync Maildir copies. */
#define DELIVERY_WORKERS 4

/* Open connections per client address, for max_clients_per_ip. */
#define PER_IP_BUCKETS 4096

struct per_ip {
	struct per_ip *next;
	unsigned count;
	char addr[64];
};

struct server {
	struct event_base *base;
	struct config *cfg;
	struct evconnlistener *listeners[CONFIG_LISTEN_MAX];
	size_t nlisteners;
	struct event *accept_pause;
	struct event *grace;
	struct conn_list conns;
	struct session_env env;
	struct per_ip *per_ip[PER_IP_BUCKETS];
	bool stopping;
};

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct per_ip **per_ip_find(struct server *srv, const char *addr)
{
	struct per_ip **pp = &srv->per_ip[str_hash_nocase(addr, strlen(addr)) % PER_IP_BUCKETS];

	while (*pp != NULL && strcmp((*pp)->addr, addr) != 0)
		pp = &(*pp)->next;
	return pp;
}

static unsigned per_ip_count(struct server *srv, const char *addr)
{
	struct per_ip *e = *per_ip_find(srv, addr);

	return e != NULL ? e->count : 0;
}

static bool per_ip_add(struct server *srv, const char *addr)
{
	struct per_ip **pp = per_ip_find(srv, addr);

	if (*pp == NULL) {
		*pp = calloc(1, sizeof(**pp));
		if (*pp == NULL)
			return false;
		str_copy((*pp)->addr, sizeof((*pp)->addr), addr, strlen(addr));
	}
	(*pp)->count++;
	return true;
}

void server_conn_closed(struct server *srv, const char *client_addr)
{
	struct per_ip **pp, *e;

	if (client_addr == NULL)
		return;
	pp = per_ip_find(srv, client_addr);
	e = *pp;
	if (e == NULL)
		return;
	if (--e->count == 0) {
		*pp = e->next;
		free(e);
	}
}

static void per_ip_free_all(struct server *srv)
{
	for (size_t i = 0; i < PER_IP_BUCKETS; i++) {
		while (srv->per_ip[i] != NULL) {
			struct per_ip *e = srv->per_ip[i];
			srv->per_ip[i] = e->next;
			free(e);
		}
	}
}

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

	const char *refused = NULL;

	(void)l;
	(void)salen;
	format_peer(sa, peer, sizeof(peer));
	if (srv->conns.count >= srv->cfg->max_clients)
		refused = "max_clients";
	else if (per_ip_count(srv, peer) >= srv->cfg->max_clients_per_ip)
		refused = "max_clients_per_ip";
	if (refused != NULL) {
		log_event(LOG_LEVEL_INFO, "event=refused client=%s reason=%s", peer, refused);
		conn_refuse(fd, srv->cfg);
		return;
	}
	if (!per_ip_add(srv, peer)) {
		conn_refuse(fd, srv->cfg);
		return;
	}
	if (!conn_new(srv, &srv->conns, srv->cfg, &srv->env, fd, peer))
		server_conn_closed(srv, peer);
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

/* A listener of ours, bound here or passed by systemd. */
static void listener_add(struct server *srv, struct evconnlistener *l)
{
	int one = 1;

	/* Replies leave whole, one send per batch, so they never wait for an
	 * ACK; accepted sockets inherit this on Linux, saving a system call
	 * per connection. */
	(void)setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one,
			 sizeof(one));
	evconnlistener_set_error_cb(l, accept_error_cb);
	srv->listeners[srv->nlisteners++] = l;
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
	l = evconnlistener_new_bind(srv->base, accept_cb, srv, flags, LISTEN_BACKLOG,
				    (struct sockaddr *)&ss, len);
	if (l == NULL) {
		snprintf(err, errsize, "listen %s: %s", spec, strerror(errno));
		return -1;
	}
	listener_add(srv, l);
	log_event(LOG_LEVEL_INFO, "event=listen address=%s", spec);
	return 0;
}

/* Serve a listening socket handed over by systemd. */
static int adopt_one(struct server *srv, evutil_socket_t fd, char *err, size_t errsize)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct evconnlistener *l;
	char addr[64] = "unknown";

	/* backlog 0: listen() was called already, by systemd */
	l = evconnlistener_new(srv->base, accept_cb, srv,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l == NULL) {
		snprintf(err, errsize, "socket activation: descriptor %d: %s", (int)fd,
			 strerror(errno));
		return -1;
	}
	listener_add(srv, l);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		format_peer((struct sockaddr *)&ss, addr, sizeof(addr));
	log_event(LOG_LEVEL_INFO, "event=listen address=%s fd=%d source=systemd", addr,
		  (int)fd);
	return 0;
}

static bool same_rate_limits(const struct config *a, const struct config *b)
{
	return a->vrfy_rate.count == b->vrfy_rate.count &&
	       a->vrfy_rate.period == b->vrfy_rate.period &&
	       a->rate_table_size == b->rate_table_size &&
	       a->rate_ipv6_prefix == b->rate_ipv6_prefix;
}

static struct ratelimit *ratelimit_for(const struct config *cfg)
{
	return ratelimit_new((unsigned)cfg->vrfy_rate.count, (unsigned)cfg->vrfy_rate.period,
			     (size_t)cfg->rate_table_size, (unsigned)cfg->rate_ipv6_prefix);
}

int server_new(struct event_base *base, struct config *cfg, int passed,
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
	srv->env.delivery = delivery_new(base, cfg->maildir, DELIVERY_WORKERS);
	srv->env.ratelimit = ratelimit_for(cfg);
	srv->env.now_ms = monotonic_ms;
	if (srv->accept_pause == NULL || srv->env.delivery == NULL ||
	    srv->env.ratelimit == NULL) {
		snprintf(err, errsize, "cannot start: out of memory or threads");
		server_free(&srv);
		return -1;
	}
	if (directory_attach(cfg->dir, base, err, errsize) < 0) {
		server_free(&srv);
		return -1;
	}
	for (int i = 0; i < passed; i++) {
		if (adopt_one(srv, DAEMON_LISTEN_FDS_START + i, err, errsize) < 0) {
			server_free(&srv);
			return -1;
		}
	}
	for (size_t i = 0; passed == 0 && i < cfg->nlisten; i++) {
		if (listen_one(srv, cfg->listen[i], err, errsize) < 0) {
			server_free(&srv);
			return -1;
		}
	}
	*srv_r = srv;
	return 0;
}

int server_reload(struct server *srv, struct config *cfg, char *err, size_t errsize)
{
	struct ratelimit *rl = NULL;
	char kept[128];

	if (directory_attach(cfg->dir, srv->base, err, errsize) < 0)
		return -1;
	/* New limits start with full budgets; unchanged ones keep theirs.
	 * Sessions reach the limiter through env at each use, so none holds
	 * the old one. */
	if (!same_rate_limits(srv->cfg, cfg) && (rl = ratelimit_for(cfg)) == NULL) {
		snprintf(err, errsize, "out of memory for the rate table");
		return -1;
	}
	if (rl != NULL) {
		ratelimit_free(&srv->env.ratelimit);
		srv->env.ratelimit = rl;
	}
	config_restart_only_changes(srv->cfg, cfg, kept, sizeof(kept));
	if (kept[0] != '\0')
		log_event(LOG_LEVEL_WARN, "event=reload_kept directives=\"%s\" "
			  "reason=\"a restart applies them\"", kept);
	config_unref(&srv->cfg);
	srv->cfg = config_ref(cfg);
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
	conn_list_abort(&srv->conns);
	event_base_loopexit(srv->base, NULL);
}

void server_shutdown(struct server *srv)
{
	struct timeval grace = { (time_t)srv->cfg->shutdown_timeout, 0 };

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

void server_conn_maybe_done(struct server *srv)
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
	delivery_free(&srv->env.delivery);
	ratelimit_free(&srv->env.ratelimit);
	per_ip_free_all(srv);
	if (srv->accept_pause != NULL)
		event_free(srv->accept_pause);
	if (srv->grace != NULL)
		event_free(srv->grace);
	config_unref(&srv->cfg);
	free(srv);
	*srvp = NULL;
}
