/*
 * session — the SMTP state machine, sans-I/O.
 *
 * It is fed raw input bytes and emits framed replies through a sink; it
 * never touches a socket, never blocks and never sleeps. It frames lines
 * itself (CRLF or bare LF), so the line-length limit and resynchronisation
 * after an over-long line are testable without a network.
 *
 * Pipelining (RFC 2920): input is consumed strictly in order. While a
 * directory lookup or a delivery is outstanding session_feed() consumes
 * nothing more, so replies can never be reordered; when it completes
 * later the session calls io->resume and the host feeds the rest.
 */
#ifndef PORTERD_SESSION_H
#define PORTERD_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "porterd/reply.h"

#include <stdint.h>

struct config;
struct delivery;
struct ratelimit;
struct session;

struct session_io {
	struct reply_sink sink;		/* where replies go */
	/* A lookup finished after session_feed() returned: feed the input
	 * that is still buffered, and read again. May be NULL in tests. */
	void (*resume)(void *arg);
	/* True when the client has too many replies unread: the session takes
	 * no further command until it is false again. May be NULL. */
	bool (*backlogged)(void *arg);
	void *arg;
};

/* What sessions share: the services of the server that hosts them. */
struct session_env {
	struct delivery *delivery;	/* accepted messages go here */
	struct ratelimit *ratelimit;	/* per-client budget across sessions;
					   NULL: none */
	uint64_t (*now_ms)(void);	/* a monotonic clock, for ratelimit */
};

/*
 * client_addr is the printable peer address, e.g. "127.0.0.1". env must
 * outlive the session.
 */
struct session *session_new(struct config *cfg, const struct session_env *env,
			    const char *client_addr,
			    const struct session_io *io);

/* The config the session began with; it keeps it to its end. */
const struct config *session_config(const struct session *s);
void session_free(struct session **s);

/* The client's printable address, for log lines. */
const char *session_client_addr(const struct session *s);

/* Send the greeting. */
void session_start(struct session *s);

/*
 * Feed len input bytes. Returns how many were consumed: complete lines are
 * consumed and answered; an incomplete last line is left for the next call
 * unless it is already over the line limit (then it is discarded and
 * answered "Line too long" once its end arrives). Consumes nothing while
 * blocked or closing.
 */
size_t session_feed(struct session *s, const char *buf, size_t len);

/* Waiting for a directory answer, a delivery or a tarpit delay: do not
 * read more input. */
bool session_blocked(const struct session *s);

/*
 * Past error_soft_limit errors every error reply is held back: while this
 * is not 0, the host keeps what the session sent unsent for this many
 * milliseconds, then calls session_delay_done(). The delay grows with
 * every error; after error_hard_limit errors the session answers 421 and
 * closes instead.
 */
unsigned session_delay_ms(const struct session *s);
void session_delay_done(struct session *s);

/*
 * Grows with every complete command line and every piece of message data
 * taken: the host renews its deadline only when this moved, so neither a
 * line trickled in a byte at a time nor an over-long line being discarded
 * holds a session open.
 */
uint64_t session_progress(const struct session *s);

/* Inside DATA: the host applies data_timeout rather than command_timeout. */
bool session_in_data(const struct session *s);

/* The session is over: flush what was sent, then close. */
bool session_closing(const struct session *s);

/* The client was idle too long: answer 421 4.4.2 and close. */
void session_timeout(struct session *s);

/* The server is stopping: answer 421 4.3.2 and close, now. */
void session_shutdown(struct session *s);

/*
 * The server is stopping gracefully: answer 421 4.3.2 and close at the
 * next command boundary — at once when idle; after the message, its
 * delivery and its reply when a DATA is under way; after the reply of an
 * outstanding lookup. A command that arrives meanwhile is not run.
 */
void session_drain(struct session *s);

#endif
