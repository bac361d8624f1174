// System NSS (Debian libnss3-dev). Debian builds libsrtp2 against NSS; the media edge
// initialises NSS itself so that the softoken is sized for many keys (see SRTPSession).
#ifndef SWITCHBOARD_CNSS_SHIM_H
#define SWITCHBOARD_CNSS_SHIM_H

#include <nss.h>

#endif
