/* frame.c — owns the frame layout rules: header size, the frame_max check and the
 * frame-end octet. Does not interpret payloads (codec.c does). Invariant: a frame is
 * reported only when every byte of it, frame-end included, lies inside the buffer. */
#include "protocol/frame.h"

const uint8_t amqp_protocol_header[AMQP_PROTOCOL_HEADER_SIZE] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};

long amqp_frame_parse(const uint8_t *buf, size_t len, uint32_t frame_max,
                      struct amqp_frame *ret_frame)
{
    if (len < AMQP_FRAME_HEADER_SIZE)
        return 0;
    uint8_t type = buf[0];
    if (type != AMQP_FRAME_METHOD && type != AMQP_FRAME_HEADER && type != AMQP_FRAME_BODY &&
        type != AMQP_FRAME_HEARTBEAT)
        return AMQP_E_FRAME_TYPE;
    uint32_t size = rd32(buf + 3);
    if (frame_max && (uint64_t)size + AMQP_FRAME_OVERHEAD > frame_max)
        return AMQP_E_FRAME_SIZE;
    if ((uint64_t)size + AMQP_FRAME_OVERHEAD > (uint64_t)0x7fffffff)
        return AMQP_E_FRAME_SIZE;
    size_t total = (size_t)size + AMQP_FRAME_OVERHEAD;
    if (len < total)
        return 0;
    if (buf[total - 1] != AMQP_FRAME_END)
        return AMQP_E_FRAME_END;
    ret_frame->type = type;
    ret_frame->channel = rd16(buf + 1);
    ret_frame->size = size;
    ret_frame->payload = buf + AMQP_FRAME_HEADER_SIZE;
    return (long)total;
}

int amqp_protocol_header_check(const uint8_t *buf, size_t len)
{
    size_t n = len < AMQP_PROTOCOL_HEADER_SIZE ? len : AMQP_PROTOCOL_HEADER_SIZE;
    if (n && memcmp(buf, amqp_protocol_header, n) != 0) /* buf may be NULL when len is 0 */
        return AMQP_E_HEADER;
    return len >= AMQP_PROTOCOL_HEADER_SIZE ? 1 : 0;
}

void amqp_frame_header_write(uint8_t *dst, uint8_t type, uint16_t channel, uint32_t size)
{
    dst[0] = type;
    wr16(dst + 1, channel);
    wr32(dst + 3, size);
}
