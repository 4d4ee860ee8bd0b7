/*
 * conn — one client connection: libevent events between the socket and
 * the sans-I/O session. The only code that reads or writes a client
 * socket. It bounds what a connection may hold: input is fed to the
 * session in windows and never read ahead while a lookup is outstanding
 * or the client is not reading its replies.
 */
#ifndef PORTERD_CONN_H
#define PORTERD_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/util.h>

struct server;
struct conn;
struct config;
struct delivery;
struct session_env;

/* Input bytes examined per session_feed() call (>= COMMAND_LINE_MAX). */
#define CONN_FEED_WINDOW 16384
/* Reading stops while this much input waits for the session. */
#define CONN_INPUT_HIGH 65536
/* Stop reading commands while more than this many reply bytes wait. */
#define CONN_OUTPUT_HIGH (256 * 1024)

/* The open connections of a server; a conn adds and removes itself. */
struct conn_list {
	struct conn *head;
	size_t count;
};

/*
 * Take over an accepted, non-blocking socket: greet and serve it with a
 * session on cfg using the server's shared services in env. Returns
 * false (and closes fd) when out of memory before a session existed; the
 * caller then releases the client's slot itself. Once true, the
 * connection releases it with server_conn_closed() when it closes.
 */
bool conn_new(struct server *srv, struct conn_list *list, struct config *cfg,
	      const struct session_env *env, evutil_socket_t fd,
	      const char *client_addr);

/* Over a connection limit: answer 421 4.7.0 and close, no session. */
void conn_refuse(evutil_socket_t fd, const struct config *cfg);

/* The server is stopping: every session answers 421 at its next command
 * boundary (a message being received or delivered finishes first), then
 * closes once its replies are flushed. */
void conn_list_shutdown(struct conn_list *list);

/* The drain took too long: 421 to every session still open (best
 * effort), then close them all. */
void conn_list_abort(struct conn_list *list);

/* Close every connection at once. */
void conn_list_free(struct conn_list *list);

void conn_free(struct conn **c);

#endif
