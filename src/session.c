/*
 * session — the SMTP state machine, sans-I/O.
 *
 * Fed raw bytes, it frames lines, parses commands, consults the directory
 * and emits replies through its sink. It never reads or writes a socket,
 * never blocks, and never lets the client's input get ahead of the
 * replies: while a lookup is outstanding it consumes no further input.
 *
 * Commands are dispatched through commands[] (verb, states where it is
 * allowed, handler); the state changes only in session_enter_state().
 */
#include "porterd/session.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/command.h"
#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/strutil.h"

enum session_state {
	STATE_INIT,	/* greeted, no HELO/EHLO yet */
	STATE_HELO,	/* the client introduced itself */
	STATE_CLOSED,	/* QUIT, timeout or shutdown: nothing more is read */
};

static const char *const state_names[] = {
	[STATE_INIT] = "init",
	[STATE_HELO] = "helo",
	[STATE_CLOSED] = "closed",
};

struct session {
	enum session_state state;
	struct config *cfg;
	struct session_io io;
	char client_addr[INET6_ADDRSTRLEN];
	char *helo;			/* the client's HELO/EHLO name */
	struct dir_request *pending;	/* outstanding lookup, when async */
	bool waiting;			/* a lookup has not answered yet */
	bool in_feed;			/* inside session_feed() */
	bool discarding;		/* inside an over-long line */
	bool smtputf8;			/* the pending lookup asked SMTPUTF8 */
};

#define ANY_STATE ((1u << STATE_INIT) | (1u << STATE_HELO))

struct command_def {
	unsigned states;	/* bit per state in which it is allowed */
	void (*handle)(struct session *s, const struct command *cmd);
};

static void cmd_helo(struct session *s, const struct command *cmd);
static void cmd_ehlo(struct session *s, const struct command *cmd);
static void cmd_vrfy(struct session *s, const struct command *cmd);
static void cmd_expn(struct session *s, const struct command *cmd);
static void cmd_noop(struct session *s, const struct command *cmd);
static void cmd_rset(struct session *s, const struct command *cmd);
static void cmd_help(struct session *s, const struct command *cmd);
static void cmd_quit(struct session *s, const struct command *cmd);
static void cmd_not_implemented(struct session *s, const struct command *cmd);

static const struct command_def commands[VERB__COUNT] = {
	[VERB_HELO] = { ANY_STATE, cmd_helo },
	[VERB_EHLO] = { ANY_STATE, cmd_ehlo },
	[VERB_MAIL] = { ANY_STATE, cmd_not_implemented },
	[VERB_RCPT] = { ANY_STATE, cmd_not_implemented },
	[VERB_DATA] = { ANY_STATE, cmd_not_implemented },
	[VERB_RSET] = { ANY_STATE, cmd_rset },
	[VERB_VRFY] = { ANY_STATE, cmd_vrfy },
	[VERB_EXPN] = { ANY_STATE, cmd_expn },
	[VERB_HELP] = { ANY_STATE, cmd_help },
	[VERB_NOOP] = { ANY_STATE, cmd_noop },
	[VERB_QUIT] = { ANY_STATE, cmd_quit },
};

/* --- plumbing -------------------------------------------------------------- */

static void session_enter_state(struct session *s, enum session_state next)
{
	if (s->state != next)
		log_event(LOG_LEVEL_DEBUG, "event=state client=%s from=%s to=%s",
			  s->client_addr, state_names[s->state], state_names[next]);
	s->state = next;
}

static void send_reply(struct session *s, enum reply_id id, const char *arg)
{
	reply_send(&s->io.sink, id, arg);
}

static const char *hostname(const struct session *s)
{
	return s->cfg->hostname;
}

/* The directory of the config this session started with. */
static struct directory *session_directory(const struct session *s)
{
	return s->cfg->dir;
}

static void log_lookup(const struct session *s, const char *verb,
		       const char *query, const char *result, enum reply_id id)
{
	char esc[LOG_VALUE_MAX];

	log_event(LOG_LEVEL_INFO, "event=%s client=%s query=\"%s\" result=%s code=%d",
		  verb, s->client_addr, log_escape(esc, sizeof(esc), query, strlen(query)),
		  result, reply_code(id));
}

/* --- lifecycle ------------------------------------------------------------- */

struct session *session_new(struct config *cfg, const char *client_addr,
			    const struct session_io *io)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cfg = config_ref(cfg);
	s->io = *io;
	str_copy(s->client_addr, sizeof(s->client_addr), client_addr,
		 strlen(client_addr));
	s->state = STATE_INIT;
	return s;
}

void session_free(struct session **sp)
{
	struct session *s = *sp;

	if (s == NULL)
		return;
	if (s->waiting)
		directory_cancel(s->pending);
	free(s->helo);
	config_unref(&s->cfg);
	free(s);
	*sp = NULL;
}

const char *session_client_addr(const struct session *s)
{
	return s->client_addr;
}

void session_start(struct session *s)
{
	reply_emit(&s->io.sink, REPLY_GREETING, false, hostname(s),
		   s->cfg->banner, NULL);
}

bool session_blocked(const struct session *s)
{
	return s->waiting;
}

bool session_closing(const struct session *s)
{
	return s->state == STATE_CLOSED;
}

/* End the session with a 421: whatever was outstanding is dropped. */
static void session_abort(struct session *s, enum reply_id id)
{
	if (s->state == STATE_CLOSED)
		return;
	if (s->waiting) {
		directory_cancel(s->pending);
		s->waiting = false;
		s->pending = NULL;
	}
	send_reply(s, id, hostname(s));
	session_enter_state(s, STATE_CLOSED);
}

void session_timeout(struct session *s)
{
	session_abort(s, REPLY_TIMEOUT);
}

void session_shutdown(struct session *s)
{
	session_abort(s, REPLY_SHUTDOWN);
}

/* --- line framing and dispatch --------------------------------------------- */

static void session_line(struct session *s, const char *line, size_t len)
{
	struct command cmd;

	switch (command_parse(line, len, &cmd)) {
	case COMMAND_UNKNOWN:
		send_reply(s, REPLY_UNKNOWN_COMMAND, NULL);
		return;
	case COMMAND_BAD_CHARACTERS:
		send_reply(s, REPLY_BAD_CHARACTERS, NULL);
		return;
	case COMMAND_OK:
		break;
	}
	if (!(commands[cmd.verb].states & (1u << s->state))) {
		send_reply(s, REPLY_BAD_SEQUENCE, "command not allowed now");
		return;
	}
	commands[cmd.verb].handle(s, &cmd);
}

size_t session_feed(struct session *s, const char *buf, size_t len)
{
	size_t used = 0;

	s->in_feed = true;
	while (used < len && !s->waiting && s->state != STATE_CLOSED) {
		const char *p = buf + used;
		size_t avail = len - used, linelen, n;
		const char *lf = memchr(p, '\n', avail);

		if (lf == NULL) {
			/* No end yet: keep waiting unless it can no longer fit. */
			if (avail >= COMMAND_LINE_MAX || s->discarding) {
				s->discarding = true;
				used = len;
			}
			break;
		}
		linelen = (size_t)(lf - p) + 1;
		used += linelen;
		if (s->discarding || linelen > COMMAND_LINE_MAX) {
			s->discarding = false;
			send_reply(s, REPLY_LINE_TOO_LONG, NULL);
			continue;
		}
		n = linelen - 1;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		session_line(s, p, n);
	}
	s->in_feed = false;
	return used;
}

/* --- HELO, EHLO, NOOP, RSET, HELP, QUIT ------------------------------------ */

static bool greet_accept(struct session *s, const struct command *cmd,
			 const char *usage)
{
	char *name;

	if (!command_valid_helo(cmd->arg, cmd->arglen)) {
		send_reply(s, REPLY_SYNTAX, usage);
		return false;
	}
	name = malloc(cmd->arglen + 1);
	if (name == NULL) {
		session_abort(s, REPLY_OUT_OF_RESOURCES);
		return false;
	}
	str_copy(name, cmd->arglen + 1, cmd->arg, cmd->arglen);
	free(s->helo);
	s->helo = name;
	session_enter_state(s, STATE_HELO);
	return true;
}

static void cmd_helo(struct session *s, const struct command *cmd)
{
	if (greet_accept(s, cmd, "HELO hostname"))
		send_reply(s, REPLY_HELO, hostname(s));
}

static void cmd_ehlo(struct session *s, const struct command *cmd)
{
	const struct reply_sink *sink = &s->io.sink;

	if (!greet_accept(s, cmd, "EHLO hostname"))
		return;
	reply_emit(sink, REPLY_EHLO_FIRST, true, hostname(s), s->helo,
		   s->client_addr);
	reply_line(sink, 250, NULL, true, "ENHANCEDSTATUSCODES");
	reply_line(sink, 250, NULL, true, "PIPELINING");
	if (s->cfg->vrfy != VRFY_OFF)
		reply_line(sink, 250, NULL, true, "VRFY");
	if (s->cfg->expn != EXPN_OFF)
		reply_line(sink, 250, NULL, true, "EXPN");
	reply_line(sink, 250, NULL, false, "HELP");
}

static void cmd_noop(struct session *s, const struct command *cmd)
{
	(void)cmd;	/* RFC 5321 4.1.1.9: a NOOP argument is ignored */
	send_reply(s, REPLY_OK, NULL);
}

static void cmd_rset(struct session *s, const struct command *cmd)
{
	if (cmd->arglen != 0) {
		send_reply(s, REPLY_SYNTAX, "RSET");
		return;
	}
	send_reply(s, REPLY_OK, NULL);
}

static void cmd_help(struct session *s, const struct command *cmd)
{
	(void)cmd;	/* one summary whatever the topic */
	reply_emit(&s->io.sink, REPLY_HELP_TOPICS, true, NULL, NULL, NULL);
	send_reply(s, REPLY_HELP_END, NULL);
}

static void cmd_quit(struct session *s, const struct command *cmd)
{
	if (cmd->arglen != 0) {
		send_reply(s, REPLY_SYNTAX, "QUIT");
		return;
	}
	send_reply(s, REPLY_BYE, NULL);
	session_enter_state(s, STATE_CLOSED);
}

static void cmd_not_implemented(struct session *s, const struct command *cmd)
{
	send_reply(s, REPLY_NOT_IMPLEMENTED, command_verb_name(cmd->verb));
}

/* --- VRFY and EXPN --------------------------------------------------------- */

/*
 * Take apart a VRFY/EXPN argument; false when a reply was already sent.
 * Non-ASCII needs SMTPUTF8 (RFC 6531 3.7.4.2), which porterd does not
 * offer yet, so 8-bit arguments are refused whatever the parameter says.
 */
static bool lookup_arg_accept(struct session *s, const struct command *cmd,
			      struct lookup_arg *arg, const char *usage)
{
	switch (command_parse_lookup_arg(cmd->arg, cmd->arglen, arg)) {
	case LOOKUP_ARG_EMPTY:
	case LOOKUP_ARG_SYNTAX:
		send_reply(s, REPLY_SYNTAX, usage);
		return false;
	case LOOKUP_ARG_OK:
		break;
	}
	if (arg->has_8bit) {
		send_reply(s, REPLY_ARG_8BIT, NULL);
		return false;
	}
	return true;
}

/* Start a directory request; the answer may come now or later. */
static void lookup_begin(struct session *s, bool expand,
			 const struct lookup_arg *arg);

static void cmd_vrfy(struct session *s, const struct command *cmd)
{
	struct lookup_arg arg;

	if (s->cfg->vrfy == VRFY_OFF) {
		send_reply(s, REPLY_DISABLED, "VRFY");
		return;
	}
	if (!lookup_arg_accept(s, cmd, &arg, "VRFY address"))
		return;
	if (s->cfg->vrfy == VRFY_252) {
		send_reply(s, REPLY_CANNOT_VRFY, NULL);
		return;
	}
	lookup_begin(s, false, &arg);
}

static void cmd_expn(struct session *s, const struct command *cmd)
{
	struct lookup_arg arg;

	if (s->cfg->expn == EXPN_OFF) {
		send_reply(s, REPLY_DISABLED, "EXPN");
		return;
	}
	if (!lookup_arg_accept(s, cmd, &arg, "EXPN list"))
		return;
	lookup_begin(s, true, &arg);
}

/* A full name goes out only when the client can read it. */
static const char *printable_name(const struct session *s, const char *name)
{
	if (name == NULL || (!s->smtputf8 && str_has_8bit(name, strlen(name))))
		return NULL;
	return name;
}

static const char *const status_names[] = {
	[DIR_USER] = "user", [DIR_LIST] = "list", [DIR_FORWARD] = "forward",
	[DIR_MOVED] = "moved", [DIR_AMBIGUOUS] = "ambiguous",
	[DIR_NOTFOUND] = "unknown", [DIR_TEMPFAIL] = "tempfail",
	[DIR_NOT_LOCAL] = "not_local", [DIR_TOO_LARGE] = "too_large",
};

static enum reply_id vrfy_reply(const struct dir_answer *a, bool named)
{
	switch (a->status) {
	case DIR_USER:
		return named ? REPLY_VRFY_NAMED : REPLY_VRFY_MAILBOX;
	case DIR_LIST:
		return REPLY_VRFY_MAILBOX;
	case DIR_FORWARD:
		return REPLY_VRFY_FORWARD;
	case DIR_MOVED:
		return REPLY_VRFY_MOVED;
	case DIR_AMBIGUOUS:
		return REPLY_VRFY_AMBIGUOUS;
	case DIR_NOTFOUND:
		return REPLY_UNKNOWN_USER;
	case DIR_NOT_LOCAL:
		return REPLY_NOT_LOCAL;
	case DIR_TEMPFAIL:
	case DIR_TOO_LARGE:
		break;
	}
	return REPLY_LOOKUP_TEMPFAIL;
}

static void lookup_done(struct session *s)
{
	s->waiting = false;
	s->pending = NULL;
	if (!s->in_feed && s->io.resume != NULL)
		s->io.resume(s->io.arg);
}

static void on_vrfy_answer(const struct dir_answer *a, void *arg)
{
	struct session *s = arg;
	const char *name = printable_name(s, a->fullname);
	enum reply_id id = vrfy_reply(a, name != NULL);

	if (id == REPLY_VRFY_NAMED)
		reply_emit(&s->io.sink, id, false, name, a->address, NULL);
	else if (a->address != NULL)
		send_reply(s, id, a->address);
	else
		send_reply(s, id, a->query);
	log_lookup(s, "vrfy", a->query, status_names[a->status], id);
	lookup_done(s);
}

static enum reply_id expn_failure_reply(enum dir_status st)
{
	switch (st) {
	case DIR_MOVED:
		return REPLY_EXPN_MOVED;
	case DIR_AMBIGUOUS:
		return REPLY_EXPN_AMBIGUOUS;
	case DIR_NOT_LOCAL:
		return REPLY_NOT_LOCAL;
	case DIR_TEMPFAIL:
		return REPLY_LOOKUP_TEMPFAIL;
	case DIR_TOO_LARGE:
		return REPLY_EXPN_TOO_LARGE;
	case DIR_USER:
	case DIR_LIST:
	case DIR_FORWARD:
		return REPLY_EXPN_EMPTY;	/* known, but nothing to show */
	case DIR_NOTFOUND:
		break;
	}
	return REPLY_UNKNOWN_USER;
}

static void send_members(struct session *s, const struct dir_expansion *e)
{
	for (size_t i = 0; i < e->nmembers; i++) {
		const struct dir_member *m = &e->members[i];
		const char *name = printable_name(s, m->fullname);
		bool more = i + 1 < e->nmembers;

		if (name != NULL)
			reply_emit(&s->io.sink, REPLY_EXPN_NAMED, more, name,
				   m->address, NULL);
		else
			reply_emit(&s->io.sink, REPLY_EXPN_MAILBOX, more,
				   m->address, NULL, NULL);
	}
}

static void on_expn_answer(const struct dir_expansion *e, void *arg)
{
	struct session *s = arg;
	enum reply_id id = REPLY_EXPN_MAILBOX;

	if (e->nmembers > 0) {
		send_members(s, e);
	} else {
		id = expn_failure_reply(e->status);
		send_reply(s, id, id == REPLY_EXPN_MOVED ? e->address : e->query);
	}
	log_lookup(s, "expn", e->query, status_names[e->status], id);
	lookup_done(s);
}

static void lookup_begin(struct session *s, bool expand,
			 const struct lookup_arg *arg)
{
	struct dir_request *req;

	s->waiting = true;
	s->smtputf8 = arg->smtputf8;
	if (expand)
		req = directory_expand(session_directory(s), arg, on_expn_answer, s);
	else
		req = directory_lookup(session_directory(s), arg, on_vrfy_answer, s);
	if (s->waiting)
		s->pending = req;
}
