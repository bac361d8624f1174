#define _GNU_SOURCE
#include "cdatagram.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

int switchboard_send_datagrams(int fd, const switchboard_datagram *datagrams, unsigned int count, int *error) {
    struct mmsghdr messages[SWITCHBOARD_DATAGRAM_BATCH];
    union {
        char bytes[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } controls[SWITCHBOARD_DATAGRAM_BATCH];

    if (count > SWITCHBOARD_DATAGRAM_BATCH) count = SWITCHBOARD_DATAGRAM_BATCH;
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned int i = 0; i < count; i++) {
        struct msghdr *header = &messages[i].msg_hdr;
        header->msg_name = (void *)datagrams[i].address;
        header->msg_namelen = datagrams[i].address_length;
        header->msg_iov = (struct iovec *)datagrams[i].parts;
        header->msg_iovlen = datagrams[i].part_count;
        if (datagrams[i].segment_size > 0 && datagrams[i].length > datagrams[i].segment_size) {
            memset(controls[i].bytes, 0, sizeof(controls[i].bytes));
            header->msg_control = controls[i].bytes;
            header->msg_controllen = sizeof(controls[i].bytes);
            struct cmsghdr *control = CMSG_FIRSTHDR(header);
            control->cmsg_level = SOL_UDP;
            control->cmsg_type = UDP_SEGMENT;
            control->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = datagrams[i].segment_size;
            memcpy(CMSG_DATA(control), &size, sizeof(size));
        }
    }
    int sent;
    do {
        sent = sendmmsg(fd, messages, count, 0);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        *error = errno;
        return -1;
    }
    return sent;
}
