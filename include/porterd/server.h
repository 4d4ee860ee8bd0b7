/*
 * server — the listeners: one evconnlistener per `listen` address, the
 * connection limits (max_clients, max_clients_per_ip), the services
 * sessions share (delivery, the rate limiter), and the set of open
 * connections, so a stop can reach every one of them.
 */
#ifndef PORTERD_SERVER_H
#define PORTERD_SERVER_H

#include <stddef.h>

struct event_base;
struct config;
struct server;
struct conn;

/*
 * Bind every listen address of cfg, or, when passed > 0, serve the
 * passed listening sockets (systemd socket activation, from descriptor
 * 3 on) instead. On failure -1 and a message in err.
 */
int server_new(struct event_base *base, struct config *cfg, int passed,
	       struct server **srv_r, char *err, size_t errsize);

/* Stop accepting; ask every open session to finish with 421; the event
 * loop exits once the last connection has closed (or after a grace). */
void server_shutdown(struct server *srv);

/*
 * Serve new sessions with cfg (a validated config from a reload) from now
 * on; open sessions keep the config they began with. Its directory is
 * attached to the loop here; on failure the old config stays and -1 is
 * returned with err. Directives only a restart can apply keep their
 * running values, with a warning in the log.
 */
int server_reload(struct server *srv, struct config *cfg, char *err, size_t errsize);

/* Close every connection and listener. */
void server_free(struct server **srv);

struct event_base *server_base(const struct server *srv);

/* Called by conn.c when a connection from client_addr (NULL: one that
 * never got a session) closes, then once it is freed. */
void server_conn_closed(struct server *srv, const char *client_addr);
void server_conn_maybe_done(struct server *srv);

#endif
