/*
 * worker_gate.h - how many gRPC workers wait on the completion queue.
 *
 * Each worker waiting on the queue beyond the first costs, on every
 * event, a hand-off of gRPC's poller role between threads (futex wakeups
 * and context switches): at light load that doubles the relay's CPU per
 * frame and adds to its latency. So a worker the load does not need waits
 * here, off the queue. One worker always polls; another joins when those
 * polling use nearly all of their core, or when every one of them has been
 * inside a handler for too long (a sink that hangs while a worker writes
 * it inline); a worker that used little CPU over its last window steps
 * back out, as long as another one that is not stuck keeps polling. The
 * gate also records when each worker last found the queue empty: how far
 * behind its events the relay may be (worker_gate_lag_ns).
 */
#ifndef AERO_WORKER_GATE_H
#define AERO_WORKER_GATE_H

#include <stdbool.h>
#include <stdint.h>

struct worker_gate;
struct aero_metric;

/* Worker 0 starts polling, workers 1..n-1 start parked. `active` (may be
 * NULL) is a gauge kept at the number of workers polling. */
struct worker_gate *worker_gate_create(int workers, struct aero_metric *active);
void worker_gate_destroy(struct worker_gate *g);

/* Worker `id`, about to wait for its next event at `now` (mono ns): every
 * so often it weighs its CPU use, and may park here until it is needed.
 * True if it was parked. */
bool worker_gate_pass(struct worker_gate *g, int id, int64_t now);

/* Worker `id` took an event at `now` and is handling it. True if it had
 * waited for it (the queue was empty when its wait began). */
bool worker_gate_busy(struct worker_gate *g, int id, int64_t now);

/* How far behind the queue may be at `now`: 0 while a polling worker
 * waits on an empty queue, else the time since one last found it empty.
 * Every event that arrived before now - lag has been taken. (Not on the
 * hot path: takes the gate's lock.) */
int64_t worker_gate_lag_ns(struct worker_gate *g, int64_t now);

/* Release every parked worker for good, and park none again (shutdown). */
void worker_gate_close(struct worker_gate *g);

/* Workers polling now. */
int worker_gate_active(struct worker_gate *g);

#endif
