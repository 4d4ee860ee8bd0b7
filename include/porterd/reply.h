/*
 * reply — the reply catalogue: every code, enhanced status code (RFC 3463)
 * and text porterd sends lives in one table in reply.c, and every reply
 * line is framed here (code, '-' or ' ', enhanced code, text, CRLF).
 *
 * Reply text never exceeds REPLY_LINE_MAX octets (RFC 5321 4.5.3.1.5);
 * an argument that would overflow it is cut. Arguments are inserted
 * verbatim: callers pass only text the command parser has already
 * restricted to printable characters.
 */
#ifndef PORTERD_REPLY_H
#define PORTERD_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
#define REPLY_LINE_MAX 512

/* Where framed reply lines go: a connection's output buffer, or a test's. */
struct reply_sink {
	void (*write)(void *arg, const char *buf, size_t len);
	void *arg;
};

enum reply_id {
	REPLY_GREETING,		/* 220 <host> ESMTP <banner> */
	REPLY_HELO,		/* 250 <host> */
	REPLY_EHLO_FIRST,	/* 250-<host> Hello <helo> [<addr>] */
	REPLY_OK,		/* 250 2.0.0 Ok */
	REPLY_BYE,		/* 221 2.0.0 Bye */
	REPLY_HELP_TOPICS,	/* 214-2.0.0 Commands: ... */
	REPLY_HELP_END,		/* 214 2.0.0 End of HELP info */
	REPLY_VRFY_NAMED,	/* 250 2.1.5 Full Name <local@domain> */
	REPLY_VRFY_MAILBOX,	/* 250 2.1.5 <local@domain> */
	REPLY_VRFY_FORWARD,	/* 251 2.1.5 User not local; will forward to <addr> */
	REPLY_VRFY_MOVED,	/* 551 5.1.6 User not local; please try <addr> */
	REPLY_VRFY_AMBIGUOUS,	/* 553 5.1.4 User ambiguous */
	REPLY_UNKNOWN_USER,	/* 550 5.1.1 <arg>: no such user here */
	REPLY_NOT_LOCAL,	/* 550 5.1.2 <arg>: domain is not local here */
	REPLY_CANNOT_VRFY,	/* 252 2.5.0 generic, reveals nothing */
	REPLY_LOOKUP_TEMPFAIL,	/* 252 2.4.3 cannot verify now */
	REPLY_EXPN_NAMED,	/* 250-2.1.5 Full Name <addr>, one per line */
	REPLY_EXPN_MAILBOX,	/* 250-2.1.5 <addr> */
	REPLY_EXPN_EMPTY,	/* 550 5.1.1 a list with nothing deliverable */
	REPLY_EXPN_MOVED,	/* 550 5.1.6 (EXPN may not answer 551) */
	REPLY_EXPN_AMBIGUOUS,	/* 550 5.1.4 (EXPN may not answer 553) */
	REPLY_EXPN_TOO_LARGE,	/* 550 5.3.4 list too large to expand */
	REPLY_ARG_8BIT,		/* 553 5.6.7 non-ASCII argument without SMTPUTF8 */
	REPLY_ANSWER_8BIT,	/* 553 5.6.7 the answer is non-ASCII, no SMTPUTF8 */
	REPLY_DISABLED,		/* 502 5.5.1 <VERB> command is disabled */
	REPLY_UNKNOWN_COMMAND,	/* 500 5.5.2 Error: command not recognized */
	REPLY_LINE_TOO_LONG,	/* 500 5.5.2 Line too long */
	REPLY_BAD_CHARACTERS,	/* 500 5.5.2 control characters */
	REPLY_SYNTAX,		/* 501 5.5.4 Syntax: <usage> */
	REPLY_BAD_SEQUENCE,	/* 503 5.5.1 Error: <what> */
	REPLY_MAIL_OK,		/* 250 2.1.0 Ok */
	REPLY_RCPT_OK,		/* 250 2.1.5 Ok */
	REPLY_DATA_GO,		/* 354 End data with <CR><LF>.<CR><LF> */
	REPLY_QUEUED,		/* 250 2.0.0 Ok: queued as <id> */
	REPLY_BAD_SENDER,	/* 501 5.1.7 */
	REPLY_BAD_RECIPIENT,	/* 501 5.1.3 */
	REPLY_SENDER_TOO_LONG,	/* 553 5.1.7 */
	REPLY_RECIPIENT_TOO_LONG, /* 553 5.1.3 */
	REPLY_UNKNOWN_PARAM,	/* 555 5.5.4 */
	REPLY_BAD_PARAM,	/* 501 5.5.4 */
	REPLY_SIZE_EXCEEDED,	/* 552 5.3.4 */
	REPLY_RELAY_DENIED,	/* 554 5.7.1 <addr>: Relay access denied */
	REPLY_RCPT_TEMPFAIL,	/* 451 4.3.0 directory unreachable */
	REPLY_TOO_MANY_RCPTS,	/* 452 4.5.3 */
	REPLY_RCPT_NO_LOCAL,	/* 550 5.1.1 a list with no local member */
	REPLY_NO_VALID_RCPTS,	/* 554 5.5.1 DATA without a recipient */
	REPLY_DATA_BARE_NEWLINE, /* 554 5.6.0 */
	REPLY_DATA_LONG_LINE,	/* 554 5.6.0 */
	REPLY_DELIVERY_TEMPFAIL, /* 451 4.3.0 */
	REPLY_DELIVERY_NOSPACE,	/* 452 4.3.1 */
	REPLY_EXPN_DENIED,	/* 550 5.7.1 Access denied to you */
	REPLY_TIMEOUT,		/* 421 4.4.2 <host> Error: timeout exceeded */
	REPLY_TOO_MANY_ERRORS,	/* 421 4.7.0 <host> Error: too many errors */
	REPLY_TOO_MANY_CONNECTIONS, /* 421 4.7.0 <host> Error: too many connections */
	REPLY_SHUTDOWN,		/* 421 4.3.2 <host> Service shutting down */
	REPLY_OUT_OF_RESOURCES,	/* 421 4.3.0 <host> Error: out of resources */
	REPLY__COUNT
};

/* The numeric code of a catalogue entry (for logs and tests). */
int reply_code(enum reply_id id);

/*
 * Send catalogue entry id, substituting a1..a3 (NULL when unused) for the
 * %s placeholders of its text in order. more=true frames it as a
 * continuation line ("250-"), for multi-line replies.
 */
void reply_emit(const struct reply_sink *sink, enum reply_id id, bool more,
		const char *a1, const char *a2, const char *a3);

/* A single, final reply line with up to one argument. */
static inline void reply_send(const struct reply_sink *sink, enum reply_id id,
			      const char *arg)
{
	reply_emit(sink, id, false, arg, NULL, NULL);
}

/*
 * Frame one free-form line: "<code>-" or "<code> ", then "<enh> " when enh
 * is not NULL, then text (cut to fit), then CRLF. Used for EHLO keywords.
 */
void reply_line(const struct reply_sink *sink, int code, const char *enh,
		bool more, const char *text);

#endif
