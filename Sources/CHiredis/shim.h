#ifndef FOYER_CHIREDIS_SHIM_H
#define FOYER_CHIREDIS_SHIM_H
// Only the RESP codec is used: redisFormatCommandArgv and redisReader. No hiredis I/O.
#include <hiredis.h>
#endif
