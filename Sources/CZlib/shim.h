#ifndef LICENSED_CZLIB_SHIM_H
#define LICENSED_CZLIB_SHIM_H
#include <zlib.h>
#endif
