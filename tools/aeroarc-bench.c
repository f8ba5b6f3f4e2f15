/* aeroarc-bench: drives N simulated agents against an AgentGateway (the
 * relay, or bench/ackserver) and prints one JSON line in loadgen's format.
 * A few worker threads each own one completion queue and the agents placed
 * on it; every agent is a small state machine (register, stream, finish)
 * touched only by its worker, so nothing on the frame path takes a lock.
 * Frames are assembled from pre-encoded parts, never re-encoded per frame.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "aeroarc/relay/v1/relay.pb-c.h"
#include "command_digest.h"
#include "relay_client.h"
#include "server_probe.h"

#define N_KINDS 3          /* message templates: see tmpl_build */
#define REG_INFLIGHT 64    /* registrations in flight per worker */
#define START_BATCH 32     /* streams opened between two looks at the queue */
#define HOLD_WAIT_S 120    /* longest wait for every stream to be acked (as loadgen) */
#define POLL_MS 50         /* worker wake-up while a hold may end */
#define PACE_MS 5          /* --rate: how often due frames are looked for */
#define HIST_SUB 1024      /* sub-buckets per power of two: 0.1% resolution */
#define HIST_BUCKETS (2 * HIST_SUB + 40 * HIST_SUB)
#define MAX_REPLIES 8      /* command answers queued per agent */
#define CMD_TIMEOUT_MS 10000
#define CAP_MAVLINK "mavlink_command_v1"
#define METHOD_SEND_AIRCRAFT "/aeroarc.relay.v1.RelayControl/SendAircraftCommand"
#define METHOD_EXCHANGE "/aeroarc.relay.v1.RelayControl/ExchangeCommand"
#define METHOD_CLEAR "/aeroarc.relay.v1.RelayControl/ClearOperationContext"

/* The command kinds the caller sends (--command-kinds). */
enum cmd_kind { CMD_AIRCRAFT = 0, CMD_DURABLE = 1, N_CMD_KINDS };
static const char *const cmd_kind_names[N_CMD_KINDS] = { "aircraft", "durable" };

/* Low bits of a completion tag say which batch of the agent completed. */
enum tag_kind { TAG_REG = 0, TAG_SEND = 1, TAG_RECV = 2, TAG_STATUS = 3 };

struct bench_opts {
	const char *target;
	long agents, frames, window, fields, raw_bytes, channels, hold_s, threads;
	long rate; /* --rate: frames per second per agent; 0: as fast as acks allow */
	const char *prefix;
	const char *token;
	const char *acked_log;
	const char *scenario;
	long server_pid;
	bool multiplexed; /* --protocol multiplexed: generation 2 (SPEC section 9) */
	bool go_names;    /* --field-names go: the agent's gomavlib names (Lat, TimeBootMs) */
	/* TLS and commands (SPEC sections 10 and 12) */
	const char *ca, *server_name, *cert, *key, *operator_id;
	long commands;        /* --commands: calls per second, all kinds together */
	long command_seconds; /* --command-seconds: at least this long */
	long command_threads;
	unsigned kinds;       /* bit per enum cmd_kind */
	bool open_first;      /* streams open before t0, frames start together */
	bool reconcile;       /* ... and each reconciled by an authoritative Clear */
	bool open_on_register; /* each stream opens as its Register returns, as agents do */
	bool command_process; /* --command-process: the callers in a child process */
};

/* The scenarios of docs/benchmarks.md, as loadgen lines. Only the client
 * side: durable wants the relay on fsync = batch, redis wants it
 * publishing to Redis. */
static const struct scenario {
	const char *name;
	long agents, frames, window, channels, hold_s;
} scenarios[] = {
	{ "throughput", 10, 20000, 100, 0, 0 },
	{ "durable", 10, 20000, 100, 0, 0 },
	{ "redis", 10, 20000, 100, 0, 0 },
	{ "many", 500, 400, 50, 50, 0 },
	{ "light", 1, 5000, 1, 0, 0 },
	{ "scale", 10000, 2, 1, 100, 10 },
};

/* Log-linear latency histogram in nanoseconds. */
struct hist {
	uint64_t n;
	uint64_t count[HIST_BUCKETS];
};

/* Fields 6..11 of a frame (raw_mavlink .. flight_id), encoded once. */
struct tmpl {
	uint8_t *bytes;
	size_t len;
};

struct worker;

struct agent {
	struct worker *w;
	struct rc_channel *ch;
	char id[96];
	grpc_metadata md[3]; /* aero-arc-agent-id, authorization, aero-arc-session-id */
	size_t n_md;
	bool session_md;     /* md[n_md - 1] is aero-arc-session-id (ours to unref) */
	uint8_t *ident;      /* fields 1 and 2 (session_id, agent_id), encoded */
	size_t ident_len;
	uint8_t wal[2 + 36]; /* multiplexed: field 14 (wal_id), this run's UUID */
	grpc_call *call;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *send_bb, *recv_bb;
	grpc_status_code code;
	grpc_slice details;
	int64_t *sent_at; /* by seq % window: monotonic ns of the write */
	int64_t due_ns;   /* --rate: monotonic ns the next frame may go */
	uint64_t next_seq;
	long inflight, acked;
	long acks[4];
	grpc_byte_buffer *reply[MAX_REPLIES]; /* command answers, sent before frames */
	int n_reply;
	bool md_sent, send_pending, recv_pending, status_pending;
	bool write_failed, closing, counted, registered, done;
	bool opened;         /* its stream was started (--open-on-register: at Register) */
	bool header_only; /* the pending send is the initial metadata alone */
	bool ended;       /* every frame acked (last_end_ns has seen it) */
};

struct bench;

struct worker {
	struct bench *b;
	pthread_t thread;
	grpc_completion_queue *cq;
	struct agent **agents;
	size_t n_agents;
	size_t next_reg;
	size_t next_start; /* streaming phase: agents not yet started */
	bool streaming;
	long active; /* calls (registrations, then streams) not yet finished */
	long regs;   /* of them, registrations */
	bool released;
	bool going; /* open_first: frames have been let go */
	int64_t pace_at; /* --rate: when the worker next looks for agents due */
	long acks[4];
	long commands_answered, replies_dropped;
	long register_errors, stream_errors;
	char first_error[256];
	struct hist hist;
};

struct bench {
	struct bench_opts o;
	struct rc_channel **chans;
	long n_chans;
	struct tmpl tmpl[N_KINDS];
	struct agent *agents;
	struct worker *workers;
	pthread_barrier_t barrier;
	FILE *acked_log;
	atomic_long registered;
	atomic_long all_acked;
	atomic_long failures;
	atomic_int release;
	bool holding;          /* streams stay open until released (--hold, --commands) */
	atomic_long opened;    /* open_first: streams whose headers went out */
	atomic_int go;         /* open_first: frames may flow */
	atomic_llong last_end_ns; /* monotonic: when the last agent had every frame acked */
	struct rc_channel *ctl;   /* the control client (--cert) */
	struct cmd_caller *callers;
	pid_t caller_pid;         /* --command-process: the child running the callers */
	int caller_go, caller_result; /* its pipes: go/stop bytes out, results in */
	atomic_int cmd_stop;
	atomic_ulong cmd_seq;
};

/* One command-calling thread: its share of the rate, its latencies. */
struct cmd_caller {
	struct bench *b;
	pthread_t thread;
	long idx;
	unsigned seed;
	struct hist *hist[N_CMD_KINDS];
	long n[N_CMD_KINDS], errors[N_CMD_KINDS], reconcile_errors;
	char first_error[256];
};

static int64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t hist_index(uint64_t v)
{
	int e;

	if (v < 2 * HIST_SUB)
		return (size_t)v;
	e = 63 - __builtin_clzll(v) - 10; /* v >> e lands in [1024, 2048) */
	if (e > 40)
		return HIST_BUCKETS - 1;
	return 2 * HIST_SUB + (size_t)(e - 1) * HIST_SUB + (size_t)((v >> e) - HIST_SUB);
}

/* Middle of bucket i, in nanoseconds. */
static double hist_value(size_t i)
{
	size_t e;

	if (i < 2 * HIST_SUB)
		return (double)i;
	e = (i - 2 * HIST_SUB) / HIST_SUB + 1;
	return ((double)(HIST_SUB + (i - 2 * HIST_SUB) % HIST_SUB) + 0.5) * (double)(1ULL << e);
}

/* loadgen's percentile: the sample at index p% of n, sorted; microseconds. */
static double hist_pct(const struct hist *h, double p)
{
	uint64_t idx, cum = 0;

	if (!h->n)
		return 0;
	idx = (uint64_t)(p / 100.0 * (double)h->n);
	if (idx >= h->n)
		idx = h->n - 1;
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		cum += h->count[i];
		if (cum > idx)
			return hist_value(i) / 1000.0;
	}
	return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* Generation 2: the TelemetryAck inside a RelayStreamMessage. Returns 1
 * with seq/status for a telemetry_ack, 0 for any other arm (a command:
 * not ours to count), -1 when the bytes are not a RelayStreamMessage. */
static bool ack_decode(const uint8_t *p, size_t n, uint64_t *seq, int *status);

static int envelope_ack_decode(const uint8_t *p, size_t n, uint64_t *seq, int *status)
{
	const uint8_t *end = p + n, *ack = NULL;
	uint64_t key, v, ack_len = 0;

	while (p < end) {
		if (!get_varint(&p, end, &key))
			return -1;
		switch (key & 7) {
		case 0:
			if (!get_varint(&p, end, &v))
				return -1;
			break;
		case 1:
		case 5:
			if ((uint64_t)(end - p) < ((key & 7) == 1 ? 8u : 4u))
				return -1;
			p += (key & 7) == 1 ? 8 : 4;
			break;
		case 2:
			if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return -1;
			if (key >> 3 == 1) {
				ack = p;
				ack_len = v;
			}
			p += v;
			break;
		default:
			return -1;
		}
	}
	if (!ack)
		return 0;
	return ack_decode(ack, (size_t)ack_len, seq, status) ? 1 : -1;
}

/* seq and status of a TelemetryAck, without allocating: this runs per ack. */
static bool ack_decode(const uint8_t *p, size_t n, uint64_t *seq, int *status)
{
	const uint8_t *end = p + n;
	uint64_t key, v;

	*seq = 0;
	*status = 0;
	while (p < end) {
		if (!get_varint(&p, end, &key))
			return false;
		switch (key & 7) {
		case 0:
			if (!get_varint(&p, end, &v))
				return false;
			if (key >> 3 == 2)
				*seq = v;
			else if (key >> 3 == 3)
				*status = (int)v;
			break;
		case 1:
			p += 8;
			break;
		case 2:
			if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			p += v;
			break;
		case 5:
			p += 4;
			break;
		default:
			return false;
		}
	}
	return p == end;
}

static void worker_error(struct worker *w, const char *what, grpc_status_code code,
			 grpc_slice details)
{
	if (w->first_error[0])
		return;
	snprintf(w->first_error, sizeof w->first_error, "%s: code %d %.*s", what, (int)code,
		 (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
}

static int start(struct agent *a, grpc_op *ops, size_t n, enum tag_kind kind)
{
	void *tag = (void *)((uintptr_t)a | (uintptr_t)kind);

	return grpc_call_start_batch(a->call, ops, n, tag, NULL) == GRPC_CALL_OK ? 0 : -EIO;
}

static grpc_call *agent_call(struct agent *a, const char *method, gpr_timespec deadline)
{
	grpc_slice m = grpc_slice_from_static_string(method);

	return grpc_channel_create_call(rc_channel_grpc(a->ch), NULL, GRPC_PROPAGATE_DEFAULTS,
					a->w->cq, m, NULL, deadline, NULL);
}

/* Tear down the current call's resources (after every batch completed). */
static void agent_call_free(struct agent *a)
{
	if (a->call)
		grpc_call_unref(a->call);
	a->call = NULL;
	grpc_metadata_array_destroy(&a->init_md);
	grpc_metadata_array_destroy(&a->trail_md);
	if (a->send_bb)
		grpc_byte_buffer_destroy(a->send_bb);
	if (a->recv_bb)
		grpc_byte_buffer_destroy(a->recv_bb);
	a->send_bb = a->recv_bb = NULL;
	grpc_slice_unref(a->details);
	a->details = grpc_empty_slice();
}

/* --- registration ------------------------------------------------------ */

static int register_start(struct agent *a)
{
	Aeroarc__Agent__V1__RegisterRequest req = AEROARC__AGENT__V1__REGISTER_REQUEST__INIT;
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					     gpr_time_from_seconds(10, GPR_TIMESPAN));
	static char *caps[] = { CAP_MAVLINK };
	uint8_t buf[512];
	grpc_slice s;
	grpc_op ops[6];

	req.agent_id = a->id;
	req.agent_version = "aeroarc-bench/1";
	req.platform = "linux/amd64";
	if (a->w->b->o.commands > 0 || a->w->b->o.reconcile) {
		req.n_execution_capabilities = 1; /* ExchangeCommand's rule 7 */
		req.execution_capabilities = caps;
	}
	s = grpc_slice_from_copied_buffer((const char *)buf,
					  aeroarc__agent__v1__register_request__pack(&req, buf));
	a->send_bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_metadata_array_init(&a->init_md);
	grpc_metadata_array_init(&a->trail_md);
	a->call = agent_call(a, RC_METHOD_REGISTER, deadline);
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = a->n_md;
	ops[0].data.send_initial_metadata.metadata = a->md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = a->send_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &a->init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &a->recv_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &a->trail_md;
	ops[5].data.recv_status_on_client.status = &a->code;
	ops[5].data.recv_status_on_client.status_details = &a->details;
	return start(a, ops, 6, TAG_REG);
}

/* fields 1 and 2, so a frame is ident + seq/time + template, in field order. */
static int ident_build(struct agent *a, const char *session_id)
{
	struct rc_frame f = { .session_id = session_id, .agent_id = a->id };

	return rc_frame_encode(&f, &a->ident, &a->ident_len);
}

static bool register_finish(struct agent *a)
{
	Aeroarc__Agent__V1__RegisterResponse *resp = NULL;
	grpc_byte_buffer_reader r;
	grpc_slice s;

	if (a->code != GRPC_STATUS_OK) {
		worker_error(a->w, "register", a->code, a->details);
		return false;
	}
	if (a->recv_bb && grpc_byte_buffer_reader_init(&r, a->recv_bb)) {
		s = grpc_byte_buffer_reader_readall(&r);
		grpc_byte_buffer_reader_destroy(&r);
		resp = aeroarc__agent__v1__register_response__unpack(NULL, GRPC_SLICE_LENGTH(s),
								     GRPC_SLICE_START_PTR(s));
		grpc_slice_unref(s);
	}
	if (!resp) {
		worker_error(a->w, "register: undecodable response", a->code, a->details);
		return false;
	}
	if (a->w->b->o.multiplexed && !a->session_md) {
		a->md[a->n_md].key = grpc_slice_from_static_string(RC_SESSION_ID_HEADER);
		a->md[a->n_md].value = grpc_slice_from_copied_string(resp->session_id);
		a->n_md++;
		a->session_md = true;
	}
	if (ident_build(a, resp->session_id)) {
		aeroarc__agent__v1__register_response__free_unpacked(resp, NULL);
		worker_error(a->w, "register: out of memory", a->code, a->details);
		return false;
	}
	aeroarc__agent__v1__register_response__free_unpacked(resp, NULL);
	return true;
}

static void stream_open(struct agent *a);

/* Keep REG_INFLIGHT registrations going until every agent has had one. */
static void register_more(struct worker *w)
{
	while (w->next_reg < w->n_agents && w->regs < REG_INFLIGHT) {
		struct agent *a = w->agents[w->next_reg++];

		if (register_start(a)) {
			w->register_errors++;
			worker_error(w, "register: cannot start the call", GRPC_STATUS_INTERNAL,
				     grpc_empty_slice());
			agent_call_free(a);
			continue;
		}
		w->active++;
		w->regs++;
	}
}

static void register_done(struct agent *a)
{
	struct worker *w = a->w;

	a->registered = register_finish(a);
	if (a->registered)
		atomic_fetch_add(&w->b->registered, 1);
	else
		w->register_errors++;
	agent_call_free(a);
	w->active--;
	w->regs--;
	if (a->registered && w->b->o.open_on_register)
		stream_open(a);
	register_more(w);
}

/* --- streaming --------------------------------------------------------- */

static const struct tmpl *tmpl_for(const struct bench *b, uint64_t seq)
{
	/* A flight's mix: position and attitude alternate, a heartbeat now and then. */
	if (seq % 10 == 0)
		return &b->tmpl[2];
	return &b->tmpl[seq & 1];
}

/* A frame is ident + seq/time + template (+ wal_id, field 14, when
 * multiplexed, then wrapped as AgentStreamMessage field 1). */
static grpc_byte_buffer *frame_bb(const struct bench *b, const struct agent *a, uint64_t seq,
				   int64_t wall_ns)
{
	const struct tmpl *t = tmpl_for(b, seq);
	double dev = (double)wall_ns / 1e9;
	uint8_t tail[32], head[16], *p;
	uint64_t bits;
	size_t n = 0, nh = 0, wal_len = b->o.multiplexed ? sizeof a->wal : 0, frame_len;
	grpc_slice s;
	grpc_byte_buffer *bb;

	tail[n++] = 3 << 3; /* seq, varint */
	n += put_varint(tail + n, seq);
	tail[n++] = 4 << 3; /* sent_at_unix_ns, varint */
	n += put_varint(tail + n, (uint64_t)wall_ns);
	tail[n++] = 5 << 3 | 1; /* device_timestamp_sec, fixed64 */
	memcpy(&bits, &dev, sizeof bits);
	for (int i = 0; i < 8; i++)
		tail[n++] = (uint8_t)(bits >> (8 * i));
	frame_len = a->ident_len + n + t->len + wal_len;
	if (b->o.multiplexed) {
		head[nh++] = 1 << 3 | 2; /* AgentStreamMessage.telemetry_frame */
		nh += put_varint(head + nh, frame_len);
	}
	s = grpc_slice_malloc(nh + frame_len);
	p = GRPC_SLICE_START_PTR(s);
	memcpy(p, head, nh);
	p += nh;
	memcpy(p, a->ident, a->ident_len);
	memcpy(p + a->ident_len, tail, n);
	memcpy(p + a->ident_len + n, t->bytes, t->len);
	memcpy(p + a->ident_len + n + t->len, a->wal, wal_len);
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* One send batch: the stream's headers if not sent yet, then bb (NULL:
 * the headers alone). On failure the stream is cancelled: -EIO. */
static int send_start(struct agent *a, grpc_byte_buffer *bb)
{
	grpc_op ops[2], *op = ops;

	memset(ops, 0, sizeof ops);
	if (!a->md_sent) {
		op->op = GRPC_OP_SEND_INITIAL_METADATA;
		op->data.send_initial_metadata.count = a->n_md;
		op->data.send_initial_metadata.metadata = a->md;
		op++;
	}
	if (bb) {
		a->send_bb = bb;
		op->op = GRPC_OP_SEND_MESSAGE;
		op->data.send_message.send_message = bb;
		op++;
	}
	if (start(a, ops, (size_t)(op - ops), TAG_SEND)) {
		a->write_failed = true;
		grpc_call_cancel(a->call, NULL);
		return -EIO;
	}
	a->md_sent = true;
	a->send_pending = true;
	return 0;
}

static void maybe_write(struct agent *a)
{
	const struct bench_opts *o = &a->w->b->o;
	grpc_byte_buffer *bb;
	uint64_t seq = a->next_seq;

	if (a->send_pending || a->write_failed || a->closing || seq > (uint64_t)o->frames ||
	    a->inflight >= o->window)
		return;
	if (o->open_first && !atomic_load(&a->w->b->go))
		return;
	if (o->rate > 0) { /* paced: at most one frame per 1/rate s, no catching up in bursts */
		int64_t now = clock_ns(CLOCK_MONOTONIC), gap = 1000000000 / o->rate;

		if (now < a->due_ns)
			return; /* the worker's pacing pass sends it when due */
		a->due_ns = (a->due_ns + gap > now ? a->due_ns : now) + gap;
	}
	bb = frame_bb(a->w->b, a, seq, clock_ns(CLOCK_REALTIME));
	a->sent_at[seq % (uint64_t)o->window] = clock_ns(CLOCK_MONOTONIC);
	if (send_start(a, bb))
		return;
	a->next_seq++;
	a->inflight++;
}

static void half_close(struct agent *a)
{
	grpc_op op;

	if (a->closing || a->send_pending || a->write_failed)
		return;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	a->closing = true;
	if (start(a, &op, 1, TAG_SEND)) {
		grpc_call_cancel(a->call, NULL);
		return;
	}
	a->send_pending = true;
}

/* Every frame acked: half-close now, or count it and wait for the release
 * when holding streams open. */
static void reached_end(struct agent *a)
{
	struct worker *w = a->w;

	if (!a->ended) {
		long long now = clock_ns(CLOCK_MONOTONIC), prev = atomic_load(&w->b->last_end_ns);

		a->ended = true;
		while (now > prev && !atomic_compare_exchange_weak(&w->b->last_end_ns, &prev, now))
			;
	}
	if (!w->b->holding || w->released) {
		half_close(a);
		return;
	}
	if (!a->counted) {
		a->counted = true;
		atomic_fetch_add(&w->b->all_acked, 1);
	}
}

/* --open-first: the stream's headers alone, so the relay has the stream
 * (and a command can reach it) before any frame is sent. */
static void send_header(struct agent *a)
{
	if (!send_start(a, NULL))
		a->header_only = true;
}

/* The oldest queued command answer. */
static void send_reply(struct agent *a)
{
	grpc_byte_buffer *bb = a->reply[0];

	memmove(a->reply, a->reply + 1, (size_t)--a->n_reply * sizeof a->reply[0]);
	send_start(a, bb);
}

/* The stream's next write, if it can have one now: a command answer
 * first (it must not wait behind a window of frames), then the headers
 * alone while --open-first holds frames back, then frames. */
static void agent_pump(struct agent *a)
{
	const struct bench *b = a->w->b;

	if (a->send_pending || a->write_failed || a->closing)
		return;
	if (a->n_reply) {
		send_reply(a);
		return;
	}
	if (!a->md_sent && b->o.open_first && !atomic_load(&a->w->b->go)) {
		send_header(a);
		return;
	}
	if (a->acked >= b->o.frames)
		reached_end(a);
	else
		maybe_write(a);
}

static int recv_post(struct agent *a)
{
	grpc_op op;

	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &a->recv_bb;
	if (start(a, &op, 1, TAG_RECV))
		return -EIO;
	a->recv_pending = true;
	return 0;
}

static int stream_start(struct agent *a)
{
	grpc_op ops[2];

	grpc_metadata_array_init(&a->init_md);
	grpc_metadata_array_init(&a->trail_md);
	a->next_seq = 1;
	a->call = agent_call(a, RC_METHOD_TELEMETRY_STREAM, gpr_inf_future(GPR_CLOCK_MONOTONIC));
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &a->trail_md;
	ops[0].data.recv_status_on_client.status = &a->code;
	ops[0].data.recv_status_on_client.status_details = &a->details;
	if (start(a, ops, 1, TAG_STATUS))
		return -EIO;
	a->status_pending = true;
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[0].data.recv_initial_metadata.recv_initial_metadata = &a->init_md;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &a->recv_bb;
	if (start(a, ops, 2, TAG_RECV)) {
		grpc_call_cancel(a->call, NULL);
		return 0; /* the status batch will end it */
	}
	a->recv_pending = true;
	agent_pump(a);
	return 0;
}

static void send_done(struct agent *a, bool ok)
{
	a->send_pending = false;
	if (a->send_bb)
		grpc_byte_buffer_destroy(a->send_bb);
	a->send_bb = NULL;
	if (a->header_only && ok)
		atomic_fetch_add(&a->w->b->opened, 1);
	a->header_only = false;
	if (!ok) {
		a->write_failed = true;
		return;
	}
	agent_pump(a);
}

static void ack_seen(struct agent *a, uint64_t seq, int status)
{
	struct worker *w = a->w;
	struct bench *b = w->b;
	int64_t t0 = a->sent_at[seq % (uint64_t)b->o.window];

	if (status >= 0 && status < 4)
		a->acks[status]++;
	if (status == RC_ACK_OK && b->acked_log)
		fprintf(b->acked_log, "%s %" PRIu64 "\n", a->id, seq);
	if (t0 > 0) {
		w->hist.count[hist_index((uint64_t)(clock_ns(CLOCK_MONOTONIC) - t0))]++;
		w->hist.n++;
	}
	a->inflight--;
	a->acked++;
	agent_pump(a);
}

/* Queue msg packed as AgentStreamMessage arm `arm`. */
static void reply_queue(struct agent *a, int arm, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg), env_len;
	uint8_t *buf = malloc(len ? len : 1), *env = NULL;
	grpc_slice s;

	if (!buf || a->n_reply >= MAX_REPLIES) {
		a->w->replies_dropped++;
		free(buf);
		return;
	}
	protobuf_c_message_pack(msg, buf);
	if (rc_envelope_wrap(arm, buf, len, &env, &env_len)) {
		a->w->replies_dropped++;
		free(buf);
		return;
	}
	s = grpc_slice_from_copied_buffer((const char *)env, env_len);
	a->reply[a->n_reply++] = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	free(env);
	free(buf);
	a->w->commands_answered++;
}

/* A command from the relay (not an ack): answer it at once as an agent
 * whose aircraft does what it is told. Aircraft command: ACCEPTED; durable
 * command: evidence with one `acknowledged` event (what ExchangeCommand
 * returns); Set/Clear of the operation context: APPLIED with the context
 * asked for. Anything else is not answered. */
static void answer_command(struct agent *a, const uint8_t *p, size_t n)
{
	Aeroarc__Agent__V1__RelayStreamMessage *m =
		aeroarc__agent__v1__relay_stream_message__unpack(NULL, n, p);
	Aeroarc__Agent__V1__OperationContextCommandAck ack =
		AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;

	if (!m)
		return;
	switch (m->payload_case) {
	case AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_AIRCRAFT_COMMAND: {
		Aeroarc__Agent__V1__AircraftCommandResult r =
			AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__INIT;

		r.command_id = m->aircraft_command->command_id;
		r.aircraft_id = m->aircraft_command->aircraft_id;
		r.status = AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED;
		reply_queue(a, RC_AGENT_AIRCRAFT_COMMAND_RESULT, &r.base);
		break;
	}
	case AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_DURABLE_COMMAND: {
		Aeroarc__Agent__V1__CommandEvidence e = AEROARC__AGENT__V1__COMMAND_EVIDENCE__INIT;
		Aeroarc__Agent__V1__CommandEvent ev = AEROARC__AGENT__V1__COMMAND_EVENT__INIT, *evp = &ev;
		char id[300];

		snprintf(id, sizeof id, "%s/acknowledged", m->durable_command->command_id);
		ev.event_id = id;
		ev.stage = "acknowledged";
		ev.occurred_at_unix_ms = clock_ns(CLOCK_REALTIME) / 1000000;
		ev.evidence_source = "agent:aeroarc-bench";
		e.command_id = m->durable_command->command_id;
		e.command_digest = m->durable_command->command_digest;
		e.n_events = 1;
		e.events = &evp;
		reply_queue(a, RC_AGENT_COMMAND_EVIDENCE, &e.base);
		break;
	}
	case AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_SET_OPERATION_CONTEXT:
		ack.command_id = m->set_operation_context->command_id;
		ack.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
		ack.active_context = m->set_operation_context->context;
		reply_queue(a, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &ack.base);
		break;
	case AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_CLEAR_OPERATION_CONTEXT:
		ack.command_id = m->clear_operation_context->command_id;
		ack.status = AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
		reply_queue(a, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &ack.base);
		break;
	default:
		break;
	}
	aeroarc__agent__v1__relay_stream_message__free_unpacked(m, NULL);
}

static void recv_done(struct agent *a, bool ok)
{
	grpc_byte_buffer_reader r;
	uint64_t seq;
	int status, kind = -1;
	grpc_slice s;
	bool good;

	a->recv_pending = false;
	if (!ok || !a->recv_bb)
		return; /* the stream is over; the status batch reports how */
	good = grpc_byte_buffer_reader_init(&r, a->recv_bb);
	if (good) {
		s = grpc_byte_buffer_reader_readall(&r);
		grpc_byte_buffer_reader_destroy(&r);
		if (!a->w->b->o.multiplexed)
			kind = ack_decode(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), &seq,
					  &status) ? 1 : -1;
		else
			kind = envelope_ack_decode(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s),
						   &seq, &status);
		good = kind >= 0;
		if (kind == 0)
			answer_command(a, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
		grpc_slice_unref(s);
	}
	grpc_byte_buffer_destroy(a->recv_bb);
	a->recv_bb = NULL;
	if (!good) {
		grpc_call_cancel_with_status(a->call, GRPC_STATUS_INTERNAL,
					     a->w->b->o.multiplexed
						     ? "aeroarc-bench: undecodable RelayStreamMessage"
						     : "aeroarc-bench: undecodable TelemetryAck",
					     NULL);
		return;
	}
	if (kind == 1)
		ack_seen(a, seq, status);
	else if (kind == 0)
		agent_pump(a);
	if (recv_post(a))
		grpc_call_cancel(a->call, NULL);
}

/* The status is in and no batch is outstanding: account and free. */
static void stream_finish(struct agent *a)
{
	struct worker *w = a->w;

	for (int i = 0; i < 4; i++)
		w->acks[i] += a->acks[i];
	if (a->code != GRPC_STATUS_OK || a->acked < w->b->o.frames) {
		w->stream_errors++;
		atomic_fetch_add(&w->b->failures, 1);
		worker_error(w, "stream", a->code, a->details);
	}
	while (a->n_reply)
		grpc_byte_buffer_destroy(a->reply[--a->n_reply]);
	agent_call_free(a);
	a->done = true;
	w->active--;
}

static void stream_event(struct agent *a, enum tag_kind kind, bool ok)
{
	if (kind == TAG_SEND)
		send_done(a, ok);
	else if (kind == TAG_RECV)
		recv_done(a, ok);
	else
		a->status_pending = false;
	if (!a->status_pending && !a->send_pending && !a->recv_pending && !a->done)
		stream_finish(a);
}

/* The hold is over: half-close every stream waiting for it. */
static void release_all(struct worker *w)
{
	w->released = true;
	for (size_t i = 0; i < w->n_agents; i++) {
		struct agent *a = w->agents[i];

		if (a->call && a->counted)
			half_close(a);
	}
}

/* Open the next few streams. Opening them all before reading any ack
 * would leave the first acks waiting and inflate latency. */
static void streams_start_some(struct worker *w)
{
	for (int k = 0; k < START_BATCH && w->next_start < w->n_agents; k++) {
		struct agent *a = w->agents[w->next_start++];

		if (a->registered && !a->opened)
			stream_open(a);
	}
}

static void stream_open(struct agent *a)
{
	a->opened = true;
	a->w->active++;
	if (stream_start(a)) {
		grpc_call_cancel(a->call, NULL);
		a->status_pending = false;
		stream_finish(a);
	}
}

static bool starts_left(const struct worker *w)
{
	return w->streaming && w->next_start < w->n_agents;
}

/* --rate: every PACE_MS, write the frames that fell due (an agent whose
 * window had room but whose next frame was not due yet waits for this). */
static void pace(struct worker *w)
{
	int64_t now = clock_ns(CLOCK_MONOTONIC);

	if (now < w->pace_at)
		return;
	w->pace_at = now + PACE_MS * 1000000LL;
	for (size_t i = 0; i < w->n_agents; i++) {
		struct agent *a = w->agents[i];

		if (a->opened && a->call && !a->done && a->due_ns <= now)
			agent_pump(a);
	}
}

/* Dispatch completions until every call of the current phase finished. */
static void worker_run(struct worker *w)
{
	bool hold = w->b->holding;

	/* Registering: until every Register has returned (with
	 * --open-on-register, streams already run and stay active). */
	while ((w->streaming ? w->active : w->regs) > 0 || starts_left(w)) {
		bool waiting = w->streaming && w->b->o.open_first && !w->going;
		gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					       gpr_time_from_millis(waiting ? 1
								    : w->b->o.rate > 0 ? PACE_MS
								    : POLL_MS,
								    GPR_TIMESPAN));
		grpc_event ev;
		struct agent *a;
		enum tag_kind kind;

		if (waiting && atomic_load(&w->b->go)) {
			w->going = true;
			for (size_t i = 0; i < w->n_agents; i++)
				if (w->agents[i]->call && !w->agents[i]->done)
					agent_pump(w->agents[i]);
		}
		if (starts_left(w)) {
			streams_start_some(w);
			dl = gpr_inf_past(GPR_CLOCK_MONOTONIC);
		}
		ev = grpc_completion_queue_next(w->cq, dl, NULL);

		if (hold && !w->released && atomic_load(&w->b->release))
			release_all(w);
		if (w->b->o.rate > 0)
			pace(w);
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		a = (struct agent *)((uintptr_t)ev.tag & ~(uintptr_t)3);
		kind = (enum tag_kind)((uintptr_t)ev.tag & 3);
		if (kind == TAG_REG)
			register_done(a);
		else
			stream_event(a, kind, ev.success != 0);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	register_more(w);
	worker_run(w);
	pthread_barrier_wait(&w->b->barrier); /* everyone registered */
	pthread_barrier_wait(&w->b->barrier); /* main has taken t0 */
	w->streaming = true;
	worker_run(w);
	return NULL;
}

/* --- commands (SPEC sections 10 and 12) -------------------------------- */

static void caller_error(struct cmd_caller *c, const char *what, const struct rc_status *st)
{
	if (!c->first_error[0])
		snprintf(c->first_error, sizeof c->first_error, "%s: %s %.200s", what,
			 rc_status_code_name(st->code), st->message);
}

/* SendAircraftCommand ARM for agent a (aircraft id = agent id). */
static int pack_aircraft(const struct agent *a, const char *id, uint8_t **out, size_t *len)
{
	Aeroarc__Agent__V1__AircraftCommand cmd = AEROARC__AGENT__V1__AIRCRAFT_COMMAND__INIT;
	Aeroarc__Relay__V1__SendAircraftCommandRequest req =
		AEROARC__RELAY__V1__SEND_AIRCRAFT_COMMAND_REQUEST__INIT;

	cmd.command_id = (char *)id;
	cmd.aircraft_id = (char *)a->id;
	cmd.type = AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_ARM;
	cmd.issued_at_unix_ms = clock_ns(CLOCK_REALTIME) / 1000000;
	req.agent_id = (char *)a->id;
	req.command = &cmd;
	*len = protobuf_c_message_get_packed_size(&req.base);
	if (!(*out = malloc(*len)))
		return -ENOMEM;
	protobuf_c_message_pack(&req.base, *out);
	return 0;
}

/* ExchangeCommand with the ARM the API sends (SPEC 12.1: command 400, p1 1,
 * observation armed, 30 s expiry) for agent a, mapped to (--operator,
 * aircraft id = agent id); digested as the API does (SPEC 12.3). */
static int pack_durable(const struct bench *b, const struct agent *a, const char *id,
			uint8_t **out, size_t *len)
{
	Aeroarc__Agent__V1__DurableCommand c = AEROARC__AGENT__V1__DURABLE_COMMAND__INIT;
	Aeroarc__Agent__V1__OperationContext ctx = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
	Aeroarc__Agent__V1__MavlinkExecution mav = AEROARC__AGENT__V1__MAVLINK_EXECUTION__INIT;
	Aeroarc__Relay__V1__ExchangeCommandRequest req =
		AEROARC__RELAY__V1__EXCHANGE_COMMAND_REQUEST__INIT;
	float params[7] = { 1, 0, 0, 0, 0, 0, 0 };
	char digest[COMMAND_DIGEST_HEX_LEN + 1], attempt[160];
	const char *why = NULL;
	int64_t now_ms = clock_ns(CLOCK_REALTIME) / 1000000;

	ctx.flight_id = "bench-flight-1";
	ctx.intent_id = "bench-intent";
	ctx.intent_version = 1;
	ctx.aircraft_id = (char *)a->id;
	mav.command = 400;
	mav.n_parameters = 7;
	mav.parameters = params;
	mav.observation = "armed";
	mav.vehicle_profile = "arducopter_v1";
	c.command_id = (char *)id;
	c.operator_id = (char *)b->o.operator_id;
	c.aircraft_id = (char *)a->id;
	c.agent_id = (char *)a->id;
	c.context = &ctx;
	c.definition = "ARM";
	c.definition_version = 1;
	c.capability = CAP_MAVLINK;
	c.issued_at_unix_ms = now_ms;
	c.expires_at_unix_ms = now_ms + 30000;
	c.recovery_policy = "no_repeat_effect_v1";
	c.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK;
	c.mavlink = &mav;
	if (command_digest_durable(&c, digest, &why))
		return -EINVAL;
	c.command_digest = digest;
	snprintf(attempt, sizeof attempt, "%s/attempt-1", id);
	req.agent_id = (char *)a->id;
	req.command = &c;
	req.attempt_id = attempt;
	*len = protobuf_c_message_get_packed_size(&req.base);
	if (!(*out = malloc(*len)))
		return -ENOMEM;
	protobuf_c_message_pack(&req.base, *out);
	return 0;
}

/* The answer is the agent's: ACCEPTED for this id, or evidence for this id
 * whose first event is the agent's acknowledged. */
static bool answer_ok(enum cmd_kind kind, const char *id, const uint8_t *p, size_t n)
{
	bool good = false;

	if (kind == CMD_AIRCRAFT) {
		Aeroarc__Relay__V1__SendAircraftCommandResponse *r =
			aeroarc__relay__v1__send_aircraft_command_response__unpack(NULL, n, p);

		good = r && r->result && !strcmp(r->result->command_id, id) &&
		       r->result->status ==
			       AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED;
		if (r)
			aeroarc__relay__v1__send_aircraft_command_response__free_unpacked(r, NULL);
	} else {
		Aeroarc__Relay__V1__ExchangeCommandResponse *r =
			aeroarc__relay__v1__exchange_command_response__unpack(NULL, n, p);

		good = r && r->evidence && !strcmp(r->evidence->command_id, id) &&
		       r->evidence->n_events >= 1 &&
		       !strcmp(r->evidence->events[0]->stage, "acknowledged");
		if (r)
			aeroarc__relay__v1__exchange_command_response__free_unpacked(r, NULL);
	}
	return good;
}

/* One command to a random agent; the round trip is the rc_unary call alone
 * (building and digesting the request is not in it). */
static void command_once(struct cmd_caller *c, unsigned long seq)
{
	struct bench *b = c->b;
	enum cmd_kind kinds[N_CMD_KINDS], kind;
	int nk = 0;
	struct agent *a = &b->agents[rand_r(&c->seed) % (unsigned)b->o.agents];
	char id[128];
	uint8_t *req = NULL, *resp = NULL;
	size_t len = 0, resp_len = 0;
	struct rc_status st = { 0 };
	int64_t t0;
	int rc;

	for (int k = 0; k < N_CMD_KINDS; k++)
		if (b->o.kinds & (1u << k))
			kinds[nk++] = (enum cmd_kind)k;
	kind = kinds[seq % (unsigned long)nk];
	snprintf(id, sizeof id, "bench-%s-%lu", cmd_kind_names[kind], seq);
	rc = kind == CMD_AIRCRAFT ? pack_aircraft(a, id, &req, &len)
				  : pack_durable(b, a, id, &req, &len);
	if (rc) {
		st.code = GRPC_STATUS_INTERNAL;
		snprintf(st.message, sizeof st.message, "cannot build the request (%d)", rc);
		c->errors[kind]++;
		caller_error(c, cmd_kind_names[kind], &st);
		return;
	}
	t0 = clock_ns(CLOCK_MONOTONIC);
	rc = rc_unary(b->ctl, kind == CMD_AIRCRAFT ? METHOD_SEND_AIRCRAFT : METHOD_EXCHANGE, req,
		      len, NULL, 0, &resp, &resp_len, &st, CMD_TIMEOUT_MS);
	if (!rc && answer_ok(kind, id, resp, resp_len)) {
		c->hist[kind]->count[hist_index((uint64_t)(clock_ns(CLOCK_MONOTONIC) - t0))]++;
		c->hist[kind]->n++;
		c->n[kind]++;
	} else {
		if (!rc)
			snprintf(st.message, sizeof st.message, "not the agent's answer");
		c->errors[kind]++;
		caller_error(c, cmd_kind_names[kind], &st);
	}
	free(req);
	free(resp);
}

/* Paced: this thread's share of --commands per second, at even intervals
 * (staggered between threads); a late call does not cause a burst. */
static void *caller_main(void *arg)
{
	struct cmd_caller *c = arg;
	const struct bench *b = c->b;
	int64_t interval = (int64_t)(1e9 * (double)b->o.command_threads / (double)b->o.commands);
	int64_t next = clock_ns(CLOCK_MONOTONIC) + interval * c->idx / b->o.command_threads;

	while (!atomic_load(&c->b->cmd_stop)) {
		int64_t now = clock_ns(CLOCK_MONOTONIC);

		if (now < next) {
			int64_t d = next - now < 10000000 ? next - now : 10000000;
			struct timespec ts = { 0, (long)d };

			nanosleep(&ts, NULL); /* at most 10 ms: the stop is seen soon */
			continue;
		}
		command_once(c, atomic_fetch_add(&c->b->cmd_seq, 1));
		next += interval;
		if (next < now)
			next = now;
	}
	return NULL;
}

/* --reconcile: an authoritative ClearOperationContext for every registered
 * agent in c's share (SPEC section 10: with control on, a new session's
 * frames are held until its context is reconciled). */
static void *reconcile_main(void *arg)
{
	struct cmd_caller *c = arg;
	struct bench *b = c->b;

	for (long i = c->idx; i < b->o.agents; i += b->o.command_threads) {
		Aeroarc__Agent__V1__ClearOperationContextCommand cmd =
			AEROARC__AGENT__V1__CLEAR_OPERATION_CONTEXT_COMMAND__INIT;
		Aeroarc__Relay__V1__ClearOperationContextRequest req =
			AEROARC__RELAY__V1__CLEAR_OPERATION_CONTEXT_REQUEST__INIT;
		uint8_t buf[256], *resp = NULL;
		size_t resp_len;
		struct rc_status st;

		if (!b->agents[i].registered)
			continue;
		cmd.command_id = "bench-reconcile";
		cmd.authoritative = true;
		req.agent_id = b->agents[i].id;
		req.command = &cmd;
		if (rc_unary(b->ctl, METHOD_CLEAR, buf, aeroarc__relay__v1__clear_operation_context_request__pack(&req, buf),
			     NULL, 0, &resp, &resp_len, &st, CMD_TIMEOUT_MS)) {
			c->reconcile_errors++;
			caller_error(c, "reconcile", &st);
		}
		free(resp);
	}
	return NULL;
}

/* Run fn on command_threads threads over b->callers; join them. */
static int callers_run(struct bench *b, void *(*fn)(void *), bool join)
{
	for (long t = 0; t < b->o.command_threads; t++)
		if (pthread_create(&b->callers[t].thread, NULL, fn, &b->callers[t])) {
			fprintf(stderr, "aeroarc-bench: cannot start command threads\n");
			exit(1);
		}
	if (join)
		for (long t = 0; t < b->o.command_threads; t++)
			pthread_join(b->callers[t].thread, NULL);
	return 0;
}

static int callers_init(struct bench *b)
{
	struct rc_opts ro = { .root_cert_file = b->o.ca, .client_cert_file = b->o.cert,
			      .client_key_file = b->o.key, .server_name_override = b->o.server_name };
	struct rc_status st;

	if (!b->o.cert)
		return 0;
	if (!(b->ctl = rc_connect_opts(b->o.target, &ro, &st))) {
		fprintf(stderr, "aeroarc-bench: control client: %s\n", st.message);
		return -EINVAL;
	}
	if (!(b->callers = calloc((size_t)b->o.command_threads, sizeof *b->callers)))
		return -ENOMEM;
	for (long t = 0; t < b->o.command_threads; t++) {
		struct cmd_caller *c = &b->callers[t];

		c->b = b;
		c->idx = t;
		c->seed = (unsigned)(t * 7919 + 1) ^ (unsigned)clock_ns(CLOCK_REALTIME);
		for (int k = 0; k < N_CMD_KINDS; k++)
			if (!(c->hist[k] = calloc(1, sizeof *c->hist[k])))
				return -ENOMEM;
	}
	return 0;
}

/* --- command callers in a process of their own (--command-process) ---- */

/* gRPC's poller (epoll1) is process-wide: a calling thread blocked on its
 * call's completion queue polls every connection in the process, so
 * callers beside the agents take the agents' reads and kick their workers
 * (measured: 3.5 ms of load-generator CPU per call, and the relay's acks
 * arriving in batches half as large). An API calling the relay is another
 * process; in a child forked before gRPC starts, the callers cost the
 * agents what that process would. */

/* What the child sends back: every thread's figures merged. */
struct caller_result {
	long n[N_CMD_KINDS], errors[N_CMD_KINDS];
	char first_error[256];
	struct hist hist[N_CMD_KINDS];
};

static int fd_io(int fd, void *buf, size_t len, bool out)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = out ? write(fd, p, len) : read(fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* The child: agents known by id only; calls between the parent's go and
 * stop bytes (EOF on go: the parent gave up), then its figures. */
static void caller_child(struct bench *b, int go_fd, int result_fd)
{
	struct caller_result *r = calloc(1, sizeof *r);
	char c;

	b->agents = calloc((size_t)b->o.agents, sizeof *b->agents);
	if (!r || !b->agents || callers_init(b))
		_exit(1);
	for (long i = 0; i < b->o.agents; i++)
		snprintf(b->agents[i].id, sizeof b->agents[i].id, "%s-%ld", b->o.prefix, i);
	if (fd_io(go_fd, &c, 1, false))
		_exit(1);
	callers_run(b, caller_main, false);
	(void)fd_io(go_fd, &c, 1, false); /* stop byte, or EOF */
	atomic_store(&b->cmd_stop, 1);
	for (long t = 0; t < b->o.command_threads; t++) {
		const struct cmd_caller *ct = &b->callers[t];

		pthread_join(ct->thread, NULL);
		for (int k = 0; k < N_CMD_KINDS; k++) {
			r->n[k] += ct->n[k];
			r->errors[k] += ct->errors[k];
			r->hist[k].n += ct->hist[k]->n;
			for (size_t i = 0; i < HIST_BUCKETS; i++)
				r->hist[k].count[i] += ct->hist[k]->count[i];
		}
		if (!r->first_error[0])
			memcpy(r->first_error, ct->first_error, sizeof r->first_error);
	}
	_exit(fd_io(result_fd, r, sizeof *r, true) ? 1 : 0);
}

/* Fork the child before anything starts gRPC in this process. */
static int caller_proc_start(struct bench *b)
{
	int go[2], result[2];
	pid_t pid;

	if (pipe(go) || pipe(result)) {
		fprintf(stderr, "aeroarc-bench: pipe: %s\n", strerror(errno));
		return -errno;
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		fprintf(stderr, "aeroarc-bench: fork: %s\n", strerror(errno));
		return -errno;
	}
	if (pid == 0) {
		close(go[1]);
		close(result[0]);
		caller_child(b, go[0], result[1]);
	}
	close(go[0]);
	close(result[1]);
	b->caller_pid = pid;
	b->caller_go = go[1];
	b->caller_result = result[0];
	return 0;
}

/* Stop the child's calls; its figures become callers[0]'s. */
static void caller_proc_stop(struct bench *b)
{
	struct caller_result *r = calloc(1, sizeof *r);
	struct cmd_caller *c = &b->callers[0];
	int status = 0;

	if (!r || fd_io(b->caller_go, "s", 1, true) || fd_io(b->caller_result, r, sizeof *r, false)) {
		snprintf(c->first_error, sizeof c->first_error, "the command process failed");
		c->errors[0]++;
	} else {
		for (int k = 0; k < N_CMD_KINDS; k++) {
			c->n[k] = r->n[k];
			c->errors[k] = r->errors[k];
			*c->hist[k] = r->hist[k];
		}
		if (r->first_error[0])
			memcpy(c->first_error, r->first_error, sizeof c->first_error);
	}
	close(b->caller_go);
	close(b->caller_result);
	waitpid(b->caller_pid, &status, 0);
	b->caller_pid = 0;
	free(r);
}

/* --- setup ------------------------------------------------------------- */

static const char *const kind_names[N_KINDS] = { "ATTITUDE", "GLOBAL_POSITION_INT",
						 "HEARTBEAT" };
static const uint32_t kind_ids[N_KINDS] = { 30, 33, 0 };
static const char *const kind_fields[N_KINDS][9] = {
	{ "time_boot_ms", "roll", "pitch", "yaw", "rollspeed", "pitchspeed", "yawspeed" },
	{ "time_boot_ms", "lat", "lon", "alt", "relative_alt", "vx", "vy", "vz", "hdg" },
	{ "type", "autopilot", "base_mode", "custom_mode", "system_status", "mavlink_version" },
};

/* The same fields as the agent names them (gomavlib Go names, SPEC 13.2):
 * what sink-influxdb3 reads. */
static const char *const kind_fields_go[N_KINDS][9] = {
	{ "TimeBootMs", "Roll", "Pitch", "Yaw", "Rollspeed", "Pitchspeed", "Yawspeed" },
	{ "TimeBootMs", "Lat", "Lon", "Alt", "RelativeAlt", "Vx", "Vy", "Vz", "Hdg" },
	{ "Type", "Autopilot", "BaseMode", "CustomMode", "SystemStatus", "MavlinkVersion" },
};

static int tmpl_build(struct tmpl *t, int kind, const struct bench_opts *o)
{
	size_t nf = (size_t)o->fields;
	struct rc_field *f = calloc(nf ? nf : 1, sizeof *f);
	char (*text)[2][32] = calloc(nf ? nf : 1, sizeof *text);
	uint8_t *raw = malloc((size_t)o->raw_bytes + 1);
	struct rc_frame fr = { .dialect = "common", .msg_id = kind_ids[kind],
			       .msg_name = kind_names[kind], .flight_id = "bench-flight-1" };
	int rc = -ENOMEM;

	if (!f || !text || !raw)
		goto out;
	for (size_t i = 0; i < nf; i++) {
		const char *name = i < 9 ? (o->go_names ? kind_fields_go : kind_fields)[kind][i] : NULL;

		if (name)
			snprintf(text[i][0], sizeof text[i][0], "%s", name);
		else
			snprintf(text[i][0], sizeof text[i][0], "f%zu", i);
		snprintf(text[i][1], sizeof text[i][1], "%ld", 473977420L + (long)i * 1111);
		f[i].key = text[i][0];
		f[i].value = text[i][1];
	}
	for (long i = 0; i < o->raw_bytes; i++)
		raw[i] = i == 0 ? 0xfd : (uint8_t)(i * 31 + kind);
	fr.raw_mavlink = raw;
	fr.raw_mavlink_len = (size_t)o->raw_bytes;
	fr.fields = f;
	fr.n_fields = nf;
	rc = rc_frame_encode(&fr, &t->bytes, &t->len);
out:
	free(f);
	free(text);
	free(raw);
	return rc;
}

/* Field 14 (wal_id) of a's frames: 36 bytes of canonical UUID. */
static void wal_field(struct agent *a, const char *uuid)
{
	a->wal[0] = 14 << 3 | 2;
	a->wal[1] = 36;
	memcpy(a->wal + 2, uuid, 36);
}

/* Check once that assembled bytes decode as the frame we mean to send. */
static int self_check(struct bench *b)
{
	struct agent a = { .w = NULL };
	Aeroarc__Agent__V1__AgentStreamMessage *env = NULL;
	Aeroarc__Agent__V1__TelemetryFrame *f;
	grpc_byte_buffer_reader r;
	grpc_byte_buffer *bb;
	grpc_slice s;
	bool good;

	snprintf(a.id, sizeof a.id, "check");
	if (ident_build(&a, "sess-check"))
		return -ENOMEM;
	wal_field(&a, "01234567-89ab-4cde-8f01-23456789abcd");
	bb = frame_bb(b, &a, 12345, 1700000000123456789LL);
	grpc_byte_buffer_reader_init(&r, bb);
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	if (b->o.multiplexed) {
		env = aeroarc__agent__v1__agent_stream_message__unpack(NULL, GRPC_SLICE_LENGTH(s),
									GRPC_SLICE_START_PTR(s));
		f = env && env->payload_case ==
				   AEROARC__AGENT__V1__AGENT_STREAM_MESSAGE__PAYLOAD_TELEMETRY_FRAME
			    ? env->telemetry_frame
			    : NULL;
	} else {
		f = aeroarc__agent__v1__telemetry_frame__unpack(NULL, GRPC_SLICE_LENGTH(s),
								GRPC_SLICE_START_PTR(s));
	}
	good = f && f->seq == 12345 && f->sent_at_unix_ns == 1700000000123456789LL &&
	       !strcmp(f->agent_id, "check") && !strcmp(f->session_id, "sess-check") &&
	       f->n_fields == (size_t)b->o.fields && f->raw_mavlink.len == (size_t)b->o.raw_bytes;
	if (b->o.multiplexed)
		good = good && f->msg_name[0] &&
		       !strcmp(f->wal_id, "01234567-89ab-4cde-8f01-23456789abcd");
	if (env)
		aeroarc__agent__v1__agent_stream_message__free_unpacked(env, NULL);
	else if (f)
		aeroarc__agent__v1__telemetry_frame__free_unpacked(f, NULL);
	grpc_slice_unref(s);
	grpc_byte_buffer_destroy(bb);
	free(a.ident);
	return good ? 0 : -EPROTO;
}

static int agents_init(struct bench *b)
{
	const struct bench_opts *o = &b->o;

	b->agents = calloc((size_t)o->agents, sizeof *b->agents);
	b->workers = calloc((size_t)o->threads, sizeof *b->workers);
	if (!b->agents || !b->workers)
		return -ENOMEM;
	for (long t = 0; t < o->threads; t++) {
		struct worker *w = &b->workers[t];

		w->b = b;
		w->cq = grpc_completion_queue_create_for_next(NULL);
		w->agents = calloc((size_t)(o->agents / o->threads + 1), sizeof *w->agents);
		if (!w->agents)
			return -ENOMEM;
	}
	for (long i = 0; i < o->agents; i++) {
		struct agent *a = &b->agents[i];
		struct worker *w = &b->workers[i % o->threads];
		const char *auth;

		a->w = w;
		a->ch = b->chans[i % b->n_chans];
		a->details = grpc_empty_slice();
		snprintf(a->id, sizeof a->id, "%s-%ld", o->prefix, i);
		a->md[0].key = grpc_slice_from_static_string(RC_AGENT_ID_HEADER);
		a->md[0].value = grpc_slice_from_copied_string(a->id);
		a->n_md = 1;
		if ((auth = rc_channel_authorization(a->ch))) {
			a->md[1].key = grpc_slice_from_static_string("authorization");
			a->md[1].value = grpc_slice_from_static_string(auth);
			a->n_md = 2;
		}
		if (!(a->sent_at = calloc((size_t)o->window, sizeof *a->sent_at)))
			return -ENOMEM;
		if (o->multiplexed) {
			char uuid[37];

			if (rc_uuid_v4(uuid))
				return -EIO;
			wal_field(a, uuid);
		}
		w->agents[w->n_agents++] = a;
	}
	return 0;
}

static void bench_free(struct bench *b)
{
	for (long i = 0; b->agents && i < b->o.agents; i++) {
		struct agent *a = &b->agents[i];

		grpc_slice_unref(a->md[0].value);
		if (a->session_md)
			grpc_slice_unref(a->md[a->n_md - 1].value);
		free(a->sent_at);
		free(a->ident);
		grpc_slice_unref(a->details);
	}
	for (long t = 0; b->workers && t < b->o.threads; t++) {
		struct worker *w = &b->workers[t];

		if (w->cq) {
			grpc_completion_queue_shutdown(w->cq);
			while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
							  NULL).type != GRPC_QUEUE_SHUTDOWN)
				;
			grpc_completion_queue_destroy(w->cq);
		}
		free(w->agents);
	}
	for (int k = 0; k < N_KINDS; k++)
		free(b->tmpl[k].bytes);
	for (long c = 0; b->chans && c < b->n_chans; c++)
		rc_close(b->chans[c]);
	for (long t = 0; b->callers && t < b->o.command_threads; t++)
		for (int k = 0; k < N_CMD_KINDS; k++)
			free(b->callers[t].hist[k]);
	free(b->callers);
	if (b->ctl)
		rc_close(b->ctl);
	free(b->chans);
	free(b->agents);
	free(b->workers);
	if (b->acked_log)
		fclose(b->acked_log);
}

/* --- command line and report ------------------------------------------- */

static void usage(FILE *out)
{
	fputs("usage: aeroarc-bench [--target HOST:PORT] [--agents N] [--frames F]\n"
	      "                     [--window W] [--channels C] [--fields K] [--raw-bytes B]\n"
	      "                     [--prefix P] [--token T] [--hold S] [--acked-log FILE] [--rate R]\n"
	      "                     [--threads T] [--scenario NAME] [--server-pid PID]\n"
	      "                     [--protocol seed|multiplexed] [--field-names snake|go]\n"
	      "                     [--ca FILE] [--server-name NAME] [--cert FILE --key FILE]\n"
	      "                     [--open-first] [--open-on-register] [--reconcile] [--commands R]\n"
	      "                     [--command-kinds aircraft,durable] [--command-seconds S]\n"
	      "                     [--command-threads T] [--command-process] [--operator ID]\n"
	      "  N agents (default 10) each Register, open TelemetryStream and send F frames\n"
	      "  (default 10000) keeping at most W unacked (default 100), over C connections\n"
	      "  (default: one per agent). Frames carry K fields (8) and B raw bytes (64).\n"
	      "  --rate R paces each agent to at most R frames a second (a soak, not a\n"
	      "  race; default: as fast as acks allow).\n"
	      "  --hold keeps every stream open S s after its last ack; --acked-log writes\n"
	      "  one 'agent_id seq' line per OK ack; --threads sets completion-queue threads\n"
	      "  (default 2). Prints one JSON line (loadgen's keys); exits 1 if a\n"
	      "  registration or stream failed, 2 on bad usage.\n"
	      "  --scenario sets agents, frames, window, channels and hold to one of\n"
	      "  docs/benchmarks.md's scenarios (options after it override): throughput,\n"
	      "  durable, redis (the relay's side is yours to set), many, light, scale.\n"
	      "  --server-pid adds the server's CPU seconds during the run (in all and\n"
	      "  per 100,000 acked frames) and its peak RSS (sampled every 200 ms) to\n"
	      "  the line: server_cpu_s, server_cpu_s_per_100k, server_peak_rss_kb.\n"
	      "  --protocol multiplexed (default seed) speaks generation 2 (SPEC section 9):\n"
	      "  aero-arc-session-id on every stream, frames wrapped in AgentStreamMessage\n"
	      "  with a random wal_id per agent run, acks read from RelayStreamMessage;\n"
	      "  the line then has \"protocol\":\"multiplexed\".\n"
	      "  --field-names go names the fields as agents do (Lat, TimeBootMs: what\n"
	      "  sink-influxdb3 reads) instead of snake case (lat, time_boot_ms).\n"
	      "Commands (SPEC sections 10 and 12; --protocol multiplexed):\n"
	      "  --ca FILE connects over TLS trusting FILE (--server-name: the name to check\n"
	      "  the relay's certificate against, e.g. localhost). --cert/--key: the control\n"
	      "  client's certificate (an allowed identity of [control]).\n"
	      "  --open-first opens every stream (headers only) before the clock starts;\n"
	      "  frames then start together and \"seconds\" ends at the last agent's last\n"
	      "  ack. --reconcile (implies --open-first, needs --cert) then reconciles each\n"
	      "  session with an authoritative ClearOperationContext: with [control] on, a\n"
	      "  new session's frames are held until that.\n"
	      "  --commands R (needs --cert; implies --reconcile) calls R commands per\n"
	      "  second in all, from --command-threads threads (default 4), each to a\n"
	      "  random agent, kinds taken in turn from --command-kinds (default\n"
	      "  aircraft,durable): aircraft = SendAircraftCommand ARM, durable =\n"
	      "  ExchangeCommand of the API's ARM, digested as SPEC 12.3, operator\n"
	      "  --operator (default bench-operator), aircraft id = agent id (the relay's\n"
	      "  agent_mappings_file must say \"<agent> <operator> <agent>\"). Agents then\n"
	      "  register with execution_capabilities mavlink_command_v1 and answer as an\n"
	      "  agent whose aircraft obeys: ACCEPTED; evidence {acknowledged}; APPLIED.\n"
	      "  Commands run from the start of the frames until every frame is acked\n"
	      "  and at least --command-seconds S (default 0) have passed; streams stay\n"
	      "  open until then (--frames 1 with S > 0 measures idle streams). The line\n"
	      "  adds, per kind: cmd_<kind>_n, cmd_<kind>_p50_us, cmd_<kind>_p99_us (the\n"
	      "  round trip of the call), cmd_<kind>_errors, and commands_s, cmd_first_error.\n"
	      "  A failed command or reconcile makes the exit status 1.\n"
	      "  --open-on-register opens each agent's stream as soon as its Register\n"
	      "  returns, as an agent does (a connect storm: Registers and stream opens\n"
	      "  interleaved); by default every agent registers first, then streams open,\n"
	      "  so with many agents the last streams open long after their Register\n"
	      "  (and may find the session expired: [route] ttl_s).\n"
	      "  --command-process runs the calling threads in a child process (as an API\n"
	      "  would be): gRPC's poller is process-wide, so callers beside the agents\n"
	      "  would also poll, and slow, the agents' connections.\n",
	      out);
}

static bool num_opt(const char *name, const char *s, long min, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	if (errno || end == s || *end || *out < min) {
		fprintf(stderr, "aeroarc-bench: %s: invalid value \"%s\" (expected an integer >= %ld)\n",
			name, s, min);
		return false;
	}
	return true;
}

/* "aircraft,durable" -> bits of enum cmd_kind. */
static bool parse_kinds(const char *v, unsigned *out)
{
	char buf[64], *save = NULL;

	*out = 0;
	snprintf(buf, sizeof buf, "%s", v);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k = 0;

		while (k < N_CMD_KINDS && strcmp(t, cmd_kind_names[k]))
			k++;
		if (k == N_CMD_KINDS) {
			fprintf(stderr, "aeroarc-bench: --command-kinds: \"%s\" is neither aircraft nor "
					"durable\n", t);
			return false;
		}
		*out |= 1u << k;
	}
	if (!*out)
		fprintf(stderr, "aeroarc-bench: --command-kinds: empty\n");
	return *out != 0;
}

static bool apply_scenario(struct bench_opts *o, const char *name)
{
	for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
		const struct scenario *sc = &scenarios[i];

		if (strcmp(sc->name, name))
			continue;
		o->scenario = sc->name;
		o->agents = sc->agents;
		o->frames = sc->frames;
		o->window = sc->window;
		o->channels = sc->channels;
		o->hold_s = sc->hold_s;
		return true;
	}
	fprintf(stderr, "aeroarc-bench: --scenario: unknown \"%s\" (throughput, durable, redis, "
			"many, light, scale)\n", name);
	return false;
}

static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		bool ok = true;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		}
		if (!strcmp(a, "--open-first") || !strcmp(a, "--reconcile")) {
			o->open_first = true;
			o->reconcile = o->reconcile || !strcmp(a, "--reconcile");
			continue;
		}
		if (!strcmp(a, "--open-on-register")) {
			o->open_on_register = true;
			continue;
		}
		if (!strcmp(a, "--command-process")) {
			o->command_process = true;
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "aeroarc-bench: %s needs a value (see --help)\n", a);
			return -EINVAL;
		}
		v = argv[++i];
		if (!strcmp(a, "--target"))
			o->target = v;
		else if (!strcmp(a, "--prefix"))
			o->prefix = v;
		else if (!strcmp(a, "--token"))
			o->token = v;
		else if (!strcmp(a, "--acked-log"))
			o->acked_log = v;
		else if (!strcmp(a, "--ca"))
			o->ca = v;
		else if (!strcmp(a, "--server-name"))
			o->server_name = v;
		else if (!strcmp(a, "--cert"))
			o->cert = v;
		else if (!strcmp(a, "--key"))
			o->key = v;
		else if (!strcmp(a, "--operator"))
			o->operator_id = v;
		else if (!strcmp(a, "--commands"))
			ok = num_opt(a, v, 0, &o->commands);
		else if (!strcmp(a, "--command-seconds"))
			ok = num_opt(a, v, 0, &o->command_seconds);
		else if (!strcmp(a, "--command-threads"))
			ok = num_opt(a, v, 1, &o->command_threads);
		else if (!strcmp(a, "--command-kinds"))
			ok = parse_kinds(v, &o->kinds);
		else if (!strcmp(a, "--agents"))
			ok = num_opt(a, v, 1, &o->agents);
		else if (!strcmp(a, "--frames"))
			ok = num_opt(a, v, 1, &o->frames);
		else if (!strcmp(a, "--rate"))
			ok = num_opt(a, v, 0, &o->rate);
		else if (!strcmp(a, "--window"))
			ok = num_opt(a, v, 1, &o->window);
		else if (!strcmp(a, "--fields"))
			ok = num_opt(a, v, 0, &o->fields);
		else if (!strcmp(a, "--raw-bytes"))
			ok = num_opt(a, v, 0, &o->raw_bytes);
		else if (!strcmp(a, "--channels"))
			ok = num_opt(a, v, 0, &o->channels);
		else if (!strcmp(a, "--hold"))
			ok = num_opt(a, v, 0, &o->hold_s);
		else if (!strcmp(a, "--threads"))
			ok = num_opt(a, v, 1, &o->threads);
		else if (!strcmp(a, "--server-pid"))
			ok = num_opt(a, v, 1, &o->server_pid);
		else if (!strcmp(a, "--scenario"))
			ok = apply_scenario(o, v);
		else if (!strcmp(a, "--protocol")) {
			ok = !strcmp(v, "seed") || !strcmp(v, "multiplexed");
			o->multiplexed = !strcmp(v, "multiplexed");
			if (!ok)
				fprintf(stderr, "aeroarc-bench: --protocol: \"%s\" is neither seed nor "
						"multiplexed\n", v);
		}
		else if (!strcmp(a, "--field-names")) {
			ok = !strcmp(v, "snake") || !strcmp(v, "go");
			o->go_names = !strcmp(v, "go");
			if (!ok)
				fprintf(stderr, "aeroarc-bench: --field-names: \"%s\" is neither snake nor "
						"go\n", v);
		}
		else {
			fprintf(stderr, "aeroarc-bench: unknown option \"%s\" (see --help)\n", a);
			return -EINVAL;
		}
		if (!ok)
			return -EINVAL;
	}
	if (strlen(o->prefix) > 64) {
		fprintf(stderr, "aeroarc-bench: --prefix is longer than 64 bytes\n");
		return -EINVAL;
	}
	if (o->fields > 100000 || o->raw_bytes > (16L << 20)) {
		fprintf(stderr, "aeroarc-bench: --fields at most 100000, --raw-bytes at most 16 MiB\n");
		return -EINVAL;
	}
	if (o->commands > 0)
		o->reconcile = o->open_first = true;
	if (o->reconcile && (!o->cert || !o->key || !o->multiplexed)) {
		fprintf(stderr, "aeroarc-bench: --commands and --reconcile need --cert, --key and "
				"--protocol multiplexed\n");
		return -EINVAL;
	}
	if (!o->cert != !o->key || (o->cert && !o->ca)) {
		fprintf(stderr, "aeroarc-bench: --cert and --key go together, with --ca\n");
		return -EINVAL;
	}
	if (o->command_seconds > 0 && o->commands <= 0) {
		fprintf(stderr, "aeroarc-bench: --command-seconds needs --commands\n");
		return -EINVAL;
	}
	if (o->threads > o->agents)
		o->threads = o->agents;
	if (o->channels > o->agents)
		o->channels = o->agents; /* more would sit idle */
	return 0;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* With --server-pid: what the run cost the server, and the scenario. */
static void report_server(const struct bench *b, const struct server_cost *cost, long acked)
{
	if (b->o.scenario) {
		printf(",\"scenario\":");
		json_string(b->o.scenario);
	}
	if (b->o.multiplexed)
		printf(",\"protocol\":\"multiplexed\"");
	if (!cost)
		return;
	printf(",\"server_pid\":%ld,\"server_cpu_s\":%.2f,\"server_cpu_s_per_100k\":%.3f,"
	       "\"server_peak_rss_kb\":%ld",
	       b->o.server_pid, cost->cpu_s, acked > 0 ? cost->cpu_s * 1e5 / (double)acked : 0.0,
	       cost->peak_rss_kb);
}

/* With --commands or --reconcile: the command round trips, per kind.
 * Returns how many commands (and reconciles) failed. */
static long report_commands(const struct bench *b, double cmd_secs)
{
	struct hist *h = calloc(1, sizeof *h);
	long failed = 0, reconcile_errors = 0, answered = 0, dropped = 0;
	const char *first = "";

	if (!b->callers || !h) {
		free(h);
		return 0;
	}
	for (long t = 0; t < b->o.threads; t++) {
		answered += b->workers[t].commands_answered;
		dropped += b->workers[t].replies_dropped;
	}
	for (long t = 0; t < b->o.command_threads; t++) {
		reconcile_errors += b->callers[t].reconcile_errors;
		if (!*first)
			first = b->callers[t].first_error;
	}
	printf(",\"reconcile_errors\":%ld,\"agent_answers\":%ld,\"agent_answers_dropped\":%ld",
	       reconcile_errors, answered, dropped);
	failed += reconcile_errors;
	if (b->o.commands > 0) {
		printf(",\"commands_per_s\":%ld,\"commands_s\":%.3f", b->o.commands, cmd_secs);
		for (int k = 0; k < N_CMD_KINDS; k++) {
			long n = 0, errors = 0;

			if (!(b->o.kinds & (1u << k)))
				continue;
			memset(h, 0, sizeof *h);
			for (long t = 0; t < b->o.command_threads; t++) {
				const struct cmd_caller *c = &b->callers[t];

				n += c->n[k];
				errors += c->errors[k];
				h->n += c->hist[k]->n;
				for (size_t i = 0; i < HIST_BUCKETS; i++)
					h->count[i] += c->hist[k]->count[i];
			}
			printf(",\"cmd_%s_n\":%ld,\"cmd_%s_p50_us\":%.0f,\"cmd_%s_p99_us\":%.0f,"
			       "\"cmd_%s_errors\":%ld",
			       cmd_kind_names[k], n, cmd_kind_names[k], hist_pct(h, 50),
			       cmd_kind_names[k], hist_pct(h, 99), cmd_kind_names[k], errors);
			failed += errors;
		}
	}
	printf(",\"cmd_first_error\":");
	json_string(first);
	if (first[0])
		fprintf(stderr, "aeroarc-bench: first command error: %s\n", first);
	free(h);
	return failed;
}

/* Main thread, after the workers joined: sum them up and print loadgen's
 * line (plus report_server's keys). */
static int report(struct bench *b, double secs, const struct server_cost *cost, double cmd_secs)
{
	struct hist *h = calloc(1, sizeof *h); /* 340 KB: not on the stack */
	long acks[4] = { 0 }, reg_err = 0, stream_err = 0, acked, cmd_failed;
	const char *first = "";

	if (!h) {
		fprintf(stderr, "aeroarc-bench: out of memory\n");
		return 1;
	}

	for (long t = 0; t < b->o.threads; t++) {
		struct worker *w = &b->workers[t];

		for (int i = 0; i < 4; i++)
			acks[i] += w->acks[i];
		reg_err += w->register_errors;
		stream_err += w->stream_errors;
		if (!*first)
			first = w->first_error;
		h->n += w->hist.n;
		for (size_t i = 0; i < HIST_BUCKETS; i++)
			h->count[i] += w->hist.count[i];
	}
	acked = acks[0] + acks[1] + acks[2] + acks[3];
	printf("{\"agents\":%ld,\"frames_per_agent\":%ld,\"window\":%ld,\"seconds\":%.3f,"
	       "\"acked\":%ld,\"acked_per_s\":%.0f,\"ok\":%ld,\"temporary\":%ld,"
	       "\"permanent\":%ld,\"retry\":%ld,\"p50_us\":%.0f,\"p99_us\":%.0f,"
	       "\"p999_us\":%.0f,\"register_errors\":%ld,\"stream_errors\":%ld,"
	       "\"channels\":%ld,\"threads\":%ld,\"first_error\":",
	       b->o.agents, b->o.frames, b->o.window, secs, acked, secs > 0 ? acked / secs : 0.0,
	       acks[0], acks[1], acks[2], acks[3], hist_pct(h, 50), hist_pct(h, 99),
	       hist_pct(h, 99.9), reg_err, stream_err, b->n_chans, b->o.threads);
	json_string(first);
	report_server(b, cost, acked);
	cmd_failed = report_commands(b, cmd_secs);
	printf("}\n");
	free(h);
	if (first[0])
		fprintf(stderr, "aeroarc-bench: first error: %s\n", first);
	return reg_err || stream_err || cmd_failed ? 1 : 0;
}

/* With --hold: wait until every registered agent is fully acked (or a
 * stream failed), keep them open hold_s seconds, then let them close. */
static void hold_streams(struct bench *b, int64_t t0, double *cmd_secs)
{
	int64_t give_up = clock_ns(CLOCK_MONOTONIC) + (int64_t)HOLD_WAIT_S * 1000000000;
	int64_t cmd_until = t0 + (int64_t)b->o.command_seconds * 1000000000;
	struct timespec tick = { 0, 10 * 1000000 }, hold = { b->o.hold_s, 0 };

	while (((atomic_load(&b->all_acked) < atomic_load(&b->registered) &&
		 clock_ns(CLOCK_MONOTONIC) < give_up) ||
		clock_ns(CLOCK_MONOTONIC) < cmd_until) &&
	       atomic_load(&b->failures) == 0)
		nanosleep(&tick, NULL);
	if (b->o.commands > 0) { /* every stream still open: stop the calls first */
		atomic_store(&b->cmd_stop, 1);
		if (b->caller_pid)
			caller_proc_stop(b);
		else
			for (long t = 0; t < b->o.command_threads; t++)
				pthread_join(b->callers[t].thread, NULL);
		*cmd_secs = (double)(clock_ns(CLOCK_MONOTONIC) - t0) / 1e9;
	}
	if (b->o.hold_s > 0) {
		fprintf(stderr, "holding %ld open streams for %ld s\n", atomic_load(&b->all_acked),
			b->o.hold_s);
		nanosleep(&hold, NULL);
	}
	atomic_store(&b->release, 1);
}

/* --open-first: wait (HOLD_WAIT_S at most) until every registered agent's
 * stream is open, then reconcile them if asked. */
static int open_streams(struct bench *b)
{
	int64_t give_up = clock_ns(CLOCK_MONOTONIC) + (int64_t)HOLD_WAIT_S * 1000000000;
	struct timespec tick = { 0, 1000000 };
	long errors = 0;

	while (atomic_load(&b->opened) < atomic_load(&b->registered) &&
	       atomic_load(&b->failures) == 0 && clock_ns(CLOCK_MONOTONIC) < give_up)
		nanosleep(&tick, NULL);
	if (atomic_load(&b->opened) < atomic_load(&b->registered)) {
		fprintf(stderr, "aeroarc-bench: only %ld of %ld streams opened\n",
			atomic_load(&b->opened), atomic_load(&b->registered));
		return -EIO;
	}
	if (!b->o.reconcile)
		return 0;
	callers_run(b, reconcile_main, true);
	for (long t = 0; t < b->o.command_threads; t++)
		errors += b->callers[t].reconcile_errors;
	if (errors)
		fprintf(stderr, "aeroarc-bench: %ld reconciles failed: %s\n", errors,
			b->callers[0].first_error[0] ? b->callers[0].first_error : "(see the line)");
	return 0;
}

static int connect_all(struct bench *b)
{
	struct rc_opts ro = { .bearer_token = b->o.token, .root_cert_file = b->o.ca,
			      .server_name_override = b->o.server_name };
	struct rc_status st;

	b->n_chans = b->o.channels > 0 ? b->o.channels : b->o.agents;
	b->chans = calloc((size_t)b->n_chans, sizeof *b->chans);
	if (!b->chans)
		return -ENOMEM;
	for (long c = 0; c < b->n_chans; c++) {
		if (!(b->chans[c] = rc_connect_opts(b->o.target, &ro, &st))) {
			fprintf(stderr, "aeroarc-bench: %s\n", st.message);
			b->n_chans = c;
			return -EINVAL;
		}
	}
	return 0;
}

static int setup(struct bench *b)
{
	int rc;

	if ((rc = connect_all(b)) || (rc = callers_init(b)))
		return rc;
	for (int k = 0; k < N_KINDS; k++)
		if ((rc = tmpl_build(&b->tmpl[k], k, &b->o)))
			goto nomem;
	if ((rc = self_check(b))) {
		fprintf(stderr, "aeroarc-bench: internal error: assembled frame does not decode\n");
		return rc;
	}
	if ((rc = agents_init(b)))
		goto nomem;
	if (b->o.acked_log && !(b->acked_log = fopen(b->o.acked_log, "w"))) {
		fprintf(stderr, "aeroarc-bench: %s: %s\n", b->o.acked_log, strerror(errno));
		return -errno;
	}
	return 0;
nomem:
	fprintf(stderr, "aeroarc-bench: out of memory\n");
	return rc;
}

int main(int argc, char **argv)
{
	struct bench b = { .o.target = NULL };
	struct server_probe *probe = NULL;
	struct server_cost cost = { 0 };
	long started = 0;
	int64_t t0;
	double secs, cmd_secs = 0;
	int rc = 2;

	b.o = (struct bench_opts){ .target = "127.0.0.1:50051", .agents = 10, .frames = 10000,
				   .window = 100, .fields = 8, .raw_bytes = 64,
				   .prefix = "bench-agent", .threads = 2,
				   .operator_id = "bench-operator", .command_threads = 4,
				   .kinds = 1u << CMD_AIRCRAFT | 1u << CMD_DURABLE };
	if (parse_opts(argc, argv, &b.o))
		return 2;
	b.holding = b.o.hold_s > 0 || b.o.commands > 0;
	if (b.o.commands > 0 && b.o.command_process && caller_proc_start(&b))
		goto out;
	if (setup(&b))
		goto out;
	if (b.o.server_pid) {
		char err[160];

		if (!(probe = server_probe_start((pid_t)b.o.server_pid, err, sizeof err))) {
			fprintf(stderr, "aeroarc-bench: --server-pid: %s\n", err);
			goto out;
		}
	}
	pthread_barrier_init(&b.barrier, NULL, (unsigned)b.o.threads + 1);
	for (; started < b.o.threads; started++)
		if (pthread_create(&b.workers[started].thread, NULL, worker_main, &b.workers[started]))
			break;
	if (started < b.o.threads) {
		/* the barrier counts every thread: without them all, nothing can go on */
		fprintf(stderr, "aeroarc-bench: cannot start worker threads\n");
		exit(1);
	}
	pthread_barrier_wait(&b.barrier);
	t0 = clock_ns(CLOCK_MONOTONIC);
	pthread_barrier_wait(&b.barrier);
	if (b.o.open_first) {
		if (open_streams(&b))
			atomic_store(&b.failures, 1); /* no hold: let the streams end */
		t0 = clock_ns(CLOCK_MONOTONIC);
		atomic_store(&b.go, 1);
	}
	if (b.o.commands > 0 && b.caller_pid)
		(void)fd_io(b.caller_go, "g", 1, true); /* a failure shows at the stop */
	else if (b.o.commands > 0)
		callers_run(&b, caller_main, false);
	if (b.holding)
		hold_streams(&b, t0, &cmd_secs);
	for (long t = 0; t < b.o.threads; t++)
		pthread_join(b.workers[t].thread, NULL);
	secs = (double)(clock_ns(CLOCK_MONOTONIC) - t0) / 1e9;
	if (b.o.open_first && atomic_load(&b.last_end_ns) > t0)
		secs = (double)(atomic_load(&b.last_end_ns) - t0) / 1e9;
	if (probe && server_probe_stop(probe, &cost) < 0)
		fprintf(stderr, "aeroarc-bench: the server (pid %ld) exited during the run\n",
			b.o.server_pid);
	rc = report(&b, secs, b.o.server_pid ? &cost : NULL, cmd_secs);
	pthread_barrier_destroy(&b.barrier);
out:
	bench_free(&b);
	return rc;
}
