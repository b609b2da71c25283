#!/bin/sh
# Writes the seed corpus of fuzz_pipe.c into tests/fuzz/corpus-pipe/: a
# header (control byte, one byte per request, abandon byte, flags byte; see
# fuzz_pipe.c) and a reply stream for those requests.
#
# Usage (from anywhere): tests/fuzz/corpus-pipe.sh
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$root/tests/fuzz/corpus-pipe
mkdir -p "$dir"

# seed NAME HEADER STREAM: HEADER and STREAM are printf formats
seed() {
    { printf "$2"; printf "$3"; } >"$dir/$1"
}

# 8 requests of every kind, answered in order, 1..7 bytes at a time
seed kinds '\067\010\003\005\012\004\006\001\017\000\020' \
'VALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nyz\r\nEND\r\n12\r\nVERSION 1.6.21\r\n'\
'STORED\r\nNOT_STORED\r\nOK\r\nSTAT pid 1\r\nSTAT uptime 2\r\nEND\r\n'\
'VALUE p:a 0 1 5\r\nq\r\nEND\r\nEND\r\nVALUE b 0 1\r\nr\r\nEND\r\n'

# a "config get" (OK with two items) answered, then a VERSION
seed config '\041\014\005\000\000' \
'CONFIG cluster 0 5\r\nabcde\r\nEND\r\nVERSION 1\r\n'

# owners failing in a retrieval, a number, a status line; byte by byte
seed owners '\003\160\043\152\005\000\004' \
'VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nVALUE c 0 1\r\nz\r\nEND\r\n7\r\n'\
'STORED\r\nSERVER_ERROR oom\r\nVERSION 1\r\n'

# a retrieval abandoned before its third chunk
seed abandon '\042\010\006\003\220\010' \
'VALUE a 0 3\r\nabc\r\nVALUE b 0 3\r\ndef\r\nEND\r\nSTAT a 1\r\nEND\r\n5\r\n'

# noreply fences ahead of and between requests, an error before an MN
seed fences '\113\003\004\005\002\000\016' \
'MN\r\n1\r\nOK\r\nCLIENT_ERROR bad data chunk\r\nMN\r\nVERSION 1\r\n'\
'STORED\r\nMN\r\n'

# error lines that are whole replies: the stream stays in sync
seed errors '\123\003\002\004\102\000\000' \
'CLIENT_ERROR x\r\nSERVER_ERROR y\r\nERROR\r\nSERVER_ERROR z\r\n'

# an error line inside a retrieval: out of sync
seed broken '\161\000\003\000\000' \
'VALUE a 0 1\r\nx\r\nSERVER_ERROR oops\r\n2\r\n'

# the flush owed first, max_value 16, then a VALUE one byte over it
seed flush '\221\000\010\000\001' \
'OK\r\nVALUE a 0 16\r\n0123456789abcdef\r\nEND\r\nVALUE a 0 17\r\n'

# stats ended by RESET, then bytes nobody asked for
seed stats '\140\006\000\000' \
'STAT pid 1\r\nSTAT threads 4\r\nRESET\r\nEND\r\n'

# meta requests (mg, ms, ma kinds) among text ones, fences after every
# second request, the meta owner failing on its value, 7 bytes at a time
seed meta '\074\013\000\023\073\005\000\000' \
'VA 2 f1 c3 t-1 W\r\nhi\r\nVALUE a 0 1\r\nx\r\nEND\r\nMN\r\nNS\r\n'\
'VA 1 c4\r\n7\r\nMN\r\nVERSION 1\r\n'

# text commands spoken as meta: a quiet get of 4 keys (opaque 7) after a
# fence owed to two quiet noreply commands, then a VERSION
seed as-quiet '\061\015\005\000\002\007' \
'NS\r\nNF\r\nMN\r\nVA 1 f0 O8\r\na\r\nVA 2 f5 O10\r\nbb\r\nMN\r\n'\
'VERSION 1.6.18\r\n'

# ... its owner failing at the first hit, an error line between frames
seed as-quiet-error '\061\055\005\000\000\007' \
'VA 1 f0 O7\r\na\r\nSERVER_ERROR out of memory\r\nVA 2 f5 O9\r\nbb\r\nMN\r\n'\
'VERSION 1\r\n'

# ... tokens backwards: out of sync
seed as-quiet-broken '\061\015\005\000\000\007' \
'VA 1 f0 O8\r\na\r\nVA 1 f0 O7\r\nb\r\nMN\r\n'

# a quiet gets whose tokens wrap (opaque 2^32 - 2)
seed as-wrap '\061\015\005\000\000\033' \
'VA 1 f0 c1 O4294967294\r\na\r\nVA 2 f5 c2 O0\r\nbb\r\nMN\r\nVERSION 1\r\n'

# a set_multi of 3 (reversed order, soft errors), a quiet get, a fence
# after it, a VERSION
seed as-store '\072\125\015\005\000\000\062\007' \
'HD O0\r\nSERVER_ERROR object too large for cache\r\nNS O2\r\n'\
'VA 1 f0 O7\r\nx\r\nMN\r\nMN\r\nVERSION 1\r\n'

# get (with cas), touch, delete and incr (its owner failing) with opaque
# 7, byte by byte
seed as-single '\004\035\135\235\375\005\000\000\064\044\044\044' \
'VA 1 f0 c9 O7\r\na\r\nHD O7\r\nNF O7\r\nVA 2 O7\r\n15\r\nVERSION 1\r\n'

# a set_multi whose owner fails at its last line
seed as-owner-last '\061\065\005\000\000\242' \
'HD O0\r\nNS O1\r\nEX O2\r\nVERSION 1\r\n'

# a fence owed ahead: quiet status lines skipped byte by byte, then an
# empty VA the fence cannot take, cut after its line (waits, then breaks)
seed owed-meta '\001\005\005\000\002' \
'NS\r\nHD\r\nEN\r\nMN\r\nVERSION 1\r\nVERSION 2\r\n'
seed owed-va0 '\061\005\005\000\302' 'VA 0 k00 O6~\r\n\300\000'

# one-key gets joined on two lines ("get a b a", "gets p:a p:b"): hits,
# a duplicate key, the last one a miss ended by the line's END, 5 bytes at
# a time
seed joined '\065\100\300\100\101\301\005\000\000' \
'VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n'\
'VALUE p:a 0 1 5\r\nq\r\nVALUE p:b 0 1 6\r\nr\r\nEND\r\nVERSION 1\r\n'
