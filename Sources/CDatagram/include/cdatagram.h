// Batched UDP sends for the media edge: sendmmsg(2) with a per-message UDP_SEGMENT
// (segmentation offload) control message. A C target because struct mmsghdr, sendmmsg and
// the CMSG_* macros are glibc GNU extensions and macros that Swift cannot see.
#ifndef SWITCHBOARD_CDATAGRAM_H
#define SWITCHBOARD_CDATAGRAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/// One message to send: the bytes of `parts` (gathered, not copied) to `address`, cut by the
/// kernel into `segment_size` datagrams when that is non-zero (the last may be shorter).
typedef struct {
    const struct iovec *parts;
    size_t part_count;
    size_t length;
    const struct sockaddr *address;
    socklen_t address_length;
    uint16_t segment_size;
} switchboard_datagram;

/// The most datagrams one call hands the kernel.
#define SWITCHBOARD_DATAGRAM_BATCH 64

/// Sends up to SWITCHBOARD_DATAGRAM_BATCH of `datagrams` with one sendmmsg. Returns how many
/// were sent (≥ 1), or -1 with `*error` set to the errno of the first one, which was not
/// sent (the caller counts it as dropped and carries on with the next).
int switchboard_send_datagrams(int fd, const switchboard_datagram *datagrams, unsigned int count, int *error);

#endif
