/* frame.h — AMQP 0-9-1 framing: the protocol header and the general frame layout
 * (type, channel, size, payload, 0xCE). Pure functions over caller-owned buffers. */
#ifndef WARREN_FRAME_H
#define WARREN_FRAME_H
#include "protocol/wire.h"

enum amqp_frame_type {
    AMQP_FRAME_METHOD = 1,
    AMQP_FRAME_HEADER = 2,
    AMQP_FRAME_BODY = 3,
    AMQP_FRAME_HEARTBEAT = 8,
};
#define AMQP_FRAME_HEADER_SIZE 7 /* type(1) channel(2) size(4) */
#define AMQP_FRAME_OVERHEAD 8    /* header + frame-end octet */
#define AMQP_FRAME_END 0xCE
#define AMQP_FRAME_MIN_SIZE 4096
#define AMQP_PROTOCOL_HEADER_SIZE 8
extern const uint8_t amqp_protocol_header[AMQP_PROTOCOL_HEADER_SIZE]; /* "AMQP\0\0\x09\x01" */

struct amqp_frame {
    uint8_t type;
    uint16_t channel;
    uint32_t size;
    const uint8_t *payload; /* borrowed: points into the parsed buffer */
};

/* Parses one frame from the start of buf[0..len). frame_max is the negotiated maximum
 * total frame size (payload + 8); 0 means no limit beyond 2^32. Returns the number of
 * bytes the frame occupies (> 0) and fills *ret_frame; 0 when more bytes are needed
 * (the header is checked as soon as it is complete, so an oversized frame fails before
 * it is buffered); or AMQP_E_FRAME_SIZE / AMQP_E_FRAME_TYPE / AMQP_E_FRAME_END. */
long amqp_frame_parse(const uint8_t *buf, size_t len, uint32_t frame_max,
                      struct amqp_frame *ret_frame);

/* Checks the 8-byte protocol header: 1 when buf holds exactly AMQP 0-9-1's, 0 when
 * fewer than 8 bytes are there and they match so far, AMQP_E_HEADER otherwise. */
int amqp_protocol_header_check(const uint8_t *buf, size_t len);

/* Writes the 7-byte frame header to dst. */
void amqp_frame_header_write(uint8_t *dst, uint8_t type, uint16_t channel, uint32_t size);

#endif
