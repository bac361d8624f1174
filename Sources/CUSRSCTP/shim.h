// System usrsctp (Debian libusrsctp-dev 0.9.5) for SCTP over DTLS in the peer agent's data
// channels. Macros Swift cannot import get a static inline wrapper.
#ifndef SWITCHBOARD_CUSRSCTP_SHIM_H
#define SWITCHBOARD_CUSRSCTP_SHIM_H

#ifndef INET
#define INET 1
#endif
#ifndef INET6
#define INET6 1
#endif

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <usrsctp.h>

typedef int (*switchboard_usrsctp_output)(void *addr, void *buffer, size_t length, uint8_t tos, uint8_t set_df);

/// usrsctp_init_nothreads without its debug printf, whose variadic pointer type Swift cannot
/// spell: no timer or receive threads, timers from usrsctp_handle_timers.
static inline void switchboard_usrsctp_init_nothreads(uint16_t port, switchboard_usrsctp_output output) {
    usrsctp_init_nothreads(port, output, NULL);
}

static inline int switchboard_errno(void) { return errno; }
static inline int switchboard_EWOULDBLOCK(void) { return EWOULDBLOCK; }
static inline int switchboard_EAGAIN(void) { return EAGAIN; }
static inline int switchboard_EINPROGRESS(void) { return EINPROGRESS; }
static inline int switchboard_AF_CONN(void) { return AF_CONN; }
static inline int switchboard_SOCK_STREAM(void) { return SOCK_STREAM; }
static inline int switchboard_IPPROTO_SCTP(void) { return IPPROTO_SCTP; }
static inline int switchboard_SOL_SOCKET(void) { return SOL_SOCKET; }
static inline int switchboard_SO_LINGER(void) { return SO_LINGER; }
static inline int switchboard_SO_RCVBUF(void) { return SO_RCVBUF; }
static inline int switchboard_SO_SNDBUF(void) { return SO_SNDBUF; }
static inline int switchboard_MSG_EOR(void) { return MSG_EOR; }
static inline int switchboard_MSG_NOTIFICATION(void) { return MSG_NOTIFICATION; }

#endif
