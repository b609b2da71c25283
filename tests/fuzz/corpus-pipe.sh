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
