// System libsrtp2 (Debian libsrtp2-dev) for SRTP/SRTCP in the media edge.
#ifndef SWITCHBOARD_CSRTP_SHIM_H
#define SWITCHBOARD_CSRTP_SHIM_H

#include <srtp2/srtp.h>

#endif
