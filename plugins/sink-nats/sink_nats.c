/*
 * sink_nats.c - the sink-nats plugin: every frame published to a NATS
 * JetStream subject built from a template, as the envelope JSON or the
 * original protobuf bytes, with headers that let JetStream drop resends
 * (Nats-Msg-Id = <agent_id>:<seq>, or <agent_id>:<wal_id>:<seq> when the
 * frame has a wal_id: generation-2 seqs restart with each WAL generation)
 * and carry the envelope's identifiers (Aero-* headers). A batch is published asynchronously and
 * a frame is AERO_OK only once JetStream acknowledged storing it.
 * Config values are read through the host's typed readers (ABI 1.1) and
 * checked as a whole by nats_check, which --check runs too.
 * check/create/destroy run on the main thread, write_batch on the sink thread;
 * libnats' own threads enter through pub_batch.c and nats_conn.c.
 *
 * libnats keeps process-wide threads and state; it cannot be shut down by
 * one instance while another may use it, so no instance calls nats_Close()
 * (libnats cleans up at exit), and the plugin is linked -z nodelete so
 * unloading it never unmaps code those threads run.
 */
#include <aeroarc/plugin.h>

#include "config_check.h"
#include "frame_ext.h"
#include "mono_clock.h"
#include "warn_limit.h"

#include "nats_conn.h"
#include "pub_batch.h"
#include "subject_template.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    INITIAL_BUF = 16 * 1024,
    /* Rendered subjects longer than this are refused: the server closes a
     * connection whose control line passes its limit (4 KiB by default). */
    MAX_SUBJECT = 2048,
    /* Header values built from frame strings (agent and session ids are
     * 1-128 bytes by the relay's own rules). */
    MAX_ID = 256,
    STREAM_NAME_MAX = 255,
};

static const aero_config_key nats_keys[] = {
    {.name = "url", .type = AERO_KEY_STRING, .default_value = "nats://127.0.0.1:4222",
     .help = "NATS server URL, or a comma-separated list of them "
             "(nats://, tls://; user:pass@ in a URL works too)"},
    {.name = "subject", .type = AERO_KEY_STRING,
     .default_value = "telemetry.{agent_id}.{msg_name}",
     .help = "subject template; placeholders {agent_id} {msg_name} {flight_id} "
             "{dialect}, each value made a single valid token"},
    {.name = "format", .type = AERO_KEY_ENUM, .default_value = "json",
     .choices = "json|protobuf",
     .help = "message body: the envelope JSON, or the frame's original "
             "TelemetryFrame protobuf bytes"},
    {.name = "stream", .type = AERO_KEY_STRING, .default_value = "",
     .help = "JetStream stream that must store the frames (sent as "
             "Nats-Expected-Stream); empty: whichever stream captures the subject"},
    {.name = "create_stream", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "create `stream` if it does not exist, capturing the subject "
             "template's static prefix (e.g. telemetry.>)"},
    {.name = "stream_storage", .type = AERO_KEY_ENUM, .default_value = "file",
     .choices = "file|memory", .help = "create_stream: storage of the new stream"},
    {.name = "stream_replicas", .type = AERO_KEY_INT, .default_value = "1",
     .min = 1, .max = 5, .help = "create_stream: replicas of the new stream"},
    {.name = "stream_max_age_s", .type = AERO_KEY_INT, .default_value = "0",
     .min = 0, .max = INT64_MAX / 1000000000,
     .help = "create_stream: drop messages older than this; 0 = keep"},
    {.name = "stream_max_bytes", .type = AERO_KEY_INT, .default_value = "0",
     .min = 0, .max = INT64_MAX, .help = "create_stream: size limit; 0 = none"},
    {.name = "stream_discard", .type = AERO_KEY_ENUM, .default_value = "new",
     .choices = "new|old",
     .help = "create_stream: at the size/age limit refuse new frames (acked "
             "RETRY_WITH_BACKOFF) or delete the oldest"},
    {.name = "duplicate_window_s", .type = AERO_KEY_INT, .default_value = "120",
     .min = 1, .max = 7 * 24 * 3600,
     .help = "create_stream: how long JetStream remembers message ids to drop resends"},
    {.name = "publish_timeout_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .min = 100, .max = 600000,
     .help = "longest wait for a batch's acknowledgements; unacked frames are retried"},
    {.name = "max_pending", .type = AERO_KEY_INT, .default_value = "4096",
     .min = 1, .max = 1000000, .help = "asynchronous publishes in flight at most"},
    {.name = "user", .type = AERO_KEY_STRING, .default_value = "",
     .help = "user name (with password)"},
    {.name = "password", .type = AERO_KEY_STRING, .default_value = "",
     .help = "password of user"},
    {.name = "token", .type = AERO_KEY_STRING, .default_value = "",
     .help = "authentication token (instead of user/password)"},
    {.name = "creds_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "NATS credentials file (JWT and NKey seed)"},
    {.name = "tls", .type = AERO_KEY_BOOL, .default_value = "false",
     .help = "require TLS (implied by tls:// URLs, ca_file and cert_file)"},
    {.name = "ca_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM CA bundle to verify the server; empty: the system's"},
    {.name = "cert_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM client certificate (with key_file)"},
    {.name = "key_file", .type = AERO_KEY_STRING, .default_value = "",
     .help = "PEM private key of cert_file"},
    {.name = "tls_hostname", .type = AERO_KEY_STRING, .default_value = "",
     .help = "name to verify the server certificate against; empty: the URL's host"},
    {.name = "reconnect_wait_ms", .type = AERO_KEY_INT, .default_value = "250",
     .min = 10, .max = 600000,
     .help = "first wait before reconnecting; doubles per failed round"},
    {.name = "reconnect_max_wait_ms", .type = AERO_KEY_INT, .default_value = "5000",
     .min = 10, .max = 600000, .help = "cap of the reconnect wait"},
    {.name = "ping_interval_s", .type = AERO_KEY_INT, .default_value = "10",
     .min = 1, .max = 3600,
     .help = "keepalive ping; two unanswered pings count as a lost server"},
};

struct sink_nats {
    const aero_host *host;
    struct subject_template subject;
    int format_protobuf;     /* index in "json|protobuf" */
    const char *stream;      /* config string (host-owned); "" = any */
    int create_stream;
    char filter[SUBJECT_TEMPLATE_MAX + 2]; /* create_stream: stream subjects */
    int storage_memory, discard_old; /* indexes in "file|memory", "new|old" */
    int64_t replicas, max_age_s, max_bytes, dup_window_s;
    int64_t timeout_ms;

    struct nats_conn conn;
    struct pub_batch batch;
    int batch_ok;            /* batch initialised */
    jsPubOptions popts;

    char *buf;               /* JSON body, reused */
    size_t cap;
    char *hbuf;              /* one header value (header_text), reused */
    size_t hcap;
    char subj[MAX_SUBJECT + 1];

    aero_metric *m_published, *m_acked, *m_duplicates, *m_errors;
    struct warn_limit warn;   /* rate limit of repeated warnings */
};

/* ------------------------------------------------------------ helpers */

static void metric_add(struct sink_nats *s, aero_metric *m, uint64_t delta)
{
    if (m != NULL && delta > 0)
        s->host->metric_add(m, delta);
}

/* Failures repeat every batch while NATS is away: one warning a second,
 * saying how many were swallowed. Sink thread only. */
#define warn_limited(s, ...) warn_limit_log(&(s)->warn, (s)->host, "sink-nats", __VA_ARGS__)

static const char *key_str(const aero_host *h, const char *key)
{
    return config_check_str(h, key);
}

/* A frame string as a NUL-terminated header value: control bytes, which
 * would break the header block, become '_'. */
static void header_text(char *dst, aero_str v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        dst[i] = c < 0x20 || c == 0x7f ? '_' : (char)c;
    }
    dst[v.len] = '\0';
}

/* A header from a frame string of any length, through header_text into
 * s->hbuf. NATS_OK, or NATS_NO_MEMORY. */
static natsStatus set_header(struct sink_nats *s, natsMsg *m, const char *name,
                             aero_str v)
{
    if (v.len >= s->hcap) {
        char *p = realloc(s->hbuf, v.len + 1);
        if (p == NULL)
            return NATS_NO_MEMORY;
        s->hbuf = p;
        s->hcap = v.len + 1;
    }
    header_text(s->hbuf, v);
    return natsMsgHeader_Set(m, name, s->hbuf);
}

/* The headers of the ABI 1.1 fields (docs/sinks/nats.md): Aero-Protocol
 * always, the others when the frame has a value for them. */
static natsStatus set_ext_headers(struct sink_nats *s, natsMsg *m,
                                  const struct frame_ext *x)
{
    char ver[16];
    natsStatus st = natsMsgHeader_Set(m, "Aero-Protocol",
                                      frame_ext_protocol_name(x->protocol));
    if (st == NATS_OK && x->wal_id.len > 0)
        st = set_header(s, m, "Aero-Wal-Id", x->wal_id);
    if (st == NATS_OK && x->intent_id.len > 0)
        st = set_header(s, m, "Aero-Intent-Id", x->intent_id);
    if (st == NATS_OK && frame_ext_has_intent_version(x)) {
        snprintf(ver, sizeof(ver), "%" PRIu32, x->intent_version);
        st = natsMsgHeader_Set(m, "Aero-Intent-Version", ver);
    }
    if (st == NATS_OK && x->relay_id.len > 0)
        st = set_header(s, m, "Aero-Relay-Id", x->relay_id);
    if (st == NATS_OK && x->operator_id.len > 0)
        st = set_header(s, m, "Aero-Operator-Id", x->operator_id);
    if (st == NATS_OK && x->aircraft_id.len > 0)
        st = set_header(s, m, "Aero-Aircraft-Id", x->aircraft_id);
    return st;
}

/* Stream names may not hold '.', '*', '>', spaces or path separators. */
static int stream_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > STREAM_NAME_MAX)
        return 0;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr(".*>/\\", c))
            return 0;
    }
    return 1;
}

/* ----------------------------------------------------------- stream */

/*
 * After each (re)connect: check the configured stream exists, creating it
 * when create_stream is set. 0 when publishing may go ahead, else -errno
 * (the batch is retried and the check runs again next batch). Sink thread.
 */
static int ensure_stream(struct sink_nats *s)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;

    if (s->stream[0] == '\0' || !atomic_load(&s->conn.stream_check))
        return 0;
    natsStatus st = js_GetStreamInfo(&si, s->conn.js, s->stream, NULL, &jerr);
    if (st == NATS_OK) {
        s->host->log(s->host, AERO_LOG_INFO, "sink-nats: stream %s: %" PRIu64
                     " message(s), duplicate window %" PRId64 " s", s->stream,
                     si->State.Msgs, si->Config->Duplicates / 1000000000);
        jsStreamInfo_Destroy(si);
        atomic_store(&s->conn.stream_check, 0);
        return 0;
    }
    if (st != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        warn_limited(s, "cannot look up stream %s: %s", s->stream,
                     natsStatus_GetText(st));
        return -EIO;
    }
    if (!s->create_stream) {
        warn_limited(s, "stream %s does not exist: create it (or set "
                     "create_stream = true); frames are retried until then",
                     s->stream);
        return -ENOENT;
    }

    const char *subjects[1] = {s->filter};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = s->stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = s->storage_memory ? js_MemoryStorage : js_FileStorage;
    cfg.Replicas = s->replicas;
    cfg.MaxAge = s->max_age_s * 1000000000;
    cfg.MaxBytes = s->max_bytes > 0 ? s->max_bytes : -1;
    cfg.Discard = s->discard_old ? js_DiscardOld : js_DiscardNew;
    cfg.Duplicates = s->dup_window_s * 1000000000;
    jerr = 0;
    st = js_AddStream(&si, s->conn.js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (st != NATS_OK && jerr != JSStreamNameExistErr) {
        const char *why = nats_GetLastError(NULL);
        warn_limited(s, "cannot create stream %s (subjects %s): %s", s->stream,
                     s->filter, why && *why ? why : natsStatus_GetText(st));
        return -EIO;
    }
    s->host->log(s->host, AERO_LOG_INFO, "sink-nats: %s stream %s capturing %s",
                 st == NATS_OK ? "created" : "found", s->stream, s->filter);
    atomic_store(&s->conn.stream_check, 0);
    return 0;
}

/* ----------------------------------------------------------- publish */

/* The message body of f: the envelope JSON (into s->buf) or the frame's
 * protobuf bytes. 0 or -ENOMEM / -ENOTSUP. */
static int body_of(struct sink_nats *s, const aero_frame *f, const char **data,
                   size_t *len)
{
    if (s->format_protobuf) {
        if (!AERO_HAS(f, aero_frame, protobuf))
            return -ENOTSUP;
        *data = f->protobuf.ptr;
        *len = f->protobuf.len;
        return 0;
    }
    size_t n = s->host->envelope_json(s->host, f, s->buf, s->cap);
    if (n >= s->cap) {
        char *p = realloc(s->buf, n + 1);
        if (p == NULL)
            return -ENOMEM;
        s->buf = p;
        s->cap = n + 1;
        n = s->host->envelope_json(s->host, f, s->buf, s->cap);
        if (n >= s->cap)
            return -ENOMEM; /* the encoder broke its contract */
    }
    *data = s->buf;
    *len = n;
    return 0;
}

/* A natsMsg for f with its subject, body and headers, or NULL with *res
 * set to what the frame should be acked as. */
static natsMsg *build_msg(struct sink_nats *s, const aero_frame *f,
                          aero_result *res)
{
    char agent[MAX_ID + 1], session[MAX_ID + 1], wal[MAX_ID + 1];
    char id[3 * MAX_ID + 32], seq[24];
    struct frame_ext x = frame_ext_of(f);
    const char *data = NULL;
    size_t len = 0;
    natsMsg *m = NULL;

    *res = AERO_REJECT;
    if (f->agent_id.len > MAX_ID || f->session_id.len > MAX_ID ||
        x.wal_id.len > MAX_ID ||
        subject_template_render(&s->subject, f, s->subj, sizeof(s->subj)) >=
            sizeof(s->subj))
        return NULL; /* outside the relay's own limits: never acceptable */
    int rc = body_of(s, f, &data, &len);
    if (rc == -ENOTSUP || len > INT32_MAX)
        return NULL;
    *res = AERO_RETRY;
    if (rc != 0)
        return NULL;

    header_text(agent, f->agent_id);
    header_text(session, f->session_id);
    snprintf(seq, sizeof(seq), "%" PRIu64, f->seq);
    /* (wal_id, seq) is what is unique for a generation-2 agent: its seq
     * restarts with every WAL generation. Frames without a wal_id keep the
     * seed id exactly. */
    if (x.wal_id.len > 0) {
        header_text(wal, x.wal_id);
        snprintf(id, sizeof(id), "%s:%s:%s", agent, wal, seq);
    } else {
        snprintf(id, sizeof(id), "%s:%s", agent, seq);
    }
    if (natsMsg_Create(&m, s->subj, NULL, data, (int)len) != NATS_OK)
        return NULL;
    if (natsMsgHeader_Set(m, "Nats-Msg-Id", id) != NATS_OK ||
        natsMsgHeader_Set(m, "Aero-Agent-Id", agent) != NATS_OK ||
        natsMsgHeader_Set(m, "Aero-Seq", seq) != NATS_OK ||
        natsMsgHeader_Set(m, "Aero-Session-Id", session) != NATS_OK ||
        natsMsgHeader_Set(m, "Content-Type", s->format_protobuf
                          ? "application/x-protobuf; messageType=aeroarc.agent.v1.TelemetryFrame"
                          : "application/json") != NATS_OK ||
        set_ext_headers(s, m, &x) != NATS_OK) {
        natsMsg_Destroy(m);
        return NULL;
    }
    return m;
}

/* What a failed js_PublishMsgAsync means for this frame and the rest. */
enum pub_outcome { PUB_SENT, PUB_FRAME_FAILED, PUB_STOP };

static enum pub_outcome publish_one(struct sink_nats *s, const aero_frame *f,
                                    size_t i, aero_result *res,
                                    aero_result *rest)
{
    natsMsg *m = build_msg(s, f, res);
    if (m == NULL)
        return PUB_FRAME_FAILED;

    pub_batch_track(&s->batch, m, i);
    natsStatus st = js_PublishMsgAsync(s->conn.js, &m, &s->popts);
    if (st == NATS_OK)
        return PUB_SENT; /* libnats owns m; its ack may already be in */
    pub_batch_untrack(&s->batch, m);
    natsMsg_Destroy(m);
    *res = pub_batch_classify(st, 0);
    if (*res == AERO_REJECT) {
        warn_limited(s, "frame %.*s:%" PRIu64 " refused: %s", (int)f->agent_id.len,
                     f->agent_id.ptr, f->seq, natsStatus_GetText(st));
        return PUB_FRAME_FAILED;
    }
    /* A stall (max_pending in flight for publish_timeout_ms) means the
     * server is slow: back off. Anything else is the connection going away. */
    *res = *rest = st == NATS_TIMEOUT ? AERO_BACKOFF : AERO_RETRY;
    warn_limited(s, "publish failed: %s", nats_GetLastError(NULL)
                 ? nats_GetLastError(NULL) : natsStatus_GetText(st));
    return PUB_STOP;
}

/* -------------------------------------------------------------- vtable */

static void nats_write_batch(void *instance, const aero_frame *const *frames,
                             size_t n, aero_result *results)
{
    struct sink_nats *s = instance;
    size_t sent = 0, i = 0;
    aero_result rest = AERO_RETRY;

    for (size_t k = 0; k < n; k++)
        results[k] = AERO_RETRY;
    if (n == 0)
        return;
    /* The epoch is read before the state check: a drop after it shows as
     * a changed epoch and ends the wait for acks at once. */
    unsigned epoch = atomic_load(&s->conn.epoch);
    if (!nats_conn_up(&s->conn)) {
        metric_add(s, s->m_errors, n);
        warn_limited(s, "not connected to NATS; %zu frame(s) to retry", n);
        return;
    }
    if (ensure_stream(s) != 0) {
        metric_add(s, s->m_errors, n);
        return;
    }
    if (pub_batch_begin(&s->batch, results, n) != 0) {
        metric_add(s, s->m_errors, n);
        warn_limited(s, "out of memory; %zu frame(s) to retry", n);
        return;
    }

    int64_t deadline = mono_ns() + s->timeout_ms * 1000000;
    for (; i < n; i++) {
        if (atomic_load(&s->conn.epoch) != epoch || mono_ns() >= deadline)
            break;
        enum pub_outcome o = publish_one(s, frames[i], i, &results[i], &rest);
        if (o == PUB_STOP) {
            i++;
            break;
        }
        sent += o == PUB_SENT;
    }
    for (size_t k = i; k < n; k++)
        results[k] = rest;

    pub_batch_wait(&s->batch, deadline, &s->conn.epoch, epoch);
    struct pub_batch_stats st;
    pub_batch_end(&s->batch, s->conn.js, &st);

    metric_add(s, s->m_published, sent);
    metric_add(s, s->m_acked, st.acked);
    metric_add(s, s->m_duplicates, st.duplicates);
    metric_add(s, s->m_errors, n - st.acked);
    if (st.acked == n)
        return;
    if (st.first_status != NATS_OK)
        warn_limited(s, "%zu of %zu frame(s) not stored; JetStream said: %s "
                     "(error %d)%s", n - st.acked, n, st.first_text,
                     (int)st.first_code, st.first_status == NATS_NO_RESPONDERS
                     ? " - no stream captures the subject, or JetStream is "
                       "not enabled" : "");
    else if (st.unanswered > 0)
        warn_limited(s, "%zu of %zu frame(s) not acknowledged %s; they are "
                     "retried", st.unanswered, n,
                     atomic_load(&s->conn.epoch) != epoch
                         ? "before the connection dropped"
                         : "within publish_timeout_ms");
}

/* Servers in the comma-separated url, blanks and empty entries ignored. */
static int count_servers(const char *url)
{
    int n = 0;
    for (const char *p = url; *p;) {
        size_t len = strcspn(p, ",");
        size_t blanks = 0;
        while (blanks < len && (p[blanks] == ' ' || p[blanks] == '\t'))
            blanks++;
        n += blanks < len;
        p += len + (p[len] == ',');
    }
    return n;
}

/*
 * Reads the config into s and *cc through the host's typed readers (bad
 * values are reported by the host). The subject template is parsed into
 * s->subject (freed by the caller). Reports every problem through
 * config_error; 0, or -EINVAL when there was any.
 */
static int read_config(struct sink_nats *s, struct nats_conn_cfg *cc)
{
    const aero_host *h = s->host;
    char err[256];
    int bad = 0, tls = 0;

    *cc = (struct nats_conn_cfg){0};
    if (subject_template_parse(&s->subject, key_str(h, "subject"), err,
                               sizeof(err)) != 0)
        bad |= h->config_error(h, "subject", "%s", err) != 0;
    s->stream = key_str(h, "stream");
    bad |= h->config_enum(h, "format", "json|protobuf", &s->format_protobuf) != 0;
    bad |= h->config_bool(h, "create_stream", &s->create_stream) != 0;
    bad |= h->config_enum(h, "stream_storage", "file|memory", &s->storage_memory) != 0;
    bad |= h->config_enum(h, "stream_discard", "new|old", &s->discard_old) != 0;
    bad |= h->config_int(h, "stream_replicas", 1, 5, &s->replicas) != 0;
    bad |= h->config_int(h, "stream_max_age_s", 0, INT64_MAX / 1000000000,
                         &s->max_age_s) != 0;
    bad |= h->config_int(h, "stream_max_bytes", 0, INT64_MAX, &s->max_bytes) != 0;
    bad |= h->config_int(h, "duplicate_window_s", 1, 7 * 24 * 3600, &s->dup_window_s) != 0;
    bad |= h->config_int(h, "publish_timeout_ms", 100, 600000, &s->timeout_ms) != 0;
    bad |= h->config_bool(h, "tls", &tls) != 0;
    bad |= h->config_int(h, "reconnect_wait_ms", 10, 600000, &cc->reconnect_wait_ms) != 0;
    bad |= h->config_int(h, "reconnect_max_wait_ms", 10, 600000,
                         &cc->reconnect_max_wait_ms) != 0;
    bad |= h->config_int(h, "ping_interval_s", 1, 3600, &cc->ping_interval_s) != 0;
    bad |= h->config_int(h, "max_pending", 1, 1000000, &cc->max_pending) != 0;

    if (s->stream[0] != '\0' && !stream_name_ok(s->stream))
        bad |= h->config_error(h, "stream", "invalid name \"%s\" (no '.', '*', '>', "
                               "'/', spaces; at most %d bytes)", s->stream,
                               STREAM_NAME_MAX) != 0;
    if (s->create_stream && s->stream[0] == '\0')
        bad |= h->config_error(h, "create_stream", "create_stream = true needs "
                               "stream (the name of the stream to create)") != 0;
    if (s->create_stream && s->subject.n_parts > 0 &&
        subject_template_filter(&s->subject, s->filter, sizeof(s->filter)) != 0)
        bad |= h->config_error(h, "subject", "create_stream = true needs a subject "
                               "whose first token has no placeholder (the stream "
                               "captures <static prefix>.>)") != 0;

    *cc = (struct nats_conn_cfg){
        .url = key_str(h, "url"),
        .user = key_str(h, "user"),
        .password = key_str(h, "password"),
        .token = key_str(h, "token"),
        .creds_file = key_str(h, "creds_file"),
        .tls = tls,
        .ca_file = key_str(h, "ca_file"),
        .cert_file = key_str(h, "cert_file"),
        .key_file = key_str(h, "key_file"),
        .tls_hostname = key_str(h, "tls_hostname"),
        .reconnect_wait_ms = cc->reconnect_wait_ms,
        .reconnect_max_wait_ms = cc->reconnect_max_wait_ms,
        .ping_interval_s = cc->ping_interval_s,
        .request_timeout_ms = s->timeout_ms,
        .max_pending = cc->max_pending,
    };
    int servers = count_servers(cc->url);
    if (servers == 0)
        bad |= h->config_error(h, "url", "no server URL given") != 0;
    else if (servers > 32)
        bad |= h->config_error(h, "url", "more than 32 servers") != 0;
    int auths = (cc->user[0] != '\0') + (cc->token[0] != '\0') +
                (cc->creds_file[0] != '\0');
    if (auths > 1)
        bad |= h->config_error(h, cc->token[0] ? "token" : "creds_file",
                               "set only one of user/password, token and creds_file") != 0;
    if (cc->password[0] != '\0' && cc->user[0] == '\0')
        bad |= h->config_error(h, "password", "set without user") != 0;
    if ((cc->cert_file[0] != '\0') != (cc->key_file[0] != '\0'))
        bad |= h->config_error(h, cc->cert_file[0] ? "cert_file" : "key_file",
                               "cert_file and key_file go together (set both or neither)") != 0;
    bad |= config_check_readable_file(h, "ca_file") != 0;
    bad |= config_check_readable_file(h, "cert_file") != 0;
    bad |= config_check_readable_file(h, "key_file") != 0;
    bad |= config_check_readable_file(h, "creds_file") != 0;
    return bad ? -EINVAL : 0;
}

/* The check slot: read_config on a throw-away instance, nothing kept. */
static int nats_check(const aero_host *host)
{
    struct sink_nats s = {.host = host};
    struct nats_conn_cfg cc;

    if (!config_check_host(host, "sink-nats"))
        return -ENOTSUP;
    int rc = read_config(&s, &cc);
    subject_template_free(&s.subject);
    return rc;
}

static void on_conn_down(void *arg)
{
    pub_batch_wake(arg);
}

static int nats_create(const aero_host *host, void **instance)
{
    struct sink_nats *s = calloc(1, sizeof(*s));
    struct nats_conn_cfg cc;
    char name[256];
    int rc;

    if (s == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-nats: out of memory");
        return -ENOMEM;
    }
    *instance = s; /* destroy() frees a half-built instance */
    s->host = host;
    s->warn = WARN_LIMIT_INIT;
    /* The relay ran check() already; read_config reports the same again
     * for a create() without it (a test, an older relay). */
    if (!config_check_host(host, "sink-nats"))
        return -ENOTSUP;
    if ((rc = read_config(s, &cc)) != 0)
        return rc;

    s->buf = malloc(INITIAL_BUF);
    if (s->buf == NULL) {
        host->log(host, AERO_LOG_ERROR, "sink-nats: out of memory");
        return -ENOMEM;
    }
    s->cap = INITIAL_BUF;
    if ((rc = pub_batch_init(&s->batch)) != 0) {
        host->log(host, AERO_LOG_ERROR, "sink-nats: %s", strerror(-rc));
        return rc;
    }
    s->batch_ok = 1;
    jsPubOptions_Init(&s->popts);
    if (s->stream[0] != '\0')
        s->popts.ExpectStream = s->stream;

    if (AERO_HAS(host, aero_host, metric_add) && host->metric_register) {
        s->m_published = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_nats_published_total",
            "Frames handed to JetStream (asynchronous publishes)");
        s->m_acked = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_nats_acked_total",
            "Frames JetStream acknowledged as stored (acked OK to agents)");
        s->m_duplicates = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_nats_duplicates_total",
            "Acknowledged frames the stream already held (resends dropped "
            "by Nats-Msg-Id)");
        s->m_errors = host->metric_register(host, AERO_METRIC_COUNTER,
            "aero_sink_nats_errors_total",
            "Frames not stored (not connected, refused, or no ack in time)");
    }

    snprintf(name, sizeof(name), "aeroarc-relay %s sink:%s",
             host->relay_id ? host->relay_id(host) : "relay",
             host->instance_name ? host->instance_name(host) : "nats");
    cc.name = name;
    cc.ack_handler = pub_batch_on_ack;
    cc.ack_closure = &s->batch;
    cc.on_down = on_conn_down;
    cc.on_down_arg = &s->batch;
    return nats_conn_open(&s->conn, host, &cc);
}

static void nats_destroy(void *instance)
{
    struct sink_nats *s = instance;
    if (s == NULL)
        return;
    /* The connection first: after it, no libnats thread calls into us. */
    nats_conn_close(&s->conn);
    if (s->batch_ok)
        pub_batch_destroy(&s->batch);
    subject_template_free(&s->subject);
    free(s->buf);
    free(s->hbuf);
    free(s);
}

static const aero_sink_vtable nats_vtable = {
    .size = sizeof(aero_sink_vtable),
    AERO_KEYS(nats_keys),
    .create = nats_create,
    .write_batch = nats_write_batch,
    .destroy = nats_destroy,
    .check = nats_check,
};

static const aero_plugin_descriptor nats_descriptor = {
    AERO_DESCRIPTOR_HEADER(AERO_PLUGIN_SINK),
    .name = "sink-nats",
    .description = "NATS JetStream: frames acked OK once the stream stored them",
    .vtable = &nats_vtable,
};

AERO_EXPORT const aero_plugin_descriptor *aeroarc_plugin_entry(void)
{
    return &nats_descriptor;
}
