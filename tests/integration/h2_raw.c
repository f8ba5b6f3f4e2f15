/*
 * h2_raw.c - see h2_raw.h. Frames are 9-byte headers (RFC 9113 section 4.1);
 * writes go through one buffer flushed on a non-blocking socket, so a
 * stalled relay shows up as a timeout instead of a hung test, and the
 * reader keeps answering SETTINGS/PING while a write waits.
 */
#include "h2_raw.h"

#include "harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { T_DATA = 0, T_HEADERS = 1, T_RST = 3, T_SETTINGS = 4, T_PING = 6, T_GOAWAY = 7,
       T_WINDOW_UPDATE = 8, T_CONTINUATION = 9 };
enum { F_ACK = 1, F_END_HEADERS = 4 };
#define MAX_STREAMS 2048

struct stream_rec {
    uint32_t id;
    long data;
    int reset;
    int64_t send_window; /* what the relay lets us send on this stream */
};

struct h2_raw {
    int fd;
    bool closed;
    uint8_t in[1 << 17];
    size_t in_len;
    uint8_t *out;
    size_t out_len, out_cap;
    struct stream_rec streams[MAX_STREAMS];
    size_t n_streams;
    long data_total;
    int64_t conn_window;  /* the relay's connection-level window for us */
    int64_t peer_initial; /* its SETTINGS_INITIAL_WINDOW_SIZE */
    bool no_settings_ack; /* never ACK the relay's SETTINGS (h2_raw_stream_flood) */
    bool mute;            /* a header block is open: answer nothing (no frame may come between) */
    bool settings_seen;   /* the peer's first SETTINGS came (and was answered) */
    struct h2_raw_io io;  /* send/recv: the plain socket, or TLS (h2_raw_connect_io) */
};

static ssize_t plain_send(void *ctx, const void *p, size_t n)
{
    return send(*(int *)ctx, p, n, MSG_NOSIGNAL);
}

static ssize_t plain_recv(void *ctx, void *p, size_t n) { return recv(*(int *)ctx, p, n, 0); }

static struct stream_rec *rec(struct h2_raw *h, uint32_t id)
{
    for (size_t i = 0; i < h->n_streams; i++)
        if (h->streams[i].id == id)
            return &h->streams[i];
    if (h->n_streams == MAX_STREAMS)
        return NULL;
    h->streams[h->n_streams] = (struct stream_rec){id, 0, -1, h->peer_initial};
    return &h->streams[h->n_streams++];
}

static void queue(struct h2_raw *h, const void *p, size_t n)
{
    if (h->out_len + n > h->out_cap) {
        h->out_cap = (h->out_len + n) * 2;
        h->out = realloc(h->out, h->out_cap);
        cr_assert_not_null(h->out);
    }
    memcpy(h->out + h->out_len, p, n);
    h->out_len += n;
}

static void queue_frame(struct h2_raw *h, uint8_t type, uint8_t flags, uint32_t id,
                        const void *payload, size_t len)
{
    uint8_t hd[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                     (uint8_t)(id >> 24 & 0x7f), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
                     (uint8_t)id};
    queue(h, hd, sizeof(hd));
    if (len)
        queue(h, payload, len);
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The relay's SETTINGS: only INITIAL_WINDOW_SIZE matters to us; a change
 * moves every open stream's window by the difference (RFC 9113 6.9.2). */
static void on_settings(struct h2_raw *h, const uint8_t *p, size_t len)
{
    for (size_t off = 0; off + 6 <= len; off += 6) {
        if (((p[off] << 8) | p[off + 1]) != 4)
            continue;
        int64_t v = be32(p + off + 2), delta = v - h->peer_initial;
        for (size_t i = 0; i < h->n_streams; i++)
            h->streams[i].send_window += delta;
        h->peer_initial = v;
    }
}

/* Answer one complete frame. */
static void on_frame(struct h2_raw *h, const uint8_t *f, size_t len)
{
    uint8_t type = f[3], flags = f[4];
    uint32_t id = ((uint32_t)(f[5] & 0x7f) << 24) | ((uint32_t)f[6] << 16) |
                  ((uint32_t)f[7] << 8) | f[8];
    const uint8_t *payload = f + 9;
    struct stream_rec *r;
    switch (type) {
    case T_DATA:
        h->data_total += (long)len;
        if ((r = rec(h, id)))
            r->data += (long)len;
        break;
    case T_SETTINGS:
        if (!(flags & F_ACK)) {
            h->settings_seen = true;
            on_settings(h, payload, len);
            if (!h->no_settings_ack && !h->mute)
                queue_frame(h, T_SETTINGS, F_ACK, 0, NULL, 0);
        }
        break;
    case T_WINDOW_UPDATE:
        if (len == 4 && id == 0)
            h->conn_window += be32(payload) & 0x7fffffff;
        else if (len == 4 && (r = rec(h, id)))
            r->send_window += be32(payload) & 0x7fffffff;
        break;
    case T_PING:
        if (!(flags & F_ACK) && len == 8 && !h->mute)
            queue_frame(h, T_PING, F_ACK, 0, payload, 8);
        break;
    case T_RST:
        if (len == 4 && (r = rec(h, id)))
            r->reset = (int)be32(payload);
        break;
    case T_GOAWAY:
        h->closed = true;
        break;
    default:
        break; /* HEADERS (responses, trailers), WINDOW_UPDATE: nothing to do */
    }
}

static void read_some(struct h2_raw *h)
{
    ssize_t n = h->io.recv(h->io.ctx, h->in + h->in_len, sizeof(h->in) - h->in_len);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        h->closed = true;
        return;
    }
    if (n < 0)
        return;
    h->in_len += (size_t)n;
    size_t off = 0;
    while (h->in_len - off >= 9) {
        size_t len = ((size_t)h->in[off] << 16) | ((size_t)h->in[off + 1] << 8) | h->in[off + 2];
        cr_assert_leq(len + 9, sizeof(h->in), "frame larger than our buffer");
        if (h->in_len - off < 9 + len)
            break;
        on_frame(h, h->in + off, len);
        off += 9 + len;
    }
    memmove(h->in, h->in + off, h->in_len - off);
    h->in_len -= off;
    /* TLS may hold decrypted bytes that poll() will not report. */
    if (!h->closed && h->io.pending && h->io.pending(h->io.ctx) > 0)
        read_some(h);
}

/* Write what is queued; keep answering reads meanwhile. 0 when all is
 * written, -ETIMEDOUT when nothing could be written for timeout_ms. */
static int flush(struct h2_raw *h, int timeout_ms)
{
    int64_t idle_since = harness_now_ms();
    size_t done = 0;
    while (done < h->out_len) {
        if (h->closed)
            return -EPIPE;
        ssize_t n = h->io.send(h->io.ctx, h->out + done, h->out_len - done);
        if (n > 0) {
            done += (size_t)n;
            idle_since = harness_now_ms();
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            h->closed = true;
            return -EPIPE;
        }
        int left = (int)(idle_since + timeout_ms - harness_now_ms());
        if (left <= 0) {
            memmove(h->out, h->out + done, h->out_len - done);
            h->out_len -= done;
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = h->fd, .events = POLLIN | POLLOUT};
        if (poll(&p, 1, left) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)))
            read_some(h);
    }
    h->out_len = 0;
    return 0;
}

int h2_raw_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_geq(fd, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct h2_raw *h2_raw_connect(int port, uint32_t initial_window)
{
    int fd = h2_raw_tcp_connect(port);
    cr_assert_geq(fd, 0, "cannot connect to 127.0.0.1:%d", port);
    return h2_raw_connect_io(fd, initial_window, NULL);
}

struct h2_raw *h2_raw_connect_io(int fd, uint32_t initial_window, const struct h2_raw_io *io)
{
    struct h2_raw *h = calloc(1, sizeof(*h));
    cr_assert_not_null(h);
    h->conn_window = h->peer_initial = 65535; /* RFC 9113 defaults */
    h->fd = fd;
    if (io)
        h->io = *io;
    else
        h->io = (struct h2_raw_io){plain_send, plain_recv, NULL, NULL, &h->fd};
    fcntl(h->fd, F_SETFL, O_NONBLOCK);
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    queue(h, preface, sizeof(preface) - 1);
    uint8_t settings[] = {0, 2, 0, 0, 0, 0, /* ENABLE_PUSH 0 */
                          0, 4, (uint8_t)(initial_window >> 24), (uint8_t)(initial_window >> 16),
                          (uint8_t)(initial_window >> 8), (uint8_t)initial_window};
    queue_frame(h, T_SETTINGS, 0, 0, settings, sizeof(settings));
    cr_assert_eq(flush(h, 5000), 0);
    return h;
}

static void literal(uint8_t *buf, size_t *n, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    cr_assert(nl < 127 && vl < 127, "short headers only (one-byte lengths)");
    buf[(*n)++] = 0x00; /* literal without indexing, new name */
    buf[(*n)++] = (uint8_t)nl;
    memcpy(buf + *n, name, nl);
    *n += nl;
    buf[(*n)++] = (uint8_t)vl;
    memcpy(buf + *n, value, vl);
    *n += vl;
}

static size_t request_block(uint8_t *block, const char *path, const char *agent)
{
    size_t n = 0;
    literal(block, &n, ":method", "POST");
    literal(block, &n, ":scheme", "http");
    literal(block, &n, ":path", path);
    literal(block, &n, ":authority", "relay");
    literal(block, &n, "content-type", "application/grpc");
    literal(block, &n, "te", "trailers");
    if (agent)
        literal(block, &n, "aero-arc-agent-id", agent);
    return n;
}

void h2_raw_open(struct h2_raw *h, uint32_t id, const char *path, const char *agent)
{
    uint8_t block[1024];
    size_t n = request_block(block, path, agent);
    queue_frame(h, T_HEADERS, F_END_HEADERS, id, block, n);
    cr_assert_eq(flush(h, 5000), 0);
    rec(h, id);
}

int h2_raw_send_message(struct h2_raw *h, uint32_t id, const uint8_t *bytes, size_t len,
                        int timeout_ms)
{
    struct stream_rec *r = rec(h, id);
    int64_t need = (int64_t)len + 5, deadline = harness_now_ms() + timeout_ms;
    cr_assert_not_null(r);
    cr_assert_leq(need, 16384, "one DATA frame per message (SETTINGS_MAX_FRAME_SIZE)");
    /* Flow control is honoured: we are deaf, not a protocol violator. */
    while (r->send_window < need || h->conn_window < need) {
        if (h->closed)
            return -EPIPE;
        int left = (int)(deadline - harness_now_ms());
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, left) > 0)
            read_some(h);
        if (h->out_len && flush(h, 5000) != 0)
            return -EPIPE;
    }
    uint8_t prefix[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                         (uint8_t)len};
    uint8_t hd[9] = {(uint8_t)(need >> 16), (uint8_t)(need >> 8), (uint8_t)need, T_DATA, 0,
                     (uint8_t)(id >> 24 & 0x7f), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
                     (uint8_t)id};
    queue(h, hd, sizeof(hd));
    queue(h, prefix, sizeof(prefix));
    queue(h, bytes, len);
    r->send_window -= need;
    h->conn_window -= need;
    return flush(h, timeout_ms) == 0 ? 0 : -EPIPE;
}

int h2_raw_rapid_reset(struct h2_raw *h, uint32_t first_id, int n, const char *path)
{
    static const uint8_t cancel[4] = {0, 0, 0, 8};
    uint8_t block[1024];
    size_t len = request_block(block, path, NULL);
    int sent = 0;
    while (sent < n) {
        int batch = n - sent < 500 ? n - sent : 500;
        for (int i = 0; i < batch; i++) {
            uint32_t id = first_id + 2u * (uint32_t)(sent + i);
            queue_frame(h, T_HEADERS, F_END_HEADERS, id, block, len);
            queue_frame(h, T_RST, 0, id, cancel, sizeof(cancel));
        }
        if (flush(h, 5000) != 0) {
            h->out_len = 0;
            return sent;
        }
        sent += batch;
    }
    return sent;
}

int h2_raw_stream_flood(struct h2_raw *h, uint32_t first_id, int n, const char *path)
{
    uint8_t block[1024];
    size_t len = request_block(block, path, NULL);
    int sent = 0;
    h->no_settings_ack = true;
    while (sent < n) {
        int batch = n - sent < 500 ? n - sent : 500;
        for (int i = 0; i < batch; i++)
            queue_frame(h, T_HEADERS, F_END_HEADERS, first_id + 2u * (uint32_t)(sent + i), block,
                        len);
        if (flush(h, 5000) != 0) {
            h->out_len = 0;
            return sent;
        }
        sent += batch;
    }
    return sent;
}

/* Queue and flush; false once the peer closed (or stopped reading for
 * 5 s). */
static bool push(struct h2_raw *h, uint8_t type, uint8_t flags, uint32_t id, const void *p,
                 size_t n)
{
    queue_frame(h, type, flags, id, p, n);
    if (h->out_len < 256 * 1024)
        return !h->closed;
    if (flush(h, 5000) != 0) {
        h->out_len = 0;
        return false;
    }
    return true;
}

static size_t hpack_int(uint8_t *buf, size_t value, int prefix_bits, uint8_t first)
{
    size_t max = (1u << prefix_bits) - 1, n = 0;
    if (value < max) {
        buf[n++] = (uint8_t)(first | value);
        return n;
    }
    buf[n++] = (uint8_t)(first | max);
    value -= max;
    while (value >= 128) {
        buf[n++] = (uint8_t)(value % 128 + 128);
        value /= 128;
    }
    buf[n++] = (uint8_t)value;
    return n;
}

/* HEADERS (no END_HEADERS) with the call's headers and the start of a
 * literal "x-huge" declared value_len bytes long, SETTINGS exchanged first
 * and nothing answered from then on (no frame may come inside a block). */
static bool open_huge_value(struct h2_raw *h, uint32_t id, const char *path, size_t value_len)
{
    uint8_t block[2048];
    size_t n = request_block(block, path, NULL);
    n += hpack_int(block + n, 0, 4, 0x00); /* literal without indexing, new name */
    n += hpack_int(block + n, 6, 7, 0x00);
    memcpy(block + n, "x-huge", 6);
    n += 6;
    n += hpack_int(block + n, value_len, 7, 0x00);
    h2_raw_wait_settings(h, 5000);
    h->mute = true;
    return push(h, T_HEADERS, 0, id, block, n);
}

/* CONTINUATION frames of 16 kB of 'a' until `bytes` went out, the last
 * with END_HEADERS when end. Returns how many went out. */
static size_t value_frames(struct h2_raw *h, uint32_t id, size_t bytes, bool end)
{
    static uint8_t chunk[16384];
    memset(chunk, 'a', sizeof(chunk));
    size_t sent = 0;
    while (sent < bytes) {
        size_t c = bytes - sent < sizeof(chunk) ? bytes - sent : sizeof(chunk);
        bool last = end && sent + c == bytes;
        if (!push(h, T_CONTINUATION, last ? F_END_HEADERS : 0, id, chunk, c))
            return sent;
        sent += c;
    }
    if (flush(h, 5000) != 0)
        h->out_len = 0;
    return sent;
}

size_t h2_raw_huge_header(struct h2_raw *h, uint32_t id, const char *path, size_t value_len)
{
    size_t sent = open_huge_value(h, id, path, value_len) ? value_frames(h, id, value_len, true) : 0;
    h->mute = false;
    return sent;
}

size_t h2_raw_continuation_flood(struct h2_raw *h, uint32_t id, const char *path, size_t bytes)
{
    /* A value declared one byte longer than what is sent: never complete
     * (a declared length far beyond it is refused at once by some peers). */
    return open_huge_value(h, id, path, bytes + 1) ? value_frames(h, id, bytes, false) : 0;
}

int h2_raw_control_flood(struct h2_raw *h, enum h2_raw_control kind, int n)
{
    static const uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 8}, one[4] = {0, 0, 0, 1};
    int sent = 0;
    for (; sent < n; sent++) {
        bool ok = kind == H2_RAW_SETTINGS ? push(h, T_SETTINGS, 0, 0, NULL, 0)
                  : kind == H2_RAW_PING   ? push(h, T_PING, 0, 0, ping, sizeof(ping))
                                          : push(h, T_WINDOW_UPDATE, 0, 0, one, sizeof(one));
        if (!ok)
            return sent;
    }
    if (flush(h, 5000) != 0)
        h->out_len = 0;
    return sent;
}

size_t h2_raw_many_headers(struct h2_raw *h, uint32_t id, const char *path, size_t fields)
{
    uint8_t block[2048], chunk[16384];
    size_t n = request_block(block, path, NULL), sent = 0;
    h2_raw_wait_settings(h, 5000);
    h->mute = true;
    bool ok = push(h, T_HEADERS, 0, id, block, n);
    /* Each field a literal without indexing: 0x00, name "x-h", value "v". */
    static const uint8_t field[] = {0x00, 3, 'x', '-', 'h', 1, 'v'};
    size_t per = sizeof(chunk) / sizeof(field);
    while (ok && sent < fields) {
        size_t k = fields - sent < per ? fields - sent : per;
        for (size_t i = 0; i < k; i++)
            memcpy(chunk + i * sizeof(field), field, sizeof(field));
        bool last = sent + k == fields;
        ok = push(h, T_CONTINUATION, last ? F_END_HEADERS : 0, id, chunk, k * sizeof(field));
        sent += ok ? k : 0;
    }
    if (ok && flush(h, 5000) != 0)
        h->out_len = 0;
    h->mute = false;
    return sent;
}

void h2_raw_reset(struct h2_raw *h, uint32_t id, uint32_t code)
{
    uint8_t p[4] = {(uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8),
                    (uint8_t)code};
    queue_frame(h, T_RST, 0, id, p, sizeof(p));
    flush(h, 5000);
}

void h2_raw_pump(struct h2_raw *h, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (!h->closed) {
        int left = (int)(deadline - harness_now_ms());
        if (left <= 0)
            break;
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, left) > 0)
            read_some(h);
        if (h->out_len)
            flush(h, 1000);
    }
}

bool h2_raw_wait_settings(struct h2_raw *h, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (!h->closed && !(h->settings_seen && h->out_len == 0)) {
        int left = (int)(deadline - harness_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, left > 20 ? 20 : left) > 0)
            read_some(h);
        if (h->out_len)
            flush(h, 1000);
    }
    return !h->closed;
}

long h2_raw_data_bytes(const struct h2_raw *h, uint32_t id)
{
    if (id == 0)
        return h->data_total;
    for (size_t i = 0; i < h->n_streams; i++)
        if (h->streams[i].id == id)
            return h->streams[i].data;
    return 0;
}

int h2_raw_reset_code(const struct h2_raw *h, uint32_t id)
{
    for (size_t i = 0; i < h->n_streams; i++)
        if (h->streams[i].id == id)
            return h->streams[i].reset;
    return -1;
}

bool h2_raw_closed(const struct h2_raw *h) { return h->closed; }

void h2_raw_close(struct h2_raw *h)
{
    if (!h)
        return;
    if (h->io.close)
        h->io.close(h->io.ctx);
    close(h->fd);
    free(h->out);
    free(h);
}
