/*
 * h2_raw.h - a deliberately rude HTTP/2 client for abuse tests, written on
 * a plain socket so it can do what no gRPC library would: announce a tiny
 * receive window and never open it (an agent that stops reading its acks),
 * ignore SETTINGS_MAX_CONCURRENT_STREAMS, reset streams at will. It answers
 * SETTINGS and PING so the relay has no protocol reason to drop it. Headers
 * are HPACK literals without indexing or Huffman. Test thread only.
 */
#ifndef AERO_TEST_H2_RAW_H
#define AERO_TEST_H2_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

struct h2_raw;

/* How bytes go out and come in: the plain socket by default; TLS for a
 * client of a TLS port (see the edge test). send/recv return like
 * send(2)/recv(2), -1 with errno EAGAIN when they would block; pending
 * (may be NULL): bytes already read and decrypted; close (may be NULL):
 * called before the socket is closed. */
struct h2_raw_io {
    ssize_t (*send)(void *ctx, const void *p, size_t n);
    ssize_t (*recv)(void *ctx, void *p, size_t n);
    size_t (*pending)(void *ctx);
    void (*close)(void *ctx);
    void *ctx;
};

/* A plain TCP connection to 127.0.0.1:port, nothing sent: the fd, or -1
 * when the connect is refused (a full listen queue, no descriptors). */
int h2_raw_tcp_connect(int port);
/* Connect to 127.0.0.1:port, send the preface and SETTINGS with this
 * INITIAL_WINDOW_SIZE (the relay may send at most that many DATA bytes per
 * stream, as we never send WINDOW_UPDATE). Fails the test on error. */
struct h2_raw *h2_raw_connect(int port, uint32_t initial_window);
/* The same over a connected socket fd (taken over: closed by
 * h2_raw_close), writing and reading through io (NULL: the socket itself). */
struct h2_raw *h2_raw_connect_io(int fd, uint32_t initial_window, const struct h2_raw_io *io);
/* HEADERS for a gRPC call of `path` on stream `id` (odd, increasing), with
 * aero-arc-agent-id: agent (NULL: no header). */
void h2_raw_open(struct h2_raw *h, uint32_t id, const char *path, const char *agent);
/* One gRPC message (5-byte prefix + bytes) as one DATA frame on stream id,
 * within the relay's flow-control windows. Returns 0 once written,
 * -ETIMEDOUT if the relay granted no room for it within timeout_ms (it
 * stopped reading that stream), -EPIPE if the connection is gone. */
int h2_raw_send_message(struct h2_raw *h, uint32_t id, const uint8_t *bytes, size_t len,
                        int timeout_ms);
/* HTTP/2 rapid reset: n streams from first_id on (odd, increasing), each
 * HEADERS for `path` then RST_STREAM(CANCEL) at once, written in batches
 * without waiting for anything. Returns how many were written before the
 * connection closed (n when it stayed open). */
int h2_raw_rapid_reset(struct h2_raw *h, uint32_t first_id, int n, const char *path);
/* From now on never ACK the relay's SETTINGS (so its
 * SETTINGS_MAX_CONCURRENT_STREAMS never binds us), and open n streams
 * (HEADERS only, ids first_id, first_id + 2, ...) as fast as the socket
 * takes them. Returns how many went out before the relay closed. */
int h2_raw_stream_flood(struct h2_raw *h, uint32_t first_id, int n, const char *path);
/* One header value of value_len bytes spread over CONTINUATION frames:
 * HEADERS (no END_HEADERS) with the call's headers and the start of a
 * literal "x-huge", then CONTINUATION frames of 16 kB of its value, the
 * last with END_HEADERS (gRPC 1.51's HPACK parser is quadratic on it).
 * SETTINGS are exchanged first, and nothing is answered while the block is
 * open (any other frame in between would be a protocol error).
 * Returns how many value bytes went out before the peer closed. */
size_t h2_raw_huge_header(struct h2_raw *h, uint32_t id, const char *path, size_t value_len);
/* As h2_raw_huge_header, but the value is declared bytes + 1 long and only
 * `bytes` of it are sent, none with END_HEADERS: the header block never
 * ends (0: the HEADERS frame alone, a slowloris header). From then on this
 * connection answers nothing. Returns how many bytes went out before the
 * peer closed. */
size_t h2_raw_continuation_flood(struct h2_raw *h, uint32_t id, const char *path, size_t bytes);
/* n control frames on stream 0 as fast as the socket takes them, never
 * reading the answers: empty SETTINGS (each owed an ACK), PINGs (each
 * owed one), or WINDOW_UPDATEs of 1 byte. Returns how many went out
 * before the peer closed. */
enum h2_raw_control { H2_RAW_SETTINGS, H2_RAW_PING, H2_RAW_WINDOW_UPDATE };
int h2_raw_control_flood(struct h2_raw *h, enum h2_raw_control kind, int n);
/* One header block of the call's headers and `fields` tiny fields
 * ("x-h: v", 7 bytes each) over CONTINUATION frames, END_HEADERS on the
 * last. Returns how many fields went out before the peer closed. */
size_t h2_raw_many_headers(struct h2_raw *h, uint32_t id, const char *path, size_t fields);
/* RST_STREAM(id, code). */
void h2_raw_reset(struct h2_raw *h, uint32_t id, uint32_t code);
/* Read and answer whatever arrives for up to timeout_ms (or until the
 * connection closes). */
void h2_raw_pump(struct h2_raw *h, int timeout_ms);
/* Read until the peer's SETTINGS came and our ACK is written (so that
 * nothing of ours is left to interleave with a header block sent next).
 * false on timeout or close. */
bool h2_raw_wait_settings(struct h2_raw *h, int timeout_ms);
/* Received so far: DATA payload bytes on stream id (0: all streams), the
 * last RST_STREAM code for stream id (-1: none), whether GOAWAY came or the
 * connection closed. */
long h2_raw_data_bytes(const struct h2_raw *h, uint32_t id);
int h2_raw_reset_code(const struct h2_raw *h, uint32_t id);
bool h2_raw_closed(const struct h2_raw *h);
void h2_raw_close(struct h2_raw *h);

#endif
