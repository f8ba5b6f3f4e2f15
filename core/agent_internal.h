/*
 * agent_internal.h - what agent_gateway.c (Register, opening and ending
 * streams) and agent_stream.c (each message of an open stream) share:
 * the gateway and one stream's identity. Nothing else includes it.
 */
#ifndef AERO_AGENT_INTERNAL_H
#define AERO_AGENT_INTERNAL_H

#include "agent_gateway.h"
#include "frame_codec.h"
#include "gateway_metrics.h"
#include "relay.h"
#include "rpc_stream.h"
#include "session_table.h"
#include "sink_pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* An encoded ack never exceeds this: agent ids are at most 128 bytes and
 * every error text at most ACK_ERROR_MAX (checked in agent_gateway_create). */
#define ACK_ERROR_MAX 512
#define ACK_MAX_BYTES 1024

/* Payload kinds of aero_relay_stream_messages_ignored_total, by enum mux_arm. */
#define MUX_ARMS (MUX_UNKNOWN + 1)

struct stream_job;

struct gateway {
    struct relay *relay;
    int max_inflight;
    int64_t hold_ns; /* [relay] gen2_hold_s */
    bool agents_authenticated; /* [auth] mode = bearer: sessions may take over a context */
    struct frame_limits limits; /* [relay] max_raw_bytes */
    /* Streams holding frames (SPEC.md section 9), for the expiry tick;
     * each holds a reference while on it. */
    pthread_mutex_t held_mu;
    struct stream *held;
    struct rpc_stream_set *streams; /* open TelemetryStreams */
    /* Last time each kind of ignored message was logged (monotonic ns):
     * at most one line a minute per kind. */
    _Atomic int64_t ignored_logged_ns[MUX_ARMS];
    struct gateway_metrics m;
};

/* The stream's generation: decided once, by the header or the first
 * message (SPEC.md section 9), never changed. */
enum stream_gen {
    GEN_UNDECIDED = 0,
    GEN_SEED = AERO_PROTOCOL_SEED,
    GEN_MUX = AERO_PROTOCOL_MULTIPLEXED
};

/*
 * Generation-2 frames held, in order (SPEC.md section 9), while the
 * session's operation context is not reconciled (step 8) or a `reject`
 * sink's queue is full (step 9): released as the gate opens and the sink
 * gets room, refused RETRY_WITH_BACKOFF once held gen2_hold_s. Made by the
 * stream's reader the first time it holds a frame and freed with the
 * stream: most streams never hold one, and these 130 bytes used to be in
 * every open stream (issue 19).
 */
struct stream_hold {
    pthread_mutex_t mu; /* the fields below */
    struct stream_job *head, *tail;
    struct stream *next; /* gw->held */
    int n;               /* at most max_inflight */
    bool on_list;        /* on gw->held (under gw->held_mu too) */
    bool room_waiting;   /* room_waiter is queued on a full sink */
    struct sink_waiter room_waiter;
};

/* One TelemetryStream: who it is for. The call itself, its reads, sends
 * and final status are the rpc_stream's; this object lives exactly as long
 * as the rpc_stream (freed by its on_free), and every reference to it is
 * a reference to the rpc_stream. One per open stream: fields ordered so
 * that no padding is left between them (issue 19). */
struct stream {
    struct rpc_stream *rs;
    struct gateway *gw;
    /* The session's command table once a command was sent here (a
     * reference; set once): results on this stream go there. */
    _Atomic(struct command_table *) commands;
    /* Held frames: NULL until the reader first holds one; then set once. */
    _Atomic(struct stream_hold *) hold;
    /* [control] agent_mappings_file (SPEC.md section 10): "" unmapped. */
    const char *operator_id, *aircraft_id;
    const char *agent_id; /* agent_len bytes and a NUL, after waiters[] */
    uint64_t gen;         /* the session table's generation of our attach */
    atomic_int gen_kind;  /* enum stream_gen; written by on_message only */
    uint32_t agent_len;   /* at most SESSION_AGENT_MAX */
    atomic_bool superseded; /* ended by a newer session: counted as such, once */
    atomic_bool replaced;   /* ... by a newer stream of the same session */
    bool warned_no_wal;     /* logged a frame without wal_id (on_message only) */
    char session_id[SESSION_ID_LEN + 1];

    size_t n_waiters;             /* the sinks when the stream opened */
    struct sink_waiter waiters[]; /* one per sink, by index; then agent_id's bytes */
};

static inline void stream_ref(struct stream *s) { rpc_stream_ref(s->rs); }
static inline void stream_unref(struct stream *s) { rpc_stream_unref(s->rs); }

/* A session's command table (agent_gateway.c): takes over what it may. */
struct command_table *agent_gateway_new_table(struct gateway *gw, const char *agent_id);

/* agent_stream.c: the message path of every TelemetryStream. */
void agent_stream_on_message(void *owner, const uint8_t *bytes, size_t len,
                             struct worker_ctx *w);
void agent_stream_on_sent(void *owner, uint64_t recv_ns, bool ok);
void agent_stream_on_wake(struct sink_waiter *w);
/* The stream's generation is known: count it (opened streams by protocol). */
void agent_stream_decided(struct stream *s, enum stream_gen gen);
/* Room in the sink a held frame waits for (sink thread). */
void agent_stream_on_room(struct sink_waiter *w);
/* Refuse held frames past their hold (all of them when `all`); main thread. */
void agent_stream_expire_held(struct stream *s, int64_t now_mono_ns, bool all);
/* The call is over: held frames go, and the room waiter with them. */
void agent_stream_drop_held(struct stream *s);
/* The stream is being freed: its held-frame state goes (any frame still
 * held was never submitted). */
void agent_stream_free_held(struct stream *s);

#endif
