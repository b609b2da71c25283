/* Calling the asyncio event loop from C (aloop.c), for the loop driver
 * (adrive.c).  Everything here runs in the loop's thread, holding the
 * GIL. */
#ifndef CMEMCACHE_ALOOP_H
#define CMEMCACHE_ALOOP_H

#include "aclient.h"

/* Nanoseconds (the engine's) per second (the loop's). */
#define MC_NS 1000000000.0

/* fn(a) or, when b is not NULL, fn(a, b): a new reference, or NULL with an
 * exception set. */
PyObject *mc_aloop_call(PyObject *fn, PyObject *a, PyObject *b);

/* Reports the exception set, if any, as unraisable, naming what failed. */
void mc_aloop_unraisable(const char *what);

/* Has the loop run the client's flush at the end of this iteration, once
 * (call_soon), unless it is scheduled or the client is closed. */
void mc_aloop_schedule_flush(mc_aclient *cl);

/* Has the loop call ac's on_read while its socket is readable (once:
 * add_reader).  Returns 0, or -1 with an exception set. */
int mc_aloop_watch_read(mc_aconn *ac);

/* Stops the loop watching ac's socket (a loop already closed is fine). */
void mc_aloop_unwatch(mc_aconn *ac);

/* The loop's time ns_from_now nanoseconds from now, in its seconds. */
double mc_aloop_time(int64_t ns_from_now, mc_aclient *cl);

/* Arms ac's deadline check for its oldest request, unless it is armed:
 * it is then due no later than that request's deadline (the calls of one
 * client share one timeout, so a later request's deadline is never
 * earlier). */
void mc_aloop_arm_timer(mc_aconn *ac);

/* Cancels ac's deadline check, if armed. */
void mc_aloop_cancel_timer(mc_aconn *ac);

/* Has the loop call ac's on_write once its socket is writable (once:
 * add_writer; a failure is reported as unraisable). */
void mc_aloop_add_writer(mc_aconn *ac);

#endif
