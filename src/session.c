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
 * A mail transaction (MAIL, RCPT, DATA) lives in its own struct
 * transaction, made at MAIL and freed in one place, tx_end(), on RSET,
 * HELO/EHLO, the end of DATA, or the end of the session. A 250 after
 * DATA is sent only when delivery reports every copy fsynced.
 */
#include "porterd/session.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "porterd/address.h"
#include "porterd/command.h"
#include "porterd/config.h"
#include "porterd/dataread.h"
#include "porterd/delivery.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/policy.h"
#include "porterd/ratelimit.h"
#include "porterd/strutil.h"

enum session_state {
	STATE_INIT,	/* greeted, no HELO/EHLO yet */
	STATE_HELO,	/* the client introduced itself */
	STATE_MAIL,	/* MAIL accepted, no recipient yet */
	STATE_RCPT,	/* at least one recipient accepted */
	STATE_DATA,	/* reading the message, until CRLF.CRLF */
	STATE_CLOSED,	/* QUIT, timeout or shutdown: nothing more is read */
};

static const char *const state_names[] = {
	[STATE_INIT] = "init",
	[STATE_HELO] = "helo",
	[STATE_MAIL] = "mail",
	[STATE_RCPT] = "rcpt",
	[STATE_DATA] = "data",
	[STATE_CLOSED] = "closed",
};

/* One local mailbox a message goes to, lowercase. */
struct tx_rcpt {
	char *local;
	char *domain;
};

struct transaction {
	struct mail_address from;
	struct mail_params params;
	struct tx_rcpt *rcpts;		/* distinct local mailboxes */
	size_t nrcpts, rcpts_cap;
	uint64_t rcpt_commands;		/* RCPTs accepted, for max_recipients */
	char rcpt_arg[ADDRESS_TEXT_MAX];	/* the RCPT being looked up */
	struct data_reader reader;
	char *body;
	size_t body_len, body_cap;
	char id[32];
};

struct session {
	enum session_state state;
	struct config *cfg;
	const struct session_env *env;
	struct session_io io;
	char client_addr[INET6_ADDRSTRLEN];
	struct policy_client policy;	/* what this client may learn */
	char *helo;			/* the client's HELO/EHLO name */
	bool esmtp;			/* it said EHLO */
	struct transaction *tx;		/* NULL outside a mail transaction */
	struct dir_request *pending;	/* outstanding lookup, when async */
	struct delivery_job *job;	/* outstanding delivery, when async */
	bool waiting;			/* a lookup or delivery has not answered */
	bool in_feed;			/* inside session_feed() */
	bool discarding;		/* inside an over-long line */
	bool draining;			/* the server stops: 421 at the next boundary */
	bool smtputf8;			/* the pending lookup asked SMTPUTF8 */
	uint64_t progress;		/* lines and data pieces taken */
	unsigned errors;		/* 5yz replies so far */
	unsigned delay_ms;		/* tarpit: hold replies this long */
};

#define BIT(state) (1u << (state))
/* The longest tarpit delay, however many errors. */
#define SESSION_DELAY_MAX_MS 30000

#define ANY_STATE (BIT(STATE_INIT) | BIT(STATE_HELO) | BIT(STATE_MAIL) | BIT(STATE_RCPT))
#define GREETED (BIT(STATE_HELO) | BIT(STATE_MAIL) | BIT(STATE_RCPT))

struct command_def {
	unsigned states;	/* bit per state in which it is allowed */
	const char *refusal;	/* 503 text in the other states */
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
static void cmd_mail(struct session *s, const struct command *cmd);
static void cmd_rcpt(struct session *s, const struct command *cmd);
static void cmd_data(struct session *s, const struct command *cmd);

static const struct command_def commands[VERB__COUNT] = {
	[VERB_HELO] = { ANY_STATE, NULL, cmd_helo },
	[VERB_EHLO] = { ANY_STATE, NULL, cmd_ehlo },
	[VERB_MAIL] = { BIT(STATE_HELO), NULL, cmd_mail },
	[VERB_RCPT] = { BIT(STATE_MAIL) | BIT(STATE_RCPT), "need MAIL command", cmd_rcpt },
	[VERB_DATA] = { BIT(STATE_MAIL) | BIT(STATE_RCPT), NULL, cmd_data },
	[VERB_RSET] = { ANY_STATE, NULL, cmd_rset },
	[VERB_VRFY] = { ANY_STATE, NULL, cmd_vrfy },
	[VERB_EXPN] = { ANY_STATE, NULL, cmd_expn },
	[VERB_HELP] = { ANY_STATE, NULL, cmd_help },
	[VERB_NOOP] = { ANY_STATE, NULL, cmd_noop },
	[VERB_QUIT] = { ANY_STATE, NULL, cmd_quit },
};

/* Why MAIL or DATA is refused in a state where it is not allowed. */
static const char *refusal_text(const struct session *s, enum verb verb)
{
	if (verb == VERB_MAIL)
		return s->state == STATE_INIT ? "send HELO/EHLO first"
					      : "nested MAIL command";
	if (verb == VERB_DATA)
		return s->state == STATE_INIT || s->state == STATE_HELO
		       ? "need RCPT command" : "command not allowed now";
	return commands[verb].refusal != NULL ? commands[verb].refusal
					       : "command not allowed now";
}

/* --- plumbing -------------------------------------------------------------- */

static void session_enter_state(struct session *s, enum session_state next)
{
	if (s->state != next)
		log_event(LOG_LEVEL_DEBUG, "event=state client=%s from=%s to=%s",
			  s->client_addr, state_names[s->state], state_names[next]);
	s->state = next;
}

static void count_error(struct session *s);

/* Every reply with an argument goes out here, so every 5yz is counted. */
static void send_reply(struct session *s, enum reply_id id, const char *arg)
{
	reply_send(&s->io.sink, id, arg);
	if (reply_code(id) >= 500)
		count_error(s);
}

static const char *hostname(const struct session *s)
{
	return s->cfg->hostname;
}

const struct config *session_config(const struct session *s)
{
	return s->cfg;
}

/* The directory of the config this session started with. */
static struct directory *session_directory(const struct session *s)
{
	return s->cfg->dir;
}

static void log_lookup(const struct session *s, const char *verb,
		       const char *query, const char *result, enum reply_id id)
{
	struct log_line l;

	/* Built piece by piece: it is logged for every VRFY and EXPN. */
	if (!log_line_start(&l, LOG_LEVEL_INFO))
		return;
	log_line_lit(&l, "event=");
	log_line_str(&l, verb);
	log_line_lit(&l, " client=");
	log_line_str(&l, s->client_addr);
	log_line_lit(&l, " query=\"");
	log_line_escaped(&l, query, strlen(query));
	log_line_lit(&l, "\" result=");
	log_line_str(&l, result);
	log_line_lit(&l, " code=");
	log_line_uint(&l, (unsigned)reply_code(id));
	log_line_end(&l);
}

/* --- the mail transaction --------------------------------------------------- */

static void tx_end(struct session *s)
{
	struct transaction *tx = s->tx;

	if (tx == NULL)
		return;
	for (size_t i = 0; i < tx->nrcpts; i++) {
		free(tx->rcpts[i].local);
		free(tx->rcpts[i].domain);
	}
	free(tx->rcpts);
	free(tx->body);
	free(tx);
	s->tx = NULL;
}

/* Back to where a new transaction may start. */
static void tx_reset(struct session *s)
{
	tx_end(s);
	if (s->state != STATE_INIT && s->state != STATE_CLOSED)
		session_enter_state(s, STATE_HELO);
}

/* --- lifecycle ------------------------------------------------------------- */

struct session *session_new(struct config *cfg, const struct session_env *env,
			    const char *client_addr,
			    const struct session_io *io)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cfg = config_ref(cfg);
	s->env = env;
	s->io = *io;
	str_copy(s->client_addr, sizeof(s->client_addr), client_addr,
		 strlen(client_addr));
	policy_for_client(cfg, s->client_addr, &s->policy);
	s->state = STATE_INIT;
	return s;
}

void session_free(struct session **sp)
{
	struct session *s = *sp;

	if (s == NULL)
		return;
	if (s->waiting) {
		directory_cancel(s->pending);
		delivery_cancel(s->job);
	}
	tx_end(s);
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
	return s->waiting || session_delay_ms(s) > 0;
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
		delivery_cancel(s->job);
		s->waiting = false;
		s->pending = NULL;
		s->job = NULL;
	}
	tx_end(s);
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

/* Between commands: no message being read, no answer outstanding. */
static bool at_boundary(const struct session *s)
{
	return s->state != STATE_DATA && !s->waiting;
}

/* Draining and between commands: the 421 goes out now. */
static bool drain_now(struct session *s)
{
	if (!s->draining || !at_boundary(s) || s->state == STATE_CLOSED)
		return false;
	session_abort(s, REPLY_SHUTDOWN);
	return true;
}

void session_drain(struct session *s)
{
	s->draining = true;
	drain_now(s);
}

/*
 * Harvesting and junk cost time: past the soft limit each error reply is
 * held back longer (the host keeps it unsent), and at the hard limit the
 * session ends. The reply in progress completes first.
 */
static void count_error(struct session *s)
{
	const struct config *cfg = s->cfg;
	uint64_t delay;

	if (s->state == STATE_CLOSED)
		return;
	s->errors++;
	if (s->errors >= cfg->error_hard_limit) {
		log_event(LOG_LEVEL_INFO, "event=too_many_errors client=%s errors=%u",
			  s->client_addr, s->errors);
		reply_send(&s->io.sink, REPLY_TOO_MANY_ERRORS, hostname(s));
		tx_end(s);
		session_enter_state(s, STATE_CLOSED);
		return;
	}
	if (s->errors <= cfg->error_soft_limit || cfg->error_delay == 0)
		return;
	delay = cfg->error_delay * 1000 * (s->errors - cfg->error_soft_limit);
	s->delay_ms = delay > SESSION_DELAY_MAX_MS ? SESSION_DELAY_MAX_MS : (unsigned)delay;
}

unsigned session_delay_ms(const struct session *s)
{
	return s->state == STATE_CLOSED ? 0 : s->delay_ms;
}

void session_delay_done(struct session *s)
{
	s->delay_ms = 0;
}

uint64_t session_progress(const struct session *s)
{
	return s->progress;
}

bool session_in_data(const struct session *s)
{
	return s->state == STATE_DATA;
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
	if (!(commands[cmd.verb].states & BIT(s->state))) {
		send_reply(s, REPLY_BAD_SEQUENCE, refusal_text(s, cmd.verb));
		return;
	}
	commands[cmd.verb].handle(s, &cmd);
}

static size_t data_feed(struct session *s, const char *buf, size_t len);

size_t session_feed(struct session *s, const char *buf, size_t len)
{
	size_t used = 0;

	s->in_feed = true;
	while (used < len && !session_blocked(s) && s->state != STATE_CLOSED &&
	       !(s->io.backlogged != NULL && s->io.backlogged(s->io.arg))) {
		const char *p = buf + used;
		size_t avail = len - used, linelen, n;
		const char *lf;

		if (drain_now(s))
			break;
		if (s->state == STATE_DATA) {
			used += data_feed(s, p, avail);
			s->progress++;
			continue;
		}
		lf = memchr(p, '\n', avail);

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
		s->progress++;
		session_line(s, p, n);
	}
	drain_now(s);	/* e.g. a refused message was the last input */
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
	s->esmtp = cmd->verb == VERB_EHLO;
	tx_end(s);	/* RFC 5321 4.1.4: HELO/EHLO reset the transaction */
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
	char size[32];

	if (!greet_accept(s, cmd, "EHLO hostname"))
		return;
	snprintf(size, sizeof(size), "SIZE %llu",
		 (unsigned long long)s->cfg->max_message_size);
	reply_emit(sink, REPLY_EHLO_FIRST, true, hostname(s), s->helo,
		   s->client_addr);
	reply_line(sink, 250, NULL, true, "ENHANCEDSTATUSCODES");
	reply_line(sink, 250, NULL, true, "PIPELINING");
	reply_line(sink, 250, NULL, true, size);
	reply_line(sink, 250, NULL, true, "8BITMIME");
	reply_line(sink, 250, NULL, true, "SMTPUTF8");
	if (policy_advertise_vrfy(&s->policy))
		reply_line(sink, 250, NULL, true, "VRFY");
	if (policy_advertise_expn(&s->policy))
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
	tx_reset(s);
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


/* --- VRFY and EXPN --------------------------------------------------------- */

/*
 * Take apart a VRFY/EXPN argument; false when a reply was already sent.
 * Non-ASCII needs the SMTPUTF8 parameter (RFC 6531 3.7.4.2).
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
	if (arg->has_8bit && !arg->smtputf8) {
		send_reply(s, REPLY_ARG_8BIT, NULL);
		return false;
	}
	return true;
}

/* One answer from the client's budget across sessions, when policy says
 * it draws on one. False when it is spent: reveal nothing. */
static bool rate_take(struct session *s, bool public_vrfy)
{
	const struct session_env *env = s->env;

	if (!policy_budgeted(&s->policy, public_vrfy) || env == NULL ||
	    env->ratelimit == NULL)
		return true;
	if (ratelimit_take(env->ratelimit, s->client_addr, env->now_ms()))
		return true;
	log_event(LOG_LEVEL_INFO, "event=rate_limited client=%s", s->client_addr);
	return false;
}

/* Start a directory request; the answer may come now or later. */
static void lookup_begin(struct session *s, bool expand,
			 const struct lookup_arg *arg);

static void cmd_vrfy(struct session *s, const struct command *cmd)
{
	struct lookup_arg arg;

	bool is_public;

	if (!policy_advertise_vrfy(&s->policy)) {
		send_reply(s, REPLY_DISABLED, "VRFY");
		return;
	}
	if (!lookup_arg_accept(s, cmd, &arg, "VRFY address"))
		return;
	is_public = policy_is_public(s->cfg, arg.local, arg.locallen, arg.domain,
				     arg.domainlen);
	if (policy_vrfy(&s->policy, is_public) == POLICY_VRFY_GENERIC ||
	    !rate_take(s, is_public)) {
		send_reply(s, REPLY_CANNOT_VRFY, NULL);
		return;
	}
	lookup_begin(s, false, &arg);
}

static void cmd_expn(struct session *s, const struct command *cmd)
{
	struct lookup_arg arg;

	if (!policy_expn_allowed(&s->policy)) {
		send_reply(s, REPLY_DISABLED, "EXPN");
		return;
	}
	if (!lookup_arg_accept(s, cmd, &arg, "EXPN list"))
		return;
	if (!rate_take(s, false)) {
		send_reply(s, REPLY_EXPN_DENIED, NULL);
		return;
	}
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

/* A lookup or delivery answered: take up the input that waited. */
static void async_done(struct session *s)
{
	s->waiting = false;
	s->pending = NULL;
	s->job = NULL;
	drain_now(s);
	if (!s->in_feed && s->io.resume != NULL)
		s->io.resume(s->io.arg);
}

/* RFC 6531 3.7.4.2: no non-ASCII address goes to a client that did not
 * ask with SMTPUTF8. */
static bool readable_address(const struct session *s, const char *addr)
{
	return addr == NULL || s->smtputf8 || !str_has_8bit(addr, strlen(addr));
}

static void on_vrfy_answer(const struct dir_answer *a, void *arg)
{
	struct session *s = arg;
	const char *name = printable_name(s, a->fullname);
	enum reply_id id = vrfy_reply(a, name != NULL);

	if (!readable_address(s, a->address))
		id = REPLY_ANSWER_8BIT;

	if (id == REPLY_VRFY_NAMED)
		reply_emit(&s->io.sink, id, false, name, a->address, NULL);
	else if (id == REPLY_ANSWER_8BIT)
		send_reply(s, id, NULL);
	else if (a->address != NULL)
		send_reply(s, id, a->address);
	else
		send_reply(s, id, a->query);
	log_lookup(s, "vrfy", a->query, status_names[a->status], id);
	async_done(s);
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

/* The members this client can read: without SMTPUTF8, non-ASCII
 * addresses are left out. Returns how many were sent. */
static size_t send_members(struct session *s, const struct dir_expansion *e)
{
	size_t shown = 0, last = e->nmembers;

	while (last > 0 && !readable_address(s, e->members[last - 1].address))
		last--;
	for (size_t i = 0; i < last; i++) {
		const struct dir_member *m = &e->members[i];
		const char *name = printable_name(s, m->fullname);
		bool more = i + 1 < last;

		if (!readable_address(s, m->address))
			continue;
		shown++;

		if (name != NULL)
			reply_emit(&s->io.sink, REPLY_EXPN_NAMED, more, name,
				   m->address, NULL);
		else
			reply_emit(&s->io.sink, REPLY_EXPN_MAILBOX, more,
				   m->address, NULL, NULL);
	}
	return shown;
}

static void on_expn_answer(const struct dir_expansion *e, void *arg)
{
	struct session *s = arg;
	enum reply_id id = REPLY_EXPN_MAILBOX;

	if (e->nmembers > 0 && send_members(s, e) == 0) {
		id = REPLY_ANSWER_8BIT;
		send_reply(s, id, NULL);
	} else if (e->nmembers == 0) {
		id = expn_failure_reply(e->status);
		send_reply(s, id, id == REPLY_EXPN_MOVED ? e->address : e->query);
	}
	log_lookup(s, "expn", e->query, status_names[e->status], id);
	async_done(s);
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

/* --- MAIL ------------------------------------------------------------------ */

static enum reply_id address_reply(enum address_status st, bool sender)
{
	switch (st) {
	case ADDRESS_SYNTAX:
		return REPLY_SYNTAX;
	case ADDRESS_BAD_ADDRESS:
		return sender ? REPLY_BAD_SENDER : REPLY_BAD_RECIPIENT;
	case ADDRESS_TOO_LONG:
		return sender ? REPLY_SENDER_TOO_LONG : REPLY_RECIPIENT_TOO_LONG;
	case ADDRESS_NEEDS_UTF8:
		return REPLY_ARG_8BIT;
	case ADDRESS_UNKNOWN_PARAM:
		return REPLY_UNKNOWN_PARAM;
	case ADDRESS_BAD_PARAM:
	case ADDRESS_OK:
		break;
	}
	return REPLY_BAD_PARAM;
}

static void cmd_mail(struct session *s, const struct command *cmd)
{
	struct transaction *tx = calloc(1, sizeof(*tx));
	enum address_status st;

	if (tx == NULL) {
		session_abort(s, REPLY_OUT_OF_RESOURCES);
		return;
	}
	st = address_parse_mail(cmd->arg, cmd->arglen, &tx->from, &tx->params);
	if (st != ADDRESS_OK) {
		send_reply(s, address_reply(st, true), "MAIL FROM:<address>");
		free(tx);
		return;
	}
	if (tx->params.has_size && tx->params.size > s->cfg->max_message_size) {
		send_reply(s, REPLY_SIZE_EXCEEDED, NULL);
		free(tx);
		return;
	}
	s->tx = tx;
	session_enter_state(s, STATE_MAIL);
	send_reply(s, REPLY_MAIL_OK, NULL);
}

/* --- RCPT ------------------------------------------------------------------ */

static bool tx_has_rcpt(const struct transaction *tx, const char *local,
			size_t locallen, const char *domain)
{
	for (size_t i = 0; i < tx->nrcpts; i++)
		if (str_eq_nocase(tx->rcpts[i].local, strlen(tx->rcpts[i].local),
				  local, locallen) &&
		    str_eq_nocase(tx->rcpts[i].domain, strlen(tx->rcpts[i].domain),
				  domain, strlen(domain)))
			return true;
	return false;
}

/* Add "local@domain" (a directory mailbox) unless already there. */
static bool tx_add_rcpt(struct transaction *tx, const char *address)
{
	const char *at = strrchr(address, '@');
	struct tx_rcpt r;
	size_t locallen;

	if (at == NULL)
		return false;
	locallen = (size_t)(at - address);
	if (tx_has_rcpt(tx, address, locallen, at + 1))
		return true;
	if (tx->nrcpts == tx->rcpts_cap) {
		size_t cap = tx->rcpts_cap ? tx->rcpts_cap * 2 : 4;
		struct tx_rcpt *n = realloc(tx->rcpts, cap * sizeof(*n));

		if (n == NULL)
			return false;
		tx->rcpts = n;
		tx->rcpts_cap = cap;
	}
	r.local = strndup(address, locallen);
	r.domain = strdup(at + 1);
	if (r.local == NULL || r.domain == NULL) {
		free(r.local);
		free(r.domain);
		return false;
	}
	str_lower_inplace(r.local);
	str_lower_inplace(r.domain);
	tx->rcpts[tx->nrcpts++] = r;
	return true;
}

/* The local mailboxes of an expansion join the transaction; remote list
 * members are not relayed (yet): they are logged and skipped. Returns
 * how many local mailboxes it has, or -1 when out of memory. */
static long rcpt_take_members(struct session *s, const struct dir_expansion *e)
{
	long local = 0;

	for (size_t i = 0; i < e->nmembers; i++) {
		const char *addr = e->members[i].address;
		const char *at = strrchr(addr, '@');
		char esc[LOG_VALUE_MAX], list[LOG_VALUE_MAX];

		if (at == NULL ||
		    !directory_domain_is_local(session_directory(s), at + 1, strlen(at + 1))) {
			log_event(LOG_LEVEL_INFO, "event=rcpt_skip client=%s list=\"%s\" member=\"%s\" reason=remote",
				  s->client_addr,
				  log_escape(list, sizeof(list), s->tx->rcpt_arg,
					     strlen(s->tx->rcpt_arg)),
				  log_escape(esc, sizeof(esc), addr, strlen(addr)));
			continue;
		}
		if (!tx_add_rcpt(s->tx, addr))
			return -1;
		local++;
	}
	return local;
}

static enum reply_id rcpt_reply(struct session *s, const struct dir_expansion *e,
				const char **arg_r)
{
	long local;

	*arg_r = s->tx->rcpt_arg;
	switch (e->status) {
	case DIR_USER:
	case DIR_LIST:
		local = rcpt_take_members(s, e);
		if (local < 0)
			return REPLY_RCPT_TEMPFAIL;
		return local > 0 ? REPLY_RCPT_OK : REPLY_RCPT_NO_LOCAL;
	case DIR_FORWARD:
		/* Relaying is not offered: point the client at the target. */
		*arg_r = e->members[0].address;
		return readable_address(s, *arg_r) ? REPLY_VRFY_MOVED : REPLY_ANSWER_8BIT;
	case DIR_MOVED:
		*arg_r = e->address;
		return readable_address(s, *arg_r) ? REPLY_VRFY_MOVED : REPLY_ANSWER_8BIT;
	case DIR_TEMPFAIL:
		return REPLY_RCPT_TEMPFAIL;
	case DIR_TOO_LARGE:
		return REPLY_EXPN_TOO_LARGE;
	case DIR_NOT_LOCAL:
		return REPLY_RELAY_DENIED;
	case DIR_AMBIGUOUS:
	case DIR_NOTFOUND:
		break;
	}
	return REPLY_UNKNOWN_USER;
}

static void on_rcpt_answer(const struct dir_expansion *e, void *arg)
{
	struct session *s = arg;
	const char *rarg;
	enum reply_id id = rcpt_reply(s, e, &rarg);

	if (id == REPLY_UNKNOWN_USER || id == REPLY_RCPT_NO_LOCAL)
		(void)rate_take(s, false);	/* failed RCPTs spend the budget too */
	if (id == REPLY_RCPT_OK) {
		s->tx->rcpt_commands++;
		session_enter_state(s, STATE_RCPT);
	}
	/* Log first: an error reply may end the session and its transaction. */
	log_lookup(s, "rcpt", s->tx->rcpt_arg, status_names[e->status], id);
	send_reply(s, id, rarg);
	async_done(s);
}

/* RFC 5321 4.1.1.3: <postmaster> without a domain is ours. */
static void rcpt_qualify(struct session *s, struct mail_address *a)
{
	if (a->domain[0] == '\0')
		str_copy(a->domain, sizeof(a->domain), s->cfg->domains[0],
			 strlen(s->cfg->domains[0]));
}

static void cmd_rcpt(struct session *s, const struct command *cmd)
{
	struct transaction *tx = s->tx;
	struct mail_address a;
	struct lookup_arg q;
	enum address_status st;

	st = address_parse_rcpt(cmd->arg, cmd->arglen, tx->params.smtputf8, &a);
	if (st != ADDRESS_OK) {
		send_reply(s, address_reply(st, false), "RCPT TO:<address>");
		return;
	}
	if (tx->rcpt_commands >= s->cfg->max_recipients) {
		send_reply(s, REPLY_TOO_MANY_RCPTS, NULL);
		return;
	}
	rcpt_qualify(s, &a);
	snprintf(tx->rcpt_arg, sizeof(tx->rcpt_arg), "%s@%s", a.local, a.domain);
	if (!directory_domain_is_local(session_directory(s), a.domain, strlen(a.domain))) {
		log_lookup(s, "rcpt", tx->rcpt_arg, "relay_denied", REPLY_RELAY_DENIED);
		send_reply(s, REPLY_RELAY_DENIED, tx->rcpt_arg);
		return;
	}
	memset(&q, 0, sizeof(q));
	q.text = tx->rcpt_arg;
	q.textlen = strlen(tx->rcpt_arg);
	q.local = a.local;
	q.locallen = strlen(a.local);
	q.domain = a.domain;
	q.domainlen = strlen(a.domain);
	q.smtputf8 = tx->params.smtputf8;
	s->waiting = true;
	s->smtputf8 = q.smtputf8;
	s->pending = directory_expand(session_directory(s), &q, on_rcpt_answer, s);
	if (!s->waiting)
		s->pending = NULL;
}

/* --- DATA ------------------------------------------------------------------ */

static void cmd_data(struct session *s, const struct command *cmd)
{
	if (cmd->arglen != 0) {
		send_reply(s, REPLY_SYNTAX, "DATA");
		return;
	}
	if (s->state != STATE_RCPT) {
		send_reply(s, REPLY_NO_VALID_RCPTS, NULL);
		return;
	}
	data_reader_init(&s->tx->reader, s->cfg->max_message_size);
	session_enter_state(s, STATE_DATA);
	send_reply(s, REPLY_DATA_GO, NULL);
}

static void body_append(void *arg, const char *buf, size_t len)
{
	struct transaction *tx = arg;

	if (tx->body_len + len > tx->body_cap) {
		size_t cap = tx->body_cap ? tx->body_cap : 4096;
		char *n;

		while (cap < tx->body_len + len)
			cap *= 2;
		n = realloc(tx->body, cap);
		if (n == NULL) {
			/* Treat like an oversize message: read on, then refuse. */
			tx->reader.problem = DATA_TOO_BIG;
			return;
		}
		tx->body = n;
		tx->body_cap = cap;
	}
	memcpy(tx->body + tx->body_len, buf, len);
	tx->body_len += len;
}

/* A queue id unique to this process: time and a counter, in hex. */
static void make_queue_id(char *buf, size_t size)
{
	static uint32_t counter;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	snprintf(buf, size, "%08llX%05lX%04X", (unsigned long long)tv.tv_sec,
		 (unsigned long)tv.tv_usec, (unsigned)(counter++ & 0xffff));
}

/* RFC 5321 4.4 trace header; RFC 3848 protocol names. */
static size_t format_received(const struct session *s, char *buf, size_t size)
{
	const struct transaction *tx = s->tx;
	char date[64], rcpt[ADDRESS_TEXT_MAX + 16] = "";
	const char *proto = s->esmtp ? (tx->params.smtputf8 ? "UTF8SMTP" : "ESMTP")
				     : "SMTP";
	time_t now = time(NULL);
	struct tm tm;
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (tx->nrcpts == 1)
		snprintf(rcpt, sizeof(rcpt), "\r\n\tfor <%s@%s>", tx->rcpts[0].local,
			 tx->rcpts[0].domain);
	/* RFC 5321 4.1.3: an IPv6 address literal is tagged "IPv6:". */
	n = snprintf(buf, size,
		     "Received: from %s ([%s%s])\r\n\tby %s (porterd) with %s id %s%s;\r\n\t%s\r\n",
		     s->helo, strchr(s->client_addr, ':') != NULL ? "IPv6:" : "",
		     s->client_addr, hostname(s), proto, tx->id, rcpt, date);
	return n < 0 ? 0 : (size_t)n >= size ? size - 1 : (size_t)n;
}

static void on_delivered(enum delivery_status st, void *arg)
{
	struct session *s = arg;
	enum reply_id id = st == DELIVERY_OK ? REPLY_QUEUED
			 : st == DELIVERY_NOSPACE ? REPLY_DELIVERY_NOSPACE
			 : REPLY_DELIVERY_TEMPFAIL;

	send_reply(s, id, s->tx->id);
	log_event(LOG_LEVEL_INFO, "event=message client=%s id=%s size=%zu rcpts=%zu code=%d",
		  s->client_addr, s->tx->id, s->tx->body_len, s->tx->nrcpts,
		  reply_code(id));
	tx_reset(s);
	async_done(s);
}

static struct delivery_job *build_job(struct session *s)
{
	struct transaction *tx = s->tx;
	char return_path[ADDRESS_TEXT_MAX] = "", received[2048];
	struct delivery_job *job;
	size_t hlen;

	make_queue_id(tx->id, sizeof(tx->id));
	if (!tx->from.null)
		snprintf(return_path, sizeof(return_path), "%s@%s", tx->from.local,
			 tx->from.domain);
	job = delivery_job_new(tx->id, return_path);
	if (job == NULL || !delivery_job_set_maildir(job, s->cfg->maildir)) {
		delivery_job_free(&job);
		return NULL;
	}
	hlen = format_received(s, received, sizeof(received));
	for (size_t i = 0; i < tx->nrcpts; i++) {
		if (!delivery_job_add_rcpt(job, tx->rcpts[i].local, tx->rcpts[i].domain)) {
			delivery_job_free(&job);
			return NULL;
		}
	}
	if (!delivery_job_set_header(job, received, hlen)) {
		delivery_job_free(&job);
		return NULL;
	}
	delivery_job_set_body(job, tx->body, tx->body_len);
	tx->body = NULL;	/* the job owns it now */
	tx->body_cap = 0;
	return job;
}

/* The data ended: refuse it, or hand it to delivery and wait. */
static void data_finish(struct session *s)
{
	static const enum reply_id refusals[] = {
		[DATA_TOO_BIG] = REPLY_SIZE_EXCEEDED,
		[DATA_BARE_NEWLINE] = REPLY_DATA_BARE_NEWLINE,
		[DATA_LINE_TOO_LONG] = REPLY_DATA_LONG_LINE,
	};
	enum data_problem problem = s->tx->reader.problem;
	struct delivery_job *job;

	if (problem != DATA_FINE) {
		send_reply(s, refusals[problem], NULL);
		log_event(LOG_LEVEL_INFO, "event=message client=%s refused=%d",
			  s->client_addr, reply_code(refusals[problem]));
		tx_reset(s);
		return;
	}
	job = build_job(s);
	if (job == NULL) {
		send_reply(s, REPLY_DELIVERY_TEMPFAIL, NULL);
		tx_reset(s);
		return;
	}
	s->waiting = true;
	s->job = delivery_submit(s->env->delivery, job, on_delivered, s);
	if (!s->waiting)
		s->job = NULL;
}

static size_t data_feed(struct session *s, const char *buf, size_t len)
{
	bool done = false;
	size_t used = data_reader_feed(&s->tx->reader, buf, len, body_append,
				       s->tx, &done);

	if (done)
		data_finish(s);
	return used;
}
