#!/usr/bin/env python3
"""gen_table.py — write a porterd table of N users for bench/lookup and
bench/tablelookup.

    python3 bench/gen_table.py N OUT

Entry i (0 <= i < N) is the key "user<i>", a user named
"Given<i % 1000> Family<i // 1000>": every full name is distinct, and
each word is shared by many users, as real names are. Written in blocks,
so memory stays small whatever N.
"""
import sys


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        print("usage: gen_table.py N OUT", file=sys.stderr)
        return 2
    n = int(sys.argv[1])
    block = 100000
    with open(sys.argv[2], "w", encoding="ascii") as f:
        f.write(f"# {n} users for bench/lookup\n")
        for start in range(0, n, block):
            f.write("".join(f"user{i} user Given{i % 1000} Family{i // 1000}\n"
                            for i in range(start, min(start + block, n))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
