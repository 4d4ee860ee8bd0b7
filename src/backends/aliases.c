/*
 * aliases — the `aliases` directory backend: an aliases(5) file as
 * Debian's /etc/aliases ("name: target, target"), with the files its
 * :include: targets name, read once into memory and answered from a hash
 * index, synchronously.
 *
 * It must never run, write or show a program (|command) or a file (/path)
 * target, nor show an :include: file's name: porterd delivers only into
 * Maildirs. A program or file target stands for the alias itself, a
 * mailbox of its name (RFC 5321 3.5.2, "the alias itself"); its text is
 * skipped at load and kept nowhere. Nor does it guess: a line it cannot
 * read exactly fails the load with a message naming the file and line.
 *
 * Names are local parts, valid in every local domain. Name and address
 * targets become list members, which the directory looks up again from
 * the start of the chain, so "root: alice" finds alice in a later
 * backend; one address written alone is a forward.
 *
 * The alias itself inside a list: the directory takes a member that names
 * a list it is expanding for a cycle and drops it, so "support" cannot be
 * a member of "support". Such a mailbox member is written instead as a
 * token no client can send, MAILBOX_MARK (a control octet, refused in
 * every command line and address) before the name, which this backend
 * alone answers: a user of that name, not aliased again. `\name` targets
 * (aliases(5): name's own mailbox) are the same token. An alias whose
 * every target is itself is simply a user. This keeps the directory
 * unchanged and every other backend's answers as they were.
 *
 * Keys and members are NUL-terminated and lowercased in the buffers the
 * files were read into (mailbox tokens in blocks of their own), and stay
 * valid until close.
 */
#include "porterd/backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "porterd/command.h"
#include "porterd/strutil.h"
#include "porterd/textscan.h"

#define ALIASES_PATH_MAX 4096		/* resolved path octets, with NUL */
#define ALIASES_NAME_MAX ADDRESS_LOCAL_MAX	/* a name, quotes included */
#define ALIASES_TARGET_MAX ADDRESS_PATH_MAX	/* an address target */
#define ALIASES_DEPTH_MAX 8		/* :include: files within each other */
#define ALIASES_INCLUDES_MAX 65536	/* :include: files read in all */
/*
 * Octets of :include: files read in all, a file counted each time it is
 * included: a few lines naming one file from another multiply what is
 * read and kept, so without it a small aliases file could take all the
 * memory there is.
 */
#define ALIASES_INCLUDE_OCTETS_MAX (16UL << 20)
#define ALIASES_ENTRIES_MAX (UINT32_MAX - 1)
#define MAILBOX_MARK '\001'
#define MAILBOX_SALT 0x9e3779b9u	/* mailbox names never meet alias names */
#define INCLUDE_PREFIX ":include:"
#define INCLUDE_PREFIX_LEN (sizeof(INCLUDE_PREFIX) - 1)
#define NAME_HAS_AT "a name is a local part: no '@'"

enum entry_kind {
	KIND_LIST,	/* members */
	KIND_FORWARD,	/* one address target, written alone */
	KIND_SELF,	/* every target is the alias itself: a user */
	KIND_MAILBOX,	/* a mailbox token's name: a user, not an alias */
};

struct entry {
	const char *key;	/* as answered: lowercase, quoted when it must be */
	const char *name;	/* as matched: the key without quotes */
	const char *target;	/* forward: the address */
	uint32_t line;		/* where it starts, for duplicate names */
	uint32_t first;		/* list: members[first .. + nmembers) */
	uint32_t nmembers;
	uint8_t namelen;
	uint8_t kind;
};

/* A slot of the name index: entry is an entry index + 1, 0 when free. */
struct key_slot {
	uint32_t hash;
	uint32_t entry;
};

struct file_id {
	dev_t dev;
	ino_t ino;
};

struct backend {
	char *path;		/* resolved, for messages */
	char *dir;		/* its directory, for relative :include: paths */
	char **blocks;		/* files read and mailbox tokens: strings live here */
	size_t nblocks, blocks_cap;
	struct entry *entries;	/* aliases in file order, mailboxes among them */
	size_t nentries, entries_cap;
	size_t naliases;
	const char **members;
	size_t nmembers, members_cap;
	struct key_slot *keys;
	size_t keys_mask;
};

/* A name as read: content (unquoted), and whether it is shown quoted. */
struct name {
	char *content;
	size_t len;
	bool quotes;
};

struct parser {
	struct backend *be;
	char *err;
	size_t errsize;
	const char *path;	/* the file being read */
	uint32_t line;
	size_t open;		/* the alias being read: entry index + 1, or 0 */
	bool in_program;	/* a |command or /file runs on to the next comma */
	bool has_self;		/* the open alias holds its own mailbox token */
	uint32_t written;	/* targets written in the aliases file itself */
	bool written_address;	/* the last of them was an address */
	unsigned depth;		/* :include: files open */
	struct file_id reading[ALIASES_DEPTH_MAX + 1];
	size_t nincludes;
	size_t include_octets;	/* read so far, toward the bound */
};

static void aliases_close(struct backend **be_p);
static int rhs_add(struct parser *p, char *s, char *e);

/* RFC 5322 atext, and octets of UTF-8 (RFC 6531). */
static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c >= 0x80 ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* As table.c: FNV-1a folding case, a finaliser for its weak low bits. */
static uint32_t aliases_hash(const char *s, size_t len, bool mailbox)
{
	uint64_t h = str_hash_nocase(s, len);

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (uint32_t)h ^ (mailbox ? MAILBOX_SALT : 0);
}

/* ---- messages ---- */

static int fail_at(struct parser *p, uint32_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "PATH:LINE: message" in the file being read; always -1. */
static int fail_at(struct parser *p, uint32_t line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	str_error_at(p->err, p->errsize, p->path, line, fmt, ap);
	va_end(ap);
	return -1;
}

static struct entry *open_entry(const struct parser *p)
{
	return &p->be->entries[p->open - 1];
}

/* Target errors name their alias: "alias 'staff': ...". */
#define ALIAS_FMT "alias " QUOTED ": "
#define ALIAS_ARGS(p) SHOWN(open_entry(p)->key, strlen(open_entry(p)->key))

/* ---- storage ---- */

/*
 * A bigger copy of an array: entries, members and the index of a large
 * file are read at random by every lookup, so each block is hinted to
 * huge pages before its first touch (as table.c does), which realloc
 * cannot promise. NULL when out of memory (old is left as it was).
 */
static void *array_grow(void *old, size_t used, size_t cap, size_t elem)
{
	void *p;

	if (cap > SIZE_MAX / elem || (p = malloc(cap * elem)) == NULL)
		return NULL;
	mem_hint_huge(p, cap * elem);
	if (used > 0)
		memcpy(p, old, used * elem);
	free(old);
	return p;
}

/* Keep block (a file read, a token) until close; frees it on failure. */
static int block_keep(struct parser *p, char *block)
{
	struct backend *be = p->be;

	if (be->nblocks == be->blocks_cap) {
		size_t cap = be->blocks_cap ? be->blocks_cap * 2 : 16;
		char **b = realloc(be->blocks, cap * sizeof(*b));

		if (b == NULL) {
			free(block);
			return fail_at(p, p->line, "%s", strerror(ENOMEM));
		}
		be->blocks = b;
		be->blocks_cap = cap;
	}
	be->blocks[be->nblocks++] = block;
	return 0;
}

/* A new entry at the end; its index, or -1 with the error set. */
static long entry_add(struct parser *p, const struct entry *e)
{
	struct backend *be = p->be;

	if (be->nentries == be->entries_cap) {
		size_t cap = be->entries_cap ? be->entries_cap * 2 : 1024;
		struct entry *n;

		if (cap > ALIASES_ENTRIES_MAX)
			return fail_at(p, p->line, "too many aliases");
		n = array_grow(be->entries, be->nentries, cap, sizeof(*n));
		if (n == NULL)
			return fail_at(p, p->line, "%s", strerror(ENOMEM));
		be->entries = n;
		be->entries_cap = cap;
	}
	be->entries[be->nentries] = *e;
	return (long)be->nentries++;
}

static int member_push(struct parser *p, const char *member)
{
	struct backend *be = p->be;

	if (be->nmembers == be->members_cap) {
		size_t cap = be->members_cap ? be->members_cap * 2 : 1024;
		const char **m;

		if (cap > ALIASES_ENTRIES_MAX)
			return fail_at(p, p->line, "too many targets");
		m = array_grow(be->members, be->nmembers, cap, sizeof(*m));
		if (m == NULL)
			return fail_at(p, p->line, "%s", strerror(ENOMEM));
		be->members = m;
		be->members_cap = cap;
	}
	be->members[be->nmembers++] = member;
	open_entry(p)->nmembers++;
	return 0;
}

/*
 * A mailbox token for name (content, shown quoted or not): a block of its
 * own, MAILBOX_MARK then the name as answered, lowercase. Pushed as a
 * member of the open alias, and indexed (as a mailbox) by its name.
 */
static int mailbox_add(struct parser *p, const char *content, size_t len,
		       bool quotes)
{
	char *token = malloc(len + 4), *w = token;
	struct entry e = { .line = p->line, .kind = KIND_MAILBOX };

	if (token == NULL)
		return fail_at(p, p->line, "%s", strerror(ENOMEM));
	*w++ = MAILBOX_MARK;
	if (quotes)
		*w++ = '"';
	memcpy(w, content, len);
	text_lower_span(w, len);
	e.name = w;
	e.namelen = (uint8_t)len;
	w += len;
	if (quotes)
		*w++ = '"';
	*w = '\0';
	e.key = token + 1;
	if (block_keep(p, token) < 0 || entry_add(p, &e) < 0)
		return -1;
	return member_push(p, token);
}

/* ---- names ---- */

/* Why an unquoted name is not a local part (a dot-string), or NULL. */
static const char *dot_string_check(const char *s, size_t len)
{
	if (len == 0)
		return "empty";
	if (len > ALIASES_NAME_MAX)
		return "longer than 64 octets";
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '@')
			return NAME_HAS_AT;
		if (s[i] == '.' && (i == 0 || i == len - 1 || s[i + 1] == '.'))
			return "misplaced '.' (quote the name)";
		if (s[i] != '.' && !is_atext((unsigned char)s[i]))
			return "a character that must be quoted";
	}
	return NULL;
}

/*
 * Make n of [s, s + len), the content of a quoted string when quoted.
 * A quoted name that is a plain dot-string is the same name unquoted
 * ("root" and root), as address.c reads a quoted local part.
 */
static const char *name_make(char *s, size_t len, bool quoted, struct name *n)
{
	const char *why = dot_string_check(s, len);

	n->content = s;
	n->len = len;
	n->quotes = false;
	if (!quoted || why == NULL)
		return why;
	if (len == 0)
		return "empty";
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '@')
			return NAME_HAS_AT;
		if (s[i] == '\\' || s[i] == '\t')
			return s[i] == '\\' ? "'\\' in a quoted name"
					    : "tab in a quoted name";
	}
	n->quotes = true;
	return len + 2 > ALIASES_NAME_MAX ? "longer than 64 octets" : NULL;
}

/* The name as answered, in place: quoted names keep the quotes around
 * their content. NUL-terminated there, lowercase. */
static char *name_display(const struct name *n)
{
	char *d = n->content - n->quotes;

	text_lower_span(n->content, n->len);
	d[n->len + 2 * n->quotes] = '\0';
	return d;
}

static bool name_is_open_alias(const struct parser *p, const struct name *n)
{
	const struct entry *e = open_entry(p);

	return str_eq_nocase(e->name, e->namelen, n->content, n->len);
}

/* ---- targets ---- */

/* One target written in the aliases file itself (not an :include:'s). */
static void target_written(struct parser *p, bool address)
{
	if (p->depth > 0)
		return;
	p->written++;
	p->written_address = address;
}

/* The alias itself: a program, a file, its own name or \name. */
static int self_add(struct parser *p)
{
	const struct entry *e = open_entry(p);

	if (p->has_self)
		return 0;
	p->has_self = true;
	return mailbox_add(p, e->name, e->namelen, e->name != e->key);
}

/* A name target: a member looked up again, unless it is the alias. */
static int name_target(struct parser *p, char *s, size_t len, bool quoted)
{
	struct name n;
	const char *why = name_make(s, len, quoted, &n);

	if (why != NULL)
		return fail_at(p, p->line, ALIAS_FMT "bad target " QUOTED ": %s",
			       ALIAS_ARGS(p), SHOWN(s, len), why);
	target_written(p, false);
	if (name_is_open_alias(p, &n))
		return self_add(p);
	return member_push(p, name_display(&n));
}

/* \name: that mailbox here, not aliased again. */
static int mailbox_target(struct parser *p, char *s, size_t len, bool quoted)
{
	struct name n;
	const char *why = name_make(s, len, quoted, &n);

	if (why != NULL)
		return fail_at(p, p->line, ALIAS_FMT "bad mailbox " QUOTED ": %s",
			       ALIAS_ARGS(p), SHOWN(s - 1, len + 1), why);
	target_written(p, false);
	if (name_is_open_alias(p, &n))
		return self_add(p);
	return mailbox_add(p, n.content, n.len, n.quotes);
}

/* Why an address target local@domain is bad, or NULL; the local part
 * may be a quoted string (then quoted_local is its length). */
static const char *address_check(const char *s, size_t len, size_t quoted_local)
{
	const char *at = memchr(s + quoted_local, '@', len - quoted_local);

	if (len > ALIASES_TARGET_MAX)
		return "longer than 256 octets";
	if (at == s)
		return "empty local part";
	if (at == s + len - 1)
		return "empty domain";
	if (memchr(at + 1, '@', (size_t)(s + len - at - 1)) != NULL)
		return "more than one '@'";
	for (const char *c = s + quoted_local; c < s + len; c++)
		if (*c == '<' || *c == '>' || *c == '"')
			return *c == '"' ? "misplaced '\"'"
					 : "unbalanced '<' or '>'";
	return NULL;
}

static int address_target(struct parser *p, char *s, size_t len,
			  size_t quoted_local)
{
	const char *why = address_check(s, len, quoted_local);

	if (why != NULL)
		return fail_at(p, p->line, ALIAS_FMT "bad address " QUOTED ": %s",
			       ALIAS_ARGS(p), SHOWN(s, len), why);
	text_lower_span(s, len);
	s[len] = '\0';
	target_written(p, true);
	return member_push(p, s);
}

/* Read the :include: file at path; its lines are targets of the alias. */
static int include_read(struct parser *p, const char *path);

/* :include:path, up to the next comma; relative to the aliases file. */
static int include_target(struct parser *p, char *s, char *e)
{
	const char *dir = p->be->dir;
	char path[ALIASES_PATH_MAX];
	int n;

	s = text_skip_blanks(s, e);
	while (e > s && text_is_blank(e[-1]))
		e--;
	if (s == e)
		return fail_at(p, p->line, ALIAS_FMT "empty :include: path",
			       ALIAS_ARGS(p));
	target_written(p, false);
	if (*s == '/')
		n = snprintf(path, sizeof(path), "%.*s", (int)(e - s), s);
	else
		n = snprintf(path, sizeof(path), "%s%s%.*s", dir,
			     strcmp(dir, "/") == 0 ? "" : "/", (int)(e - s), s);
	if (n < 0 || (size_t)n >= sizeof(path) || (size_t)(e - s) >= sizeof(path))
		return fail_at(p, p->line, ALIAS_FMT ":include: path too long",
			       ALIAS_ARGS(p));
	if (p->depth == ALIASES_DEPTH_MAX)
		return fail_at(p, p->line, ALIAS_FMT
			       ":include: files nested more than %d deep",
			       ALIAS_ARGS(p), ALIASES_DEPTH_MAX);
	if (++p->nincludes > ALIASES_INCLUDES_MAX)
		return fail_at(p, p->line, "more than %d :include: files",
			       ALIASES_INCLUDES_MAX);
	return include_read(p, path);
}

static bool has_include_prefix(const char *s, const char *e)
{
	return (size_t)(e - s) >= INCLUDE_PREFIX_LEN &&
	       str_eq_nocase(s, INCLUDE_PREFIX_LEN, INCLUDE_PREFIX,
			     INCLUDE_PREFIX_LEN);
}

/* The content of a quoted target "...": what it starts with says what
 * it is, as for an unquoted one. */
static int quoted_content_target(struct parser *p, char *s, size_t len)
{
	if (len == 0)
		return fail_at(p, p->line, ALIAS_FMT "empty target '\"\"'",
			       ALIAS_ARGS(p));
	if (*s == '|' || *s == '/') {
		target_written(p, false);
		return self_add(p);
	}
	if (has_include_prefix(s, s + len))
		return include_target(p, s + INCLUDE_PREFIX_LEN, s + len);
	if (*s == '\\')
		return mailbox_target(p, s + 1, len - 1, true);
	return name_target(p, s, len, true);
}

/* "..." or "..."@domain at *s; *s moves past it. */
static int quoted_target(struct parser *p, char **s_r, char *e)
{
	char *s = *s_r, *q = memchr(s + 1, '"', (size_t)(e - s - 1)), *t;

	if (q == NULL)
		return fail_at(p, p->line, ALIAS_FMT "unbalanced '\"'",
			       ALIAS_ARGS(p));
	t = q + 1;
	if (t < e && *t == '@') {
		while (t < e && !text_is_separator(*t))
			t++;
		*s_r = t;
		return address_target(p, s, (size_t)(t - s), (size_t)(q + 1 - s));
	}
	if (t < e && !text_is_separator(*t))
		return fail_at(p, p->line, ALIAS_FMT "text after a closing '\"'",
			       ALIAS_ARGS(p));
	*s_r = t;
	return quoted_content_target(p, s + 1, (size_t)(q - s - 1));
}

/* An unquoted word [s, t): <address>, address, \name or name. */
static int word_target(struct parser *p, char *s, char *t)
{
	size_t len = (size_t)(t - s);

	if (*s == '#')
		return fail_at(p, p->line, ALIAS_FMT
			       "'#' begins a comment only at the start of a line",
			       ALIAS_ARGS(p));
	if (memchr(s, '"', len) != NULL)
		return fail_at(p, p->line, ALIAS_FMT "misplaced '\"' in " QUOTED,
			       ALIAS_ARGS(p), SHOWN(s, len));
	if (len >= 2 && *s == '<' && t[-1] == '>') {
		s++;
		len -= 2;
		if (len == 0)
			return fail_at(p, p->line, ALIAS_FMT "empty target '<>'",
				       ALIAS_ARGS(p));
	}
	if (*s == '\\')
		return mailbox_target(p, s + 1, len - 1, false);
	if (memchr(s, '@', len) != NULL)
		return address_target(p, s, len, 0);
	return name_target(p, s, len, false);
}

/*
 * The rest of a |command or /file, which is skipped, never kept: up to
 * the next comma outside double quotes, or on past the line end (a
 * continuation line goes on with it). Returns where targets go on, or
 * NULL when a quote is left open.
 */
static char *program_skip(struct parser *p, char *s, char *e)
{
	while (s < e && *s != ',') {
		if (*s == '"') {
			s = memchr(s + 1, '"', (size_t)(e - s - 1));
			if (s == NULL)
				return NULL;
		}
		s++;
	}
	if (s == e)
		return e;
	p->in_program = false;
	return s + 1;
}

static int target_add(struct parser *p, char **s_r, char *e)
{
	char *s = *s_r, *t;

	if (*s == '"')
		return quoted_target(p, s_r, e);
	if (*s == '|' || *s == '/') {
		p->in_program = true;	/* rhs_add skips its text */
		target_written(p, false);
		return self_add(p);
	}
	if (has_include_prefix(s, e)) {
		for (t = s; t < e && *t != ','; t++)
			;
		*s_r = t;
		return include_target(p, s + INCLUDE_PREFIX_LEN, t);
	}
	for (t = s; t < e && !text_is_separator(*t); t++)
		;
	*s_r = t;
	return word_target(p, s, t);
}

/* Targets in [s, e), separated by commas or white space. */
static int rhs_add(struct parser *p, char *s, char *e)
{
	while (s < e) {
		if (p->in_program) {
			s = program_skip(p, s, e);
			if (s == NULL)
				return fail_at(p, p->line, ALIAS_FMT
					       "unbalanced '\"'", ALIAS_ARGS(p));
			continue;
		}
		if (text_is_separator(*s)) {
			s++;
			continue;
		}
		if (target_add(p, &s, e) < 0)
			return -1;
		/* A target ends at a separator (or e), which may hold its
		 * NUL now; a program's text is skipped above instead. */
		if (s < e && !p->in_program)
			s++;
	}
	return 0;
}

/* ---- lines ---- */

/*
 * Check [s, *e) for control characters; a CR before the line end is
 * allowed, so files edited on other systems load. *e is moved before it.
 */
static int line_scan(struct parser *p, char *s, char **e)
{
	char *end = *e;

	if (end > s && end[-1] == '\r')
		end--;
	for (char *c = s; c < end; c++)
		if (text_is_control((unsigned char)*c))
			return fail_at(p, p->line,
				"control character 0x%02x in column %lu",
				(unsigned char)*c, (unsigned long)(c - s + 1));
	*e = end;
	return 0;
}

/* The open alias is complete: what it answers. */
static int entry_finish(struct parser *p)
{
	struct entry *e;

	if (p->open == 0)
		return 0;
	e = open_entry(p);
	p->open = 0;
	p->in_program = false;
	if (p->written == 0)
		return fail_at(p, e->line, "alias " QUOTED " has no targets",
			       SHOWN(e->key, strlen(e->key)));
	if (p->has_self && e->nmembers == 1) {
		e->kind = KIND_SELF;
	} else if (p->written == 1 && p->written_address) {
		e->kind = KIND_FORWARD;
		e->target = p->be->members[e->first];
	}
	return 0;
}

/* The name of "name: targets" at s, up to the colon; *colon_r after it. */
static int entry_name(struct parser *p, char *s, char *e, struct name *n,
		      char **colon_r)
{
	bool quoted = *s == '"';
	char *t, *colon;
	const char *why;

	if (quoted) {
		t = memchr(s + 1, '"', (size_t)(e - s - 1));
		if (t == NULL)
			return fail_at(p, p->line, "unbalanced '\"' in a name");
		t++;
	} else {
		for (t = s; t < e && *t != ':' && !text_is_blank(*t); t++)
			;
	}
	colon = text_skip_blanks(t, e);
	if (t == s)
		return fail_at(p, p->line, "missing name before ':'");
	if (colon == e || *colon != ':')
		return fail_at(p, p->line, "missing ':' after " QUOTED,
			       SHOWN(s, (size_t)(t - s)));
	why = quoted ? name_make(s + 1, (size_t)(t - s - 2), true, n)
		     : name_make(s, (size_t)(t - s), false, n);
	if (why != NULL)
		return fail_at(p, p->line, "bad name " QUOTED ": %s",
			       SHOWN(s, (size_t)(t - s)), why);
	*colon_r = colon + 1;
	return 0;
}

/* "name: targets" in [s, e): s is not blank. */
static int parse_entry(struct parser *p, char *s, char *e)
{
	struct entry en = { .line = p->line, .kind = KIND_LIST };
	struct name n;
	char *rhs = NULL;
	long idx;

	if (entry_finish(p) < 0 || entry_name(p, s, e, &n, &rhs) < 0)
		return -1;
	en.key = name_display(&n);
	en.name = n.content;
	en.namelen = (uint8_t)n.len;
	en.first = (uint32_t)p->be->nmembers;
	idx = entry_add(p, &en);
	if (idx < 0)
		return -1;
	p->be->naliases++;
	p->open = (size_t)idx + 1;
	p->has_self = false;
	p->written = 0;
	p->written_address = false;
	return rhs_add(p, rhs, e);
}

/* Split buf into lines; line_fn gets each that is not blank or a
 * comment, with first its first non-blank octet. */
static int lines_each(struct parser *p, char *buf, size_t len,
		      int (*line_fn)(struct parser *, char *, char *, char *))
{
	char *s = buf, *end = buf + len;

	while (s < end) {
		char *nl = memchr(s, '\n', (size_t)(end - s));
		char *e = nl != NULL ? nl : end, *first;

		if (p->line == UINT32_MAX)
			return fail_at(p, p->line, "too many lines");
		p->line++;
		if (line_scan(p, s, &e) < 0)
			return -1;
		first = text_skip_blanks(s, e);
		if (first < e && *first != '#' && line_fn(p, s, first, e) < 0)
			return -1;
		s = nl != NULL ? nl + 1 : end;
	}
	return 0;
}

static int aliases_line(struct parser *p, char *s, char *first, char *e)
{
	if (first == s)
		return parse_entry(p, s, e);
	if (p->open == 0)
		return fail_at(p, p->line, "continuation line before any alias");
	return rhs_add(p, first, e);
}

/* In an :include: file every line is targets; a program ends with it. */
static int include_line(struct parser *p, char *s, char *first, char *e)
{
	int rc;

	(void)s;
	rc = rhs_add(p, first, e);
	p->in_program = false;
	return rc;
}

static int include_too_much(struct parser *p, const char *path)
{
	return fail_at(p, p->line, ALIAS_FMT ":include: %s: more than %lu MiB "
		       "of :include: files in all", ALIAS_ARGS(p), path,
		       ALIASES_INCLUDE_OCTETS_MAX >> 20);
}

static int include_read(struct parser *p, const char *path)
{
	const char *saved_path = p->path;
	uint32_t saved_line = p->line;
	struct stat st;
	char *buf;
	size_t len;
	int rc;

	/* Checked before opening: opening a FIFO would block the load. */
	if (stat(path, &st) < 0) {
		rc = errno;
		return fail_at(p, p->line, ALIAS_FMT ":include: %s: %s",
			       ALIAS_ARGS(p), path, strerror(rc));
	}
	if (!S_ISREG(st.st_mode))
		return fail_at(p, p->line, ALIAS_FMT
			       ":include: %s: not a regular file",
			       ALIAS_ARGS(p), path);
	for (unsigned i = 0; i <= p->depth; i++)
		if (p->reading[i].dev == st.st_dev && p->reading[i].ino == st.st_ino)
			return fail_at(p, p->line, ALIAS_FMT
				       ":include: %s: a loop, it is being read",
				       ALIAS_ARGS(p), path);
	/* The size first, so a file over the bound is never read. */
	if ((uintmax_t)st.st_size > ALIASES_INCLUDE_OCTETS_MAX - p->include_octets)
		return include_too_much(p, path);
	rc = str_read_file(path, &buf, &len);
	if (rc != 0)
		return fail_at(p, p->line, ALIAS_FMT ":include: %s: %s",
			       ALIAS_ARGS(p), path, strerror(rc));
	if (block_keep(p, buf) < 0)
		return -1;
	if (len > ALIASES_INCLUDE_OCTETS_MAX - p->include_octets)
		return include_too_much(p, path);	/* it grew */
	p->include_octets += len;
	p->depth++;
	p->reading[p->depth] = (struct file_id){ st.st_dev, st.st_ino };
	p->path = path;
	p->line = 0;
	rc = lines_each(p, buf, len, include_line);
	p->path = saved_path;
	p->line = saved_line;
	p->depth--;
	return rc;
}

/* ---- the name index ---- */

/* A power of two at least twice n, so every probe sequence ends. */
static size_t index_capacity(size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap *= 2;
	return cap;
}

static const struct entry *keys_find(const struct backend *be, const char *s,
				     size_t len, bool mailbox)
{
	uint32_t h = aliases_hash(s, len, mailbox);

	for (size_t i = h & be->keys_mask;; i = (i + 1) & be->keys_mask) {
		const struct key_slot *sl = &be->keys[i];
		const struct entry *e;

		if (sl->entry == 0)
			return NULL;
		e = &be->entries[sl->entry - 1];
		if (sl->hash == h && (e->kind == KIND_MAILBOX) == mailbox &&
		    str_eq_nocase(e->name, e->namelen, s, len))
			return e;
	}
}

/*
 * Index every entry in file order, so the first duplicate found is the
 * earliest. A mailbox named twice is one mailbox; an alias named twice
 * is an error: -1 with *dup_r and *first_r set.
 */
static int keys_build(struct backend *be, const struct entry **dup_r,
		      const struct entry **first_r)
{
	be->keys_mask = index_capacity(be->nentries) - 1;
	be->keys = array_grow(NULL, 0, be->keys_mask + 1, sizeof(*be->keys));
	if (be->keys == NULL)
		return ENOMEM;
	memset(be->keys, 0, (be->keys_mask + 1) * sizeof(*be->keys));
	for (size_t idx = 0; idx < be->nentries; idx++) {
		const struct entry *e = &be->entries[idx];
		bool mailbox = e->kind == KIND_MAILBOX;
		uint32_t h = aliases_hash(e->name, e->namelen, mailbox);
		size_t i;

		for (i = h & be->keys_mask; be->keys[i].entry != 0;
		     i = (i + 1) & be->keys_mask) {
			const struct entry *old = &be->entries[be->keys[i].entry - 1];

			if (be->keys[i].hash != h ||
			    (old->kind == KIND_MAILBOX) != mailbox ||
			    !str_eq_nocase(old->name, old->namelen, e->name,
					   e->namelen))
				continue;
			if (mailbox)
				break;
			*dup_r = e;
			*first_r = old;
			return -1;
		}
		if (be->keys[i].entry == 0)
			be->keys[i] = (struct key_slot){ .hash = h,
							 .entry = (uint32_t)idx + 1 };
	}
	return 0;
}

/* ---- the vtable ---- */

/*
 * The entry a query's local part names: a mailbox token, or an alias.
 * A quoted local part ("with space", as RCPT gives it) is matched by its
 * content, quoted-pairs resolved.
 */
static const struct entry *aliases_find(const struct backend *be,
					const char *local)
{
	bool mailbox = local[0] == MAILBOX_MARK;
	const char *s = local + mailbox;
	size_t len = strnlen(s, ALIASES_TARGET_MAX + 1), n = 0;
	char content[ALIASES_NAME_MAX + 1];

	if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
		for (size_t i = 1; i + 1 < len; i++) {
			if (s[i] == '\\' && i + 2 < len)
				i++;
			if (n == sizeof(content))
				return NULL;
			content[n++] = s[i];
		}
		s = content;
		len = n;
	}
	if (len == 0 || len > ALIASES_NAME_MAX)
		return NULL;
	return keys_find(be, s, len, mailbox);
}

static void aliases_lookup(struct backend *be, const struct dir_query *q,
			   backend_done_fn *done, void *arg)
{
	struct dir_result res = { .status = DIR_NOTFOUND };
	const struct entry *e = q->local != NULL ? aliases_find(be, q->local)
						 : NULL;

	if (e != NULL) {
		res.key = e->key;
		if (e->kind == KIND_LIST) {
			res.status = DIR_LIST;
			res.members = e->nmembers > 0 ? be->members + e->first
						      : NULL;
			res.nmembers = e->nmembers;
		} else if (e->kind == KIND_FORWARD) {
			res.status = DIR_FORWARD;
			res.target = e->target;
		} else {
			res.status = DIR_USER;
		}
	}
	done(&res, arg);
}

static size_t aliases_count(const struct backend *be)
{
	return be->naliases;
}

/* The directory :include: paths are relative to: the file's own. */
static char *aliases_dir(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* Read the aliases file itself: a regular file, or a precise error. */
static int aliases_read(struct parser *p, char **buf_r, size_t *len_r)
{
	struct backend *be = p->be;
	struct stat st;
	int rc;

	if (stat(be->path, &st) < 0)
		rc = errno;
	else if (!S_ISREG(st.st_mode))
		rc = EINVAL;
	else
		rc = str_read_file(be->path, buf_r, len_r);
	if (rc != 0) {
		str_error(p->err, p->errsize, "%s: %s", be->path,
			  rc == EINVAL ? "not a regular file" : strerror(rc));
		return -1;
	}
	p->reading[0] = (struct file_id){ st.st_dev, st.st_ino };
	return block_keep(p, *buf_r);
}

static int aliases_load(struct backend *be, char *err, size_t errsize)
{
	struct parser p = { .be = be, .err = err, .errsize = errsize,
			    .path = be->path };
	const struct entry *dup = NULL, *first = NULL;
	char *buf;
	size_t len;
	int rc, parsed;

	if (aliases_read(&p, &buf, &len) < 0)
		return -1;
	/* Room for every line that may start an alias at once (mailbox
	 * tokens, if any, grow it later). */
	be->entries_cap = text_count_entry_lines(buf, len);
	if (be->entries_cap > ALIASES_ENTRIES_MAX)
		return fail_at(&p, 0, "too many aliases");
	be->entries = array_grow(NULL, 0, be->entries_cap, sizeof(*be->entries));
	if (be->entries == NULL && be->entries_cap > 0)
		return fail_at(&p, 0, "%s", strerror(ENOMEM));
	/*
	 * Names are indexed after parsing, even when parsing failed: a
	 * duplicate is never on a later line than the failure, so reporting
	 * it instead keeps "the first error in the file" true.
	 */
	parsed = lines_each(&p, buf, len, aliases_line);
	if (parsed == 0)
		parsed = entry_finish(&p);
	rc = keys_build(be, &dup, &first);
	if (rc < 0)
		return fail_at(&p, dup->line,
			       "duplicate alias " QUOTED " (first on line %lu)",
			       SHOWN(dup->key, strlen(dup->key)),
			       (unsigned long)first->line);
	if (parsed < 0)
		return -1;
	if (rc != 0) {
		str_error(err, errsize, "%s: %s", be->path, strerror(rc));
		return -1;
	}
	return 0;
}

static int aliases_open(const char *args, const char *base_dir,
			struct backend **be_r, char *err, size_t errsize)
{
	char path[ALIASES_PATH_MAX];
	struct backend *be;

	*be_r = NULL;
	if (text_path_arg("aliases", args, base_dir, path, sizeof(path), err,
			  errsize) < 0)
		return -1;
	be = calloc(1, sizeof(*be));
	if (be == NULL || (be->path = strdup(path)) == NULL ||
	    (be->dir = aliases_dir(path)) == NULL) {
		aliases_close(&be);
		str_error(err, errsize, "%s: %s", path, strerror(ENOMEM));
		return -1;
	}
	if (aliases_load(be, err, errsize) < 0) {
		aliases_close(&be);
		return -1;
	}
	*be_r = be;
	return 0;
}

static void aliases_close(struct backend **be_p)
{
	struct backend *be = *be_p;

	if (be == NULL)
		return;
	for (size_t i = 0; i < be->nblocks; i++)
		free(be->blocks[i]);
	free(be->blocks);
	free(be->keys);
	free(be->members);
	free(be->entries);
	free(be->dir);
	free(be->path);
	free(be);
	*be_p = NULL;
}

const struct backend_ops backend_aliases_ops = {
	.name = "aliases",
	.open = aliases_open,
	.lookup = aliases_lookup,
	.count = aliases_count,
	.close = aliases_close,
};
