/*
 * reply — the reply catalogue and reply framing. Every code and text
 * porterd sends is in catalogue[] below, so an administrator (and a test)
 * can read them in one place. This module must never send a line longer
 * than REPLY_LINE_MAX or a bare CR/LF inside a line.
 *
 * Enhanced status codes (RFC 3463) are on every reply except the greeting
 * and the replies to HELO/EHLO, as RFC 2034 section 3 specifies.
 */
#include "porterd/reply.h"

#include <stdlib.h>
#include <string.h>

struct reply_def {
	int code;
	const char *enh;	/* NULL: no enhanced status code */
	const char *text;	/* %s placeholders take the arguments in order */
};

static const struct reply_def catalogue[REPLY__COUNT] = {
	[REPLY_GREETING] = { 220, NULL, "%s ESMTP %s" },
	[REPLY_HELO] = { 250, NULL, "%s" },
	[REPLY_EHLO_FIRST] = { 250, NULL, "%s Hello %s [%s]" },
	[REPLY_OK] = { 250, "2.0.0", "Ok" },
	[REPLY_BYE] = { 221, "2.0.0", "Bye" },
	[REPLY_HELP_TOPICS] = { 214, "2.0.0",
		"Commands: HELO EHLO MAIL RCPT DATA VRFY EXPN NOOP RSET HELP QUIT" },
	[REPLY_HELP_END] = { 214, "2.0.0", "End of HELP info; see porterd(8)" },
	[REPLY_VRFY_NAMED] = { 250, "2.1.5", "%s <%s>" },
	[REPLY_VRFY_MAILBOX] = { 250, "2.1.5", "<%s>" },
	[REPLY_VRFY_FORWARD] = { 251, "2.1.5",
		"User not local; will forward to <%s>" },
	[REPLY_VRFY_MOVED] = { 551, "5.1.6", "User not local; please try <%s>" },
	[REPLY_VRFY_AMBIGUOUS] = { 553, "5.1.4", "User ambiguous" },
	[REPLY_UNKNOWN_USER] = { 550, "5.1.1", "<%s>: no such user here" },
	[REPLY_NOT_LOCAL] = { 550, "5.1.2", "<%s>: domain is not local here" },
	[REPLY_CANNOT_VRFY] = { 252, "2.5.0",
		"Cannot VRFY user; send some mail, I'll try my best" },
	[REPLY_LOOKUP_TEMPFAIL] = { 252, "2.4.3",
		"Cannot verify <%s> now; send some mail, I'll try my best" },
	[REPLY_EXPN_NAMED] = { 250, "2.1.5", "%s <%s>" },
	[REPLY_EXPN_MAILBOX] = { 250, "2.1.5", "<%s>" },
	[REPLY_EXPN_EMPTY] = { 550, "5.1.1", "<%s>: list has no members here" },
	[REPLY_EXPN_MOVED] = { 550, "5.1.6", "User not local; please try <%s>" },
	[REPLY_EXPN_AMBIGUOUS] = { 550, "5.1.4", "User ambiguous" },
	[REPLY_EXPN_TOO_LARGE] = { 550, "5.3.4", "<%s>: list too large to expand" },
	[REPLY_ARG_8BIT] = { 553, "5.6.7",
		"Non-ASCII argument requires the SMTPUTF8 parameter" },
	[REPLY_ANSWER_8BIT] = { 553, "5.6.7",
		"The answer is not ASCII; ask again with the SMTPUTF8 parameter" },
	[REPLY_DISABLED] = { 502, "5.5.1", "%s command is disabled" },
	[REPLY_UNKNOWN_COMMAND] = { 500, "5.5.2", "Error: command not recognized" },
	[REPLY_LINE_TOO_LONG] = { 500, "5.5.2", "Line too long" },
	[REPLY_BAD_CHARACTERS] = { 500, "5.5.2",
		"Error: control characters in command" },
	[REPLY_SYNTAX] = { 501, "5.5.4", "Syntax: %s" },
	[REPLY_BAD_SEQUENCE] = { 503, "5.5.1", "Error: %s" },
	[REPLY_MAIL_OK] = { 250, "2.1.0", "Ok" },
	[REPLY_RCPT_OK] = { 250, "2.1.5", "Ok" },
	[REPLY_DATA_GO] = { 354, NULL, "End data with <CR><LF>.<CR><LF>" },
	[REPLY_QUEUED] = { 250, "2.0.0", "Ok: queued as %s" },
	[REPLY_BAD_SENDER] = { 501, "5.1.7", "Bad sender address syntax" },
	[REPLY_BAD_RECIPIENT] = { 501, "5.1.3", "Bad recipient address syntax" },
	[REPLY_SENDER_TOO_LONG] = { 553, "5.1.7", "Sender address too long" },
	[REPLY_RECIPIENT_TOO_LONG] = { 553, "5.1.3", "Recipient address too long" },
	[REPLY_UNKNOWN_PARAM] = { 555, "5.5.4", "Unsupported parameter" },
	[REPLY_BAD_PARAM] = { 501, "5.5.4", "Bad parameter value" },
	[REPLY_SIZE_EXCEEDED] = { 552, "5.3.4", "Message size exceeds fixed limit" },
	[REPLY_RELAY_DENIED] = { 554, "5.7.1", "<%s>: Relay access denied" },
	[REPLY_RCPT_TEMPFAIL] = { 451, "4.3.0", "<%s>: Temporary lookup failure" },
	[REPLY_TOO_MANY_RCPTS] = { 452, "4.5.3", "Error: too many recipients" },
	[REPLY_RCPT_NO_LOCAL] = { 550, "5.1.1", "<%s>: list has no local members here" },
	[REPLY_NO_VALID_RCPTS] = { 554, "5.5.1", "Error: no valid recipients" },
	[REPLY_DATA_BARE_NEWLINE] = { 554, "5.6.0",
		"Message contains a bare CR or LF; lines must end in CRLF" },
	[REPLY_DATA_LONG_LINE] = { 554, "5.6.0",
		"Message contains a line longer than 1000 octets" },
	[REPLY_DELIVERY_TEMPFAIL] = { 451, "4.3.0", "Error: cannot deliver now; try again later" },
	[REPLY_DELIVERY_NOSPACE] = { 452, "4.3.1", "Insufficient system storage" },
	[REPLY_EXPN_DENIED] = { 550, "5.7.1", "Access denied to you" },
	[REPLY_TOO_MANY_ERRORS] = { 421, "4.7.0", "%s Error: too many errors" },
	[REPLY_TOO_MANY_CONNECTIONS] = { 421, "4.7.0", "%s Error: too many connections" },
	[REPLY_TIMEOUT] = { 421, "4.4.2", "%s Error: timeout exceeded" },
	[REPLY_SHUTDOWN] = { 421, "4.3.2", "%s Service shutting down" },
	[REPLY_OUT_OF_RESOURCES] = { 421, "4.3.0", "%s Error: out of resources" },
};

int reply_code(enum reply_id id)
{
	return catalogue[id].code;
}

/* Append src to line (bounded by end), never past the room for CRLF. */
static char *append(char *p, const char *end, const char *src, size_t len)
{
	size_t room = (size_t)(end - p);

	if (len > room)
		len = room;
	memcpy(p, src, len);
	return p + len;
}

/* Write "<code>[- ][<enh> ]" into line; returns the end. */
static char *frame_start(char *line, int code, const char *enh, bool more)
{
	char *p = line;

	/* Codes come from the catalogue or the session: always 3 digits. */
	if (code < 200 || code > 599 || (code / 100 == 3 && enh != NULL))
		abort();
	*p++ = (char)('0' + code / 100);
	*p++ = (char)('0' + code / 10 % 10);
	*p++ = (char)('0' + code % 10);
	*p++ = more ? '-' : ' ';
	if (enh != NULL) {
		size_t n = strlen(enh);
		memcpy(p, enh, n);
		p += n;
		*p++ = ' ';
	}
	return p;
}

static void frame_finish(const struct reply_sink *sink, char *line, char *p)
{
	*p++ = '\r';
	*p++ = '\n';
	sink->write(sink->arg, line, (size_t)(p - line));
}

void reply_line(const struct reply_sink *sink, int code, const char *enh,
		bool more, const char *text)
{
	char line[REPLY_LINE_MAX];
	const char *end = line + sizeof(line) - 2;	/* keep room for CRLF */
	char *p = frame_start(line, code, enh, more);

	p = append(p, end, text, strlen(text));
	frame_finish(sink, line, p);
}

void reply_emit(const struct reply_sink *sink, enum reply_id id, bool more,
		const char *a1, const char *a2, const char *a3)
{
	const struct reply_def *def = &catalogue[id];
	const char *args[3] = { a1, a2, a3 };
	char line[REPLY_LINE_MAX];
	const char *end = line + sizeof(line) - 2;
	char *p = frame_start(line, def->code, def->enh, more);
	size_t next = 0;

	/* Literal runs are copied whole; each "%s" takes the next argument. */
	for (const char *t = def->text; *t != '\0';) {
		const char *pct = strchr(t, '%');
		size_t run = pct != NULL ? (size_t)(pct - t) : strlen(t);

		p = append(p, end, t, run);
		t += run;
		if (t[0] == '%' && t[1] == 's') {
			const char *a = next < 3 && args[next] != NULL ? args[next] : "";

			next++;
			p = append(p, end, a, strlen(a));
			t += 2;
		} else if (t[0] == '%') {
			p = append(p, end, t, 1);
			t++;
		}
	}
	frame_finish(sink, line, p);
}
