#ifndef LICENSED_CDEFLATE_SHIM_H
#define LICENSED_CDEFLATE_SHIM_H
// libdeflate (Debian libdeflate-dev): gzip members compressed whole, about 2.7x faster than
// zlib's level 1 on the audit trail and smaller. zlib still reads them back (CZlib).
#include <libdeflate.h>
#endif
