/*
 * lmdbmap — the layout of a porterd LMDB map, the one contract between
 * porterd-makemap, which writes a map, and the `lmdb` backend, which
 * reads it (porterd-makemap(8) describes it for people).
 *
 * A map is one file (an LMDB environment opened with MDB_NOSUBDIR) with
 * four named databases:
 *   meta       "format" -> LMDBMAP_FORMAT, "entries" -> the entry count,
 *              both decimal text
 *   keys       key (lowercase) -> one kind byte and the kind's value
 *   fullnames  lowercase full name -> keys of the users with that name
 *              (MDB_DUPSORT)
 *   words      lowercase word of a full name -> keys of the users whose
 *              name has it (MDB_DUPSORT)
 * A value in keys is the kind byte followed by:
 *   'u' user     the full name as written, then a NUL; nothing at all
 *                when the user has no name
 *   'l' list     each member, each followed by a NUL, in table order
 *   'f' forward  the target address, then a NUL
 *   'm' moved    the target address, then a NUL
 * Index keys longer than LMDBMAP_INDEX_KEY_MAX are cut to it: a reader
 * whose query is that long compares the full names it finds.
 *
 * A map is never written in place: makemap builds a new file and renames
 * it over the old one, so a reader never shares a file with a writer.
 */
#ifndef PORTERD_LMDBMAP_H
#define PORTERD_LMDBMAP_H

#define LMDBMAP_FORMAT 1		/* bumped by any change above */
#define LMDBMAP_DB_META "meta"
#define LMDBMAP_DB_KEYS "keys"
#define LMDBMAP_DB_FULLNAMES "fullnames"
#define LMDBMAP_DB_WORDS "words"
#define LMDBMAP_MAXDBS 4
#define LMDBMAP_META_FORMAT "format"
#define LMDBMAP_META_ENTRIES "entries"

#define LMDBMAP_KIND_USER 'u'
#define LMDBMAP_KIND_LIST 'l'
#define LMDBMAP_KIND_FORWARD 'f'
#define LMDBMAP_KIND_MOVED 'm'

/* Under LMDB's default key limit (511 octets), for keys and dup values. */
#define LMDBMAP_INDEX_KEY_MAX 500

#endif
