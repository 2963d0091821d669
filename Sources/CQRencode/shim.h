#ifndef FOYER_CQRENCODE_SHIM_H
#define FOYER_CQRENCODE_SHIM_H
// libqrencode's encoder (QRcode_encodeString); Foyer draws the symbol as SVG itself.
#include <qrencode.h>
#endif
