/*
 * command — one command line into a verb and an argument. No copies, no
 * allocation, no state: the argument points into the caller's line. It
 * decides only what the line says, never whether the command is allowed
 * now (that is the session's command table).
 */
#include "porterd/command.h"

#include <stdint.h>
#include <string.h>

#include "porterd/address.h"
#include "porterd/strutil.h"

/* Verbs packed into an integer, upper case, so lookup is a compare per
 * table row instead of a string compare. */
#define PACK4(a, b, c, d) \
	((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))

static const struct {
	uint32_t packed;
	const char *name;
} verbs[VERB__COUNT] = {
	[VERB_HELO] = { PACK4('H', 'E', 'L', 'O'), "HELO" },
	[VERB_EHLO] = { PACK4('E', 'H', 'L', 'O'), "EHLO" },
	[VERB_MAIL] = { PACK4('M', 'A', 'I', 'L'), "MAIL" },
	[VERB_RCPT] = { PACK4('R', 'C', 'P', 'T'), "RCPT" },
	[VERB_DATA] = { PACK4('D', 'A', 'T', 'A'), "DATA" },
	[VERB_RSET] = { PACK4('R', 'S', 'E', 'T'), "RSET" },
	[VERB_VRFY] = { PACK4('V', 'R', 'F', 'Y'), "VRFY" },
	[VERB_EXPN] = { PACK4('E', 'X', 'P', 'N'), "EXPN" },
	[VERB_HELP] = { PACK4('H', 'E', 'L', 'P'), "HELP" },
	[VERB_NOOP] = { PACK4('N', 'O', 'O', 'P'), "NOOP" },
	[VERB_QUIT] = { PACK4('Q', 'U', 'I', 'T'), "QUIT" },
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Control bytes other than tab never belong in a command (a NUL or a bare
 * CR inside a line is how smuggling and log forging start). */
static bool is_control_byte(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/*
 * Every command's every byte passes here, so eight are screened at a
 * time: a word with no byte below 0x20 and none equal to 0x7f is clean
 * (the classic has-less and has-zero tests are exact about "any byte");
 * only a word that fails (a tab, say) is looked at byte by byte.
 */
static bool has_control_bytes(const char *s, size_t len)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = ones * 0x80;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w, del;

		memcpy(&w, s + i, sizeof(w));
		del = w ^ (ones * 0x7f);
		if ((((w - ones * 0x20) & ~w) | ((del - ones) & ~del)) & highs)
			for (size_t k = i; k < i + 8; k++)
				if (is_control_byte((unsigned char)s[k]))
					return true;
	}
	for (; i < len; i++)
		if (is_control_byte((unsigned char)s[i]))
			return true;
	return false;
}

static bool lookup_verb(const char *s, size_t len, enum verb *verb_r)
{
	uint32_t packed = 0;

	if (len != 4)
		return false;
	for (size_t i = 0; i < 4; i++) {
		char c = s[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - ('a' - 'A'));
		packed = packed << 8 | (unsigned char)c;
	}
	for (int v = 0; v < VERB__COUNT; v++) {
		if (verbs[v].packed == packed) {
			*verb_r = (enum verb)v;
			return true;
		}
	}
	return false;
}

enum command_status command_parse(const char *line, size_t len,
				  struct command *cmd_r)
{
	size_t start = 0, end, argstart;

	if (has_control_bytes(line, len))
		return COMMAND_BAD_CHARACTERS;
	while (start < len && is_blank(line[start]))
		start++;
	end = start;
	while (end < len && !is_blank(line[end]))
		end++;
	if (!lookup_verb(line + start, end - start, &cmd_r->verb))
		return COMMAND_UNKNOWN;

	argstart = end;
	while (argstart < len && is_blank(line[argstart]))
		argstart++;
	while (len > argstart && is_blank(line[len - 1]))
		len--;
	cmd_r->arg = line + argstart;
	cmd_r->arglen = len - argstart;
	return COMMAND_OK;
}

const char *command_verb_name(enum verb verb)
{
	return verbs[verb].name;
}

/* Remove a trailing " SMTPUTF8" parameter (RFC 6531 3.7.4) if present. */
static size_t strip_smtputf8(const char *s, size_t len, bool *found_r)
{
	static const char param[] = "smtputf8";
	size_t plen = sizeof(param) - 1;

	*found_r = false;
	if (len > plen && is_blank(s[len - plen - 1]) &&
	    str_eq_nocase(s + len - plen, plen, param, plen)) {
		*found_r = true;
		len -= plen;
		while (len > 0 && is_blank(s[len - 1]))
			len--;
	}
	return len;
}

/* "<...>" → its inside, dropping an RFC 5321 source route "@a,@b:". */
static enum lookup_arg_status unbracket(const char **s, size_t *len)
{
	const char *p = *s, *colon;
	size_t n = *len;

	if (n == 0 || p[0] != '<')
		return memchr(p, '>', n) != NULL ? LOOKUP_ARG_SYNTAX : LOOKUP_ARG_OK;
	if (n < 2 || p[n - 1] != '>')
		return LOOKUP_ARG_SYNTAX;
	p++;
	n -= 2;
	if (memchr(p, '<', n) != NULL || memchr(p, '>', n) != NULL)
		return LOOKUP_ARG_SYNTAX;
	if (n > 0 && p[0] == '@') {
		colon = memchr(p, ':', n);
		if (colon == NULL)
			return LOOKUP_ARG_SYNTAX;
		n -= (size_t)(colon + 1 - p);
		p = colon + 1;
	}
	*s = p;
	*len = n;
	return LOOKUP_ARG_OK;
}

static bool has_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (is_blank(s[i]))
			return true;
	return false;
}

/* The '@' after a quoted local part ("help desk"@example.test, blanks
 * inside the quotes only, no '@' after it), or NULL when text does not
 * start with one. */
static const char *quoted_local_end(const char *text, size_t len)
{
	size_t q = address_quoted_len(text, len);

	if (q == 0 || q >= len || text[q] != '@' || has_blank(text + q, len - q) ||
	    memchr(text + q + 1, '@', len - q - 1) != NULL)
		return NULL;
	return text + q;
}

static enum lookup_arg_status split_address(struct lookup_arg *r)
{
	const char *at = quoted_local_end(r->text, r->textlen);
	bool quoted = at != NULL;

	for (size_t i = r->textlen; at == NULL && i > 0; i--) {
		if (r->text[i - 1] == '@') {
			at = r->text + i - 1;
			break;
		}
	}
	r->local = r->text;
	r->locallen = r->textlen;
	r->domain = NULL;
	r->domainlen = 0;
	if (at == NULL || (!quoted && has_blank(r->text, r->textlen)))
		return r->textlen > ADDRESS_PATH_MAX ? LOOKUP_ARG_SYNTAX : LOOKUP_ARG_OK;

	r->locallen = (size_t)(at - r->text);
	r->domain = at + 1;
	r->domainlen = r->textlen - r->locallen - 1;
	if (r->locallen == 0 || r->domainlen == 0 ||
	    r->locallen > ADDRESS_LOCAL_MAX || r->domainlen > ADDRESS_DOMAIN_MAX ||
	    r->textlen > ADDRESS_PATH_MAX)
		return LOOKUP_ARG_SYNTAX;
	/* "jones"@example.test is jones@example.test, as RCPT reads it; a
	 * local part that needs its quotes is looked up with them. */
	if (quoted && address_quoted_is_plain(r->local, r->locallen)) {
		r->local++;
		r->locallen -= 2;
	}
	return LOOKUP_ARG_OK;
}

enum lookup_arg_status command_parse_lookup_arg(const char *arg, size_t len,
						struct lookup_arg *r)
{
	enum lookup_arg_status st;

	memset(r, 0, sizeof(*r));
	len = strip_smtputf8(arg, len, &r->smtputf8);
	st = unbracket(&arg, &len);
	if (st != LOOKUP_ARG_OK)
		return st;
	if (len == 0)
		return LOOKUP_ARG_EMPTY;
	r->text = arg;
	r->textlen = len;
	r->has_8bit = str_has_8bit(arg, len);
	return split_address(r);
}

static bool is_domain_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

bool command_valid_helo(const char *s, size_t len)
{
	if (len == 0 || len > ADDRESS_DOMAIN_MAX)
		return false;
	if (s[0] == '[') {
		if (len < 3 || s[len - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c <= ' ' || c >= 0x7f || c == '[' || c == ']' || c == '\\')
				return false;
		}
		return true;
	}
	for (size_t i = 0; i < len; i++)
		if (!is_domain_char(s[i]))
			return false;
	return true;
}
